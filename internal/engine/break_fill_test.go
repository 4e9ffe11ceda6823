package engine

// Attacks on the first-fill shortcut of shared workers (416a0f7).
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run 'TestBreak' -v ./internal/engine/

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// commitCounter counts the rows committed through it.
type commitCounter struct {
	findCounter
	rows atomic.Int64
}

func (s *commitCounter) Commit(ctx context.Context, p statestore.CommitParams) error {
	err := s.findCounter.coordStore.Commit(ctx, p)
	if err == nil {
		s.rows.Add(int64(len(p.Rows)))
	}
	return err
}

// TestBreakSharedFillMissesAWorkerThatBeganAfterIt: worker a fills a new
// target from source s2 and commits its first rows; then worker b begins an
// update of source s1, whose rows declare the same states with the same
// values. b's update began with owners in the target (a's rows), so b never
// records itself as the target's writer (owners.writing only records roots
// it found unowned), and b fills the rest of the target. a's later batches
// find a still the last writer, so a looks up no owner and writes again
// every state b's rows own with a's values: the same writes that
// TestSharedFillAloneLooksUpNoOwners counts as a failure.
func TestBreakSharedFillMissesAWorkerThatBeganAfterIt(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n, first = 50, 10
		open := openBackend(t, backend)
		s1 := &sameKeys{n: n}
		s2 := &sameKeys{n: n, from: first, gate: make(chan struct{})}
		sink := &writeSink{}
		flow := &Flow{
			Name:    "fill",
			Sources: []*Source{{Name: "s1", Impl: s1, MaxInFlight: 4}, {Name: "s2", Impl: s2, MaxInFlight: 4}},
			Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
		}
		stA := &commitCounter{findCounter: findCounter{coordStore: open()}}
		stB := &findCounter{coordStore: open()}

		errA := make(chan error, 1)
		go func() {
			_, err := sharedEngine(t, flow, stA, "a", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s2"}})
			errA <- err
		}()
		require.Eventually(t, func() bool { return stA.rows.Load() >= first }, 10*time.Second, time.Millisecond, "a commits its first rows")
		require.EqualValues(t, first, sink.writes.Load())

		_, err := sharedEngine(t, flow, stB, "b", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s1"}})
		require.NoError(t, err)
		t.Logf("b: owner look-ups %d; states written so far %d", stB.finds.Load(), sink.writes.Load())
		require.EqualValues(t, n, sink.writes.Load(), "b writes the states a's rows do not own yet")

		close(s2.gate)
		require.NoError(t, <-errA)
		t.Logf("a: owner look-ups %d; states written in all %d (of %d states)", stA.finds.Load(), sink.writes.Load(), n)
		present, deleted := sink.snapshot()
		require.Equal(t, n, present)
		require.Empty(t, deleted)
		require.EqualValues(t, n, sink.writes.Load(), "a wrote again states b's rows own with its values: a took itself for the target's only writer")
	})
}

// TestBreakSharedFillMissesAnUpdateOfChangedKeys: worker a is in a shared
// pass of source s2 over a new target, its fetches waiting. A shared
// engine b updates the keys a change stream announced for source s1
// (UpdateOptions.Only, as live mode does between listings): such an update
// is not shared (update.shared is false with Only), so it writes its batches
// without Coordinator.TargetWriter, and its rows own the target's states.
// a then finds itself the last writer of the target, looks up no owner, and
// writes again every state b's rows own with its values.
func TestBreakSharedFillMissesAnUpdateOfChangedKeys(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 50
		open := openBackend(t, backend)
		s1 := &sameKeys{n: n}
		s2 := &sameKeys{n: n, gate: make(chan struct{})}
		sink := &writeSink{}
		flow := &Flow{
			Name:    "fill",
			Sources: []*Source{{Name: "s1", Impl: s1, MaxInFlight: 4}, {Name: "s2", Impl: s2, MaxInFlight: 4}},
			Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
		}
		stA := &findCounter{coordStore: open()}

		errA := make(chan error, 1)
		go func() {
			_, err := sharedEngine(t, flow, stA, "a", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s2"}})
			errA <- err
		}()
		require.Eventually(t, func() bool { return s2.gets.Load() > 0 }, 10*time.Second, time.Millisecond, "a fetches")

		var only []Listed
		for i := range n {
			only = append(only, Listed{Key: fmt.Sprintf("%04d", i), Ordinal: 1, HasOrdinal: true})
		}
		st, err := sharedEngine(t, flow, open(), "b", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s1"}, Only: map[string][]Listed{"s1": only}})
		require.NoError(t, err)
		t.Logf("b (changed keys): %+v; states written %d", st.Sources["s1"], sink.writes.Load())
		require.EqualValues(t, n, sink.writes.Load())

		close(s2.gate)
		require.NoError(t, <-errA)
		t.Logf("a: owner look-ups %d; states written in all %d (of %d states)", stA.finds.Load(), sink.writes.Load(), n)
		present, _ := sink.snapshot()
		require.Equal(t, n, present)
		require.EqualValues(t, n, sink.writes.Load(), "a wrote again states b's rows own with its values: b's writes did not record it as the target's writer")
	})
}
