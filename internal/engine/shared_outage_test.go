package engine

// The state store going away under shared workers (from a review that
// tried to break them).
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run TestSharedStoreOutage -v ./internal/engine/

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore/postgres"
	"github.com/tidemark/tidemark/internal/statestore/redis"
)

// TestSharedStoreOutage: two shared workers mid-pass; the proxy to the store
// cuts every connection (and, with an outage, refuses new ones for a
// while). Every worker must return (no hang), no kept key's target state
// may be deleted, and a clean update after converges to the exact rows.
func TestSharedStoreOutage(t *testing.T) {
	for _, backend := range []string{"postgres", "redis"} {
		for _, c := range []struct {
			name   string
			outage time.Duration
			pol    retry.Policy
		}{
			{"blip-shortretry", 0, retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}},
			{"outage1s-shortretry", time.Second, retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}},
			{"outage1s-longretry", time.Second, retry.Policy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, MaxElapsed: 10 * time.Second}},
			{"outage3s-ttl1s", 3 * time.Second, retry.Policy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, MaxElapsed: 10 * time.Second}},
		} {
			t.Run(backend+"/"+c.name, func(t *testing.T) { testOutage(t, backend, c.outage, c.pol) })
		}
	}
}

var cutAfter = 250 * time.Millisecond

func testOutage(t *testing.T, backend string, outage time.Duration, pol retry.Policy) {
	var (
		direct func() coordStore
		via    func(url string) coordStore
		url    string
	)
	if backend == "postgres" {
		u, schema := pgtest.Schema(t)
		url = u
		via = func(u string) coordStore {
			st, err := postgres.Open(t.Context(), u, schema)
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			return st
		}
	} else {
		u, prefix := redistest.Prefix(t)
		url = u
		via = func(u string) coordStore {
			st, err := redis.Open(t.Context(), u, redis.Config{Prefix: prefix})
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			return st
		}
	}
	direct = func() coordStore { return via(url) }
	proxy, proxied := redistest.NewProxy(t, url)

	const n = 300
	src := newKeySource(n)
	sink := &delSink{}
	flow := keyFlow(src, sink)
	_, err := sharedEngineRetrying(t, flow, direct(), "w0", time.Second, pol).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)

	// The faulted pass: 20 keys are gone from the source; every row is
	// processed again.
	kept := slices.Clone(src.order[20:])
	gone := slices.Clone(src.order[:20])
	src.mu.Lock()
	src.order = kept
	src.getDelay = 20 * time.Millisecond
	src.mu.Unlock()
	sink.mu.Lock()
	sink.deleted = nil
	sink.mu.Unlock()

	e1 := sharedEngineRetrying(t, flow, via(proxied), "w1", time.Second, pol)
	e2 := sharedEngineRetrying(t, flow, via(proxied), "w2", time.Second, pol)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type out struct {
		who string
		err error
		st  Stats
		d   time.Duration
	}
	outs := make(chan out, 2)
	start := time.Now()
	for _, w := range []struct {
		who string
		e   *Engine
	}{{"w1", e1}, {"w2", e2}} {
		go func() {
			defer func() {
				if p := recover(); p != nil {
					outs <- out{who: w.who, err: fmt.Errorf("PANIC: %v", p)}
				}
			}()
			st, err := w.e.Update(ctx, UpdateOptions{Mode: ModeReexport})
			outs <- out{w.who, err, st, time.Since(start)}
		}()
	}
	// Mid-pass: some rows written.
	require.Eventually(t, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return src.Lists() >= 2
	}, 20*time.Second, time.Millisecond)
	time.Sleep(cutAfter)
	if outage > 0 {
		proxy.Retarget("tcp://127.0.0.1:1")
	}
	proxy.DropAll()
	t.Logf("cut at %s", time.Since(start).Round(time.Millisecond))
	if outage > 0 {
		time.Sleep(outage)
		proxy.Retarget(url)
		t.Logf("store back at %s", time.Since(start).Round(time.Millisecond))
	}
	for range 2 {
		select {
		case o := <-outs:
			s := o.st.Sources["s"]
			t.Logf("%s returned after %s: err=%v (%+v)", o.who, o.d.Round(time.Millisecond), o.err, s)
		case <-time.After(45 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("HANG: a worker did not return 45s after the cut\n")
			_ = buf
		}
	}
	_, deleted := sink.snapshot()
	sort.Strings(deleted)
	var wrong []string
	for _, k := range deleted {
		if !slices.Contains(gone, k) {
			wrong = append(wrong, k)
		}
	}
	t.Logf("deleted during faulted pass: %d (wrongly: %v)", len(deleted), wrong)
	require.Empty(t, wrong, "target states of kept keys were deleted")

	// A clean update after (once leases expire).
	time.Sleep(1100 * time.Millisecond)
	cst, err := sharedEngineRetrying(t, flow, direct(), "w3", time.Second, retry.DefaultPolicy()).Update(t.Context(), UpdateOptions{})
	t.Logf("clean update: err=%v stats=%+v", err, cst.Sources["s"])
	// A second, in case the first joined a leftover pass.
	cst, err2 := sharedEngineRetrying(t, flow, direct(), "w4", time.Second, retry.DefaultPolicy()).Update(t.Context(), UpdateOptions{})
	t.Logf("second clean update: err=%v stats=%+v", err2, cst.Sources["s"])
	require.NoError(t, err)
	require.NoError(t, err2)
	sink.mu.Lock()
	var present []string
	for k := range sink.present {
		present = append(present, k)
	}
	sink.mu.Unlock()
	sort.Strings(present)
	require.Equal(t, kept, present, "the target did not converge to the source's keys")
}
