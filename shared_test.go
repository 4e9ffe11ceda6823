package tidemark_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// sharedBackends are the state stores several workers can share.
var sharedBackends = []string{"postgres", "redis"}

func forEachSharedBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	forEachOf(t, sharedBackends, fn)
}

// overlap detects a key processed by two workers at once.
type overlap struct {
	mu     sync.Mutex
	now    map[int]int
	worst  int
	calls  int
	linger time.Duration
}

func (o *overlap) enter(id int) {
	o.mu.Lock()
	o.now[id]++
	o.calls++
	o.worst = max(o.worst, o.now[id])
	o.mu.Unlock()
	time.Sleep(o.linger)
}

func (o *overlap) leave(id int) {
	o.mu.Lock()
	o.now[id]--
	o.mu.Unlock()
}

// sharedHarness is a harness whose processing passes through an overlap
// detector, opened by several workers at once.
func sharedHarness(t *testing.T, backend string) (*harness, *overlap) {
	h := newHarness(t, backend)
	ov := &overlap{now: make(map[int]int), linger: time.Millisecond}
	h.wrap = func(process tidemark.ProcessFunc[int, doc]) tidemark.ProcessFunc[int, doc] {
		return func(ctx context.Context, r *tidemark.Row, id int, d doc) error {
			ov.enter(id)
			defer ov.leave(id)
			return process(ctx, r, id, d)
		}
	}
	return h, ov
}

// workers runs n shared updates of h's flow at once and returns their
// errors. Each worker's rows processed are in h.done.
func (h *harness) workers(n int, ttl time.Duration) []error {
	h.t.Helper()
	errs := make([]error, n)
	h.done = make([]int64, n)
	var g errgroup.Group
	for i := range n {
		opts := h.opts
		opts.Shared = tidemark.SharedOptions{Enabled: true, Worker: fmt.Sprintf("w%d", i), LeaseTTL: ttl, Poll: 5 * time.Millisecond}
		if h.joined != nil {
			opts.Observer = &unlockObserver{joined: func() { h.joined(i) }}
		}
		e := h.openOpts(h.src, opts)
		g.Go(func() error {
			defer e.Close()
			st, err := e.Update(h.t.Context(), tidemark.UpdateOptions{})
			errs[i] = err
			if st != nil {
				s := st.Sources["docs"]
				h.done[i] = s.Added + s.Updated + s.Deleted + s.Reprocessed
			}
			return nil
		})
	}
	_ = g.Wait()
	return errs
}

// holdGets makes the source's Gets wait until n workers have joined the
// pass (or for 10 s), and then lets every Get through: no worker comes
// late, finds the pass over, and lists for a pass of its own. A shared
// update joins its pass before it releases the lock of its setup: its
// first "unlock".
func (h *harness) holdGets(n int) {
	var (
		mu     sync.Mutex
		joined = make(map[int]bool)
		all    = make(chan struct{})
	)
	timeout := time.AfterFunc(10*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		if len(joined) < n {
			h.t.Logf("holdGets: %d of %d workers joined within 10 s; letting the Gets through", len(joined), n)
			joined[-1] = true // closed
			close(all)
		}
	})
	h.t.Cleanup(func() { timeout.Stop() })
	h.joined = func(worker int) {
		mu.Lock()
		defer mu.Unlock()
		if joined[worker] || joined[-1] {
			return
		}
		if joined[worker] = true; len(joined) == n {
			joined[-1] = true
			close(all)
		}
	}
	h.src.OnGet(func(int) { <-all })
}

// unlockObserver tells joined of a worker's first "unlock".
type unlockObserver struct {
	once   sync.Once
	joined func()
}

func (o *unlockObserver) StoreOp(_ context.Context, op tidemarktype.StoreOp) {
	if op.Op == "unlock" {
		o.once.Do(o.joined)
	}
}

func TestSharedWorkersSplitAPass(t *testing.T) {
	forEachSharedBackend(t, func(t *testing.T, backend string) {
		h, ov := sharedHarness(t, backend)
		h.fill(400)
		h.holdGets(4)
		for i, err := range h.workers(4, 5*time.Second) {
			require.NoError(t, err, "worker %d", i)
		}
		h.expectDocs()
		require.Equal(t, 1, h.src.Lists(), "one worker lists")
		for id, n := range h.src.GetsOf() {
			require.Equal(t, 1, n, "doc %d fetched %d times", id, n)
		}
		require.Len(t, h.src.GetsOf(), 400)
		helped := 0
		var sum int64
		for _, n := range h.done {
			sum += n
			if n > 0 {
				helped++
			}
		}
		require.Equal(t, int64(400), sum, "rows per worker: %v", h.done)
		require.GreaterOrEqual(t, helped, 3, "the workers share the pass: %v", h.done)
		t.Logf("rows per worker: %v", h.done)
		require.Equal(t, 1, ov.worst, "a key processed by two workers at once")

		// Changes, deletions, and a tag that goes with the last document
		// declaring it.
		h.src.ResetCounts()
		for i := range 30 {
			h.src.Set(i, doc{Title: fmt.Sprintf("doc %d, again", i), Tags: []string{"even"}})
		}
		h.src.Set(30, doc{Title: "lonely", Tags: []string{"only-30"}})
		for i := 350; i < 400; i++ {
			h.src.Delete(i)
		}
		h.holdGets(4)
		for i, err := range h.workers(4, 5*time.Second) {
			require.NoError(t, err, "worker %d", i)
		}
		h.expectDocs()
		require.Equal(t, 1, h.src.Lists())
		require.Len(t, h.src.GetsOf(), 31, "the changed documents only")

		h.src.ResetCounts()
		h.src.OnGet(nil)
		h.joined = nil
		h.src.Set(30, doc{Title: "not lonely", Tags: []string{"odd"}})
		for i, err := range h.workers(3, 5*time.Second) {
			require.NoError(t, err, "worker %d", i)
		}
		h.expectDocs()
		_, lonely := h.db.Rows("tags")[target.Key("only-30")]
		require.False(t, lonely, "the tag no document declares is gone")
		require.Equal(t, 1, ov.worst)
	})
}

// TestSharedTakeOverListsRowsChangedSinceDone: a worker that takes over a
// pass whose lister crashed lists again, and a row done earlier in the pass
// that changed since needs work again: the update after the crash
// converges, though it joins the crashed worker's pass.
func TestSharedTakeOverListsRowsChangedSinceDone(t *testing.T) {
	forEachSharedBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(20)
		const ttl = 300 * time.Millisecond
		opts := h.opts
		opts.Batch = tidemark.BatchOptions{MaxRows: 2}
		opts.Shared = tidemark.SharedOptions{Enabled: true, Worker: "w0", LeaseTTL: ttl, Poll: 5 * time.Millisecond}
		var commits atomic.Int32
		opts.Faults.BeforeCommit = func(context.Context) error {
			if commits.Add(1) == 3 {
				return errCrash
			}
			return nil
		}
		e := h.openOpts(h.src, opts)
		_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		e.Close()
		require.ErrorIs(t, err, errCrash)
		written := sortedKeys(h.db.Rows("docs"))
		require.NotEmpty(t, written, "the batches before the crash committed")

		// A row written before the crash changes; the next worker joins the
		// pass left open, takes its lease over once it ran out, lists again.
		changed, err := strconv.Atoi(written[0])
		require.NoError(t, err)
		h.src.Set(changed, doc{Title: "changed after it was done", Tags: []string{"even"}})
		h.src.ResetCounts()
		for i, err := range h.workers(1, ttl) {
			require.NoError(t, err, "worker %d", i)
		}
		h.expectDocs()
		require.Equal(t, 1, h.src.GetsOf()[changed], "the row changed since it was done is fetched again")
	})
}
