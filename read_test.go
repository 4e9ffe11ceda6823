package tidemark_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestReadAPI(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(12)
		h.mustUpdate()
		h.src.FailGet(func(k int) error {
			if k == 7 {
				return errors.New("refused")
			}
			return nil
		})
		h.src.Touch(7)
		h.mustUpdate()
		e := h.open()
		ctx := t.Context()

		// One row, with its lineage.
		r, err := e.Row(ctx, "docs", "3")
		require.NoError(t, err)
		require.Equal(t, "docs", r.Source)
		require.Equal(t, "3", r.Key)
		require.NotNil(t, r.Ordinal)
		require.NotEmpty(t, r.ContentFingerprint)
		require.True(t, r.LogicCurrent)
		require.False(t, r.ProcessedAt.IsZero())
		require.Nil(t, r.Failure)
		require.False(t, r.Staged)
		require.ElementsMatch(t, []tidemarktype.DeclaredState{
			{Target: "memory/docs", Key: "3", Record: rowRecord(t, docRow{ID: 3, Title: "doc 3"}), Wrote: true},
			{Target: "memory/tags", Key: "mod5-3", Record: rowRecord(t, tagRow{Tag: "mod5-3"})},
			{Target: "memory/tags", Key: "odd", Record: rowRecord(t, tagRow{Tag: "odd"})},
		}, clearWrote(r.States, "memory/tags"))

		failed, err := e.Row(ctx, "docs", "7")
		require.NoError(t, err)
		require.NotNil(t, failed.Failure)
		require.Contains(t, failed.Failure.Message, "refused")
		require.Equal(t, int64(1), failed.Failure.Count)
		require.NotEmpty(t, failed.States, "a failed row keeps what it declared before")

		_, err = e.Row(ctx, "docs", "99")
		require.ErrorIs(t, err, tidemark.ErrNotFound)
		_, err = e.Row(ctx, "docs", "\xff")
		require.ErrorContains(t, err, "not valid UTF-8", "never another key's row")
		_, err = e.Row(ctx, "nosuch", "1")
		require.ErrorContains(t, err, `no source "nosuch"`)

		// Every row, page by page, in key order.
		var keys []string
		after := ""
		for {
			page, err := e.Rows(ctx, "docs", tidemark.RowsOptions{After: after, Limit: 5})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				keys = append(keys, r.Key)
			}
			after = page[len(page)-1].Key
		}
		require.Equal(t, []string{"0", "1", "10", "11", "2", "3", "4", "5", "6", "7", "8", "9"}, keys)
		page, err := e.Rows(ctx, "docs", tidemark.RowsOptions{Failed: true})
		require.NoError(t, err)
		require.Len(t, page, 1)
		require.Equal(t, "7", page[0].Key)
		_, err = e.Rows(ctx, "docs", tidemark.RowsOptions{Limit: 10_001})
		require.ErrorContains(t, err, "Limit must be between 1 and 10000")
		for _, after := range []string{"\x00", "a\x00", "\xff", "\xc3"} {
			_, err = e.Rows(ctx, "docs", tidemark.RowsOptions{After: after})
			require.ErrorContains(t, err, "is not a key", "%q", after)
		}

		// And back: which rows declare a state.
		refs, err := e.Declarers(ctx, "memory/tags", "odd")
		require.NoError(t, err)
		var odd []string
		for _, ref := range refs {
			require.Equal(t, "docs", ref.Source)
			odd = append(odd, ref.Key)
		}
		require.ElementsMatch(t, []string{"1", "3", "5", "7", "9", "11"}, odd)
		refs, err = e.Declarers(ctx, "memory/docs", target.Key("4"))
		require.NoError(t, err)
		require.Equal(t, []tidemarktype.RowRef{{Source: "docs", Key: "4"}}, refs)
		_, err = e.Declarers(ctx, "memory/docs", "nosuch")
		require.ErrorIs(t, err, tidemark.ErrNotFound)
		_, err = e.Declarers(ctx, "memory/nosuch", "1")
		require.ErrorContains(t, err, "has no target")
	})
}

// clearWrote unsets Wrote on the states of target: which of a shared
// state's declarers wrote it last depends on batching.
func clearWrote(states []tidemarktype.DeclaredState, target string) []tidemarktype.DeclaredState {
	out := make([]tidemarktype.DeclaredState, len(states))
	for i, s := range states {
		if s.Target == target {
			s.Wrote = false
		}
		out[i] = s
	}
	return out
}
