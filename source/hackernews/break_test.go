package hackernews_test

import (
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews"
)

// TestBreakListDeletionBetweenPages: a story removed from the index
// (deleted, flagged dead) after the window's first page was read shifts
// the next pages up by one: the story that was first on page 1 is now
// last on page 0, read already, and is never listed. The listing ends
// without error, so that story — which exists — is deleted from the
// targets. nbHits dropping between the pages of one query says so.
func TestBreakListDeletionBetweenPages(t *testing.T) {
	t.Parallel()
	a := newArchive(300)
	var once sync.Once
	a.fail = func(q url.Values) int {
		if q.Get("page") == "1" && q.Get("numericFilters") == "" {
			once.Do(func() { a.stories = slices.Delete(a.stories, 10, 11) })
		}
		return 0
	}
	src := newSource(t, a, hackernews.Options{HitsPerPage: 100, MaxResults: 5000})
	listed, err := listAll(t, src)
	require.NoError(t, err)
	var missing []string
	for _, id := range a.ids() {
		if !slices.Contains(keys(listed), id) {
			missing = append(missing, id)
		}
	}
	require.Empty(t, missing, "a listing without error names every story that exists (%d listed of %d)", len(listed), len(a.stories))
}
