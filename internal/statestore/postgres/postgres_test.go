package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/sqlite"
	"github.com/tidemark/tidemark/internal/statestore/statestoretest"
)

// nowhere is a schema that does not exist. Stores under test connect with it
// as their search_path, so any statement that does not name the store's
// schema fails instead of finding (or creating) tables elsewhere.
const nowhere = "tidemark_test_nowhere"

// withParams returns the connection string base with params added.
func withParams(t *testing.T, base string, params map[string]string) string {
	t.Helper()
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		require.NoError(t, err)
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	var sb strings.Builder
	sb.WriteString(base)
	for k, v := range params {
		fmt.Fprintf(&sb, " %s='%s'", k, v)
	}
	return sb.String()
}

// openStore opens a store in a fresh schema, closed when the test ends.
func openStore(t *testing.T, params map[string]string) (*Store, string, string) {
	t.Helper()
	base, schema := pgtest.Schema(t)
	all := map[string]string{"search_path": nowhere}
	for k, v := range params {
		all[k] = v
	}
	s, err := Open(t.Context(), withParams(t, base, all), schema)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, base, schema
}

// connect opens a connection of its own to base, closed when the test ends.
func connect(t *testing.T, base string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), base)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestConformance(t *testing.T) {
	t.Parallel()
	statestoretest.Exercise(t, func(t *testing.T) statestore.Store {
		base, schema := pgtest.Schema(t)
		s, err := Open(t.Context(), withParams(t, base, map[string]string{"search_path": nowhere}), schema)
		require.NoError(t, err)
		return s
	})
}

func TestCoordinatorConformance(t *testing.T) {
	t.Parallel()
	statestoretest.ExerciseCoordinator(t, func(t *testing.T) statestore.Store {
		base, schema := pgtest.Schema(t)
		s, err := Open(t.Context(), withParams(t, base, map[string]string{"search_path": nowhere}), schema)
		require.NoError(t, err)
		return s
	})
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"tidemark", "_x", "a1_b2", strings.Repeat("a", 63), "public"} {
		got, err := checkSchema(name)
		require.NoError(t, err, name)
		require.Equal(t, name, got)
	}
	got, err := checkSchema("")
	require.NoError(t, err)
	require.Equal(t, DefaultSchema, got)

	for name, msg := range map[string]string{
		strings.Repeat("a", 64): "64 bytes long, PostgreSQL allows at most 63",
		"1abc":                  "starts with a digit",
		"Tidemark":              `character 'T' at byte 0`,
		"a-b":                   `character '-' at byte 1`,
		`a"b`:                   `character '"' at byte 1`,
		"a b":                   `character ' ' at byte 1`,
		"schéma":                `character 'é' at byte 3`,
		"pg_state":              "reserved for PostgreSQL's system schemas",
		"information_schema":    "reserved for PostgreSQL's system schemas",
	} {
		_, err := checkSchema(name)
		require.ErrorContains(t, err, fmt.Sprintf("invalid schema name %q: %s", name, msg))
	}
	_, err = Open(t.Context(), pgtest.DefaultURL, "Bad")
	require.ErrorContains(t, err, `invalid schema name "Bad"`)
	_, err = New(t.Context(), nil, "x")
	require.Error(t, err)
}

func TestSchemaRespectedAndVersioned(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	u := withParams(t, base, map[string]string{"search_path": nowhere})
	s, err := Open(ctx, u, schema)
	require.NoError(t, err)
	require.Equal(t, schema, s.Schema())
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	conn := connect(t, base)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"tidemark_claims", "tidemark_flows", "tidemark_locks", "tidemark_migrations", "tidemark_outbox", "tidemark_owners", "tidemark_passes", "tidemark_rows", "tidemark_sources", "tidemark_target_writers", "tidemark_targets"}, tables)
	var version int
	require.NoError(t, conn.QueryRow(ctx, `SELECT max(version) FROM `+pgx.Identifier{schema, "tidemark_migrations"}.Sanitize()).Scan(&version))
	require.Equal(t, migrationCount(t), version)

	// Reopening keeps the version and the data.
	s, err = Open(ctx, u, schema)
	require.NoError(t, err)
	again, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	require.Equal(t, src, again)
	require.NoError(t, s.Close())
	var applied int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "tidemark_migrations"}.Sanitize()).Scan(&applied))
	require.Equal(t, migrationCount(t), applied, "each migration applied once")

	// A newer schema is refused.
	_, err = conn.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "tidemark_migrations"}.Sanitize()+` (version, name, applied_at) VALUES (99, 'future', now())`)
	require.NoError(t, err)
	_, err = Open(ctx, u, schema)
	require.ErrorContains(t, err, "newer than this Tidemark knows")
	require.ErrorContains(t, err, schema)
	require.False(t, retry.Is(err))
}

func TestNewLeavesPoolOpen(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	pool, err := pgxpool.New(t.Context(), base)
	require.NoError(t, err)
	defer pool.Close()
	s, err := New(t.Context(), pool, schema)
	require.NoError(t, err)
	_, err = s.FlowGet(t.Context(), statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, pool.Ping(t.Context()))
}

func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	// Start without the schema so that the opens race to create it too.
	conn := connect(t, base)
	_, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)

	const n = 4
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		stores [n]*Store
		errs   [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(ctx, base, schema)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		_, err := stores[i].FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
		require.NoError(t, err)
		require.NoError(t, stores[i].Close())
	}
	var applied int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "tidemark_migrations"}.Sanitize()).Scan(&applied))
	require.Equal(t, migrationCount(t), applied, "each migration applied once")
}

// terminate ends the server processes of the connections named app and
// waits until they are gone.
func terminate(t *testing.T, conn *pgx.Conn, app string) {
	t.Helper()
	ctx := t.Context()
	// pg_terminate_backend is in the select list, not the WHERE clause,
	// where the planner could call it before filtering.
	rows, err := conn.Query(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
	require.NoError(t, err)
	killed, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	require.NoError(t, err)
	require.NotEmpty(t, killed, "no connection named %s", app)
	require.NotContains(t, killed, false)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var left int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&left))
		if left == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d connections named %s survive", left, app)
		time.Sleep(10 * time.Millisecond)
	}
}

// operations exercise each way the store talks to the server: a batch, a
// transaction, a query.
func operations(src int64) map[string]func(ctx context.Context, s *Store) error {
	return map[string]func(ctx context.Context, s *Store) error{
		"batch": func(ctx context.Context, s *Store) error {
			_, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{{Key: "r"}}})
			return err
		},
		"transaction": func(ctx context.Context, s *Store) error {
			_, err := s.TargetStage(ctx, statestore.TargetStageParams{Flow: "f", Kind: "k", Key: "t", Record: []byte("x")})
			return err
		},
		"query": func(ctx context.Context, s *Store) error {
			_, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r"}})
			return err
		},
	}
}

// TestTerminatedConnectionIsRetryable uses a pool that never pings the
// connections it hands out, so a call after pg_terminate_backend gets the
// dead connection: its error must be retryable, and the retry must succeed.
func TestTerminatedConnectionIsRetryable(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	app := schema // unique
	cfg, err := pgxpool.ParseConfig(withParams(t, base, map[string]string{"application_name": app, "search_path": nowhere}))
	require.NoError(t, err)
	cfg.MaxConns = 1
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	s, err := New(ctx, pool, schema)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	admin := connect(t, base)

	for name, op := range operations(src) {
		require.NoError(t, op(ctx, s), name)
		terminate(t, admin, app)
		err := op(ctx, s)
		require.Error(t, err, name)
		require.True(t, retry.Is(err), "%s: %v", name, err)
		t.Logf("%s after termination: %v", name, err)
		require.NoError(t, op(ctx, s), name)
	}
}

// TestTerminatedConnectionRecovers uses the pool Open creates: a call after
// pg_terminate_backend either fails retryably or succeeds on a connection
// the pool replaced, and retrying leaves a working store.
func TestTerminatedConnectionRecovers(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	app := schema
	s, err := Open(ctx, withParams(t, base, map[string]string{"application_name": app, "search_path": nowhere}), schema)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	admin := connect(t, base)
	policy := retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, MaxAttempts: 10}

	for name, op := range operations(src) {
		require.NoError(t, op(ctx, s), name)
		terminate(t, admin, app)
		if err := op(ctx, s); err != nil {
			require.True(t, retry.Is(err), "%s: %v", name, err)
		}
		require.NoError(t, retry.Do(ctx, policy, func(ctx context.Context) error { return op(ctx, s) }, nil), name)
	}
	metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"r"}})
	require.NoError(t, err)
	require.Len(t, metas, 1)
}

func TestUnreachableServerIsRetryable(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", "x")
	require.Error(t, err)
	require.True(t, retry.Is(err), "%v", err)
}

func TestClassify(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, code := range []string{"08000", "08006", "08P01", "57P01", "57P02", "57P03", "40001", "40P01", "53300"} {
		pgErr := &pgconn.PgError{Severity: "FATAL", Message: "m", Code: code}
		err := classify(ctx, fmt.Errorf("op: %w", pgErr))
		require.True(t, retry.Is(err), code)
		require.Equal(t, "op: "+pgErr.Error(), err.Error())
	}
	for _, code := range []string{"23505", "42P01", "22012", "57014", "28P01"} {
		require.False(t, retry.Is(classify(ctx, &pgconn.PgError{Code: code})), code)
	}
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, &net.OpError{Op: "read", Err: errors.New("connection reset")}} {
		require.True(t, retry.Is(classify(ctx, fmt.Errorf("op: %w", err))), "%v", err)
	}
	require.False(t, retry.Is(classify(ctx, context.Canceled)))
	require.False(t, retry.Is(classify(ctx, errors.New("other"))))
	require.Nil(t, classify(ctx, nil))
	done, cancel := context.WithCancel(ctx)
	cancel()
	require.False(t, retry.Is(classify(done, io.EOF)))
}

// TestBatchIsAtomic checks what every write method relies on: a batch runs
// as one transaction, so a failing statement undoes the ones before it.
func TestBatchIsAtomic(t *testing.T) {
	t.Parallel()
	s, _, _ := openStore(t, nil)
	ctx := t.Context()
	b := &pgx.Batch{}
	b.Queue(s.q.flowCreate, "f", time.Now())
	b.Queue(`SELECT 1/0`)
	err := s.send(ctx, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		_, err := br.Exec()
		return err
	})
	require.ErrorContains(t, err, "division by zero")
	require.False(t, retry.Is(err))
	var n int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM `+s.q.replace("{{flows}}")).Scan(&n))
	require.Zero(t, n)
}

// countingConn counts the writes to a connection: pgx writes once per round
// trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(base)
	require.NoError(t, err)
	var writes atomic.Int64
	cfg.MaxConns = 1
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, writes: &writes}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	s, err := New(ctx, pool, schema)
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	tg := outboxTarget(t, s, "t", 0)

	// Each round uses every statement of Precommit and Commit, for 500
	// rows and their changes; the first prepares the statements.
	round := func(r int) (precommit, commit int64) {
		rows := make([]statestore.PrecommitRow, 500)
		var known []int64
		if r > 0 {
			metas, err := s.RowScan(ctx, statestore.RowScanParams{SourceID: src, Limit: 250})
			require.NoError(t, err)
			for _, m := range metas {
				known = append(known, m.ID)
			}
		}
		for i := range rows {
			rows[i] = statestore.PrecommitRow{Key: fmt.Sprintf("r%d-%d", r, i), Staged: []byte("s")}
			if i < len(known) {
				rows[i].ID = known[i]
			}
		}
		before := writes.Load()
		ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
		require.NoError(t, err)
		precommit = writes.Load() - before
		ord := int64(r)
		p := statestore.CommitParams{SourceID: src, At: time.Now()}
		for i, id := range ids {
			p.Changes = append(p.Changes, statestore.Change{TargetID: tg, SourceID: src, RowKey: rows[i].Key, Key: rows[i].Key, Seq: 1, New: []byte("v")})
			switch i % 5 {
			case 0:
				owners := []statestore.OwnerKey{{TargetID: 1, KeyHash: statestore.HashKey(fmt.Sprint(r, i))}}
				p.Rows = append(p.Rows, statestore.CommitRow{ID: id, Ordinal: &ord, NewOwners: owners, DroppedOwners: owners})
			case 1:
				p.Bumps = append(p.Bumps, statestore.OrdinalBump{ID: id, Ordinal: &ord})
			case 2:
				p.Failed = append(p.Failed, statestore.RowFailed{ID: id, Key: rows[i].Key, Message: "boom"})
			case 3:
				p.Failed = append(p.Failed, statestore.RowFailed{Key: fmt.Sprintf("new%d-%d", r, i), Message: "boom"})
			case 4:
				p.Deletes = append(p.Deletes, statestore.RowDelete{ID: id, Owners: []statestore.OwnerKey{{TargetID: 1, KeyHash: statestore.HashKey(fmt.Sprint(r, i))}}})
			}
		}
		before = writes.Load()
		require.NoError(t, s.Commit(ctx, p))
		return precommit, writes.Load() - before
	}
	p0, c0 := round(0)
	round(1) // prepares the restaging statement
	p2, c2 := round(2)
	t.Logf("writes per call: first Precommit %d, Commit %d; then Precommit %d, Commit %d", p0, c0, p2, c2)
	require.Equal(t, int64(1), p2)
	require.Equal(t, int64(1), c2)
}

// edgeCases runs calls whose rows repeat and returns what the store kept.
func edgeCases(t *testing.T, s statestore.Store) []string {
	t.Helper()
	ctx := t.Context()
	_, err := s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	var out []string
	ids, err := s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{
		{Key: "a", Staged: []byte("1")}, {Key: "b"}, {Key: "a", Staged: []byte("2")}, {Key: "c", Staged: []byte{}},
	}})
	require.NoError(t, err)
	out = append(out, fmt.Sprintf("ids equal %v %v", ids[0] == ids[2], ids[0] == ids[1]))
	_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: []statestore.PrecommitRow{
		{ID: ids[1], Key: "b", Staged: []byte("3")}, {ID: ids[1], Key: "b", Staged: []byte("4")},
	}})
	require.NoError(t, err)
	loaded, err := s.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
	require.NoError(t, err)
	slices.SortFunc(loaded, func(a, b statestore.RowTracking) int { return int(a.ID - b.ID) })
	for _, l := range loaded {
		out = append(out, fmt.Sprintf("staged %q", l.Staged))
	}
	o1, o2 := int64(1), int64(2)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, s.Commit(ctx, statestore.CommitParams{SourceID: src, At: at,
		Rows:  []statestore.CommitRow{{ID: ids[0], Ordinal: &o1, Tracking: []byte("t1")}, {ID: ids[0], Ordinal: &o2, Tracking: []byte("t2")}},
		Bumps: []statestore.OrdinalBump{{ID: ids[1], Ordinal: &o1}, {ID: ids[1], Ordinal: &o2}},
		Failed: []statestore.RowFailed{
			{ID: ids[3], Key: "c", Message: "x1"}, {ID: ids[3], Key: "c", Message: "x2"},
			{Key: "d", Message: "y1"}, {Key: "d", Message: "y2\x00\xff"},
		},
	}))
	metas, err := s.RowLookup(ctx, statestore.RowLookupParams{SourceID: src, Keys: []string{"a", "b", "c", "d"}})
	require.NoError(t, err)
	slices.SortFunc(metas, func(a, b statestore.RowMeta) int { return strings.Compare(a.Key, b.Key) })
	for _, m := range metas {
		ord := "nil"
		if m.Ordinal != nil {
			ord = fmt.Sprint(*m.Ordinal)
		}
		out = append(out, fmt.Sprintf("%s ordinal %s staged %v errors %d", m.Key, ord, m.Staged, m.ErrorCount))
	}
	errs, err := s.RowFailures(ctx, statestore.RowFailuresParams{SourceID: src, Limit: -1})
	require.NoError(t, err)
	for _, e := range errs {
		out = append(out, fmt.Sprintf("error %s %q %d", e.Key, strings.ToValidUTF8(strings.ReplaceAll(e.Message, "\x00", "\uFFFD"), "\uFFFD"), e.Count))
	}
	none, err := s.RowScan(ctx, statestore.RowScanParams{SourceID: src, Limit: 0})
	require.NoError(t, err)
	out = append(out, fmt.Sprintf("scan 0: %d", len(none)))
	all, err := s.RowScan(ctx, statestore.RowScanParams{SourceID: src, Limit: -1})
	require.NoError(t, err)
	out = append(out, fmt.Sprintf("scan -1: %d", len(all)))
	return out
}

// TestEdgeCasesMatchSQLite checks that where the calls leave room (rows given
// twice in one call, empty versus nil blobs, odd limits) both drivers keep
// the same.
func TestEdgeCasesMatchSQLite(t *testing.T) {
	t.Parallel()
	t.Logf("%q", matchSQLite(t, edgeCases))
}

// matchSQLite runs cases on a fresh store of this driver and of SQLite's,
// requires the same outcome of both, and returns it.
func matchSQLite(t *testing.T, cases func(*testing.T, statestore.Store) []string) []string {
	t.Helper()
	s, _, _ := openStore(t, nil)
	lite, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer lite.Close()
	want := cases(t, lite)
	got := cases(t, s)
	require.Equal(t, want, got)
	return got
}

func TestFlowLockAcrossStoresAndConnectionLoss(t *testing.T) {
	t.Parallel()
	app := "tmlock" + strings.ReplaceAll(fmt.Sprint(time.Now().UnixNano()), "-", "")
	a, base, schema := openStore(t, map[string]string{"application_name": app})
	b, err := Open(t.Context(), base, schema)
	require.NoError(t, err)
	defer b.Close()

	held, err := a.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	// Releasing gives the connection back, which closing the pool waits for;
	// after the session died, release closes it.
	defer held.Release()
	_, err = b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked, "another store on the same schema")
	require.NoError(t, held.Check(t.Context()))

	// The server releases the lock when the holder's session dies.
	admin := connect(t, base)
	_, err = admin.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		other, err := b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
		if err != nil {
			return false
		}
		other.Release()
		return true
	}, 10*time.Second, 20*time.Millisecond)
	// The holder learns that its lock went, and it stays gone.
	require.ErrorIs(t, held.Check(t.Context()), statestore.ErrLockLost)
	require.ErrorIs(t, held.Check(t.Context()), statestore.ErrLockLost)
}

// TestFlowLockTakenAgainAfterItsSessionEnded: a lock whose session ended is
// taken again by Check when nobody took it meanwhile, and is lost for good
// when somebody did.
func TestFlowLockTakenAgainAfterItsSessionEnded(t *testing.T) {
	t.Parallel()
	app := "tmretake" + strings.ReplaceAll(fmt.Sprint(time.Now().UnixNano()), "-", "")
	a, base, schema := openStore(t, map[string]string{"application_name": app})
	b, err := Open(t.Context(), base, schema)
	require.NoError(t, err)
	defer b.Close()
	admin := connect(t, base)

	held, err := a.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer held.Release()
	terminate(t, admin, app)
	require.NoError(t, held.Check(t.Context()), "nobody took it: taken again")
	_, err = b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked, "held again, by its first holder")
	var locked *statestore.LockedError
	require.ErrorAs(t, err, &locked)
	require.Equal(t, os.Getpid(), locked.Holder.PID, "the holder's new session is recorded")

	// Another takes it while the session is gone, and gives it back: the
	// first holder must not carry on as if it had held it throughout.
	terminate(t, admin, app)
	other, err := b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	require.ErrorIs(t, held.Check(t.Context()), statestore.ErrLockLost, "held by another")
	other.Release()
	require.ErrorIs(t, held.Check(t.Context()), statestore.ErrLockLost, "lost for good")
	again, err := b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err, "the lost lock holds nothing")
	again.Release()
}

// TestRowPageIsBytewiseWhateverTheCollation: in a database whose default
// collation is not C (ICU en-US here), a source's rows still page in
// byte order, as in the SQLite store.
func TestRowPageIsBytewiseWhateverTheCollation(t *testing.T) {
	t.Parallel()
	base := pgtest.URL(t)
	admin := connect(t, base)
	name := fmt.Sprintf("tmicu%d", time.Now().UnixNano())
	if _, err := admin.Exec(t.Context(), `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`); err != nil {
		t.Skipf("this server cannot create an ICU database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + name
	s, err := Open(t.Context(), u.String(), "tidemark")
	require.NoError(t, err)
	defer s.Close()
	ctx := t.Context()
	_, err = s.FlowGet(ctx, statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	src, err := s.SourceEnsure(ctx, statestore.SourceEnsureParams{Flow: "f", Name: "s"})
	require.NoError(t, err)
	keys := []string{`"B"`, `"a"`, `"_x"`, `"-y"`, `"Zed"`, `"z"`}
	var rows []statestore.PrecommitRow
	for _, k := range keys {
		rows = append(rows, statestore.PrecommitRow{Key: k})
	}
	_, err = s.Precommit(ctx, statestore.PrecommitParams{SourceID: src, Rows: rows})
	require.NoError(t, err)
	var got []string
	after := ""
	for {
		page, err := s.RowPage(ctx, statestore.RowPageParams{SourceID: src, After: after, Limit: 2})
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			got = append(got, r.Key)
		}
		after = page[len(page)-1].Key
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	require.Equal(t, want, got)
}

// migrationCount is the number of the package's migrations.
func migrationCount(t *testing.T) int {
	t.Helper()
	ms, err := statestore.LoadMigrations(migrationFS, "migrations")
	require.NoError(t, err)
	return len(ms)
}

// TestFlowLockHolderUnknown: a holder record is believed only from the
// session holding the advisory lock. A session holding it without having
// recorded itself (yet) is an unknown holder, not the last one recorded.
func TestFlowLockHolderUnknown(t *testing.T) {
	t.Parallel()
	s, base, schema := openStore(t, nil)
	held, err := s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	held.Release()

	admin := connect(t, base)
	var ok bool
	require.NoError(t, admin.QueryRow(t.Context(), `SELECT pg_try_advisory_lock($1)`, flowLockKey(schema, "f")).Scan(&ok))
	require.True(t, ok)
	_, err = s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked)
	var locked *statestore.LockedError
	require.ErrorAs(t, err, &locked)
	require.Equal(t, statestore.LockedError{Flow: "f"}, *locked)
	require.EqualError(t, err, "flow f is locked by another update")
}
