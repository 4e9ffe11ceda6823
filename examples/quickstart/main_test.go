package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Run from the wrong folder, the quickstart says where it looked and
// creates nothing.
func TestWrongFolderCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	err := run(t.Context(), "examples/quickstart/notes", "notes-index.json", "quickstart.db")
	require.EqualError(t, err, "no directory of notes at examples/quickstart/notes: run from the repository's root, or pass -notes DIR")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// From the repository's root it indexes the notes, and a second run reads
// none of them again.
func TestIndexesTheNotes(t *testing.T) {
	dir := t.TempDir()
	out, db := filepath.Join(dir, "index.json"), filepath.Join(dir, "q.db")
	require.NoError(t, run(t.Context(), "notes", out, db))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(b), `"tidemark.md"`)
	require.NoError(t, run(t.Context(), "notes", out, db))
}
