package target

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkingSink is a sink that checks its actions: it refuses "theirs".
type checkingSink struct {
	logSink
	checked [][]string
}

func (s *checkingSink) Check(_ context.Context, actions []string) error {
	s.checked = append(s.checked, actions)
	for _, a := range actions {
		if a == "theirs" {
			return errors.New("refused")
		}
	}
	return nil
}

// checkingContainer is a container sink that checks its actions.
type checkingContainer struct{ checked [][]int }

func (s *checkingContainer) Apply(_ context.Context, actions []int) ([]Erased, error) {
	return make([]Erased, len(actions)), nil
}

func (s *checkingContainer) Check(_ context.Context, actions []int) error {
	s.checked = append(s.checked, actions)
	return nil
}

func TestCheckBatch(t *testing.T) {
	t.Parallel()

	c := &checkingSink{}
	require.NoError(t, CheckBatch(t.Context(), []Action{Do[string](c, "1"), {}, Do[string](c, "2")}))
	require.Equal(t, [][]string{{"1", "2"}}, c.checked, "one call, zero actions skipped")
	require.Empty(t, c.calls, "checking applies nothing")
	require.EqualError(t, CheckBatch(t.Context(), []Action{Do[string](c, "theirs")}), "refused")

	cc := &checkingContainer{}
	require.NoError(t, CheckBatch(t.Context(), []Action{DoContainer[int](cc, 1), DoContainer[int](cc, 2)}))
	require.Equal(t, [][]int{{1, 2}}, cc.checked)

	require.NoError(t, CheckBatch(t.Context(), []Action{Do[string](&logSink{}, "x")}), "a sink that is no Checker passes")
	require.NoError(t, CheckBatch(t.Context(), nil))
	require.ErrorContains(t, CheckBatch(t.Context(), []Action{Do[string](c, "1"), Do[string](&logSink{}, "2")}), "CheckBatch got actions of two sinks")
}
