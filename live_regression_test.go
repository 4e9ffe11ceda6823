package tidemark_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// Keys a change stream announced for a source whose listing is due are
// covered by that listing only if it completes: when it fails (the listing
// API down while items are still served), they are kept and updated by a
// later pass.
func TestLiveFailedListingLosesAnnouncedChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(10)
	w := &watchedSource{Source: h.src, changes: make(chan tidemark.Change[int])}
	e := h.openWith(w)

	const refresh = 50 * time.Millisecond
	stop := make(chan struct{})
	var once sync.Once
	onPass := func(p tidemark.Pass) {
		once.Do(func() {
			// After the first pass: the listing API goes down, and a
			// change is announced just before the next listing is due.
			h.src.FailListAfter(0, errors.New("search API down"))
			h.src.Set(4, doc{Title: "changed"})
			w.changes <- tidemark.Change[int]{Key: 4, Ordinal: tidemark.NoOrdinal}
			time.Sleep(2 * refresh)
		})
	}
	done := make(chan error, 1)
	go func() {
		done <- e.Live(context.Background(), tidemark.LiveOptions{Refresh: refresh, Stop: stop, OnPass: onPass})
	}()
	defer func() {
		close(stop)
		require.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool {
		return h.db.Rows("docs")[target.Key("4")] == docRow{ID: 4, Title: "changed"}
	}, 3*time.Second, 10*time.Millisecond, "the announced change to row 4 was never applied")
}

// With --live --full-reprocess, the full reprocess holds until a listing
// pass succeeds: a first pass that fails does not lose it.
func TestLiveFullReprocessSurvivesAFailedFirstPass(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(20)
	h.mustUpdate()
	h.src.FailListAfter(0, errors.New("search API down"))
	e := h.open()

	passes := make(chan tidemark.Pass, 10)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.Live(t.Context(), tidemark.LiveOptions{Mode: tidemark.ModeFullReprocess, Refresh: 30 * time.Millisecond, Stop: stop,
			OnPass: func(p tidemark.Pass) {
				if p.N == 1 {
					h.src.FailListAfter(0, nil) // the API is back
				}
				passes <- p
			}})
	}()
	first := <-passes
	require.Error(t, first.Err, "the first pass fails: the listing is down")
	second := <-passes
	close(stop)
	require.NoError(t, <-done)
	require.NoError(t, second.Err)
	require.Equal(t, int64(20), second.Stats.Sources["docs"].Fetched,
		"the full reprocess asked for was never done: the second pass ran incrementally")
}

// goneOnGet is a memory source whose Get says one listed key is gone.
type goneOnGet struct {
	*tidemarktest.Source[int, doc]
	gone int
}

func (g goneOnGet) Get(ctx context.Context, k int) (tidemark.Fetched[doc], error) {
	if k == g.gone {
		return tidemark.Fetched[doc]{}, nil
	}
	return g.Source.Get(ctx, k)
}

// The deletion scan may be skipped only when every row of the source was
// seen: a row found gone by its Get (listed, so seen, then deleted) must
// not make an unlisted row look seen.
func TestRowGoneOnGetDoesNotHideAnUnlistedRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(3) // rows 0, 1, 2
		h.mustUpdate()

		h.src.Delete(2)                          // not listed any more
		h.src.Set(1, doc{Title: "changed"})      // listed, fetched…
		src := goneOnGet{Source: h.src, gone: 1} // …and found gone
		e := h.openWith(src)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(2), st.Sources["docs"].Deleted, "row 1 found gone, row 2 not listed")
		require.Equal(t, []target.Key{"0"}, slices.Sorted(maps.Keys(h.db.Rows("docs"))))
	})
}
