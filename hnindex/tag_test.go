package hnindex_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// TestTagAllListsEveryKind: --tag story (the default) leaves a job out;
// --tag "" and --tag all list every kind of thread, the job too.
func TestTagAllListsEveryKind(t *testing.T) {
	t.Parallel()
	ds := dataset(t)
	const job = 99_000_001
	ds.Put(&hnfake.Thread{ID: job, Type: "job", Title: "Acme is hiring", Author: "acme", CreatedAt: time.Now().Add(-time.Minute).UTC()})
	w := newWorld(t, "sqlite", ds)

	c := w.mustUpdate()
	require.EqualValues(t, 41, c.Items, "stories only")
	require.Zero(t, c.ItemsByID[job])
	_, ok := w.rows()["99000001"]
	require.False(t, ok, "no job with --tag story")

	c = w.mustUpdate("--tag", "")
	require.EqualValues(t, 1, c.Items, "the job alone is new")
	require.EqualValues(t, 1, c.ItemsByID[job])
	require.Equal(t, "Acme is hiring", w.rows()["99000001"].Text)

	c = w.mustUpdate("--tag", "all")
	require.Zero(t, c.Items, `"all" is "": nothing changed`)
}
