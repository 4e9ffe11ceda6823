package redis

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/statestoretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a store of a fresh prefix, closed when the test finishes.
func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	url, prefix := redistest.Prefix(t)
	cfg.Prefix = prefix
	s, err := Open(t.Context(), url, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	statestoretest.Exercise(t, func(t *testing.T) statestore.Store {
		url, prefix := redistest.Prefix(t)
		s, err := Open(t.Context(), url+"?"+PrefixParam+"="+prefix, Config{})
		require.NoError(t, err)
		require.Equal(t, prefix, s.Prefix(), "the URL names the prefix")
		return s
	})
}

func TestCoordinatorConformance(t *testing.T) {
	t.Parallel()
	statestoretest.ExerciseCoordinator(t, func(t *testing.T) statestore.Store {
		url, prefix := redistest.Prefix(t)
		s, err := Open(t.Context(), url, Config{Prefix: prefix})
		require.NoError(t, err)
		return s
	})
}

// TestPassesForgotten runs more passes of a source than it keeps: a
// finished pass keeps its counts but none of its claims' keys, the
// oldest passes go, and dropping the flow leaves no key of any pass.
func TestPassesForgotten(t *testing.T) {
	t.Parallel()
	s := open(t, Config{})
	ctx := t.Context()
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	const long = time.Minute
	var ids []int64
	for range passHistory + 5 {
		p, err := s.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long})
		require.NoError(t, err)
		require.True(t, p.Lister)
		ids = append(ids, p.ID)
		lease := statestore.PassLeaseParams{PassID: p.ID, Worker: "a", Fence: p.Fence, TTL: long}
		require.NoError(t, s.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease,
			Items: []statestore.ClaimItem{{Key: "k1"}, {Key: "k2", Listed: []byte{}}}}))
		cs, err := s.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: p.ID, Worker: "a", Limit: 1, TTL: long})
		require.NoError(t, err)
		require.Equal(t, []statestore.Claim{{Key: "k1", Fence: 1}}, cs, "a nil listed entry stays nil")
		lost, err := s.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: p.ID, Worker: "a", Claims: []statestore.ClaimRef{{Key: "k1", Fence: 1}}})
		require.NoError(t, err)
		require.Empty(t, lost)
		require.NoError(t, s.PassListed(ctx, lease))
		require.NoError(t, s.PassFinish(ctx, lease))
	}
	for _, id := range ids[:5] {
		_, err := s.PassProgress(ctx, statestore.PassProgressParams{PassID: id})
		require.ErrorIs(t, err, statestore.ErrNotFound, "pass %d is forgotten", id)
	}
	for _, id := range ids[5:] {
		pr, err := s.PassProgress(ctx, statestore.PassProgressParams{PassID: id})
		require.NoError(t, err)
		require.Equal(t, statestore.PassProgress{Pending: 1, Done: 1, Listed: true, Finished: true}, pr)
	}
	passKeys := func() []string {
		keys, err := s.rdb.Keys(ctx, s.p+":p:*").Result()
		require.NoError(t, err)
		return keys
	}
	require.Len(t, passKeys(), passHistory, "the hashes of the passes kept, and nothing of their claims")

	last, err := s.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long})
	require.NoError(t, err)
	lease := statestore.PassLeaseParams{PassID: last.ID, Worker: "a", Fence: last.Fence, TTL: long}
	require.NoError(t, s.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: []statestore.ClaimItem{{Key: "k1"}}}))
	_, err = s.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: last.ID, Worker: "a", Limit: 1, TTL: long})
	require.NoError(t, err)
	require.NoError(t, s.FlowDrop(ctx, statestore.FlowDropParams{Flow: "f"}))
	require.Empty(t, passKeys())
	_, err = s.PassJoin(ctx, statestore.PassJoinParams{SourceID: src, Worker: "a", TTL: long})
	require.ErrorIs(t, err, statestore.ErrNotFound, "the source went with its flow")
	require.ErrorIs(t, s.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: []statestore.ClaimItem{{Key: "k2"}}}),
		statestore.ErrFenced, "a lister of a dropped flow writes nothing")
	require.Empty(t, passKeys())
}

func TestOpen(t *testing.T) {
	t.Parallel()
	url, prefix := redistest.Prefix(t)
	ctx := t.Context()

	ok, err := Exists(ctx, url, prefix)
	require.NoError(t, err)
	require.False(t, ok, "nothing there yet")
	s, err := Open(ctx, url, Config{Prefix: prefix})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ok, err = Exists(ctx, url+"?prefix="+prefix, "")
	require.NoError(t, err)
	require.True(t, ok)

	// A store of a later layout is refused.
	rdb := goredis.NewClient(&goredis.Options{Addr: s.rdb.Options().Addr, DB: s.rdb.Options().DB})
	defer rdb.Close()
	require.NoError(t, rdb.HSet(ctx, "{"+prefix+"}:meta", "version", layoutVersion+1).Err())
	_, err = Open(ctx, url, Config{Prefix: prefix})
	require.ErrorContains(t, err, "newer than this Tidemark knows")

	for name, c := range map[string]struct {
		url  string
		cfg  Config
		want string
	}{
		"bad prefix":   {url, Config{Prefix: "a*b"}, `invalid prefix "a*b": character '*' at byte 1`},
		"long prefix":  {url, Config{Prefix: fmt.Sprintf("%065d", 0)}, "1 to 64 characters long"},
		"two prefixes": {url + "?prefix=a", Config{Prefix: "b"}, `the URL's prefix "a" and the configured prefix "b" differ`},
		"short TTL":    {url, Config{Prefix: prefix, LockTTL: time.Millisecond}, "LockTTL must be at least 100ms, got 1ms"},
		"bad option":   {url + "?bogus=1", Config{}, "unexpected option: bogus"},
		"bad database": {"redis://127.0.0.1:6379/x", Config{}, `invalid database number: "x"`},
	} {
		_, err := Open(ctx, c.url, c.cfg)
		require.ErrorContains(t, err, c.want, name)
	}
}

// TestLockExpires is a holder that died: its lock is no longer renewed,
// expires after its TTL, and another takes it; the first one's Check
// then fails, and its Release leaves the new holder's lock alone.
func TestLockExpires(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	s := open(t, Config{LockTTL: ttl})
	ctx := t.Context()
	first, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	first.(*lock).stopHeartbeat()
	_, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked, "held until its TTL runs out")

	var second statestore.Lock
	require.Eventually(t, func() bool {
		second, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
		return err == nil
	}, 5*ttl, ttl/10, "the lock expires")
	defer second.Release()
	require.ErrorIs(t, first.Check(ctx), statestore.ErrLockLost)
	require.ErrorIs(t, first.Check(ctx), statestore.ErrLockLost, "a lock once lost stays lost")
	first.Release()
	require.NoError(t, second.Check(ctx), "the stale holder's release left the new lock")
	_, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked)
}

// TestLockRenewed holds a lock for several TTLs: the heartbeat keeps it.
// It has a server of its own: on the shared one, another test's long
// script (TestManyRows commits 5000 rows in one) holds the server, and
// the heartbeat with it, for as long as the TTL.
func TestLockRenewed(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	url, _ := redistest.Start(t)
	ctx := t.Context()
	s, err := Open(ctx, url, Config{LockTTL: ttl})
	require.NoError(t, err)
	defer s.Close()
	l, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer l.Release()
	time.Sleep(4 * ttl) // the heartbeat, not a Check, must renew it meanwhile
	_, err = s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked)
	require.NoError(t, l.Check(ctx))
}

// TestLockKeyGone is a lock whose key went, as in a restart of a server
// that keeps nothing: Check says it is lost, though nobody took it.
func TestLockKeyGone(t *testing.T) {
	t.Parallel()
	s := open(t, Config{})
	ctx := t.Context()
	l, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer l.Release()
	require.NoError(t, s.rdb.Del(ctx, s.p+":lock:f").Err())
	require.ErrorIs(t, l.Check(ctx), statestore.ErrLockLost)
	again, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	again.Release()
	require.ErrorIs(t, l.Check(ctx), statestore.ErrLockLost)
}

// TestConnectionDrops drops the connection in the middle of calls, the
// request sent and unanswered, and points a store at a closed port: the
// errors are retryable, and a commit happened whole or not at all.
func TestConnectionDrops(t *testing.T) {
	t.Parallel()
	url, prefix := redistest.Prefix(t)
	proxy, proxied := redistest.NewProxy(t, url)
	ctx := t.Context()
	s, err := Open(ctx, proxied, Config{Prefix: prefix})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	l, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer l.Release()

	proxy.DropNext()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.Error(t, err)
	require.True(t, retry.Is(err), "retryable: %v", err)

	proxy.DropNext()
	err = l.Check(ctx)
	require.True(t, retry.Is(err), "a check that cannot reach the server is retryable: %v", err)
	require.NoError(t, l.Check(ctx), "and the lock is held still")

	const n = 1000
	rows := make([]statestore.PrecommitRow, n)
	for i := range rows {
		rows[i] = statestore.PrecommitRow{Key: fmt.Sprint(i), Staged: []byte("staged")}
	}
	proxy.DropNext()
	_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
	require.True(t, retry.Is(err), "retryable: %v", err)
	count, err := s.RowCount(ctx, statestore.RowCountParams{SourceID: src})
	require.NoError(t, err)
	require.Zero(t, count, "the request was dropped before the server saw it")
	ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
	require.NoError(t, err, "the retry goes through")

	commit := statestore.CommitParams{SourceID: src, At: time.Now()}
	for _, id := range ids {
		commit.Rows = append(commit.Rows, statestore.CommitRow{ID: id, Tracking: []byte("t")})
	}
	proxy.DropNext()
	require.True(t, retry.Is(s.Commit(ctx, commit)))
	st, err := s.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: src})
	require.NoError(t, err)
	require.Zero(t, st.Rows, "none of the rows committed")

	closed, err := Open(ctx, "redis://127.0.0.1:1/0", Config{})
	if err == nil {
		closed.Close()
	}
	require.True(t, retry.Is(err), "a refused connection is retryable: %v", err)
}

// TestServerRestart stops a throwaway server and starts another in its
// place, empty, as a restart of a server that keeps nothing on disk: a
// call meanwhile is retryable, and the lock is lost.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	url, stop := redistest.Start(t)
	proxy, proxied := redistest.NewProxy(t, url)
	ctx := t.Context()
	s, err := Open(ctx, proxied, Config{})
	require.NoError(t, err)
	defer s.Close()
	l, err := s.FlowLock(ctx, statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer l.Release()

	stop()
	proxy.DropAll()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.True(t, retry.Is(err), "retryable: %v", err)
	require.True(t, retry.Is(l.Check(ctx)))

	fresh, _ := redistest.Start(t)
	proxy.Retarget(fresh)
	require.ErrorIs(t, l.Check(ctx), statestore.ErrLockLost, "the new server has no lock")
}

// TestManyRows commits a large batch and reads it back.
func TestManyRows(t *testing.T) {
	t.Parallel()
	s := open(t, Config{})
	ctx := t.Context()
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	const n = 5000
	rows := make([]statestore.PrecommitRow, n)
	keys := make([]string, n)
	for i := range rows {
		keys[i] = fmt.Sprintf("key-%05d", i)
		rows[i] = statestore.PrecommitRow{Key: keys[i], Staged: []byte("staged")}
	}
	start := time.Now()
	ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
	require.NoError(t, err)
	precommit := time.Since(start)
	commit := statestore.CommitParams{SourceID: src, At: time.Now()}
	for i, id := range ids {
		ord := int64(i)
		owner := statestore.OwnerKey{TargetID: 1, KeyHash: statestore.HashKey(keys[i])}
		commit.Rows = append(commit.Rows, statestore.CommitRow{ID: id, Ordinal: &ord, ContentFP: []byte("c"), LogicFP: []byte("l"),
			Tracking: make([]byte, 100), NewOwners: []statestore.OwnerKey{owner}})
	}
	start = time.Now()
	require.NoError(t, s.Commit(ctx, commit))
	t.Logf("%d rows: precommit %s, commit %s (%.0f rows/s)", n, precommit, time.Since(start), n/time.Since(start).Seconds())
	metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: keys})
	require.NoError(t, err)
	require.Len(t, metas, n)
	for i, m := range metas {
		require.Equal(t, int64(i), *m.Ordinal)
		require.False(t, m.Staged)
	}
	st, err := s.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: src})
	require.NoError(t, err)
	require.Equal(t, int64(n), st.Rows)
	page, err := s.RowPage(ctx, statestore.RowPageParams{SourceID: src, After: keys[n-3], Limit: 10})
	require.NoError(t, err)
	require.Len(t, page, 2)
	require.Equal(t, keys[n-2], page[0].Key)
}

// TestOutboxKeysForgotten checks that the outbox's keys go with their
// changes: when delivered, with a target dropped by TargetCommit, with
// the flow; and that a change of a target that does not exist is left out.
func TestOutboxKeysForgotten(t *testing.T) {
	t.Parallel()
	s := open(t, Config{})
	ctx := t.Context()
	_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	var targets []int64
	for _, key := range []string{"t1", "t2"} {
		tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: key, Record: []byte("v")})
		require.NoError(t, err)
		_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v")})
		require.NoError(t, err)
		targets = append(targets, tg.ID)
	}
	t1, t2 := targets[0], targets[1]
	outboxKeys := func() []string {
		var out []string
		for _, pattern := range []string{":c:*", ":t:*:out", ":t:*:fail", ":t:*:dup", ":t:*:q:*", ":t:*:due", ":t:*:wait"} {
			keys, err := s.rdb.Keys(ctx, s.p+pattern).Result()
			require.NoError(t, err)
			out = append(out, keys...)
		}
		return out
	}
	changes := func(tid int64, keys ...string) []statestore.Change {
		var out []statestore.Change
		for _, k := range keys {
			out = append(out, statestore.Change{TargetID: tid, SourceID: src, RowKey: "r:" + k, Key: k, Seq: 1, New: []byte{}})
		}
		return out
	}
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(),
		Changes: changes(t1+t2+1, "x")}), "a change of no target")
	require.Empty(t, outboxKeys(), "is left out")

	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(),
		Changes: append(changes(t1, "a", "b:c"), changes(t2, "a")...)}))
	take := statestore.OutboxTakeParams{TargetIDs: []int64{t1, t2}, Worker: "w", Limit: 10, TTL: time.Minute}
	got, err := s.OutboxTake(ctx, take)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, []byte{}, got[0].New, "an empty value is not nil")
	require.NoError(t, s.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: "w", Change: statestore.OutboxRef{ID: got[1].ID, Fence: got[1].Fence},
		Error: "e", NextAt: time.Now().Add(time.Hour)}))
	lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: "w", Changes: []statestore.OutboxRef{{ID: got[2].ID, Fence: got[2].Fence}}})
	require.NoError(t, err)
	require.Empty(t, lost)
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: time.Now(),
		Changes: changes(t2, "a")}), "delivered, the change is kept again")
	st, err := s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t2, t1, t2}})
	require.NoError(t, err)
	require.Len(t, st, 2)
	require.Equal(t, []int64{t1, t2}, []int64{st[0].TargetID, st[1].TargetID})
	require.Equal(t, int64(2), st[0].Pending)
	require.Equal(t, int64(1), st[0].Failing)
	require.Equal(t, int64(1), st[1].Pending)

	_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: t1, Exists: false})
	require.NoError(t, err)
	st, err = s.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: []int64{t1, t2}})
	require.NoError(t, err)
	require.Len(t, st, 1, "a dropped target's changes go with it")
	require.Equal(t, t2, st[0].TargetID)
	for _, k := range outboxKeys() {
		require.NotContains(t, k, fmt.Sprintf(":t:%d:", t1))
	}
	require.Len(t, outboxKeys(), 5, "t2's one change: its hash, out, dup, queue and due")

	require.NoError(t, s.FlowDrop(ctx, statestore.FlowDropParams{Flow: "f"}))
	require.Empty(t, outboxKeys())
}

// TestOutboxWorkersShare drains an outbox with workers taking at once:
// each change is delivered once, and those of a state in commit order.
func TestOutboxWorkersShare(t *testing.T) {
	t.Parallel()
	s := open(t, Config{})
	ctx := t.Context()
	_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	tg, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "table", Key: "t", Record: []byte("v")})
	require.NoError(t, err)
	_, err = s.TargetCommit(ctx, statestore.TargetCommitParams{Flow: "f", ID: tg.ID, Exists: true, Record: []byte("v")})
	require.NoError(t, err)
	const states, seqs = 20, 10
	for seq := int64(1); seq <= seqs; seq++ {
		cp := statestore.CommitParams{SourceID: src, At: time.Now()}
		for k := range states {
			key := fmt.Sprintf("k%02d", k)
			cp.Changes = append(cp.Changes, statestore.Change{TargetID: tg.ID, SourceID: src, RowKey: key, Key: key, Seq: seq})
		}
		require.NoError(t, s.Commit(ctx, cp))
	}
	var mu sync.Mutex
	last := map[string]int64{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			worker := fmt.Sprintf("w%d", w)
			for {
				got, err := s.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: []int64{tg.ID}, Worker: worker, Limit: 7, TTL: time.Minute})
				if !assert.NoError(t, err) || len(got) == 0 {
					return
				}
				refs := make([]statestore.OutboxRef, len(got))
				mu.Lock()
				for i, c := range got {
					assert.Equal(t, last[c.Key]+1, c.Seq, "%s: once each, in order", c.Key)
					last[c.Key] = c.Seq
					refs[i] = statestore.OutboxRef{ID: c.ID, Fence: c.Fence}
				}
				mu.Unlock()
				lost, err := s.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: worker, Changes: refs})
				assert.NoError(t, err)
				assert.Empty(t, lost)
			}
		})
	}
	wg.Wait()
	require.Len(t, last, states)
	for k, seq := range last {
		require.Equal(t, int64(seqs), seq, k)
	}
}

// serverError is an error reply of the server, as go-redis gives it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

func TestClassify(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]bool{
		"LOADING Redis is loading the dataset in memory":                                  true,
		"BUSY Redis is busy running a script. You can only call SCRIPT KILL":              true,
		"TRYAGAIN Multiple keys request during rehashing of slot":                         true,
		"CLUSTERDOWN The cluster is down":                                                 true,
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'": true,
		"READONLY You can't write against a read only replica.":                           true,
		"ERR max number of clients reached":                                               true,
		"OOM command not allowed when used memory > 'maxmemory'.":                         false,
		"WRONGTYPE Operation against a key holding the wrong kind of value":               false,
		"NOPERM this user has no permissions to run the 'evalsha' command":                false,
	} {
		err := classify(t.Context(), fmt.Errorf("committing: %w", serverError(msg)))
		require.Equal(t, want, retry.Is(err), msg)
	}
	require.True(t, retry.Is(classify(t.Context(), fmt.Errorf("x: %w", io.ErrUnexpectedEOF))))
	require.True(t, retry.Is(classify(t.Context(), goredis.ErrPoolTimeout)))
	require.False(t, retry.Is(classify(t.Context(), goredis.ErrClosed)), "a closed client stays closed")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.False(t, retry.Is(classify(ctx, io.EOF)), "not after the context ended")
}
