package postgres

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/statestoretest"
)

// outboxTarget creates a committed target of flow f, an attachment of
// parent when parent is not 0.
func outboxTarget(t *testing.T, s statestore.Store, key string, parent int64) int64 {
	t.Helper()
	ctx := t.Context()
	tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: key, ParentID: parent, Record: []byte("v1")})
	require.NoError(t, err)
	_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v1")})
	require.NoError(t, err)
	return tg.ID
}

// value shows a change's value, nil apart from empty.
func value(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", b)
}

// outboxCases runs outbox calls the suite leaves out (a commit of many
// changes, keys of any bytes, empty values, changes of a target that is
// gone, a target dropped) and returns what the store kept.
func outboxCases(t *testing.T, s statestore.Store) []string {
	t.Helper()
	ctx := t.Context()
	_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	t1 := outboxTarget(t, s, "t1", 0)
	att := outboxTarget(t, s, "t1/index", t1)
	t2 := outboxTarget(t, s, "t2", 0)
	var out []string
	show := func(cs []statestore.Change) {
		for _, c := range cs {
			target := map[int64]string{t1: "t1", att: "att", t2: "t2"}[c.TargetID]
			out = append(out, fmt.Sprintf("%s %q %s#%d old %s new %s attempts %d", target, c.Key, c.RowKey, c.Seq, value(c.Old), value(c.New), c.Attempts))
		}
	}

	// More changes than one SQLite insert takes, in an order the ids
	// must keep; the first change given twice; a change of a target
	// that does not exist.
	var cs []statestore.Change
	for i := range 300 {
		cs = append(cs, statestore.Change{TargetID: t1, SourceID: src, RowKey: fmt.Sprint("r", i%7), Key: fmt.Sprint("k", (i*37)%11), Seq: int64(i + 1), New: []byte(fmt.Sprint(i))})
	}
	cs = append(cs, cs[0],
		statestore.Change{TargetID: t2, SourceID: src, RowKey: "r", Key: "\x00\xff é", Seq: 1, Old: []byte{}, New: nil},
		statestore.Change{TargetID: att, SourceID: src, RowKey: "r", Key: "i", Seq: 1, New: []byte("x")},
		statestore.Change{TargetID: t2 + 1000, SourceID: src, RowKey: "r", Key: "gone", Seq: 1, New: []byte("x")},
	)
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Changes: cs}))
	st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t2 + 1000, t2, att, t1}})
	require.NoError(t, err)
	for _, x := range st {
		out = append(out, fmt.Sprintf("status %d: pending %d failing %d oldest %s failed %v", x.TargetID-t1, x.Pending, x.Failing, x.OldestAt, x.Failed != nil))
	}

	// The heads of the 11 states of t1, then each state's next.
	heads, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2, att}, Worker: "w", Limit: -1, TTL: time.Minute})
	require.NoError(t, err)
	show(heads)
	require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "w", Change: statestore.OutboxRef{ID: heads[1].ID, Fence: heads[1].Fence}, Error: "bad\x00\xff"}))
	lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w", Changes: []statestore.OutboxRef{{ID: heads[0].ID, Fence: heads[0].Fence}, {ID: heads[1].ID, Fence: heads[1].Fence}}})
	require.NoError(t, err)
	out = append(out, fmt.Sprintf("lost %d", len(lost)))
	next, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{t1}, Worker: "w", Limit: 3, TTL: time.Minute})
	require.NoError(t, err)
	show(next)
	st, err = s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1}})
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.NotNil(t, st[0].Failed)
	out = append(out, fmt.Sprintf("failed %q %q next %v", st[0].Failed.Key, []byte(st[0].Failed.LastError)[:3], st[0].Failed.NextAt.IsZero()))

	// A dropped target goes with its changes and its attachment's.
	_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: t1, Exists: false})
	require.NoError(t, err)
	st, err = s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1, att, t2}})
	require.NoError(t, err)
	for _, x := range st {
		out = append(out, fmt.Sprintf("after the drop %d: pending %d", x.TargetID-t1, x.Pending))
	}
	return out
}

// TestOutboxMatchesSQLite checks what the suite leaves out on both
// drivers: they must keep the same.
func TestOutboxMatchesSQLite(t *testing.T) {
	t.Parallel()
	got := matchSQLite(t, outboxCases)
	require.Contains(t, got, "status 0: pending 300 failing 0 oldest 2026-01-01 00:00:00 +0000 UTC failed false", "a change given twice is kept once")
	require.Contains(t, got, "after the drop 2: pending 1")
	require.Contains(t, got, `t2 "\x00\xff é" r#1 old "" new nil attempts 0`, "any bytes as a key, an empty value apart from none")
	require.Contains(t, got, `t1 "k4" r1#2 old nil new "1" attempts 1`, "a retry without NextAt is due at once")
	require.Len(t, got, 3+13+1+2+1+1)
	t.Logf("%q", got)
}

// TestOutboxTakersShareNoState runs workers taking and delivering at once:
// each change is delivered once, each state's in commit order, and never
// two of one state at a time.
func TestOutboxTakersShareNoState(t *testing.T) {
	t.Parallel()
	s, _, _ := openStore(t, nil)
	ctx := t.Context()
	_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	tg := outboxTarget(t, s, "t", 0)
	const states, perState = 20, 10
	var cs []statestore.Change
	for seq := range perState {
		for k := range states {
			cs = append(cs, statestore.Change{TargetID: tg, SourceID: src, RowKey: "r", Key: fmt.Sprint("k", k), Seq: int64(seq + 1)})
		}
	}
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(), Changes: cs}))

	var (
		mu        sync.Mutex
		busy      = map[string]bool{}
		delivered = map[string][]int64{}
		wg        sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			worker := fmt.Sprint("w", w)
			for idle := 0; idle < 20; {
				got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{tg}, Worker: worker, Limit: 3, TTL: time.Minute})
				if !assertNoError(t, err) {
					return
				}
				if len(got) == 0 {
					idle++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				idle = 0
				mu.Lock()
				for _, c := range got {
					if busy[c.Key] {
						t.Errorf("%s took %s#%d while another worker held its state", worker, c.Key, c.Seq)
					}
					busy[c.Key] = true
					delivered[c.Key] = append(delivered[c.Key], c.Seq)
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
				refs := make([]statestore.OutboxRef, len(got))
				mu.Lock()
				for i, c := range got {
					busy[c.Key] = false
					refs[i] = statestore.OutboxRef{ID: c.ID, Fence: c.Fence}
				}
				mu.Unlock()
				lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: worker, Changes: refs})
				if !assertNoError(t, err) {
					return
				}
				if len(lost) > 0 {
					t.Errorf("%s lost %v", worker, lost)
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, delivered, states)
	for k, seqs := range delivered {
		require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, seqs, k)
	}
}

// assertNoError reports err, from any goroutine, and says whether there
// was none.
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// TestOutboxMigratesAnOlderSchema opens a schema of the version before the
// outbox, holding a flow and its target, and commits a change to it.
func TestOutboxMigratesAnOlderSchema(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	ms, err := statestore.LoadMigrations(migrationFS, "migrations")
	require.NoError(t, err)
	q := newQueries(schema)
	conn := connect(t, base)
	_, err = conn.Exec(ctx, q.replace(`CREATE TABLE {{migrations}} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`))
	require.NoError(t, err)
	for _, m := range ms[:8] {
		_, err := conn.Exec(ctx, q.replace(m.SQL))
		require.NoError(t, err, m.Name)
		_, err = conn.Exec(ctx, `INSERT INTO `+q.migrations+` (version, name, applied_at) VALUES ($1, $2, now())`, m.Version, m.Name)
		require.NoError(t, err)
	}
	_, err = conn.Exec(ctx, q.replace(`INSERT INTO {{flows}} (name, created_at) VALUES ('f', now());
		INSERT INTO {{sources}} (flow, name) VALUES ('f', 's');
		INSERT INTO {{targets}} (flow, kind, key, committed, record, updated_at) VALUES ('f', 'table', 't', true, 'v1', now())`))
	require.NoError(t, err)

	s, err := Open(ctx, withParams(t, base, map[string]string{"search_path": nowhere}), schema)
	require.NoError(t, err)
	defer s.Close()
	var version int
	require.NoError(t, conn.QueryRow(ctx, `SELECT max(version) FROM `+q.migrations).Scan(&version))
	require.Equal(t, len(ms), version)
	statestoretest.OutboxAfterMigration(t, s)
	rows, err := conn.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'tidemark_outbox' ORDER BY indexname`, schema)
	require.NoError(t, err)
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"tidemark_outbox_failing", "tidemark_outbox_pkey", "tidemark_outbox_state", "tidemark_outbox_target_id_source_id_row_key_key_seq_key"}, indexes)
}
