package statestoretest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
)

// ExerciseCoordinator runs the conformance suite of a state store that
// shares passes between workers (statestore.Coordinator). newStore returns
// a fresh, empty store for each subtest; the suite closes it.
func ExerciseCoordinator(t *testing.T, newStore func(t *testing.T) statestore.Store) {
	t.Helper()
	setup := func(t *testing.T) (statestore.Coordinator, int64) {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		c, ok := s.(statestore.Coordinator)
		require.True(t, ok, "%T is no statestore.Coordinator", s)
		_, err := s.FlowGet(t.Context(), statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(t.Context(), statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		return c, src
	}
	const long = time.Minute
	items := func(keys ...string) []statestore.ClaimItem {
		out := make([]statestore.ClaimItem, len(keys))
		for i, k := range keys {
			out[i] = statestore.ClaimItem{Key: k, Listed: []byte("listed " + k)}
		}
		return out
	}
	refs := func(cs []statestore.Claim) []statestore.ClaimRef {
		out := make([]statestore.ClaimRef, len(cs))
		for i, c := range cs {
			out[i] = statestore.ClaimRef{Key: c.Key, Fence: c.Fence}
		}
		return out
	}

	t.Run("AWholePass", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		a, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long})
		require.NoError(t, err)
		require.True(t, a.Lister, "the first to come lists")
		require.Equal(t, int64(1), a.Fence)
		b, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.Equal(t, a.ID, b.ID, "one pass at a time")
		require.False(t, b.Lister)

		lease := statestore.PassLeaseParams{PassID: a.ID, Worker: "a", Fence: a.Fence, TTL: long}
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1", "k2", "k3")}))
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k3", "k4")}), "a key again is left as it is")
		require.ErrorIs(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: statestore.PassLeaseParams{PassID: a.ID, Worker: "b", Fence: 1}, Items: items("x")}),
			statestore.ErrFenced, "only the lister enqueues")

		got, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: a.ID, Worker: "b", Limit: 3, TTL: long})
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Equal(t, []byte("listed "+got[0].Key), got[0].Listed)
		rest, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: a.ID, Worker: "a", Limit: 3, TTL: long})
		require.NoError(t, err)
		require.Len(t, rest, 1, "the other key only")
		require.NotContains(t, refs(got), refs(rest)[0])

		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: a.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Claimed: 4}, pr)
		lost, err := c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: a.ID, Worker: "b", Claims: refs(got)})
		require.NoError(t, err)
		require.Empty(t, lost)
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: a.ID, Worker: "b", Claims: refs(rest)})
		require.NoError(t, err)
		require.Equal(t, []string{rest[0].Key}, lost, "another worker's claim is not ours to end")
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: a.ID, Worker: "a", Claims: refs(rest)})
		require.NoError(t, err)
		require.Empty(t, lost)

		require.NoError(t, c.PassListed(ctx, lease))
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: a.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 4, Listed: true}, pr)
		require.ErrorIs(t, c.PassFinish(ctx, statestore.PassLeaseParams{PassID: a.ID, Worker: "b", Fence: 1}), statestore.ErrFenced)
		require.NoError(t, c.PassFinish(ctx, lease))
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: a.ID})
		require.NoError(t, err)
		require.True(t, pr.Finished)

		next, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.NotEqual(t, a.ID, next.ID, "a finished pass is not joined")
		require.True(t, next.Lister)
		none, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: next.ID, Worker: "b", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, none)
	})

	t.Run("AListerThatGoesIsReplaced", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		// Leases long enough that a loaded machine's calls fall within
		// them, and sleeps longer.
		const brief = 500 * time.Millisecond
		a, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: brief})
		require.NoError(t, err)
		old := statestore.PassLeaseParams{PassID: a.ID, Worker: "a", Fence: a.Fence, TTL: long}
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: old, Items: items("k1")}))
		b, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.False(t, b.Lister, "the lease runs yet")

		time.Sleep(brief + 100*time.Millisecond)
		b, err = c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.Equal(t, a.ID, b.ID, "the same pass, listed again by another")
		require.True(t, b.Lister)
		require.Greater(t, b.Fence, a.Fence)

		// The stale lister, awake, is fenced off.
		require.ErrorIs(t, c.PassLease(ctx, old), statestore.ErrFenced)
		require.ErrorIs(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: old, Items: items("k9")}), statestore.ErrFenced)
		require.ErrorIs(t, c.PassListed(ctx, old), statestore.ErrFenced)
		require.ErrorIs(t, c.PassFinish(ctx, old), statestore.ErrFenced)

		lease := statestore.PassLeaseParams{PassID: b.ID, Worker: "b", Fence: b.Fence, TTL: long}
		require.NoError(t, c.PassLease(ctx, lease))
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1", "k2")}))
		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: b.ID})
		require.NoError(t, err)
		require.Equal(t, int64(2), pr.Pending, "what the first lister enqueued stays, once")

		// A lister gone after its listing was complete is replaced too: the
		// keys it listed, which the deletions need, went with it.
		short := lease
		short.TTL = brief
		require.NoError(t, c.PassLease(ctx, short))
		require.NoError(t, c.PassListed(ctx, lease))
		joined, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "c", TTL: long})
		require.NoError(t, err)
		require.False(t, joined.Lister, "the lease runs yet")
		require.True(t, joined.Listed)
		time.Sleep(brief + 100*time.Millisecond)
		again, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "c", TTL: long})
		require.NoError(t, err)
		require.True(t, again.Lister)
		require.True(t, again.Listed, "it is told the listing was complete")
		require.ErrorIs(t, c.PassFinish(ctx, lease), statestore.ErrFenced)
	})

	t.Run("AKeyDoneAndListedAnewIsClaimedAgain", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, lease := joinAs(t, c, src, "a", long)
		item := func(k, listed string) []statestore.ClaimItem {
			return []statestore.ClaimItem{{Key: k, Listed: []byte(listed)}}
		}
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: item("k1", "at 1")}))
		first, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "a", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Len(t, first, 1)
		lost, err := c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "a", Claims: refs(first)})
		require.NoError(t, err)
		require.Empty(t, lost)

		// The same listing again: the key stays done.
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: item("k1", "at 1")}))
		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 1}, pr, "listed again unchanged, a done key stays done")

		// The row changed since: a lister that lists it anew (one that took
		// over) makes it pending again, with the new entry.
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: item("k1", "at 2")}))
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Pending: 1}, pr, "listed anew, a done key needs work again")
		again, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "b", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Len(t, again, 1)
		require.Equal(t, []byte("at 2"), again[0].Listed)
		require.Greater(t, again[0].Fence, first[0].Fence, "a claim taken again has a new fence")
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "a", Claims: refs(first)})
		require.NoError(t, err)
		require.Equal(t, []string{"k1"}, lost, "the first claim is over")

		// A key claimed and listed anew keeps its claim: its worker fetches
		// the row's value now.
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: item("k1", "at 3")}))
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Claimed: 1}, pr)
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "b", Claims: refs(again)})
		require.NoError(t, err)
		require.Empty(t, lost)
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 1}, pr)
	})

	t.Run("AClaimThatExpiresIsTakenOver", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, lease := joinAs(t, c, src, "a", long)
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1", "k2")}))

		a, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "a", Limit: 10, TTL: 100 * time.Millisecond})
		require.NoError(t, err)
		require.Len(t, a, 2)
		lost, err := c.ClaimRenew(ctx, statestore.ClaimRenewParams{PassID: p.ID, Worker: "a", Claims: refs(a[:1]), TTL: long})
		require.NoError(t, err)
		require.Empty(t, lost, "k1 renewed")
		none, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "b", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, none, "both held")

		time.Sleep(150 * time.Millisecond)
		b, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "b", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Len(t, b, 1, "the claim not renewed expired")
		require.Equal(t, a[1].Key, b[0].Key)
		require.Greater(t, b[0].Fence, a[1].Fence)

		// The first worker, awake, has lost it: it can neither renew nor
		// end it; the new holder can.
		lost, err = c.ClaimRenew(ctx, statestore.ClaimRenewParams{PassID: p.ID, Worker: "a", Claims: refs(a), TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{a[1].Key}, lost)
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "a", Claims: refs(a)})
		require.NoError(t, err)
		require.Equal(t, []string{a[1].Key}, lost)
		lost, err = c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "b", Claims: refs(b)})
		require.NoError(t, err)
		require.Empty(t, lost)
		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 2}, pr)
	})

	t.Run("WorkersAtOnceShareEachKeyOnce", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, lease := joinAs(t, c, src, "lister", long)
		var keys []string
		for i := range 1000 {
			keys = append(keys, fmt.Sprintf("k%04d", i))
		}
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items(keys...)}))

		var (
			mu  sync.Mutex
			got = make(map[string]string)
			wg  sync.WaitGroup
		)
		for w := range 6 {
			worker := fmt.Sprintf("w%d", w)
			wg.Go(func() {
				for {
					cs, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: worker, Limit: 7, TTL: long})
					if !assertNoError(t, err) || len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, cl := range cs {
						if prev, dup := got[cl.Key]; dup {
							t.Errorf("%s claimed by %s and %s", cl.Key, prev, worker)
						}
						got[cl.Key] = worker
					}
					mu.Unlock()
					lost, err := c.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: worker, Claims: refs(cs)})
					if assertNoError(t, err) && len(lost) > 0 {
						t.Errorf("%s lost %v", worker, lost)
					}
				}
			})
		}
		wg.Wait()
		require.Len(t, got, 1000)
		claimed := slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		})
		require.Equal(t, keys, claimed)
		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 1000}, pr)
	})

	t.Run("FlowDropForgetsPasses", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, lease := joinAs(t, c, src, "a", long)
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1")}))
		s := c.(statestore.Store)
		require.NoError(t, s.FlowDrop(ctx, statestore.FlowDropParams{Flow: "f"}))
		_, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.ErrorIs(t, err, statestore.ErrNotFound)
		src, err = s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		again, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long})
		require.NoError(t, err)
		require.True(t, again.Lister)
		require.NotEqual(t, p.ID, again.ID)
	})

	t.Run("FreshKeepsTheNextPassShut", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long, Fresh: time.Hour})
		require.NoError(t, err)
		require.NotZero(t, p.ID, "no pass yet: one is opened")
		joined, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long, Fresh: time.Hour})
		require.NoError(t, err)
		require.Equal(t, p.ID, joined.ID, "an open pass is joined, however fresh")
		lease := statestore.PassLeaseParams{PassID: p.ID, Worker: "a", Fence: p.Fence, TTL: long}
		require.NoError(t, c.PassListed(ctx, lease))
		require.NoError(t, c.PassFinish(ctx, lease))

		none, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long, Fresh: time.Hour})
		require.NoError(t, err)
		require.Equal(t, statestore.Pass{}, none, "the last pass started within Fresh")
		time.Sleep(60 * time.Millisecond)
		next, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long, Fresh: 50 * time.Millisecond})
		require.NoError(t, err)
		require.NotZero(t, next.ID, "the last pass is older than Fresh")
		require.NotEqual(t, p.ID, next.ID)
		require.True(t, next.Lister)
	})

	t.Run("APassKeepsItsMode", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		p, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long, Mode: 2})
		require.NoError(t, err)
		require.Equal(t, uint8(2), p.Mode, "the mode of the pass opened")
		q, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.Equal(t, p.ID, q.ID)
		require.Equal(t, uint8(2), q.Mode, "a worker joining is told the pass's mode, not its own")
		require.False(t, q.Lister)
	})

	t.Run("APassRunsWhileLeasedOrClaimed", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		running := func() bool {
			t.Helper()
			ok, err := c.PassRunning(ctx, statestore.PassRunningParams{SourceID: src})
			require.NoError(t, err)
			return ok
		}
		require.False(t, running(), "no pass yet")
		const short = 150 * time.Millisecond
		p, lease := joinAs(t, c, src, "a", short)
		require.True(t, running(), "the listing lease is live")
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1")}))
		time.Sleep(2 * short)
		require.False(t, running(), "the lease expired and nothing is claimed")
		_, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "b", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.True(t, running(), "a claim is live though the lease is not")

		q, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "b", TTL: long})
		require.NoError(t, err)
		require.Equal(t, p.ID, q.ID)
		require.NoError(t, c.PassFinish(ctx, statestore.PassLeaseParams{PassID: q.ID, Worker: "b", Fence: q.Fence, TTL: long}))
		require.False(t, running(), "a finished pass does not run")
	})

	t.Run("ATargetKnowsItsLastWriter", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t)
		ctx := t.Context()
		s := c.(statestore.Store)
		var ids []int64
		for _, k := range []string{"t1", "t2"} {
			tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: k, Record: []byte("v")})
			require.NoError(t, err)
			ids = append(ids, tg.ID)
		}
		writer := func(worker string, ids ...int64) []int64 {
			t.Helper()
			others, err := c.TargetWriter(ctx, statestore.TargetWriterParams{TargetIDs: ids, Worker: worker})
			require.NoError(t, err)
			return others
		}
		t1, t2, gone := ids[0], ids[1], ids[1]+1000
		require.Empty(t, writer("a", t1, t2), "nobody wrote in them before")
		require.Empty(t, writer("a", t1, t2), "a was the last")
		require.Equal(t, []int64{t1}, writer("b", t1), "a was the last to write in t1")
		require.Equal(t, []int64{t1}, writer("a", t2, t1, gone), "b wrote in t1 since; a target that does not exist is left out")
		require.Empty(t, writer("b", gone), "a target that does not exist has no writer")
		require.Equal(t, []int64{t1, t2}, writer("b", t1, t2))
		require.Empty(t, writer("b"), "no targets")
	})

	t.Run("AFencedCommitLandsNothing", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		s := c.(statestore.Store)
		ctx := t.Context()
		p, lease := joinAs(t, c, src, "a", long)
		require.NoError(t, c.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: items("k1", "k2", "k3")}))
		ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{
			{Key: "k1", Staged: []byte("s1")}, {Key: "k2", Staged: []byte("s2")}, {Key: "k3", Staged: []byte("s3")}}})
		require.NoError(t, err)
		byKey := map[string]int64{"k1": ids[0], "k2": ids[1], "k3": ids[2]}
		ord := int64(7)
		tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: "t", Record: []byte("v1")})
		require.NoError(t, err)
		_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v1")})
		require.NoError(t, err)
		target := tg.ID
		commit := func(worker string, fence *statestore.CommitFence, keys ...string) error {
			cp := statestore.CommitParams{SourceID: src, At: time.Now(), Fence: fence}
			for _, k := range keys {
				cp.Rows = append(cp.Rows, statestore.CommitRow{ID: byKey[k], Ordinal: &ord, ContentFP: []byte("c"), LogicFP: []byte("l"), Tracking: []byte("t " + worker)})
				cp.Changes = append(cp.Changes, statestore.Change{TargetID: target, SourceID: src, RowKey: k, Key: k, Seq: 1, New: []byte(worker)})
			}
			return s.Commit(ctx, cp)
		}

		a, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "a", Limit: 10, TTL: 100 * time.Millisecond})
		require.NoError(t, err)
		require.Len(t, a, 3)
		time.Sleep(150 * time.Millisecond)
		b, err := c.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "b", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.Len(t, b, 1)
		taken := b[0].Key

		// a's claims expired and one was taken: its commit of all three
		// lands nothing, and says which one went.
		err = commit("a", &statestore.CommitFence{PassID: p.ID, Worker: "a", Claims: refs(a)}, "k1", "k2", "k3")
		require.ErrorIs(t, err, statestore.ErrFenced)
		var fe *statestore.FencedError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, []string{taken}, fe.Keys)
		require.False(t, fe.Lease)
		rows, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"k1", "k2", "k3"}})
		require.NoError(t, err)
		for _, r := range rows {
			require.Nil(t, r.Ordinal, "%s: a fenced commit lands nothing", r.Key)
			require.True(t, r.Staged, r.Key)
		}
		changes, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{target}})
		require.NoError(t, err)
		require.Empty(t, changes, "a fenced commit lands no change")

		// The two a still holds (expired, but taken by nobody) commit, and
		// are done.
		var kept []statestore.Claim
		for _, cl := range a {
			if cl.Key != taken {
				kept = append(kept, cl)
			}
		}
		keys := []string{kept[0].Key, kept[1].Key}
		require.NoError(t, commit("a", &statestore.CommitFence{PassID: p.ID, Worker: "a", Claims: refs(kept)}, keys...))
		pr, err := c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Claimed: 1, Done: 2}, pr)
		rows, err = s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: keys})
		require.NoError(t, err)
		require.Len(t, rows, 2)
		for _, r := range rows {
			require.Equal(t, &ord, r.Ordinal)
			require.False(t, r.Staged)
		}
		require.ErrorIs(t, commit("a", &statestore.CommitFence{PassID: p.ID, Worker: "a", Claims: refs(kept)}, keys...), statestore.ErrFenced,
			"a claim done is held no more")

		// Rows without claims commit under the listing lease alone.
		require.NoError(t, commit("a", &statestore.CommitFence{PassID: p.ID, Worker: "a", Lister: p.Fence}))
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(),
			Fence: &statestore.CommitFence{PassID: p.ID, Worker: "a", Lister: p.Fence}, Deletes: []statestore.RowDelete{{ID: byKey[keys[0]]}}}))
		err = s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(),
			Fence: &statestore.CommitFence{PassID: p.ID, Worker: "b", Lister: p.Fence}, Deletes: []statestore.RowDelete{{ID: byKey[keys[1]]}}})
		require.ErrorAs(t, err, &fe)
		require.True(t, fe.Lease, "b holds no listing lease")
		n, err := s.RowCount(ctx, statestore.RowCountParams{SourceID: src})
		require.NoError(t, err)
		require.Equal(t, int64(2), n, "one row deleted, under the lease; the other not")

		require.NoError(t, commit("b", &statestore.CommitFence{PassID: p.ID, Worker: "b", Claims: refs(b)}, taken))
		pr, err = c.PassProgress(ctx, statestore.PassProgressParams{PassID: p.ID})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Done: 3}, pr)
	})

	t.Run("ListersAtOnceOpenOnePass", func(t *testing.T) {
		t.Parallel()
		c, src := setup(t)
		ctx := t.Context()
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = make(map[int64]bool)
			listers int
		)
		for w := range 8 {
			wg.Go(func() {
				p, err := c.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: fmt.Sprintf("w%d", w), TTL: long})
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[p.ID] = true
				if p.Lister {
					listers++
				}
			})
		}
		wg.Wait()
		require.Len(t, ids, 1)
		require.Equal(t, 1, listers)
	})
}

// assertNoError reports err, from a goroutine other than the test's, and
// says whether there was none.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// joinAs joins the source's pass as worker, with a listing lease of ttl if
// it gets one, and returns the pass and the lease it names.
func joinAs(t *testing.T, c statestore.Coordinator, src int64, worker string, ttl time.Duration) (statestore.Pass, statestore.PassLeaseParams) {
	t.Helper()
	p, err := c.PassJoin(t.Context(), statestore.PassJoinParams{SourceID: src, Worker: worker, TTL: ttl})
	require.NoError(t, err)
	return p, statestore.PassLeaseParams{PassID: p.ID, Worker: worker, Fence: p.Fence, TTL: ttl}
}
