package statestoretest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
)

// exerciseOutbox runs the outbox's part of the suite (statestore.Outbox).
func exerciseOutbox(t *testing.T, setup func(t *testing.T) statestore.Store) {
	t.Helper()
	const long = time.Minute
	// world opens a store with a flow, a source and two targets.
	world := func(t *testing.T) (s statestore.Store, src, t1, t2 int64) {
		t.Helper()
		s = setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err = s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		ids := make([]int64, 2)
		for i, key := range []string{"t1", "t2"} {
			tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: key, Record: []byte("v1")})
			require.NoError(t, err)
			_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v1")})
			require.NoError(t, err)
			ids[i] = tg.ID
		}
		return s, src, ids[0], ids[1]
	}
	change := func(target, src int64, row, key string, seq int64, old, new string) statestore.Change {
		c := statestore.Change{TargetID: target, SourceID: src, RowKey: row, Key: key, Seq: seq}
		if old != "" {
			c.Old = []byte(old)
		}
		if new != "" {
			c.New = []byte(new)
		}
		return c
	}
	keys := func(cs []statestore.Change) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.Key + "#" + string(rune('0'+c.Seq))
		}
		return out
	}
	refs := func(cs []statestore.Change) []statestore.OutboxRef {
		out := make([]statestore.OutboxRef, len(cs))
		for i, c := range cs {
			out[i] = statestore.OutboxRef{ID: c.ID, Fence: c.Fence}
		}
		return out
	}

	t.Run("ChangesOfAStateComeInCommitOrder", func(t *testing.T) {
		t.Parallel()
		s, src, t1, t2 := world(t)
		ctx := t.Context()
		at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `{"p":1}`),
			change(t1, src, "r2", "b", 1, "", `{"p":2}`),
		}}), "a commit may carry changes only")
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at.Add(time.Second), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 2, `{"p":1}`, `{"p":3}`),
			change(t2, src, "r1", "x", 1, "", `{}`),
		}}))
		// Committed twice (a retry after an ambiguous failure): kept once.
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at.Add(time.Second), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 2, `{"p":1}`, `{"p":3}`),
		}}))

		got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1", "b#1"}, keys(got), "the oldest change of each state of the targets asked, in ID order")
		require.Less(t, got[0].ID, got[1].ID)
		a := got[0]
		require.Equal(t, t1, a.TargetID)
		require.Equal(t, src, a.SourceID)
		require.Equal(t, "r1", a.RowKey)
		require.Nil(t, a.Old, "a new state has no old value")
		require.Equal(t, []byte(`{"p":1}`), a.New)
		require.True(t, at.Equal(a.At), "the commit's time: %v", a.At)
		require.Zero(t, a.Attempts)
		require.NotZero(t, a.Fence)

		more, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, more, "a state's next change waits for its first, which is leased")

		lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w", Changes: refs(got)})
		require.NoError(t, err)
		require.Empty(t, lost)
		next, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#2"}, keys(next), "limit 1: the smallest ID")
		require.Equal(t, []byte(`{"p":1}`), next[0].Old)
		require.Equal(t, []byte(`{"p":3}`), next[0].New)
		rest, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"x#1"}, keys(rest))
		_, err = s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w", Changes: append(refs(next), refs(rest)...)})
		require.NoError(t, err)
		none, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, none, "delivered changes are gone")
		st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1, t2}})
		require.NoError(t, err)
		require.Empty(t, st)
	})

	t.Run("ALeaseThatEndsIsTakenOver", func(t *testing.T) {
		t.Parallel()
		s, src, t1, _ := world(t)
		ctx := t.Context()
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `1`),
		}}))
		first, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w1", Limit: 10, TTL: 100 * time.Millisecond})
		require.NoError(t, err)
		require.Len(t, first, 1)
		none, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w2", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, none, "leased")
		time.Sleep(250 * time.Millisecond)
		second, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w2", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Len(t, second, 1, "the lease ended")
		require.Equal(t, first[0].ID, second[0].ID)
		require.Greater(t, second[0].Fence, first[0].Fence)
		lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w1", Changes: refs(first)})
		require.NoError(t, err)
		require.Equal(t, []int64{first[0].ID}, lost, "the first lease is over")
		require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "w1", Change: refs(first)[0], Error: "stale", NextAt: time.Now().Add(time.Hour)}))
		st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1}})
		require.NoError(t, err)
		require.Len(t, st, 1)
		require.Zero(t, st[0].Failing, "a stale worker's retry is left out")
		lost, err = s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w2", Changes: refs(second)})
		require.NoError(t, err)
		require.Empty(t, lost)
	})

	t.Run("StealTakesLeasedChangesNotFailingOnes", func(t *testing.T) {
		t.Parallel()
		s, src, t1, _ := world(t)
		ctx := t.Context()
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `1`),
			change(t1, src, "r2", "b", 1, "", `1`),
		}}))
		dead, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "dead", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Len(t, dead, 2)
		require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "dead", Change: refs(dead)[1], Error: "down", NextAt: time.Now().Add(time.Hour)}))
		got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "alone", Limit: 10, TTL: long, Steal: true})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1"}, keys(got), "a leased change is stolen; one waiting for its retry is not")
		require.Greater(t, got[0].Fence, dead[0].Fence)
		lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "dead", Changes: refs(dead)[:1]})
		require.NoError(t, err)
		require.Equal(t, []int64{dead[0].ID}, lost, "the stolen lease is over")
		lost, err = s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "alone", Changes: refs(got)})
		require.NoError(t, err)
		require.Empty(t, lost)
	})

	t.Run("AFailedDeliveryWaitsAndHoldsItsStateOnly", func(t *testing.T) {
		t.Parallel()
		s, src, t1, _ := world(t)
		ctx := t.Context()
		at := time.Now().UTC().Truncate(time.Millisecond)
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `1`),
			change(t1, src, "r1", "a", 2, `1`, `2`),
			change(t1, src, "r2", "b", 1, "", `1`),
		}}))
		got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1"}, keys(got))
		retryAt := time.Now().Add(300 * time.Millisecond)
		require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "w", Change: refs(got)[0], Error: "HTTP 503", NextAt: retryAt}))

		st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1}})
		require.NoError(t, err)
		require.Len(t, st, 1)
		require.Equal(t, t1, st[0].TargetID)
		require.Equal(t, int64(3), st[0].Pending)
		require.Equal(t, int64(1), st[0].Failing)
		require.True(t, at.Equal(st[0].OldestAt), "%v against %v", st[0].OldestAt, at)
		require.NotNil(t, st[0].Failed)
		require.Equal(t, "a", st[0].Failed.Key)
		require.Equal(t, 1, st[0].Failed.Attempts)
		require.Equal(t, "HTTP 503", st[0].Failed.LastError)
		require.WithinDuration(t, retryAt, st[0].Failed.NextAt, 5*time.Millisecond)

		other, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"b#1"}, keys(other), "the failing state and its next change wait; another state goes on")
		time.Sleep(time.Until(retryAt) + 50*time.Millisecond)
		again, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1"}, keys(again), "due again")
		require.Equal(t, 1, again[0].Attempts)
		require.Equal(t, "HTTP 503", again[0].LastError)
	})

	t.Run("ChangesThatNeverFailedComeFirst", func(t *testing.T) {
		t.Parallel()
		s, src, t1, t2 := world(t)
		ctx := t.Context()
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `1`),
			change(t2, src, "r1", "x", 1, "", `1`),
			change(t1, src, "r2", "b", 1, "", `1`),
		}}))
		first, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 2, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1", "x#1"}, keys(first))
		for _, r := range refs(first) {
			require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "w", Change: r, Error: "down", NextAt: time.Now().Add(-time.Second)}))
		}
		next, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"b#1"}, keys(next), "the change that never failed first, though its ID is the largest")
		rest, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []string{"a#1", "x#1"}, keys(rest), "then those that failed, in ID order")
	})

	t.Run("FlowDropForgetsChanges", func(t *testing.T) {
		t.Parallel()
		s, src, t1, _ := world(t)
		ctx := t.Context()
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: []statestore.Change{
			change(t1, src, "r1", "a", 1, "", `1`),
		}}))
		require.NoError(t, s.FlowDrop(ctx, statestore.FlowDropParams{Flow: "f"}))
		st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1}})
		require.NoError(t, err)
		require.Empty(t, st)
		none, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 10, TTL: long})
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

// OutboxAfterMigration checks that s, a store migrated from a layout that
// had no outbox and held flow "f" with source "s" and one target, keeps
// and gives the changes of that target.
func OutboxAfterMigration(t *testing.T, s statestore.Store) {
	t.Helper()
	ctx := t.Context()
	src, err := s.SourceFind(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	targets, err := s.TargetList(ctx, statestore.TargetListParams{Flow: "f"})
	require.NoError(t, err)
	require.Len(t, targets, 1)
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: []statestore.Change{
		{TargetID: targets[0].ID, SourceID: src, RowKey: "r", Key: "k", Seq: 1, New: []byte("1")},
	}}))
	got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{targets[0].ID}, Worker: "w", Limit: 1, TTL: time.Minute})
	require.NoError(t, err)
	require.Len(t, got, 1)
}
