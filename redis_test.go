package tidemark_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// TestRedisStateStore runs updates end to end with the state in Redis,
// named by a URL with its prefix parameter: the state exists once an
// update ran, a second update finds nothing to do, changes and deletions
// go through, and the status reads back. (Every test of forEachBackend
// runs on Redis too.)
func TestRedisStateStore(t *testing.T) {
	t.Parallel()
	url, prefix := redistest.Prefix(t)
	h := newHarness(t, "sqlite")
	h.opts = tidemark.Options{StateStore: url + "?prefix=" + prefix, Retry: h.opts.Retry}
	h.fill(200)

	exists, err := tidemark.StateExists(t.Context(), h.opts)
	require.NoError(t, err)
	require.False(t, exists, "no update ran yet")

	start := time.Now()
	st := h.mustUpdate()
	t.Logf("initial update of 200 rows: %s", time.Since(start))
	require.Equal(t, tidemarktype.SourceStats{Listed: 200, Fetched: 200, Added: 200, ListingComplete: true}, st.Sources["docs"])
	h.expectDocs()
	exists, err = tidemark.StateExists(t.Context(), tidemark.Options{StateStore: url, StateSchema: prefix})
	require.NoError(t, err)
	require.True(t, exists, "the prefix may be given as StateSchema too")

	st = h.mustUpdate()
	require.Equal(t, tidemarktype.SourceStats{Listed: 200, Unchanged: 200, ListingComplete: true}, st.Sources["docs"])

	for i := range 10 {
		h.src.Delete(i)
	}
	h.src.Set(10, doc{Title: "changed"})
	st = h.mustUpdate()
	require.Equal(t, tidemarktype.SourceStats{Listed: 190, Fetched: 1, Updated: 1, Unchanged: 189, Deleted: 10, ListingComplete: true}, st.Sources["docs"])
	h.expectDocs()

	status, err := h.open().Status(t.Context(), 5)
	require.NoError(t, err)
	require.Len(t, status.Sources, 1)
	require.Equal(t, int64(190), status.Sources[0].Rows)
}
