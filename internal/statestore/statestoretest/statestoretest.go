// Package statestoretest is the conformance suite every state store driver
// passes: Exercise runs it against a fresh store from a constructor.
package statestoretest

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// Exercise runs the conformance suite. newStore returns a fresh, empty store
// for each subtest; the suite closes it.
func Exercise(t *testing.T, newStore func(t *testing.T) statestore.Store) {
	t.Helper()

	setup := func(t *testing.T) statestore.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	}
	t.Run("Outbox", func(t *testing.T) { exerciseOutbox(t, setup) })

	t.Run("RowReads", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		other, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "other"})
		require.NoError(t, err)
		ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{Key: "b"}, {Key: "a"}, {Key: "c", Staged: []byte{1, 2}}}})
		require.NoError(t, err)
		_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: other, Rows: []statestore.PrecommitRow{{Key: "a"}}})
		require.NoError(t, err)
		at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		ord := int64(42)
		tracking := statestore.EncodeSections([]statestore.Section{{TargetID: 7, Gen: 3, Entries: []statestore.Entry{{Key: "k", Record: []byte("r"), Wrote: true}}}})
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Rows: []statestore.CommitRow{
			{ID: ids[0], Ordinal: &ord, ContentFP: []byte("content"), LogicFP: []byte("logic"), Gen: 3, Tracking: tracking},
			{ID: ids[1], Gen: 3},
		}, Failed: []statestore.RowFailed{{ID: ids[2], Key: "c", Message: "boom"}}}))

		b, err := s.RowFind(ctx, statestore.RowFindParams{SourceID: src, Key: "b"})
		require.NoError(t, err)
		require.Equal(t, statestore.RowInfo{ID: ids[0], SourceID: src, Key: "b", Ordinal: &ord, ContentFP: []byte("content"), LogicFP: []byte("logic"),
			Gen: 3, Tracking: tracking, ProcessedAt: at}, b)
		c, err := s.RowFind(ctx, statestore.RowFindParams{SourceID: src, Key: "c"})
		require.NoError(t, err)
		require.Equal(t, "boom", c.Error)
		require.Equal(t, int64(1), c.ErrorCount)
		require.Equal(t, at, c.ErrorAt)
		require.Equal(t, []byte{1, 2}, c.Staged, "a failed row keeps its staged blob")
		_, err = s.RowFind(ctx, statestore.RowFindParams{SourceID: src, Key: "zz"})
		require.ErrorIs(t, err, statestore.ErrNotFound)

		keys := func(rows []statestore.RowInfo) []string {
			var out []string
			for _, r := range rows {
				out = append(out, r.Key)
			}
			return out
		}
		page, err := s.RowPage(ctx, statestore.RowPageParams{SourceID: src, Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b"}, keys(page), "in key order, of one source")
		page, err = s.RowPage(ctx, statestore.RowPageParams{SourceID: src, After: "b", Limit: 2})
		require.NoError(t, err)
		require.Equal(t, []string{"c"}, keys(page))
		page, err = s.RowPage(ctx, statestore.RowPageParams{SourceID: src, Limit: 10, Failed: true})
		require.NoError(t, err)
		require.Equal(t, []string{"c"}, keys(page))

		got, err := s.RowGet(ctx, statestore.RowGetParams{IDs: []int64{ids[2], ids[0], 1 << 40}})
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"b", "c"}, keys(got), "unknown ids are left out")
		for _, r := range got {
			require.Nil(t, r.Tracking, "no blobs unless asked")
			require.Nil(t, r.Staged)
		}
		got, err = s.RowGet(ctx, statestore.RowGetParams{IDs: []int64{ids[0]}, Blobs: true})
		require.NoError(t, err)
		require.Equal(t, []statestore.RowInfo{b}, got)
	})

	t.Run("FlowGet", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		f, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "a"})
		require.NoError(t, err)
		require.Equal(t, statestore.Flow{Name: "a", Gen: 0}, f)
		f, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "a"})
		require.NoError(t, err)
		require.Equal(t, int64(0), f.Gen)
	})

	t.Run("FindWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowFind(ctx, statestore.FlowGetParams{Flow: "a"})
		require.ErrorIs(t, err, statestore.ErrNotFound)
		_, err = s.SourceFind(ctx, statestore.SourceEnsureParams{Flow: "a", Name: "s"})
		require.ErrorIs(t, err, statestore.ErrNotFound)
		_, err = s.FlowFind(ctx, statestore.FlowGetParams{Flow: "a"})
		require.ErrorIs(t, err, statestore.ErrNotFound, "finding created nothing")

		_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "a"})
		require.NoError(t, err)
		id, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "a", Name: "s"})
		require.NoError(t, err)
		f, err := s.FlowFind(ctx, statestore.FlowGetParams{Flow: "a"})
		require.NoError(t, err)
		require.Equal(t, statestore.Flow{Name: "a"}, f)
		found, err := s.SourceFind(ctx, statestore.SourceEnsureParams{Flow: "a", Name: "s"})
		require.NoError(t, err)
		require.Equal(t, id, found)
	})

	t.Run("FlowLock", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		before := time.Now()
		held, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "a"})
		require.NoError(t, err)
		after := time.Now()
		require.NoError(t, held.Check(ctx), "a lock just taken is held")
		_, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "a"})
		require.ErrorIs(t, err, statestore.ErrLocked)
		var locked *statestore.LockedError
		require.ErrorAs(t, err, &locked)
		host, herr := os.Hostname()
		require.NoError(t, herr)
		require.Equal(t, "a", locked.Flow)
		require.Equal(t, os.Getpid(), locked.Holder.PID, "the holder is this process")
		require.Equal(t, host, locked.Holder.Host)
		// Stores may keep the time to the microsecond.
		require.False(t, locked.Holder.Since.Before(before.Truncate(time.Microsecond)), "since %v, taken after %v", locked.Holder.Since, before)
		require.False(t, locked.Holder.Since.After(after), "since %v, taken before %v", locked.Holder.Since, after)
		require.EqualError(t, err, fmt.Sprintf("flow a is locked by pid %d on host %s since %s",
			os.Getpid(), host, locked.Holder.Since.UTC().Format(time.RFC3339)))
		other, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "b"})
		require.NoError(t, err, "flows are locked apart")
		other.Release()
		require.NoError(t, held.Check(ctx))
		held.Release()
		again, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "a"})
		require.NoError(t, err, "released")
		_, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "a"})
		require.ErrorAs(t, err, &locked)
		require.False(t, locked.Holder.Since.Before(after.Truncate(time.Microsecond)), "the new holder is recorded: since %v", locked.Holder.Since)
		again.Release()
	})

	t.Run("SourceEnsure", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		a1, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "a"})
		require.NoError(t, err)
		a2, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "a"})
		require.NoError(t, err)
		require.Equal(t, a1, a2)
		b, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "b"})
		require.NoError(t, err)
		other, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "g", Name: "a"})
		require.NoError(t, err)
		require.NotEqual(t, a1, b)
		require.NotEqual(t, a1, other)
	})

	t.Run("SourceNotes", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		a, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "a"})
		require.NoError(t, err)
		b, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "b"})
		require.NoError(t, err)
		n, err := s.SourceNotesGet(ctx, statestore.SourceStatusParams{SourceID: a})
		require.NoError(t, err)
		require.Equal(t, statestore.SourceNotes{}, n, "none kept yet")
		require.NoError(t, s.SourceNotesSave(ctx, statestore.SourceNotesSaveParams{SourceID: a, Options: []byte("o1"), LastUpdate: []byte("u1")}))
		require.NoError(t, s.SourceNotesSave(ctx, statestore.SourceNotesSaveParams{SourceID: a, LastUpdate: []byte("u2")}))
		n, err = s.SourceNotesGet(ctx, statestore.SourceStatusParams{SourceID: a})
		require.NoError(t, err)
		require.Equal(t, statestore.SourceNotes{Options: []byte("o1"), LastUpdate: []byte("u2")}, n, "a nil field keeps its value")
		n, err = s.SourceNotesGet(ctx, statestore.SourceStatusParams{SourceID: b})
		require.NoError(t, err)
		require.Equal(t, statestore.SourceNotes{}, n, "another source's notes are its own")
	})

	t.Run("TargetStageAndCommit", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)

		tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: "t1", Record: []byte("v1")})
		require.NoError(t, err)
		require.NotZero(t, tg.ID)
		require.False(t, tg.Exists)
		require.Equal(t, [][]byte{[]byte("v1")}, tg.Staged)

		// Staging again appends; a nil record stages a drop; a record
		// already staged is not staged twice.
		tg, err = s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: "t1", Record: nil})
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("v1"), nil}, tg.Staged)
		tg, err = s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: "t1", Record: []byte("v1")})
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("v1"), nil}, tg.Staged)

		res, err := s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v1")})
		require.NoError(t, err)
		require.Equal(t, int64(0), res.Gen)

		list, err := s.TargetList(ctx, statestore.TargetListParams{Flow: "f"})
		require.NoError(t, err)
		require.Len(t, list, 1)
		got := list[0]
		require.Equal(t, tg.ID, got.ID)
		require.Equal(t, "table", got.Kind)
		require.Equal(t, "t1", got.Key)
		require.True(t, got.Exists)
		require.Equal(t, []byte("v1"), got.Record)
		require.Empty(t, got.Staged)
		require.Zero(t, got.ParentID)
		require.WithinDuration(t, time.Now(), got.UpdatedAt, time.Minute)

		// An empty record is kept distinct from none.
		_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte{}})
		require.NoError(t, err)
		list, err = s.TargetList(ctx, statestore.TargetListParams{Flow: "f"})
		require.NoError(t, err)
		require.NotNil(t, list[0].Record)
		require.Empty(t, list[0].Record)

		// Another flow does not see it.
		other, err := s.TargetList(ctx, statestore.TargetListParams{Flow: "g"})
		require.NoError(t, err)
		require.Empty(t, other)

		_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID + 1000, Exists: true})
		require.ErrorIs(t, err, statestore.ErrNotFound)
	})

	t.Run("TargetInvalidation", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		t1 := stageCommit(t, s, "f", "t1", 0)
		t2 := stageCommit(t, s, "f", "t2", 0)
		stageCommit(t, s, "f", "t1/att", t1)
		stageCommit(t, s, "f", "t2/att", t2)
		k1 := statestore.OwnerKey{TargetID: t1, KeyHash: statestore.HashKey("k")}
		k2 := statestore.OwnerKey{TargetID: t2, KeyHash: statestore.HashKey("k")}
		ownRow(t, s, src, "r", k1, k2)

		res, err := s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: t1, Exists: true, Record: []byte("x"), Invalidate: target.InvalidateLossy})
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Gen)
		res, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: t2, Exists: true, Record: []byte("y"), Invalidate: target.InvalidateDestructive})
		require.NoError(t, err)
		require.Equal(t, int64(2), res.Gen)

		f, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		require.Equal(t, int64(2), f.Gen)
		byKey := targetsByKey(t, s, "f")
		require.Equal(t, int64(1), byKey["t1"].LostGen)
		require.Zero(t, byKey["t1"].DestroyedGen)
		require.Equal(t, int64(2), byKey["t2"].DestroyedGen)
		require.Zero(t, byKey["t2"].LostGen)

		// A destructive change stages a drop on the target's attachments,
		// destroyed with it; a lossy one leaves them.
		require.Equal(t, [][]byte{nil}, byKey["t2/att"].Staged)
		require.Empty(t, byKey["t1/att"].Staged)

		// A destructive change forgets the children's ownership; a lossy one
		// keeps it.
		owners, err := s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{k1, k2}})
		require.NoError(t, err)
		require.Len(t, owners, 1)
		require.Equal(t, k1, owners[0].OwnerKey)
	})

	t.Run("TargetDrop", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		parent := stageCommit(t, s, "f", "table", 0)
		stageCommit(t, s, "f", "table/index", parent)
		keep := stageCommit(t, s, "f", "other", 0)
		ko := statestore.OwnerKey{TargetID: parent, KeyHash: statestore.HashKey("k")}
		kk := statestore.OwnerKey{TargetID: keep, KeyHash: statestore.HashKey("k")}
		ownRow(t, s, src, "r", ko, kk)

		_, err = s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "k", Key: "table", Record: nil})
		require.NoError(t, err)
		_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: parent, Exists: false})
		require.NoError(t, err)

		byKey := targetsByKey(t, s, "f")
		require.Len(t, byKey, 1)
		require.Contains(t, byKey, "other")
		owners, err := s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{ko, kk}})
		require.NoError(t, err)
		require.Len(t, owners, 1)
		require.Equal(t, kk, owners[0].OwnerKey)
		exists, err := s.OwnerExists(ctx, statestore.OwnerExistsParams{TargetID: parent})
		require.NoError(t, err)
		require.False(t, exists, "a dropped target's states have no owner")
		exists, err = s.OwnerExists(ctx, statestore.OwnerExistsParams{TargetID: keep})
		require.NoError(t, err)
		require.True(t, exists)

		// A target created again under the same key gets a new id.
		again := stageCommit(t, s, "f", "table", 0)
		require.NotEqual(t, parent, again)
	})

	t.Run("PrecommitAndCommit", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		tid := stageCommit(t, s, "f", "t", 0)
		own := func(k string) statestore.OwnerKey {
			return statestore.OwnerKey{TargetID: tid, KeyHash: statestore.HashKey(k)}
		}
		staged := statestore.EncodeSections([]statestore.Section{{TargetID: tid, Gen: 0, Entries: []statestore.Entry{{Key: "a", Record: []byte("r1")}}}})

		params := statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{
			{Key: "r1", Staged: staged},
			{Key: "r2", Staged: staged},
		}}
		ids, err := s.Precommit(ctx, params)
		require.NoError(t, err)
		require.Len(t, ids, 2)
		require.NotEqual(t, ids[0], ids[1])

		// Precommit is idempotent: the same rows are found by key.
		again, err := s.Precommit(ctx, params)
		require.NoError(t, err)
		require.Equal(t, ids, again)

		metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r1", "r2", "missing"}})
		require.NoError(t, err)
		require.Len(t, metas, 2)
		for _, m := range metas {
			require.Nil(t, m.Ordinal)
			require.True(t, m.Staged)
			require.Zero(t, m.Gen)
		}

		// A precommit records no ownership: a commit does.
		owners, err := s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{own("a"), own("b")}})
		require.NoError(t, err)
		require.Empty(t, owners)
		earlier := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: earlier, Rows: []statestore.CommitRow{
			{ID: ids[0], NewOwners: []statestore.OwnerKey{own("a")}},
			{ID: ids[1], NewOwners: []statestore.OwnerKey{own("a"), own("b")}},
		}}))
		// Recording an ownership again changes nothing.
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: earlier, Rows: []statestore.CommitRow{
			{ID: ids[0], NewOwners: []statestore.OwnerKey{own("a")}},
		}}))
		owners, err = s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{own("a"), own("b"), own("c")}})
		require.NoError(t, err)
		require.ElementsMatch(t, []statestore.Owner{
			{OwnerKey: own("a"), RowID: ids[0]},
			{OwnerKey: own("a"), RowID: ids[1]},
			{OwnerKey: own("b"), RowID: ids[1]},
		}, owners)

		// Precommit an existing row by id: the staged blob is replaced.
		staged2 := statestore.EncodeSections([]statestore.Section{{TargetID: tid, Gen: 0, Entries: []statestore.Entry{{Key: "a", Deleting: true}}}})
		_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{ID: ids[0], Key: "r1", Staged: staged2}}})
		require.NoError(t, err)
		loaded, err := s.RowLoad(ctx, statestore.RowLoadParams{IDs: []int64{ids[0], 999999}})
		require.NoError(t, err)
		require.Len(t, loaded, 1)
		require.Equal(t, staged2, loaded[0].Staged)
		require.Nil(t, loaded[0].Tracking)

		ord := int64(42)
		tracking := statestore.EncodeSections([]statestore.Section{{TargetID: tid, Gen: 3, Entries: []statestore.Entry{{Key: "b", Record: []byte{}}}}})
		at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
		err = s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Rows: []statestore.CommitRow{{
			ID: ids[1], Ordinal: &ord, ContentFP: []byte("cfp"), LogicFP: []byte("lfp"), Gen: 3,
			Tracking: tracking, DroppedOwners: []statestore.OwnerKey{own("a")},
		}}})
		require.NoError(t, err)

		metas, err = s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r2"}})
		require.NoError(t, err)
		require.Len(t, metas, 1)
		m := metas[0]
		require.Equal(t, ids[1], m.ID)
		require.Equal(t, "r2", m.Key)
		require.Equal(t, &ord, m.Ordinal)
		require.Equal(t, []byte("cfp"), m.ContentFP)
		require.Equal(t, []byte("lfp"), m.LogicFP)
		require.Equal(t, int64(3), m.Gen)
		require.False(t, m.Staged)
		loaded, err = s.RowLoad(ctx, statestore.RowLoadParams{IDs: []int64{ids[1]}})
		require.NoError(t, err)
		require.Equal(t, tracking, loaded[0].Tracking)
		require.Nil(t, loaded[0].Staged)

		owners, err = s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{own("a"), own("b")}})
		require.NoError(t, err)
		require.ElementsMatch(t, []statestore.Owner{
			{OwnerKey: own("a"), RowID: ids[0]},
			{OwnerKey: own("b"), RowID: ids[1]},
		}, owners)

		st, err := s.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: src})
		require.NoError(t, err)
		require.Equal(t, int64(2), st.Rows)
		require.Zero(t, st.Failing)
		require.True(t, at.Equal(st.LastProcessedAt), "%s", st.LastProcessedAt)

		// An ordinal bump touches only the ordinal.
		ord2 := int64(43)
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Bumps: []statestore.OrdinalBump{{ID: ids[1], Ordinal: &ord2}}}))
		metas, err = s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r2"}})
		require.NoError(t, err)
		require.Equal(t, &ord2, metas[0].Ordinal)
		require.Equal(t, []byte("cfp"), metas[0].ContentFP)

		// Deleting a row drops it and its ownership.
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at, Deletes: []statestore.RowDelete{{ID: ids[1], Owners: []statestore.OwnerKey{own("b")}}}}))
		metas, err = s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r1", "r2"}})
		require.NoError(t, err)
		require.Len(t, metas, 1)
		require.Equal(t, "r1", metas[0].Key)
		owners, err = s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{own("b")}})
		require.NoError(t, err)
		require.Empty(t, owners)
	})

	t.Run("RowFailures", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{Key: "old"}}})
		require.NoError(t, err)
		ord := int64(1)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: t0, Rows: []statestore.CommitRow{{ID: ids[0], Ordinal: &ord}}}))

		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: t0.Add(time.Second), Failed: []statestore.RowFailed{
			{ID: ids[0], Key: "old", Message: "boom 1"},
			{Key: "new", Message: "fetch failed"},
		}}))
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: t0.Add(2 * time.Second), Failed: []statestore.RowFailed{
			{ID: ids[0], Key: "old", Message: "boom 2"},
		}}))

		errs, err := s.RowFailures(ctx, statestore.RowFailuresParams{SourceID: src, Limit: 10})
		require.NoError(t, err)
		require.Len(t, errs, 2)
		require.Equal(t, "old", errs[0].Key)
		require.Equal(t, "boom 2", errs[0].Message)
		require.Equal(t, int64(2), errs[0].Count)
		require.True(t, t0.Add(2*time.Second).Equal(errs[0].At))
		require.Equal(t, "new", errs[1].Key)
		require.Equal(t, int64(1), errs[1].Count)

		// The failure leaves the committed ordinal; a new row has none.
		metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"old", "new"}})
		require.NoError(t, err)
		require.Len(t, metas, 2)
		for _, m := range metas {
			if m.Key == "old" {
				require.Equal(t, &ord, m.Ordinal)
				require.Equal(t, int64(2), m.ErrorCount)
			} else {
				require.Nil(t, m.Ordinal)
				require.Equal(t, int64(1), m.ErrorCount)
			}
		}
		st, err := s.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: src})
		require.NoError(t, err)
		require.Equal(t, int64(1), st.Rows, "the new row never committed an update")
		require.Equal(t, int64(2), st.Failing)
		only, err := s.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: src, FailingOnly: true})
		require.NoError(t, err)
		require.Equal(t, statestore.SourceStatus{Failing: 2}, only, "the failing rows alone")

		// A successful commit clears the failure.
		require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: t0.Add(3 * time.Second), Rows: []statestore.CommitRow{{ID: ids[0], Ordinal: &ord}}}))
		errs, err = s.RowFailures(ctx, statestore.RowFailuresParams{SourceID: src, Limit: 10})
		require.NoError(t, err)
		require.Len(t, errs, 1)
		require.Equal(t, "new", errs[0].Key)
	})

	t.Run("LookupAndScanMany", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		other, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "other"})
		require.NoError(t, err)

		const n = 1234
		rows := make([]statestore.PrecommitRow, n)
		keys := make([]string, n)
		for i := range rows {
			keys[i] = fmt.Sprintf(`{"id":%d}`, i)
			rows[i] = statestore.PrecommitRow{Key: keys[i]}
		}
		ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
		require.NoError(t, err)
		_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: other, Rows: rows[:10]})
		require.NoError(t, err)

		metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: keys})
		require.NoError(t, err)
		require.Len(t, metas, n)
		loaded, err := s.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
		require.NoError(t, err)
		require.Len(t, loaded, n)

		var (
			scanned []int64
			after   int64
		)
		for {
			page, err := s.RowScan(ctx, statestore.RowScanParams{SourceID: src, AfterID: after, Limit: 100})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			require.LessOrEqual(t, len(page), 100)
			for _, m := range page {
				require.Greater(t, m.ID, after)
				after = m.ID
				scanned = append(scanned, m.ID)
			}
		}
		require.ElementsMatch(t, ids, scanned)
		count, err := s.RowCount(ctx, statestore.RowCountParams{SourceID: src})
		require.NoError(t, err)
		require.Equal(t, int64(len(ids)), count)
		none, err := s.RowCount(ctx, statestore.RowCountParams{SourceID: src + 1000})
		require.NoError(t, err)
		require.Zero(t, none)
	})

	t.Run("ConcurrentReadsDuringWrites", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for g := range 4 {
			wg.Go(func() {
				for i := range 20 {
					key := fmt.Sprintf("k%d", (g*20+i)%7)
					if _, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{key}}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for i := range 20 {
			ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{Key: fmt.Sprintf("k%d", i%7)}}})
			require.NoError(t, err)
			ord := int64(i)
			require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Rows: []statestore.CommitRow{{ID: ids[0], Ordinal: &ord}}}))
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})

	t.Run("FlowDrop", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		ctx := t.Context()
		for _, flow := range []string{"f", "g"} {
			_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: flow})
			require.NoError(t, err)
			src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: flow, Name: "s"})
			require.NoError(t, err)
			tid := stageCommit(t, s, flow, "t", 0)
			ownRow(t, s, src, "r", statestore.OwnerKey{TargetID: tid, KeyHash: statestore.HashKey("k")})
		}
		fTargets := targetsByKey(t, s, "f")
		require.NoError(t, s.FlowDrop(ctx, statestore.FlowDropParams{Flow: "f"}))

		require.Empty(t, targetsByKey(t, s, "f"))
		require.Len(t, targetsByKey(t, s, "g"), 1)
		owners, err := s.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{{TargetID: fTargets["t"].ID, KeyHash: statestore.HashKey("k")}}})
		require.NoError(t, err)
		require.Empty(t, owners)
		// The source starts afresh.
		src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
		require.NoError(t, err)
		metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r"}})
		require.NoError(t, err)
		require.Empty(t, metas)
		gSrc, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "g", Name: "s"})
		require.NoError(t, err)
		metas, err = s.RowLookup(ctx, statestore.RowLookupParams{SourceID: gSrc, Keys: []string{"r"}})
		require.NoError(t, err)
		require.Len(t, metas, 1)
	})
}

// ownRow inserts row key of source src and commits it owning keys.
func ownRow(t *testing.T, s statestore.Store, src int64, key string, keys ...statestore.OwnerKey) int64 {
	t.Helper()
	ids, err := s.Precommit(t.Context(), statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{Key: key}}})
	require.NoError(t, err)
	require.NoError(t, s.Commit(t.Context(), statestore.CommitParams{SourceID: src, At: time.Now(), Rows: []statestore.CommitRow{{ID: ids[0], NewOwners: keys}}}))
	return ids[0]
}

func stageCommit(t *testing.T, s statestore.Store, flow, key string, parent int64) int64 {
	t.Helper()
	tg, err := s.TargetStage(t.Context(), statestore.TargetStageParams{Flow: flow, Kind: "k", Key: key, ParentID: parent, Record: []byte(key)})
	require.NoError(t, err)
	require.Equal(t, parent, tg.ParentID)
	_, err = s.TargetCommit(t.Context(), statestore.TargetCommitParams{Flow: flow, ID: tg.ID, Exists: true, Record: []byte(key)})
	require.NoError(t, err)
	return tg.ID
}

func targetsByKey(t *testing.T, s statestore.Store, flow string) map[string]statestore.Target {
	t.Helper()
	list, err := s.TargetList(t.Context(), statestore.TargetListParams{Flow: flow})
	require.NoError(t, err)
	out := make(map[string]statestore.Target, len(list))
	for _, tg := range list {
		out[tg.Key] = tg
	}
	return out
}
