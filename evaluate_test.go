package tidemark_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
)

// TestEvaluateRetriesAndIsolatesPanics: Evaluate fetches as an update
// does — a transient Get error is retried — and a panic in the processing
// function fails its row alone.
func TestEvaluateRetriesAndIsolatesPanics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(4)
	var tries atomic.Int32
	h.src.FailGet(func(k int) error {
		if k == 1 && tries.Add(1) <= 2 {
			return tidemark.Retryable(errors.New("HTTP 503"))
		}
		return nil
	})
	h.process = func(_ context.Context, r *tidemark.Row, id int, d doc) error {
		if id == 2 {
			panic("the processing function blew up")
		}
		return nil
	}
	e := h.open()
	got := make(map[string]tidemark.Evaluated)
	require.NoError(t, e.Evaluate(t.Context(), tidemark.EvaluateOptions{}, func(ev tidemark.Evaluated) error {
		got[ev.Key] = ev
		return nil
	}))
	require.Len(t, got, 4, "every row evaluated")
	require.NoError(t, got["1"].Err, "the transient failure was retried")
	require.True(t, got["1"].Exists)
	require.Equal(t, int32(3), tries.Load())
	require.ErrorContains(t, got["2"].Err, "panic: the processing function blew up")
	require.NoError(t, got["3"].Err)
}
