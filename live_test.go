package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestUpdateStopCommitsAndDeletesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(3000) // more than a lookup chunk: the listing is still going when the stop comes
		h.mustUpdate()

		// Every row changes and ten vanish; the update is stopped after 50
		// fetches.
		for i := range 3000 {
			h.src.Set(i, doc{Title: fmt.Sprintf("doc %d, edited", i)})
		}
		for i := range 10 {
			h.src.Delete(i)
		}
		stop := make(chan struct{})
		var gets atomic.Int64
		var once sync.Once
		h.src.OnGet(func(int) {
			if gets.Add(1) == 50 {
				once.Do(func() { close(stop) })
			}
		})
		st, err := h.update(tidemark.UpdateOptions{Stop: stop})
		require.ErrorIs(t, err, tidemark.ErrStopped)
		require.ErrorIs(t, err, tidemark.ErrListingIncomplete)
		src := st.Sources["docs"]
		require.False(t, src.ListingComplete)
		require.Zero(t, src.Deleted, "a stopped update deletes nothing")
		require.Positive(t, src.Updated, "what was fetched before the stop is written")
		require.Less(t, src.Updated, int64(2990), "the stop ended the listing early")
		require.Len(t, h.db.Rows("docs"), 3000, "nothing deleted")
		edited := 0
		for _, v := range h.db.Rows("docs") {
			if r := v.(docRow); len(r.Title) > 7 && r.Title[len(r.Title)-6:] == "edited" {
				edited++
			}
		}
		require.Equal(t, int(src.Updated), edited, "every row counted as updated was committed")
		e := h.open()
		status, err := e.Status(t.Context(), 0)
		require.NoError(t, err)
		require.NoError(t, e.Close())
		last := status.Sources[0].LastUpdate
		require.True(t, last.Stopped, "the update is noted as stopped, not failed")
		require.Contains(t, last.Error, "update stopped")

		h.src.OnGet(nil)
		st = h.mustUpdate()
		require.Equal(t, int64(2990-edited), st.Sources["docs"].Updated, "the next update fetches only what the stopped one left")
		h.expectDocs()
	})
}

func TestUpdateProgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(60)
	h.src.OnGet(func(int) { time.Sleep(2 * time.Millisecond) })
	var mu sync.Mutex
	var seen []*tidemarktype.UpdateStats
	st, err := h.update(tidemark.UpdateOptions{ProgressInterval: 5 * time.Millisecond, Progress: func(s *tidemarktype.UpdateStats) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, s)
	}})
	require.NoError(t, err)
	require.Equal(t, int64(60), st.Sources["docs"].Added)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, seen, "progress was reported while the update ran")
	last := seen[len(seen)-1]
	require.LessOrEqual(t, last.Sources["docs"].Fetched, int64(60))
	for i := 1; i < len(seen); i++ {
		require.GreaterOrEqual(t, seen[i].Sources["docs"].Fetched, seen[i-1].Sources["docs"].Fetched, "counts only grow")
	}
}

func TestUpdateUnknownSource(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	_, err := h.update(tidemark.UpdateOptions{Sources: []string{"nope"}})
	require.ErrorContains(t, err, `has no source "nope"`)
}

// passes collects live mode's passes.
type passes struct {
	ch chan tidemark.Pass
}

func newPasses() *passes { return &passes{ch: make(chan tidemark.Pass, 100)} }

func (p *passes) on(pass tidemark.Pass) { p.ch <- pass }

// next waits for a pass matching ok.
func (p *passes) next(t *testing.T, ok func(tidemark.Pass) bool) tidemark.Pass {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case pass := <-p.ch:
			if ok(pass) {
				return pass
			}
		case <-timeout:
			t.Fatal("no such pass within 20s")
		}
	}
}

func TestLiveListsEveryInterval(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(20)
	e := h.open()
	p := newPasses()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.Live(t.Context(), tidemark.LiveOptions{Refresh: 30 * time.Millisecond, Stop: stop, OnPass: p.on})
	}()

	first := p.next(t, func(tidemark.Pass) bool { return true })
	require.NoError(t, first.Err)
	require.Equal(t, 1, first.N)
	require.Equal(t, []string{"docs"}, first.Sources)
	require.Equal(t, int64(20), first.Stats.Sources["docs"].Added)

	h.src.Set(100, doc{Title: "new"})
	h.src.Set(3, doc{Title: "changed"})
	h.src.Delete(5)
	p.next(t, func(pass tidemark.Pass) bool {
		s := pass.Stats.Sources["docs"]
		return pass.Err == nil && s.Added == 1 && s.Updated == 1 && s.Deleted == 1
	})
	h.expectDocs()
	close(stop)
	require.NoError(t, <-done)
}

// TestLiveNowListsAtOnce: a value on LiveOptions.Now lists every source
// without waiting for its interval.
func TestLiveNowListsAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(5)
	e := h.open()
	p := newPasses()
	stop, now := make(chan struct{}), make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- e.Live(t.Context(), tidemark.LiveOptions{Refresh: time.Hour, Stop: stop, Now: now, OnPass: p.on})
	}()
	require.NoError(t, p.next(t, func(tidemark.Pass) bool { return true }).Err)
	h.src.Set(100, doc{Title: "new"})
	now <- struct{}{}
	second := p.next(t, func(tidemark.Pass) bool { return true })
	require.NoError(t, second.Err)
	require.Equal(t, 2, second.N)
	require.Equal(t, int64(1), second.Stats.Sources["docs"].Added)
	h.expectDocs()
	close(stop)
	require.NoError(t, <-done)
}

func TestLiveWarnsOnOverrun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(8)
	h.src.OnGet(func(int) { time.Sleep(15 * time.Millisecond) })
	e := h.open()
	p := newPasses()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Live(ctx, tidemark.LiveOptions{Refresh: 5 * time.Millisecond, OnPass: p.on}) }()
	pass := p.next(t, func(tidemark.Pass) bool { return true })
	require.True(t, pass.Overran, "a pass of %s overran a 5ms interval", pass.Duration())
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// watchedSource is a memory source with a change stream fed by a channel.
type watchedSource struct {
	*tidemarktest.Source[int, doc]
	changes chan tidemark.Change[int]
}

func (w *watchedSource) Watch(ctx context.Context, notify func(tidemark.Change[int]) error) error {
	for {
		select {
		case c := <-w.changes:
			if err := notify(c); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestLiveFollowsChangeStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(10)
	w := &watchedSource{Source: h.src, changes: make(chan tidemark.Change[int])}
	e := h.openWith(w)

	p := newPasses()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.Live(t.Context(), tidemark.LiveOptions{Refresh: time.Hour, Stop: stop, OnPass: p.on})
	}()
	p.next(t, func(tidemark.Pass) bool { return true })

	h.src.ResetCounts()
	h.src.Set(4, doc{Title: "changed"})
	h.src.Set(50, doc{Title: "added"})
	w.changes <- tidemark.Change[int]{Key: 4, Ordinal: tidemark.NoOrdinal}
	w.changes <- tidemark.Change[int]{Key: 50, Ordinal: tidemark.NoOrdinal}
	// The two changes may be taken by one pass or by two, as they come.
	var written int64
	pass := p.next(t, func(pass tidemark.Pass) bool {
		s := pass.Stats.Sources["docs"]
		written += s.Updated + s.Added
		return written == 2
	})
	require.NoError(t, pass.Err)
	require.Positive(t, pass.Changes)
	require.Zero(t, h.src.Lists(), "changes were taken without listing the source")
	require.Equal(t, map[int]int{4: 1, 50: 1}, h.src.GetsOf(), "only the announced rows were fetched")
	require.Equal(t, docRow{ID: 50, Title: "added"}, h.db.Rows("docs")[target.Key("50")])
	close(stop)
	require.NoError(t, <-done)
	h.expectDocs()
}

func TestEvaluateWritesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	h.fill(5)
	e := h.open()
	var got []tidemark.Evaluated
	collect := func(ev tidemark.Evaluated) error { got = append(got, ev); return nil }
	require.NoError(t, e.Evaluate(t.Context(), tidemark.EvaluateOptions{Limit: 3}, collect))
	require.Len(t, got, 3)
	for _, ev := range got {
		require.NoError(t, ev.Err)
		require.True(t, ev.Exists)
		require.Len(t, ev.Declared, 3, "a docs row and two tags")
		require.Equal(t, "memory/docs", ev.Declared[0].Target)
	}

	got = nil
	require.NoError(t, e.Evaluate(t.Context(), tidemark.EvaluateOptions{Source: "docs", Keys: []string{"2", "99"}}, collect))
	require.Len(t, got, 2)
	require.Equal(t, tidemark.Declared{Target: "memory/docs", Key: "2", Value: docRow{ID: 2, Title: "doc 2"}}, got[0].Declared[0])
	require.False(t, got[1].Exists, "99 is not in the source")

	require.ErrorContains(t, e.Evaluate(t.Context(), tidemark.EvaluateOptions{Source: "docs", Keys: []string{"x"}}, collect), "is not a key")
	require.Equal(t, tidemarktest.Counts{}, h.db.Counts(), "nothing written")
	st, err := e.Status(t.Context(), 0)
	require.NoError(t, err)
	for _, s := range st.Sources {
		require.Zero(t, s.Rows, "nothing remembered")
	}
	stopErr := errors.New("enough")
	require.ErrorIs(t, e.Evaluate(t.Context(), tidemark.EvaluateOptions{}, func(tidemark.Evaluated) error { return stopErr }), stopErr)
}
