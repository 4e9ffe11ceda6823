package engine

// Attacks on the change hooks' deliverer (hooks.go).
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -race -run 'TestBreakHook' ./internal/engine/

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBreakHookOnlyUpdateStealsALiveWorkersLease: the deliverer steals
// (OutboxTakeParams.Steal) whenever its update is not shared, on the
// grounds that "an update alone holds the flow's lock, and changes leased
// by a worker that died are its to take". But an update with Only — what
// live mode runs for the keys a change stream announced, on every shared
// worker — is not shared either (update.shared is false with Only), while
// the other workers go on delivering, outside the lock. Worker a is in
// its hook with change 0000 (leased for 5 s); worker b runs an update of
// the announced key 0001: b takes 0000 from a, alive, and tells it again
// while a's call is still running — a duplicate, and, once b is done with
// it, the state's next change may be told before a's call of the one
// before it returns.
func TestBreakHookOnlyUpdateStealsALiveWorkersLease(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		open := openBackend(t, backend)
		src := newKeySource(2)
		sink := &delSink{}
		flow := keyFlow(src, sink)

		var (
			mu       sync.Mutex
			inFlight = map[string]int{}
			worst    = map[string]int{}
			calls    = map[string]int{}
		)
		entered := make(chan struct{})
		release := make(chan struct{})
		flow.Roots[0].Hook = &Hook{
			Deliver: func(ctx context.Context, c HookChange) error {
				k := string(c.Key)
				mu.Lock()
				inFlight[k]++
				calls[k]++
				worst[k] = max(worst[k], inFlight[k])
				first := k == "0000" && calls[k] == 1
				mu.Unlock()
				defer func() {
					mu.Lock()
					inFlight[k]--
					mu.Unlock()
				}()
				if first {
					close(entered)
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			},
			Backoff: func(int) time.Duration { return time.Hour },
		}

		errA := make(chan error, 1)
		go func() {
			_, err := sharedEngine(t, flow, open(), "a", 5*time.Second).Update(t.Context(), UpdateOptions{})
			errA <- err
		}()
		select {
		case <-entered:
		case <-time.After(20 * time.Second):
			t.Fatal("a never delivered")
		}

		only := map[string][]Listed{"s": {{Key: "0001", Ordinal: 1, HasOrdinal: true}}}
		_, err := sharedEngine(t, flow, open(), "b", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s"}, Only: only})
		require.NoError(t, err)
		mu.Lock()
		worst0, calls0 := worst["0000"], calls["0000"]
		mu.Unlock()
		close(release)
		require.NoError(t, <-errA)
		t.Logf("calls of change 0000: %d, at most %d at once", calls0, worst0)
		require.Equal(t, 1, worst0, "b told 0000 while a, alive and within its lease, was telling it")
		require.Equal(t, 1, calls0, "b took a change a holds")
	})
}
