package engine

// What a worker's mode, --solo and drop do beside shared passes (from a
// review that tried to break them).
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run 'TestShared' -v ./internal/engine/

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/redis"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// writeSink counts the upserts written.
type writeSink struct {
	delSink
	writes atomic.Int64
}

func (s *writeSink) Apply(ctx context.Context, actions []rec) error {
	for _, a := range actions {
		if a.value != nil {
			s.writes.Add(1)
		}
	}
	return s.delSink.Apply(ctx, actions)
}

func writeFlow(src *keySource, sink *writeSink) *Flow {
	return &Flow{
		Name:    "shared",
		Sources: []*Source{{Name: "s", Impl: src, MaxInFlight: 4}},
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
	}
}

// slowWorld makes a flow of n keys on backend, synced once, whose source
// then answers each Get in 10ms: a pass lasts long enough to act in. The
// sink's writes count from 0 again.
func slowWorld(t *testing.T, backend string, n int) (func() coordStore, *keySource, *writeSink, *Flow) {
	t.Helper()
	open := openBackend(t, backend)
	src := newKeySource(n)
	sink := &writeSink{}
	flow := writeFlow(src, sink)
	_, err := sharedEngine(t, flow, open(), "w0", time.Second).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	sink.writes.Store(0)
	src.mu.Lock()
	src.getDelay = 10 * time.Millisecond
	src.mu.Unlock()
	return open, src, sink, flow
}

func openBackend(t *testing.T, backend string) func() coordStore {
	if backend == "postgres" {
		url, schema := pgtest.Schema(t)
		return func() coordStore { return pgStore(t, url, schema) }
	}
	url, prefix := redistest.Prefix(t)
	return func() coordStore {
		st, err := redis.Open(t.Context(), url, redis.Config{Prefix: prefix})
		require.NoError(t, err)
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// TestSharedPassKeepsItsMode: a --reexport update's pass is not joined by
// an incremental worker (a --live one, a cron'ed one), which would skip the
// claims it takes as unchanged: every target state is written again, and
// the incremental worker runs a pass of its own after.
func TestSharedPassKeepsItsMode(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 200
		open, src, sink, flow := slowWorld(t, backend, n)

		var wg sync.WaitGroup
		var st1, st2 Stats
		var err1, err2 error
		wg.Go(func() {
			st1, err1 = sharedEngine(t, flow, open(), "reexporter", time.Second).Update(t.Context(), UpdateOptions{Mode: ModeReexport})
		})
		require.Eventually(t, func() bool { return src.Lists() >= 2 }, 10*time.Second, time.Millisecond)
		time.Sleep(50 * time.Millisecond)
		wg.Go(func() {
			st2, err2 = sharedEngine(t, flow, open(), "incremental", time.Second).Update(t.Context(), UpdateOptions{})
		})
		wg.Wait()
		t.Logf("reexporter: err=%v %+v", err1, st1.Sources["s"])
		t.Logf("incremental joiner: err=%v %+v", err2, st2.Sources["s"])
		t.Logf("target states written again: %d of %d; source listed %d times", sink.writes.Load(), n, src.Lists())
		require.NoError(t, err1)
		require.EqualValues(t, n, sink.writes.Load(), "a --reexport update that succeeded did not write every target state again")
	})
}

// gatedJoin holds PassJoin until open is closed, once joined is closed:
// the moment of a shared worker's first join, widened.
type gatedJoin struct {
	coordStore
	joined, open chan struct{}
	once         sync.Once
}

func (s *gatedJoin) PassJoin(ctx context.Context, p statestore.PassJoinParams) (statestore.Pass, error) {
	s.once.Do(func() { close(s.joined) })
	select {
	case <-s.open:
	case <-ctx.Done():
		return statestore.Pass{}, ctx.Err()
	}
	return s.coordStore.PassJoin(ctx, p)
}

// TestSharedSoloInTheSetupGap: a --solo update that starts between a shared
// worker's setup and its first join (here: while the join hangs) is refused:
// the worker joins its pass before it lets the setup's lock go, so the solo
// update finds the lock held, or the pass running.
func TestSharedSoloInTheSetupGap(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 100
		open, src, sink, flow := slowWorld(t, backend, n)

		g := &gatedJoin{coordStore: open(), joined: make(chan struct{}), open: make(chan struct{})}
		var wg sync.WaitGroup
		var errW error
		var stW Stats
		wg.Go(func() {
			stW, errW = sharedEngine(t, flow, g, "shared", time.Second).Update(t.Context(), UpdateOptions{Mode: ModeReexport})
		})
		<-g.joined // the shared worker set up, and joins
		solo, err := New(flow, open(), Options{Retry: retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}})
		require.NoError(t, err)
		_, errS := solo.Update(t.Context(), UpdateOptions{Mode: ModeReexport})
		close(g.open)
		wg.Wait()
		require.ErrorIs(t, errS, ErrFlowLocked, "the solo update ran beside a shared pass")
		require.NoError(t, errW)
		require.EqualValues(t, n, stW.Sources["s"].Reprocessed, "the shared worker did the pass alone")
		require.Equal(t, 2, src.Lists(), "the first sync's listing and the shared pass's, none by the solo update")
		require.EqualValues(t, n, sink.writes.Load(), "each row's state written once")
	})
}

// TestSharedDropRefusesBesideAPass: a drop by a shared engine (what the CLI
// opens by default with PostgreSQL or Redis) refuses while shared workers
// are in a pass, which would fail on a flow gone under them; it goes
// through once the pass is over.
func TestSharedDropRefusesBesideAPass(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 200
		open, src, _, flow := slowWorld(t, backend, n)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, w := range []string{"w1", "w2"} {
			wg.Go(func() {
				_, errs[i] = sharedEngine(t, flow, open(), w, time.Second).Update(t.Context(), UpdateOptions{Mode: ModeReexport})
			})
		}
		require.Eventually(t, func() bool { return src.Lists() >= 2 }, 10*time.Second, time.Millisecond)
		time.Sleep(150 * time.Millisecond)
		changes, derr := sharedEngine(t, flow, open(), "dropper", time.Second).Drop(t.Context())
		t.Logf("drop (shared engine) mid-pass: err=%v, %d changes", derr, len(changes))
		wg.Wait()
		require.ErrorIs(t, derr, ErrFlowLocked, "a drop refuses while shared workers are in a pass")
		require.Empty(t, changes)
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		st := open()
		id, err := st.SourceFind(t.Context(), statestore.SourceEnsureParams{Flow: "shared", Name: "s"})
		require.NoError(t, err)
		rows, err := st.RowCount(t.Context(), statestore.RowCountParams{SourceID: id})
		require.NoError(t, err)
		require.EqualValues(t, n, rows, "the flow's rows are kept")
		// Once the pass is over, the drop goes through.
		_, err = sharedEngine(t, flow, open(), "dropper", time.Second).Drop(t.Context())
		require.NoError(t, err)
	})
}

// TestSharedTakeOverCountsEachRowOnce: an update that takes over a pass left
// open (its worker killed after listing) counts a key it skips once, not
// once for its listing and again for the leftover claim.
func TestSharedTakeOverCountsEachRowOnce(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 200
		open, src, _, flow := slowWorld(t, backend, n)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := sharedEngine(t, flow, open(), "killed", 200*time.Millisecond).Update(ctx, UpdateOptions{Mode: ModeReexport})
			done <- err
		}()
		require.Eventually(t, func() bool { return src.Lists() >= 2 }, 10*time.Second, time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		cancel() // killed mid-pass
		t.Logf("killed worker: %v", <-done)
		time.Sleep(300 * time.Millisecond) // its lease and claims expire
		src.mu.Lock()
		src.getDelay = 0
		src.mu.Unlock()
		var (
			mu   sync.Mutex
			told = make(map[string]int)
		)
		next, err := New(flow, open(), Options{
			Retry:  retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 3},
			Shared: SharedOptions{Enabled: true, Worker: "next", LeaseTTL: 200 * time.Millisecond, Poll: 5 * time.Millisecond},
			Observers: Observers{RowDone: func(_ context.Context, r tidemarktype.RowDone) {
				mu.Lock()
				defer mu.Unlock()
				told[r.Key]++
			}},
		})
		require.NoError(t, err)
		st, err := next.Update(t.Context(), UpdateOptions{})
		require.NoError(t, err)
		s := st.Sources["s"]
		t.Logf("next update: %+v", s)
		require.LessOrEqual(t, s.Unchanged, s.Listed, "more rows counted unchanged than listed")
		for k, n := range told {
			require.Equal(t, 1, n, "RowDone told of %s %d times", k, n)
		}
	})
}
