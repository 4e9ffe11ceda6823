package tidemark_test

// Attacks on keepFilled (faa2d0c): a row container's deletion waits for the
// states a row outside the batch staged in it.
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run 'TestBreak' -v .

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// folderProcess declares row's folders in the tree, as propProcess does
// (declareFolders), and nothing else.
func folderProcess(logic int, tree *tidemark.Target[tidemarktest.Node]) tidemark.ProcessFunc[int, propItem] {
	return func(_ context.Context, r *tidemark.Row, id int, it propItem) error {
		declareFolders(r, tree, logic, id, it)
		return nil
	}
}

// twoSources is a tree two sources, "a" and "b", declare folders in.
type twoSources struct {
	t    *testing.T
	a, b *tidemarktest.Source[int, propItem]
	tree *tidemarktest.Tree
	opts tidemark.Options
}

func newTwoSources(t *testing.T, backend string) *twoSources {
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 2}
	return &twoSources{t: t, a: tidemarktest.NewSource[int, propItem](), b: tidemarktest.NewSource[int, propItem](), tree: tidemarktest.NewTree(), opts: opts}
}

func (w *twoSources) open(opts tidemark.Options) *tidemark.Engine {
	f := tidemark.NewFlow("Two", tidemark.LogicVersion("1"))
	tree := tidemarktest.TreeRoot(f, w.tree, "t")
	tidemark.ForEach(tidemark.AddSource(f, "a", w.a, tidemark.MaxInFlight(2)), folderProcess(1, tree))
	tidemark.ForEach(tidemark.AddSource(f, "b", w.b, tidemark.MaxInFlight(2)), folderProcess(1, tree))
	e, err := tidemark.Open(w.t.Context(), f, opts)
	require.NoError(w.t, err)
	return e
}

func (w *twoSources) update(opts tidemark.Options, uo tidemark.UpdateOptions) (*tidemarktype.UpdateStats, error) {
	e := w.open(opts)
	defer e.Close()
	uo.Confirm = confirmAll
	st, err := e.Update(w.t.Context(), uo)
	return st, err
}

// TestBreakContainerHeldByARowOfAnotherSource: row 2 of source b wrote its
// directory in folder d0, which row 1 of source a holds, and crashed before
// its commit. Row 1 then stops declaring d0, and an update of source a
// alone (UpdateOptions.Sources) deletes what row 1 wrote: keepFilled pages
// through the rows of the update's sources only, so it never sees row 2's
// staged directory, and row 1's deletion of d0 fails ("rmdir: the directory
// is not empty"), as it did before keepFilled, in every update of source a
// until source b is updated.
func TestBreakContainerHeldByARowOfAnotherSource(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, backend string) { containerHeldByARowOfAnotherSource(t, backend, false) })
	})
	t.Run("shared", func(t *testing.T) {
		forEachSharedBackend(t, func(t *testing.T, backend string) { containerHeldByARowOfAnotherSource(t, backend, true) })
	})
}

func containerHeldByARowOfAnotherSource(t *testing.T, backend string, shared bool) {
	w := newTwoSources(t, backend)
	if shared {
		w.opts.Shared = tidemark.SharedOptions{Enabled: true, LeaseTTL: 300 * time.Millisecond, Poll: 2 * time.Millisecond}
	}
	w.a.Set(1, propItem{Val: 1, Folders: []int{0}})
	_, err := w.update(w.opts, tidemark.UpdateOptions{})
	require.NoError(t, err)

	// Row 2 of source b joins d0, and the update crashes before its commit.
	w.b.Set(2, propItem{Val: 2, Folders: []int{0}})
	opts := w.opts
	opts.Faults.BeforeCommit = func(context.Context) error { return errCrash }
	_, err = w.update(opts, tidemark.UpdateOptions{})
	require.ErrorIs(t, err, errCrash)
	require.Contains(t, w.tree.Snapshot(), "t/d0/r2", "row 2's directory was written before the crash")

	// Row 1 leaves d0; source a is updated alone.
	w.a.Set(1, propItem{Val: 1})
	st, err := w.update(w.opts, tidemark.UpdateOptions{Sources: []string{"a"}})
	t.Logf("update of source a: err %v, failures %v; tree %v", err, st.Failures, w.tree.Snapshot())
	require.NoError(t, err)
	require.Zero(t, st.Failed(), "row 1 failed: its deletion of d0 did not wait for row 2's staged directory in it: %v", st.Failures)
}

// TestBreakContainerHeldByAFailingRowOfTheBatch: as in
// TestContainerWithAGoneRowsStagedState, row 2 staged its directory in
// folder d0, which row 1 holds, and crashed before its commit. Then row 1
// stops declaring d0, and row 2's next try fails (its fetch fails) in the
// same batch. keepFilled leaves out the rows of the batch, failed or not:
// row 1's deletion of d0 goes ahead, fails on row 2's directory, and row 1
// fails with row 2, in every update while row 2 fails.
func TestBreakContainerHeldByAFailingRowOfTheBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newPropWorld(t, backend)
		w.stagedInFolder()

		// Row 1 leaves d0; row 2's source is away for it.
		w.src.Set(1, propItem{Val: 1})
		w.src.FailGet(failRow2)
		e := w.open(w.opts)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
		e.Close()
		require.NoError(t, err)
		t.Logf("failures: %v; tree %v", st.Failures, w.tree.Snapshot())
		require.Contains(t, w.tree.Snapshot(), "t/d0/r2")
		require.EqualValues(t, 1, st.Failed(), "only row 2, whose fetch fails, may fail: %v", st.Failures)
	})
}

// TestBreakContainerPreviewDeletesWhatTheUpdateKeeps: with row 2's staged
// directory in folder d0 (as in TestContainerWithAGoneRowsStagedState) and
// row 1 leaving d0 while row 2 still holds it, the update keeps d0
// (keepFilled cancels row 1's deletion), but keepFilled does nothing in a
// preview: the preview counts a deletion in the tree that the update does
// not make.
func TestBreakContainerPreviewDeletesWhatTheUpdateKeeps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newPropWorld(t, backend)
		w.stagedInFolder()

		// Row 1 leaves d0; row 2 (staged) fails, so it stays in d0.
		w.src.Set(1, propItem{Val: 1})
		w.src.FailGet(failRow2)
		// Row 2 in a batch of its own, after row 1's: keepFilled sees it.
		w.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		e := w.open(w.opts)
		pv, err := e.Update(t.Context(), tidemark.UpdateOptions{Preview: true, Confirm: confirmAll})
		require.NoError(t, err)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
		e.Close()
		require.NoError(t, err)
		t.Logf("preview: %+v failures %v; update: %+v failures %v; tree %v", pv.Targets, pv.Failures, st.Targets, st.Failures, w.tree.Snapshot())
		require.Contains(t, w.tree.Snapshot(), "t/d0")
		require.EqualValues(t, 1, st.Failed(), "the update keeps d0: only row 2 fails")
		require.Equal(t, st.Targets["tree/t"], pv.Targets["tree/t"], "the preview's writes to the tree differ from the update's")
	})
}

// TestBreakContainerRevivedDeletionIgnoresStagedHolder: row 2 staged its
// directory in folder d0, which row 1 holds, and crashed before its commit
// (as in TestContainerWithAGoneRowsStagedState); then row 2 leaves the
// source, row 1 leaves d0, and row 3 joins d0 and fails writing its own
// directory there. Row 1's deletion of d0, cancelled for row 3, is revived
// when row 3 fails (owners.revive): revive checks owners but not what rows
// outside the batch staged in d0 (keepFilled runs in settleShared only), so
// d0's deletion fails on row 2's directory and row 1 fails with row 3.
func TestBreakContainerRevivedDeletionIgnoresStagedHolder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newPropWorld(t, backend)
		w.stagedInFolder()

		w.src.Delete(2)
		w.src.Set(1, propItem{Val: 1})
		w.src.Set(3, propItem{Val: 4, Folders: []int{0}}) // n as row 1's: row 3 writes only its own directory
		w.tree.FailPath("t/d0/r3", errors.New("injected: mkdir t/d0/r3 refused"))
		e := w.open(w.opts)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
		e.Close()
		w.tree.Heal()
		require.NoError(t, err)
		t.Logf("failures: %v; tree %v", st.Failures, w.tree.Snapshot())
		require.EqualValues(t, 1, st.Failed(), "only row 3, whose directory is refused, may fail: %v", st.Failures)
	})
}

// failRow2 fails the fetch of row 2.
func failRow2(id int) error {
	if id == 2 {
		return errors.New("injected: row 2's fetch fails")
	}
	return nil
}

// scanCounter counts the state store's row scans and row loads.
type scanCounter struct{ scans, loads atomic.Int64 }

func (c *scanCounter) StoreOp(_ context.Context, op tidemarktype.StoreOp) {
	switch op.Op {
	case "row_scan":
		c.scans.Add(1)
	case "row_load":
		c.loads.Add(1)
	}
}

// TestBreakContainerDeletionsScanEverySourceRowPerBatch: rows that each
// hold a folder of their own (a directory per source row, the use nest.go
// describes) leave the source. Every batch of their deletions deletes row
// containers, and for each such batch keepFilled pages through every row
// of the source, though no row is staged: an update deleting k rows of a
// source of n costs k/MaxRows full scans of n rows ("rare", says
// keepFilled; here it is every batch). The update's own deletion scan
// pages through the rows once (a few pages here). A review found 56 scans
// here; the staged rows' index is now made once per update: 12.
func TestBreakContainerDeletionsScanEverySourceRowPerBatch(t *testing.T) {
	const n, gone, maxRows = 3000, 600, 50
	w := newPropWorld(t, "sqlite")
	for i := range n {
		w.src.Set(i, propItem{Val: i, Folders: []int{100 + i}})
	}
	e := w.open(w.opts)
	_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	e.Close()

	for i := range gone {
		w.src.Delete(i)
	}
	var c scanCounter
	opts := w.opts
	opts.Observer = &c
	opts.Batch = tidemark.BatchOptions{MaxRows: maxRows}
	e = w.open(opts)
	start := time.Now()
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	e.Close()
	require.NoError(t, err)
	require.EqualValues(t, gone, st.Sources["items"].Deleted)
	t.Logf("deleted %d of %d rows in batches of %d in %s: %d row scans, %d row loads", gone, n, maxRows, time.Since(start).Round(time.Millisecond), c.scans.Load(), c.loads.Load())
	// The deletion scan's pages, counting the gone ones, and the staged
	// rows' index, once per update: a few passes, however many batches.
	pages := int64(n/1000 + 2)
	require.LessOrEqual(t, c.scans.Load(), 3*pages, "row scans grow with the batches that delete row containers")
}
