package tidemark_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktest"
)

func TestFlowMistakesAreReportedByOpen(t *testing.T) {
	t.Parallel()
	nop := func(context.Context, *tidemark.Row, int, doc) error { return nil }
	for name, tt := range map[string]struct {
		build func() *tidemark.Flow
		want  string
	}{
		"no name": {func() *tidemark.Flow { return tidemark.NewFlow("") }, "a flow needs a name"},
		"no processing function": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			tidemark.AddSource(f, "s", tidemarktest.NewSource[int, doc]())
			return f
		}, "source s has no processing function; call ForEach"},
		"ForEach twice": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			s := tidemark.AddSource(f, "s", tidemarktest.NewSource[int, doc]())
			tidemark.ForEach(s, nop)
			tidemark.ForEach(s, nop)
			return f
		}, "ForEach called twice"},
		"nil source": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			tidemark.ForEach(tidemark.AddSource[int, doc](f, "s", nil), nop)
			return f
		}, `source "s" is nil`},
		"bad in-flight": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			tidemark.ForEach(tidemark.AddSource(f, "s", tidemarktest.NewSource[int, doc](), tidemark.MaxInFlight(0)), nop)
			return f
		}, "MaxInFlight must be at least 1, got 0"},
		"target twice": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			db := tidemarktest.NewDB()
			tidemarktest.Table[docRow](f, db, "t")
			tidemarktest.Table[docRow](f, db, "t")
			return f
		}, "target memory/t declared twice"},
		"query handler twice": {func() *tidemark.Flow {
			f := tidemark.NewFlow("f")
			q := func(context.Context, tidemark.Query) (any, error) { return nil, nil }
			f.QueryHandler("search", q)
			f.QueryHandler("search", q)
			return f
		}, `query handler "search" registered twice`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := tidemark.Open(t.Context(), tt.build(), tidemark.Options{StateStore: t.TempDir() + "/s.db"})
			require.ErrorContains(t, err, tt.want)
		})
	}

	_, err := tidemark.Open(t.Context(), tidemark.NewFlow("f"), tidemark.Options{})
	require.ErrorContains(t, err, "Options.StateStore is required")
	_, err = tidemark.Open(t.Context(), tidemark.NewFlow("f"), tidemark.Options{StateStore: "postgres://127.0.0.1:5432/x", StateSchema: "Bad-Name"})
	require.ErrorContains(t, err, "invalid schema name")
}

func TestQueryHandlers(t *testing.T) {
	t.Parallel()
	f := tidemark.NewFlow("f")
	f.QueryHandler("search", func(_ context.Context, q tidemark.Query) (any, error) {
		if q.Text == "" {
			return nil, errors.New("empty query")
		}
		return []string{q.Text, q.Args["lang"]}, nil
	})
	f.QueryHandler("count", func(context.Context, tidemark.Query) (any, error) { return 3, nil })
	require.Equal(t, []string{"count", "search"}, f.QueryHandlers())

	got, err := f.Query(t.Context(), "search", tidemark.Query{Text: "go", Limit: 5, Args: map[string]string{"lang": "en"}})
	require.NoError(t, err)
	require.Equal(t, []string{"go", "en"}, got)
	_, err = f.Query(t.Context(), "search", tidemark.Query{})
	require.ErrorContains(t, err, "empty query")
	_, err = f.Query(t.Context(), "nope", tidemark.Query{})
	require.ErrorContains(t, err, `flow f has no query handler "nope"`)
}
