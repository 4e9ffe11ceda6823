package tidemark_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// The tests of this file hold the engine to the target-state contract: what
// a handler's Reconcile is told in prev and prevMayBeMissing.

// rowRecord is the record the memory tables keep for a row value.
func rowRecord(t *testing.T, v any) target.Record {
	t.Helper()
	rec, err := target.Fingerprint(v)
	require.NoError(t, err)
	return rec
}

// reconcilesOf returns the logged reconciles of one table's key.
func reconcilesOf(db *tidemarktest.DB, table string, key target.Key) []tidemarktest.Reconcile {
	var out []tidemarktest.Reconcile
	for _, r := range db.Reconciles() {
		if r.Table == table && r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

// crashAt returns fault hooks that fail at one phase of every batch write.
func crashAt(phase string) tidemark.FaultHooks {
	fail := func(context.Context) error { return errCrash }
	switch phase {
	case "before apply":
		return tidemark.FaultHooks{BeforeApply: fail}
	case "before commit":
		return tidemark.FaultHooks{BeforeCommit: fail}
	}
	panic("unknown phase " + phase)
}

// TestPrevMayBeMissingAfterAnInterruptedWrite: a state committed with a=1,
// then written with a=2 by an update that crashed before it committed,
// exists in one of the two versions: the next Reconcile gets prev=[1,2] and
// prevMayBeMissing=false. A state never committed whose write was
// interrupted may not exist.
func TestPrevMayBeMissingAfterAnInterruptedWrite(t *testing.T) {
	t.Parallel()
	for _, phase := range []string{"before apply", "before commit"} {
		t.Run(phase, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, backend string) {
				h := newHarness(t, backend)
				h.src.Set(1, doc{Title: "a1"})
				h.mustUpdate()

				h.src.Set(1, doc{Title: "a2"})
				h.src.Set(2, doc{Title: "new"})
				h.opts.Faults = crashAt(phase)
				_, err := h.update(tidemark.UpdateOptions{})
				require.ErrorIs(t, err, errCrash)
				h.opts.Faults = tidemark.FaultHooks{}

				h.src.Set(1, doc{Title: "a3"})
				h.db.RecordReconciles(true)
				h.mustUpdate()
				h.expectDocs()

				got := reconcilesOf(h.db, "docs", "1")
				require.Len(t, got, 1)
				require.Equal(t, []target.Record{rowRecord(t, docRow{ID: 1, Title: "a1"}), rowRecord(t, docRow{ID: 1, Title: "a2"})}, got[0].Prev)
				require.False(t, got[0].PrevMayBeMissing, "a committed state whose change was interrupted exists, in one version or the other")

				got = reconcilesOf(h.db, "docs", "2")
				require.Len(t, got, 1)
				require.Equal(t, []target.Record{rowRecord(t, docRow{ID: 2, Title: "new"})}, got[0].Prev)
				require.True(t, got[0].PrevMayBeMissing, "a state whose first write was interrupted may not exist")
			})
		})
	}
}

// TestPrevMayBeMissingAfterAnInterruptedDeletion: a state whose deletion
// was interrupted may not exist any more.
func TestPrevMayBeMissingAfterAnInterruptedDeletion(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.src.Set(1, doc{Title: "a", Tags: []string{"x", "y"}})
		h.mustUpdate()

		h.src.Set(1, doc{Title: "a", Tags: []string{"x"}})
		h.opts.Faults = crashAt("before commit")
		_, err := h.update(tidemark.UpdateOptions{})
		require.ErrorIs(t, err, errCrash)
		h.opts.Faults = tidemark.FaultHooks{}

		// The row declares y again: it may have been deleted.
		h.src.Set(1, doc{Title: "a", Tags: []string{"x", "y"}})
		h.db.RecordReconciles(true)
		h.mustUpdate()
		h.expectDocs()
		got := reconcilesOf(h.db, "tags", "y")
		require.Len(t, got, 1)
		require.Equal(t, []target.Record{rowRecord(t, tagRow{Tag: "y"})}, got[0].Prev)
		require.True(t, got[0].PrevMayBeMissing)
		require.Equal(t, tidemarktest.Counts{Applies: 1, Upserts: 1}, h.db.Counts(), "y is written again")

		// x was never touched: it certainly exists.
		for _, r := range h.db.Reconciles() {
			if r.Table == "tags" && r.Key == "x" {
				require.False(t, r.PrevMayBeMissing)
			}
		}
	})
}

// TestDropInterruptedAfterTheTableWent: a drop that dies after the table is
// dropped, before the state store forgets it, leaves a table whose every
// row may be missing: the next update writes them all again.
func TestDropInterruptedAfterTheTableWent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(20)
		h.mustUpdate()
		h.expectDocs()

		opts := h.opts
		h.opts.Faults.AfterSetupApply = func(context.Context) error { return errCrash }
		e := h.open()
		_, err := e.Drop(t.Context())
		require.ErrorIs(t, err, errCrash)
		e.Close()
		h.opts = opts
		require.Nil(t, h.db.Rows("docs"), "the first table went")

		st := h.mustUpdate()
		h.expectDocs()
		require.Equal(t, int64(20), st.Sources["docs"].Reprocessed+st.Sources["docs"].Added+st.Sources["docs"].Updated, "every row is written again")
		st = h.mustUpdate()
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts(), "and then nothing is left to do")
		require.Empty(t, st.Setup)
	})
}

// TestSetupChangesAreBatchedPerSink: containers and attachments set up
// together reach their sink in one Apply per sink, in setup and in drop.
func TestSetupChangesAreBatchedPerSink(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(5)
		open := func(tables int) *tidemark.Engine {
			f := tidemark.NewFlow("Batched")
			var all []*tidemark.Target[docRow]
			for i := range tables {
				tbl := tidemarktest.Table[docRow](f, h.db, fmt.Sprintf("t%d", i))
				tidemarktest.Index(tbl, "by_title", "Title")
				tidemarktest.Index(tbl, "by_id", "ID")
				all = append(all, tbl)
			}
			tidemark.ForEach(tidemark.AddSource(f, "docs", h.src), func(_ context.Context, r *tidemark.Row, id int, d doc) error {
				for _, tbl := range all {
					tbl.Declare(r, target.Key(fmt.Sprint(id)), docRow{ID: id, Title: d.Title})
				}
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, h.opts)
			require.NoError(t, err)
			t.Cleanup(func() { e.Close() })
			return e
		}
		st, err := open(3).Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Len(t, st.Setup, 9, "3 tables, 6 indexes")
		require.Equal(t, 9, h.db.Counts().Setups)
		require.Equal(t, 2, h.db.Counts().SetupApplies, "one call of the table sink, one of the index sink")
		for i := range 3 {
			require.Len(t, h.db.Rows(fmt.Sprintf("t%d", i)), 5)
			require.Len(t, h.db.Indexes(fmt.Sprintf("t%d", i)), 2)
		}

		// Retired together: 2 tables with their indexes.
		h.db.ResetCounts()
		st, err = open(1).Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Len(t, st.Setup, 2, "2 tables dropped, their indexes with them")
		require.Equal(t, 1, h.db.Counts().SetupApplies)
		require.ElementsMatch(t, []string{"t0"}, h.db.Tables())

		h.db.ResetCounts()
		changes, err := open(1).Drop(t.Context())
		require.NoError(t, err)
		require.Len(t, changes, 3, "2 indexes, then the table")
		require.Equal(t, 2, h.db.Counts().SetupApplies, "one call of the index sink, then one of the table sink")
		require.Empty(t, h.db.Tables())
	})
}
