package engine

// Regression tests of shared passes, each from a review that broke them.
// Run one at a time, e.g.:
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run TestShared -v ./internal/engine/

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/postgres"
	"github.com/tidemark/tidemark/target"
)

// coordStore is a state store that coordinates.
type coordStore interface {
	statestore.Store
	statestore.Coordinator
}

// faultStore wraps a coordinating store; RowLoad fails, transiently, while
// rowLoadFails is positive.
type faultStore struct {
	coordStore
	rowLoadFails atomic.Int32
}

func (s *faultStore) RowLoad(ctx context.Context, p statestore.RowLoadParams) ([]statestore.RowTracking, error) {
	if s.rowLoadFails.Add(-1) >= 0 {
		return nil, retry.Mark(errors.New("injected: the state store is away"))
	}
	return s.coordStore.RowLoad(ctx, p)
}

// keySource is a source over keys 0000…n-1, every ordinal 1, whose List
// can fail and whose Get can be gated.
type keySource struct {
	mu    sync.Mutex
	order []string
	lists int
	// failList, if set, makes the listing of call (1-based) fail after
	// the first after keys.
	failList func(call int) (after int, fail bool)
	// gate, if set, is waited on by Get of gateKey.
	gate    chan struct{}
	gateKey string
	onList  func(call int)
	// getDelay is how long each Get takes.
	getDelay time.Duration
}

func newKeySource(n int) *keySource {
	s := &keySource{}
	for i := range n {
		s.order = append(s.order, fmt.Sprintf("%04d", i))
	}
	return s
}

func (s *keySource) List(ctx context.Context) iter.Seq2[Listed, error] {
	s.mu.Lock()
	s.lists++
	call := s.lists
	fl, on := s.failList, s.onList
	s.mu.Unlock()
	if on != nil {
		on(call)
	}
	return func(yield func(Listed, error) bool) {
		for i, k := range s.order {
			if fl != nil {
				if after, fail := fl(call); fail && i == after {
					yield(Listed{}, errors.New("injected: the source's API failed mid-listing"))
					return
				}
			}
			if !yield(Listed{Key: k, Ordinal: 1, HasOrdinal: true}, nil) {
				return
			}
		}
	}
}

func (s *keySource) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func (s *keySource) Get(ctx context.Context, key string) (Fetched, error) {
	s.mu.Lock()
	gate, gk, d := s.gate, s.gateKey, s.getDelay
	s.mu.Unlock()
	time.Sleep(d)
	if gate != nil && key == gk {
		select {
		case <-gate:
		case <-ctx.Done():
			return Fetched{}, ctx.Err()
		}
	}
	return Fetched{Exists: true, Value: "v:" + key, Ordinal: 1, HasOrdinal: true}, nil
}

func (s *keySource) Process(ctx context.Context, key string, value any) ([]Decl, error) {
	return []Decl{{Root: 0, Key: target.Key(key), Value: value.(string)}}, nil
}

func (s *keySource) ProvidesOrdinal() bool { return true }

// delSink records the keys written and deleted.
type delSink struct {
	mu      sync.Mutex
	present map[string]bool
	deleted []string
}

func (s *delSink) Apply(_ context.Context, actions []rec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.present == nil {
		s.present = make(map[string]bool)
	}
	for _, a := range actions {
		if a.value == nil {
			s.deleted = append(s.deleted, string(a.key))
			delete(s.present, string(a.key))
		} else {
			s.present[string(a.key)] = true
		}
	}
	return nil
}

func (s *delSink) snapshot() (present int, deleted []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.present), append([]string(nil), s.deleted...)
}

func keyFlow(src *keySource, sink *delSink) *Flow {
	return &Flow{
		Name:    "shared",
		Sources: []*Source{{Name: "s", Impl: src, MaxInFlight: 4}},
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
	}
}

func pgStore(t *testing.T, url, schema string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), url, schema)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// sharedEngine opens a shared engine as worker, with brief retries: a
// store's fault outlasts them at once.
func sharedEngine(t *testing.T, flow *Flow, st statestore.Store, worker string, ttl time.Duration) *Engine {
	t.Helper()
	return sharedEngineRetrying(t, flow, st, worker, ttl, retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 3})
}

// sharedEngineRetrying opens a shared engine as worker, retrying the
// store's faults by pol; TIDEMARK_TEST_LOG logs its work.
func sharedEngineRetrying(t *testing.T, flow *Flow, st statestore.Store, worker string, ttl time.Duration, pol retry.Policy) *Engine {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("TIDEMARK_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", worker)
	}
	e, err := New(flow, st, Options{
		Logger: log,
		Retry:  pol,
		Shared: SharedOptions{Enabled: true, Worker: worker, LeaseTTL: ttl, Poll: 5 * time.Millisecond},
	})
	require.NoError(t, err)
	return e
}

// forEachCoordBackend runs test on each state store that shares passes.
func forEachCoordBackend(t *testing.T, test func(t *testing.T, backend string)) {
	for _, backend := range []string{"postgres", "redis"} {
		t.Run(backend, func(t *testing.T) { test(t, backend) })
	}
}

// TestSharedListerStopsWhenItsClaimLoopFails: when the lister's claim loop
// fails after it took claims (RowLoad fails past its retries, the store then
// comes back), the lister's part stops with it, rather than wait for the
// claims the loop holds and will not finish: both workers' updates return,
// and the claims expire for the next update.
func TestSharedListerStopsWhenItsClaimLoopFails(t *testing.T) {
	forEachCoordBackend(t, testListerStops)
}

func testListerStops(t *testing.T, backend string) {
	open := openBackend(t, backend)
	src := newKeySource(40)
	sink := &delSink{}
	flow := keyFlow(src, sink)
	st := &faultStore{coordStore: open()}

	// A first pass builds the rows.
	_, err := sharedEngine(t, flow, st, "w1", time.Second).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)

	// The second reprocesses them: take() loads their tracking, and the
	// store is away for longer than the retries (4 failures, 3 attempts).
	st.rowLoadFails.Store(4)
	e1 := sharedEngine(t, flow, st, "w1", time.Second)
	e2 := sharedEngine(t, flow, open(), "w2", time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type out struct {
		who string
		err error
	}
	outs := make(chan out, 2)
	src.onList = func(call int) {
		if call == 2 { // w1 lists: w2 joins it
			go func() {
				_, err := e2.Update(ctx, UpdateOptions{Mode: ModeFullReprocess})
				outs <- out{"w2", err}
			}()
		}
	}
	go func() {
		_, err := e1.Update(ctx, UpdateOptions{Mode: ModeFullReprocess})
		outs <- out{"w1", err}
	}()
	deadline := time.After(15 * time.Second)
	var got []out
	for len(got) < 2 {
		select {
		case o := <-outs:
			t.Logf("%s returned after the fault: %v", o.who, o.err)
			got = append(got, o)
		case <-deadline:
			n := len(got)
			sid, _ := st.SourceFind(t.Context(), statestore.SourceEnsureParams{Flow: "shared", Name: "s"})
			p, _ := st.PassJoin(t.Context(), statestore.PassJoinParams{SourceID: sid, Worker: "probe", TTL: time.Hour})
			pr, perr := st.PassProgress(t.Context(), statestore.PassProgressParams{PassID: p.ID})
			t.Logf("pass %d after 15s: %+v (%v); probe made lister: %v", p.ID, pr, perr, p.Lister)
			cancel()
			for len(got) < 2 {
				got = append(got, <-outs)
			}
			t.Fatalf("only %d of 2 workers returned within 15s of a store fault that lasted 4 calls (lease TTL 1s); returned before: %v", n, got[:n])
		}
	}
}

// TestSharedRelistingThatFailsDeletesNothing: a lister whose lease was taken
// (it paused for a TTL) and that takes it back, once the worker that took
// it died, lists again; when that listing fails, nothing is deleted, though
// its first listing was complete: the deletions follow only the last
// listing, and rows another worker inserted in the pass stay.
func TestSharedRelistingThatFailsDeletesNothing(t *testing.T) {
	url, schema := pgtest.Schema(t)
	const n = 100
	src := newKeySource(n)
	sink := &delSink{}
	flow := keyFlow(src, sink)
	const ttl = time.Second
	e1 := sharedEngine(t, flow, pgStore(t, url, schema), "w1", ttl)
	e2 := sharedEngine(t, flow, pgStore(t, url, schema), "w2", ttl)
	ghost := pgStore(t, url, schema)

	// The Get of 0099 waits: the pass stays open.
	src.gate, src.gateKey = make(chan struct{}), "0099"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop2 := make(chan struct{})
	res := make(chan error, 2)
	var st2 atomic.Int64
	src.onList = func(call int) {
		if call == 1 {
			go func() {
				st, err := e2.Update(ctx, UpdateOptions{Stop: stop2})
				st2.Store(st.Sources["s"].Added)
				res <- err
			}()
		}
	}
	var st1 Stats
	go func() {
		var err error
		st1, err = e1.Update(ctx, UpdateOptions{})
		res <- err
	}()

	// Every row but 0099 committed, by w1 or w2. The test watches the pass
	// by reading its table, not by joining it: a join could open the pass
	// itself (before w1 did) or take w1's listing lease over (when a
	// heartbeat is late on a loaded machine), for an hour.
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	passes := pgx.Identifier{schema}.Sanitize() + ".tidemark_passes"
	var (
		sid    int64
		passID int64
	)
	require.Eventually(t, func() bool {
		if sid, err = ghost.SourceFind(ctx, statestore.SourceEnsureParams{Flow: "shared", Name: "s"}); err != nil {
			return false
		}
		if err := conn.QueryRow(ctx, `SELECT id FROM `+passes+` WHERE source_id = $1 AND finished_at IS NULL`, sid).Scan(&passID); err != nil {
			return false
		}
		pr, err := ghost.PassProgress(ctx, statestore.PassProgressParams{PassID: passID})
		return err == nil && pr.Listed && pr.Done == n-1
	}, 20*time.Second, 10*time.Millisecond)
	// w2 stops (it finishes what it holds once the gate opens).
	close(stop2)

	// w1 pauses for longer than its lease (simulated: its lease runs out),
	// and a worker takes the lease over and dies at once (the ghost).
	_, err = conn.Exec(ctx, `UPDATE `+passes+` SET lister_until = now() - interval '1 hour' WHERE id = $1`, passID)
	require.NoError(t, err)
	// The next listing fails after 10 keys.
	src.mu.Lock()
	src.failList = func(call int) (int, bool) { return 10, call >= 2 }
	src.mu.Unlock()
	took, err := ghost.PassJoin(ctx, statestore.PassJoinParams{SourceID: sid, Worker: "ghost", TTL: 200 * time.Millisecond})
	require.NoError(t, err)
	require.True(t, took.Lister, "the ghost takes the lease over")

	// w1 finds its lease taken, and takes it back once the ghost's ran out:
	// it lists again, and that listing fails.
	require.Eventually(t, func() bool { return src.Lists() >= 2 }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	close(src.gate)

	err1, err2 := <-res, <-res
	t.Logf("worker errors: %v | %v", err1, err2)
	t.Logf("rows w2 added: %d; w1 stats: added %d deleted %d", st2.Load(), st1.Sources["s"].Added, st1.Sources["s"].Deleted)
	rows, err := ghost.RowCount(context.Background(), statestore.RowCountParams{SourceID: sid})
	require.NoError(t, err)
	present, deleted := sink.snapshot()
	t.Logf("rows kept in the state store: %d of %d; target states present: %d; deleted: %d %v", rows, n, present, len(deleted), deleted)
	require.Empty(t, deleted, "a listing that failed deleted live rows' target states")
	require.EqualValues(t, n, rows)
}

// slowProgressStore delays the reply to the claim loop's PassProgress
// (loop, not lead) that reads the pass as all done but not finished, until
// the lister has finished the pass: a reply slow by a few ms, which the
// lister's own finishing overtakes.
type slowProgressStore struct {
	coordStore
	finished chan struct{}
	once     sync.Once
	after    time.Duration
	hit      atomic.Bool
}

func (s *slowProgressStore) PassFinish(ctx context.Context, p statestore.PassLeaseParams) error {
	err := s.coordStore.PassFinish(ctx, p)
	s.once.Do(func() { close(s.finished) })
	return err
}

func (s *slowProgressStore) PassProgress(ctx context.Context, p statestore.PassProgressParams) (statestore.PassProgress, error) {
	pr, err := s.coordStore.PassProgress(ctx, p)
	if err == nil && pr.Listed && !pr.Finished && pr.Pending == 0 && calledFrom("(*shareRun).loop") && !s.hit.Swap(true) {
		select {
		case <-s.finished:
			time.Sleep(s.after)
		case <-time.After(5 * time.Second):
		}
	}
	return pr, err
}

func calledFrom(fn string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestSharedWorkerOpensNoPassWhenItRejoins: a worker that joins its pass
// again (to take the lease of a lister that may be gone) just as the pass
// finishes opens no new pass, which it would hold the lease of and never
// list: the next update would wait for that lease to run out.
func TestSharedWorkerOpensNoPassWhenItRejoins(t *testing.T) {
	url, schema := pgtest.Schema(t)
	src := newKeySource(200)
	src.getDelay = 10 * time.Millisecond // the pass lasts ~0.5s, more than LeaseTTL/2
	sink := &delSink{}
	flow := keyFlow(src, sink)
	const ttl = 500 * time.Millisecond
	// The loop's reply is overtaken by the lister's finishing by 5ms.
	st := &slowProgressStore{coordStore: pgStore(t, url, schema), finished: make(chan struct{}), after: 5 * time.Millisecond}
	_, err := sharedEngine(t, flow, st, "w1", ttl).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.True(t, st.hit.Load())

	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), fmt.Sprintf(`SELECT id, lister, lister_until > now(), listed, finished_at IS NOT NULL FROM %s.tidemark_passes ORDER BY id`, pgx.Identifier{schema}.Sanitize()))
	require.NoError(t, err)
	orphan := false
	for rows.Next() {
		var (
			id                       int64
			lister                   string
			leased, listed, finished bool
		)
		require.NoError(t, rows.Scan(&id, &lister, &leased, &listed, &finished))
		t.Logf("after w1's update returned: pass %d lister %s lease live %v listed %v finished %v", id, lister, leased, listed, finished)
		orphan = orphan || !finished
	}
	require.NoError(t, rows.Err())

	// The next update, by another worker, on an unchanged source.
	start := time.Now()
	_, err = sharedEngine(t, flow, pgStore(t, url, schema), "w2", ttl).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	t.Logf("the next update took %s (LeaseTTL %s)", time.Since(start).Round(time.Millisecond), ttl)
	require.False(t, orphan, "w1 returned leaving an open pass it holds the lease of")
	require.Less(t, time.Since(start), ttl/2, "the next update waited for an orphan pass's lease")
}
