package tidemark_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// The tests of this file move target states from one source row to
// another: a row stops declaring a state that another row starts
// declaring. The new declarer's handler must be told what the old one
// wrote.

// claimRow is a state of the claims table: one per tag, whose value is the
// title of the document that declares the tag.
type claimRow struct {
	Tag  string
	Note string
}

// claims is a world of documents whose tags are claims.
type claims struct {
	*harness
}

func newClaims(t *testing.T, backend string) *claims {
	return &claims{newHarness(t, backend)}
}

// update runs an update of the claims flow with counters reset first.
func (c *claims) update() (*tidemarktype.UpdateStats, error) {
	c.t.Helper()
	c.src.ResetCounts()
	c.db.ResetCounts()
	c.db.RecordReconciles(true)
	f := tidemark.NewFlow("Claims")
	tbl := tidemarktest.Table[claimRow](f, c.db, "claims")
	tidemark.ForEach(tidemark.AddSource(f, "docs", c.src, tidemark.MaxInFlight(4)), func(_ context.Context, r *tidemark.Row, id int, d doc) error {
		for _, tag := range d.Tags {
			tbl.Declare(r, target.Key(tag), claimRow{Tag: tag, Note: d.Title})
		}
		return nil
	})
	e, err := tidemark.Open(c.t.Context(), f, c.opts)
	require.NoError(c.t, err)
	defer e.Close()
	return e.Update(c.t.Context(), tidemark.UpdateOptions{})
}

func (c *claims) mustUpdate() *tidemarktype.UpdateStats {
	c.t.Helper()
	st, err := c.update()
	require.NoError(c.t, err)
	require.Zero(c.t, st.Failed(), "%v", st.Failures)
	return st
}

// expect checks that the claims table holds exactly the claims of the
// source's documents, each with the note of one of its declarers.
func (c *claims) expect() {
	c.t.Helper()
	want := make(map[target.Key][]any)
	for _, id := range c.src.Keys() {
		d, _ := c.src.Value(id)
		for _, tag := range d.Tags {
			want[target.Key(tag)] = append(want[target.Key(tag)], claimRow{Tag: tag, Note: d.Title})
		}
	}
	requireLinks(c.t, want, orEmpty(c.db.Rows("claims")))
}

// upserts returns the logged reconciles of key with a desired value.
func (c *claims) upserts(key target.Key) []tidemarktest.Reconcile {
	var out []tidemarktest.Reconcile
	for _, r := range reconcilesOf(c.db, "claims", key) {
		if r.Desired != nil {
			out = append(out, r)
		}
	}
	return out
}

func TestMoveUnchangedWritesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.src.Set(1, doc{Title: "same", Tags: []string{"a", "b", "c"}})
		c.src.Set(2, doc{Title: "same"})
		c.src.Set(3, doc{Title: "same"})
		c.mustUpdate()
		c.expect()

		// a and b move to 2, c to 3, all at once.
		c.src.Set(1, doc{Title: "same"})
		c.src.Set(2, doc{Title: "same", Tags: []string{"a", "b"}})
		c.src.Set(3, doc{Title: "same", Tags: []string{"c"}})
		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{}, c.db.Counts(), "moving unchanged values writes nothing")
		for _, k := range []target.Key{"a", "b", "c"} {
			got := c.upserts(k)
			require.Len(t, got, 1, "%s: one reconcile by its new declarer", k)
			require.Equal(t, []target.Record{rowRecord(t, claimRow{Tag: string(k), Note: "same"})}, got[0].Prev, k)
			require.False(t, got[0].PrevMayBeMissing, "%s exists", k)
		}

		// The states are owned by their new declarers: deleting the old
		// one changes nothing, deleting a new one deletes its states.
		c.src.Delete(1)
		c.mustUpdate()
		require.Equal(t, tidemarktest.Counts{}, c.db.Counts())
		c.src.Delete(2)
		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{Applies: 1, Deletes: 2}, c.db.Counts(), "a and b went with the row they moved to")
		require.Contains(t, c.db.Rows("claims"), target.Key("c"))
	})
}

func TestMoveChangedIsOneUpdate(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.src.Set(1, doc{Title: "one", Tags: []string{"k"}})
		c.src.Set(2, doc{Title: "two"})
		c.mustUpdate()

		c.src.Set(1, doc{Title: "one"})
		c.src.Set(2, doc{Title: "two", Tags: []string{"k"}})
		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{Applies: 1, Upserts: 1}, c.db.Counts(), "one update, no delete")
		got := c.upserts("k")
		require.Len(t, got, 1)
		require.Equal(t, []target.Record{rowRecord(t, claimRow{Tag: "k", Note: "one"})}, got[0].Prev)
		require.False(t, got[0].PrevMayBeMissing)
	})
}

// TestMoveChain moves a state from row 1 to 2 to 3 in successive updates;
// each move writes nothing, and the state goes with the last row.
func TestMoveChain(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		for id := 1; id <= 3; id++ {
			c.src.Set(id, doc{Title: "same"})
		}
		c.src.Set(1, doc{Title: "same", Tags: []string{"k"}})
		c.mustUpdate()
		for _, to := range []int{2, 3} {
			c.src.Set(to-1, doc{Title: "same"})
			c.src.Set(to, doc{Title: "same", Tags: []string{"k"}})
			c.mustUpdate()
			c.expect()
			require.Equal(t, tidemarktest.Counts{}, c.db.Counts(), "move to %d", to)
		}
		c.src.Delete(3)
		c.mustUpdate()
		c.expect()
		require.Empty(t, c.db.Rows("claims"))
	})
}

// TestMoveToARowThenDeleted: the row a state moved to is deleted in the
// next update, and the state with it.
func TestMoveToARowThenDeleted(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.src.Set(1, doc{Title: "same", Tags: []string{"k"}})
		c.mustUpdate()
		c.src.Set(1, doc{Title: "same"})
		c.src.Set(2, doc{Title: "same", Tags: []string{"k"}})
		c.mustUpdate()
		require.Equal(t, tidemarktest.Counts{}, c.db.Counts())
		c.src.Delete(2)
		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{Applies: 1, Deletes: 1}, c.db.Counts())
	})
}

// TestMoveInterruptedBySinkFailure: the sink fails while a changed state
// moves, and the update stops. The next update's reconcile sees both the
// old version and the attempted one, and knows the state exists; it
// converges with one write.
func TestMoveInterruptedBySinkFailure(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.src.Set(1, doc{Title: "one", Tags: []string{"k"}})
		c.src.Set(2, doc{Title: "two"})
		c.mustUpdate()

		c.src.Set(1, doc{Title: "one"})
		c.src.Set(2, doc{Title: "two", Tags: []string{"k"}})
		c.db.FailAfter(0, tidemark.Retryable(errCrash))
		_, err := c.update()
		require.ErrorIs(t, err, errCrash)
		c.db.Heal()

		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{Applies: 1, Upserts: 1}, c.db.Counts(), "one write")
		got := c.upserts("k")
		require.Len(t, got, 1)
		require.ElementsMatch(t, []target.Record{rowRecord(t, claimRow{Tag: "k", Note: "one"}), rowRecord(t, claimRow{Tag: "k", Note: "two"})}, got[0].Prev)
		require.False(t, got[0].PrevMayBeMissing)
	})
}

// TestMoveToAFailingRow: the row a state moves to fails to write; nothing
// of it is written, so the state is deleted by the row that stopped
// declaring it, and the failed row writes it when it is retried.
func TestMoveToAFailingRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.src.Set(1, doc{Title: "one", Tags: []string{"k"}})
		c.src.Set(2, doc{Title: "two"})
		c.mustUpdate()

		c.src.Set(1, doc{Title: "one"})
		c.src.Set(2, doc{Title: "two", Tags: []string{"k", "poison"}})
		c.db.FailRow("poison", errors.New("refused"))
		st, err := c.update()
		require.NoError(t, err)
		require.Equal(t, int64(1), st.Failed())
		require.Empty(t, c.db.Rows("claims"), "k is deleted by row 1: nothing of row 2 was written")
		c.db.Heal()

		c.mustUpdate()
		c.expect()
		require.Equal(t, tidemarktest.Counts{Applies: 1, Upserts: 2}, c.db.Counts())
		got := c.upserts("k")
		require.Len(t, got, 1)
		require.Equal(t, []target.Record{rowRecord(t, claimRow{Tag: "k", Note: "two"})}, got[0].Prev, "the attempted version")
		require.True(t, got[0].PrevMayBeMissing, "deleted since")
	})
}
