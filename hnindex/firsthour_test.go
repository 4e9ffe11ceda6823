package hnindex_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A mistyped --tag lists nothing: nothing is deleted, and the update says
// so and exits 1; a changed --max-results asks before deleting the threads
// it leaves out.
func TestListingMistakesDeleteNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := dataset(t)
		w := newWorld(t, backend, ds)
		w.mustUpdate()

		r := w.run("update", "--tag", "nosuchtag")
		require.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stdout, "source threads: 0 listed")
		require.Contains(t, r.stdout, "source threads: 41 rows the listing left out were not deleted: that needs a confirmation")
		require.Contains(t, r.stderr, "hnindex: source threads: 41 rows not deleted: its listing named no rows, while 41 rows are kept for it; deleting them needs a confirmation; pass --yes to delete them")
		w.requireRows()

		r = w.run("update", "--max-results", "11")
		require.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stdout, "source threads: 30 rows the listing left out were not deleted")
		require.Contains(t, r.stderr, `its options changed since its last update: max_results "500" → "11"`)
		w.requireRows()

		c := w.mustUpdate("--max-results", "11", "--yes")
		require.Zero(t, c.Items, "nothing changed in the 11 kept")
		require.Len(t, w.rows(), countMessages(t, w, 11))
		c = w.mustUpdate("--max-results", "11")
		require.Zero(t, c.Items, "the new options were recorded: no question")
	})
}

// countMessages is the number of rows the newest n threads make.
func countMessages(t *testing.T, w *world, n int) int {
	t.Helper()
	threads := map[string]bool{}
	for _, m := range w.rows() {
		threads[m.ThreadID] = true
	}
	require.Len(t, threads, n)
	return len(w.rows())
}

// Read-only commands on a mistyped path exit 1 naming it, creating
// nothing.
func TestReadOnlyCommandsOnAMissingDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWorld(t, "sqlite", dataset(t))
	typo := filepath.Join(dir, "typo.db")
	for _, args := range [][]string{{"search", "rust"}, {"show"}, {"ls"}, {"evaluate"}, {"server", "--addr", "127.0.0.1:0"}} {
		r := w.run(append(args, "--db", typo)...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Equal(t, "hnindex: no database at "+typo+" (run `hnindex update` first)\n", r.stderr, "%v", args)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// Bad flags are refused before anything is opened: no database is left.
func TestBadFlagsCreateNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWorld(t, "sqlite", dataset(t))
	db := filepath.Join(dir, "n1.db")
	for _, args := range [][]string{{"--rate", "0"}, {"--max-results", "0"}, {"--hn-url", "ftp://x"}, {"--retry-deadline", "0s"}} {
		r := w.run(append([]string{"update", "--db", db}, args...)...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Contains(t, r.stderr, args[0], "the flag is named")
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}
