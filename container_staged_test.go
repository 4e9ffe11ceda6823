package tidemark_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
)

// TestContainerWithAGoneRowsStagedState: row 2 wrote a directory of its
// own in folder d0, which row 1 holds, and crashed before its commit, so
// only row 2's staged tracking knows of it. Then row 2 leaves the source
// and row 1 stops declaring d0. One update converges: row 1's deletion of
// d0 waits for what row 2 left in it, which the deletion of row 2, after
// the listing, removes, d0 with it. So too in a shared pass.
func TestContainerWithAGoneRowsStagedState(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, backend string) { containerWithAGoneRowsStagedState(t, backend, false) })
	})
	t.Run("shared", func(t *testing.T) {
		forEachSharedBackend(t, func(t *testing.T, backend string) { containerWithAGoneRowsStagedState(t, backend, true) })
	})
}

// stagedInFolder makes row 1 hold folder d0, then row 2 join it in an
// update that crashes before its commit: only row 2's staged tracking
// knows of its directory t/d0/r2.
func (w *propWorld) stagedInFolder() {
	t := w.t
	t.Helper()
	w.src.Set(1, propItem{Val: 1, Folders: []int{0}})
	e := w.open(w.opts)
	_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	e.Close()

	w.src.Set(2, propItem{Val: 2, Folders: []int{0}})
	opts := w.opts
	opts.Faults.BeforeCommit = func(context.Context) error { return errCrash }
	e = w.open(opts)
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.ErrorIs(t, err, errCrash)
	e.Close()
	require.Contains(t, w.tree.Snapshot(), "t/d0/r2", "row 2's directory was written before the crash")
}

func containerWithAGoneRowsStagedState(t *testing.T, backend string, shared bool) {
	w := newPropWorld(t, backend)
	if shared {
		w.opts.Shared = tidemark.SharedOptions{Enabled: true, LeaseTTL: 300 * time.Millisecond, Poll: 2 * time.Millisecond}
	}
	w.stagedInFolder()

	w.src.Delete(2)
	w.src.Set(1, propItem{Val: 1})
	e := w.open(w.opts)
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	e.Close()
	require.NoError(t, err)
	require.Zero(t, st.Failed(), "%v", st.Failures)
	requireTree(t, w.expectedTree(), w.tree.Snapshot())
	require.NotContains(t, w.tree.Snapshot(), "t/d0", "d0 went with the last row that held a state in it")
}
