package engine

// A shared worker filling a target alone fills it as an update alone
// would, without looking up owners; once another worker writes in the
// target, it looks them up.
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -run 'TestSharedFill' -v ./internal/engine/

import (
	"context"
	"fmt"
	"iter"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// findCounter counts the store's owner look-ups.
type findCounter struct {
	coordStore
	finds atomic.Int64
}

func (s *findCounter) OwnerFind(ctx context.Context, p statestore.OwnerFindParams) ([]statestore.Owner, error) {
	s.finds.Add(1)
	return s.coordStore.OwnerFind(ctx, p)
}

// sameKeys lists n keys, each declaring the target state "t" + key with
// the value "v:" + key; when gate is set, Get waits for it for the keys
// from the from-th on.
type sameKeys struct {
	n, from int
	gate    chan struct{}
	gets    atomic.Int64
}

func (s *sameKeys) List(ctx context.Context) iter.Seq2[Listed, error] {
	return func(yield func(Listed, error) bool) {
		for i := range s.n {
			if !yield(Listed{Key: fmt.Sprintf("%04d", i), Ordinal: 1, HasOrdinal: true}, nil) {
				return
			}
		}
	}
}

func (s *sameKeys) Get(ctx context.Context, key string) (Fetched, error) {
	s.gets.Add(1)
	var i int
	fmt.Sscanf(key, "%d", &i)
	if s.gate != nil && i >= s.from {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return Fetched{}, ctx.Err()
		}
	}
	return Fetched{Exists: true, Value: "v:" + key, Ordinal: 1, HasOrdinal: true}, nil
}

func (s *sameKeys) Process(ctx context.Context, key string, value any) ([]Decl, error) {
	return []Decl{{Root: 0, Key: target.Key("t" + key), Value: value.(string)}}, nil
}

func (s *sameKeys) ProvidesOrdinal() bool { return true }

// TestSharedFillAloneLooksUpNoOwners: two sources declare the same n
// target states with the same values. Worker a fills the new target from
// source s2 while worker b, which began before it, waits on its fetches
// of source s1: a, alone in writing, looks up no owner. Then b writes:
// another worker wrote in the target since b began, so b looks up the
// states' owners, finds a's rows own them with its values, and writes
// none of them again.
func TestSharedFillAloneLooksUpNoOwners(t *testing.T) {
	forEachCoordBackend(t, func(t *testing.T, backend string) {
		const n = 50
		open := openBackend(t, backend)
		s1 := &sameKeys{n: n, gate: make(chan struct{})}
		s2 := &sameKeys{n: n}
		sink := &writeSink{}
		flow := &Flow{
			Name:    "fill",
			Sources: []*Source{{Name: "s1", Impl: s1, MaxInFlight: 4}, {Name: "s2", Impl: s2, MaxInFlight: 4}},
			Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
		}
		stA, stB := &findCounter{coordStore: open()}, &findCounter{coordStore: open()}

		errB := make(chan error, 1)
		go func() {
			_, err := sharedEngine(t, flow, stB, "b", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s1"}})
			errB <- err
		}()
		require.Eventually(t, func() bool { return s1.gets.Load() > 0 }, 10*time.Second, time.Millisecond, "b fetches")

		st, err := sharedEngine(t, flow, stA, "a", 5*time.Second).Update(t.Context(), UpdateOptions{Sources: []string{"s2"}})
		require.NoError(t, err)
		t.Logf("a: %+v; owner look-ups %d, states written %d", st.Sources["s2"], stA.finds.Load(), sink.writes.Load())
		require.EqualValues(t, n, sink.writes.Load(), "a fills the target")
		require.Zero(t, stA.finds.Load(), "a, alone in writing in a new target, looked up owners")

		close(s1.gate)
		require.NoError(t, <-errB)
		t.Logf("b: owner look-ups %d, states written in all %d", stB.finds.Load(), sink.writes.Load())
		require.Positive(t, stB.finds.Load(), "b did not look up the owners of states another worker wrote")
		require.EqualValues(t, n, sink.writes.Load(), "b wrote again states a's rows own with its values")
		present, deleted := sink.snapshot()
		require.Equal(t, n, present)
		require.Empty(t, deleted)
	})
}
