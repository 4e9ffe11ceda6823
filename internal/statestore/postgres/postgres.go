// Package postgres is the PostgreSQL driver of Tidemark's state store: the
// state lives in tables of one schema (tidemark by default) of a database the
// app already uses, so several processes and machines can share it.
//
// Every statement names its tables with the schema, quoted; nothing depends
// on the connection's search_path. The migrations run in one transaction
// under an advisory lock derived from the schema name, so processes starting
// together do not race.
//
// The engine sends hundreds or thousands of rows per call over the network,
// so each call costs as few round trips as possible: lookups take arrays
// (key = ANY($1), unnest), and a write method's statements are sent as one
// pgx batch, which the server runs as one implicit transaction (the batch
// ends with a single Sync): whole or not at all, in one round trip once the
// connection has prepared the statements.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark/internal/pgdb"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultSchema is the schema used when none is given.
const DefaultSchema = "tidemark"

// maxIdentLen is PostgreSQL's identifier length limit (NAMEDATALEN-1).
const maxIdentLen = 63

// Store is a state store in a PostgreSQL schema.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	schema   string
	q        queries
	c        coordQueries
	o        outboxQueries
}

var _ statestore.Store = (*Store)(nil)

// Open connects to the database at url (a PostgreSQL URL or key=value
// connection string, as pgxpool.ParseConfig takes) and opens the state store
// in schema, "" meaning DefaultSchema, as New does. Close closes the pool.
func Open(ctx context.Context, url string, schema string) (*Store, error) {
	schema, err := checkSchema(schema)
	if err != nil {
		return nil, err
	}
	// The store's tables change only by its migrations, before any query:
	// statements can be cached.
	pool, err := pgdb.NewPool(ctx, url, pgx.QueryExecModeCacheStatement)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: %w", err)
	}
	s, err := open(ctx, pool, schema, true)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Exists reports whether the database at url holds a state store in
// schema ("" meaning DefaultSchema), writing nothing.
func Exists(ctx context.Context, url string, schema string) (bool, error) {
	schema, err := checkSchema(schema)
	if err != nil {
		return false, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false, fmt.Errorf("postgres state store: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "tidemark_migrations"}.Sanitize()).Scan(&exists); err != nil {
		return false, fmt.Errorf("postgres state store: looking for schema %s: %w", schema, err)
	}
	return exists, nil
}

// New opens the state store in schema, "" meaning DefaultSchema, using pool,
// which Close leaves open. It creates the schema if it does not exist and
// applies the migrations the schema lacks. The schema name must be 1 to 63
// lowercase ASCII letters, digits and underscores, not starting with a digit
// or pg_.
func New(ctx context.Context, pool *pgxpool.Pool, schema string) (*Store, error) {
	if pool == nil {
		return nil, errors.New("postgres state store: nil pool")
	}
	schema, err := checkSchema(schema)
	if err != nil {
		return nil, err
	}
	return open(ctx, pool, schema, false)
}

func open(ctx context.Context, pool *pgxpool.Pool, schema string, ownsPool bool) (*Store, error) {
	s := &Store{pool: pool, ownsPool: ownsPool, schema: schema, q: newQueries(schema)}
	s.c = newCoordQueries(s.q.replace)
	s.o = newOutboxQueries(s.q.replace)
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("postgres state store in schema %s: %w", schema, err)
	}
	return s, nil
}

// checkSchema returns the schema to use for name, or why name is not a
// schema name the store accepts. Only names that mean the same quoted or
// not are accepted, so that a user's unquoted SQL finds the tables.
func checkSchema(name string) (string, error) {
	if name == "" {
		return DefaultSchema, nil
	}
	invalid := func(why string, args ...any) error {
		return fmt.Errorf("postgres state store: invalid schema name %q: %s", name, fmt.Sprintf(why, args...))
	}
	if len(name) > maxIdentLen {
		return "", invalid("%d bytes long, PostgreSQL allows at most %d", len(name), maxIdentLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9':
			if i == 0 {
				return "", invalid("starts with a digit; use lowercase ASCII letters, digits and underscores, starting with a letter or underscore")
			}
		default:
			r, _ := utf8.DecodeRuneInString(name[i:])
			return "", invalid("character %q at byte %d; use lowercase ASCII letters, digits and underscores, starting with a letter or underscore", r, i)
		}
	}
	if strings.HasPrefix(name, "pg_") || name == "information_schema" {
		return "", invalid("reserved for PostgreSQL's system schemas")
	}
	return name, nil
}

// Close closes the connection pool if Open created it; a pool given to New
// is left to its owner.
func (s *Store) Close() error {
	if s.ownsPool {
		s.pool.Close()
	}
	return nil
}

// Schema returns the schema the store's tables are in.
func (s *Store) Schema() string { return s.schema }

// migrationLockKey is the advisory lock taken while migrating schema:
// distinct per schema, the same in every process.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tidemark statestore migrations\x00"))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

func (s *Store) migrate(ctx context.Context) error {
	migrations, err := statestore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		// The lock is its own statement: a statement's snapshot is taken
		// before it waits, and what follows must see what the holder did.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey(s.schema)); err != nil {
			return fmt.Errorf("locking the schema for migration: %w", err)
		}
		// CREATE ... IF NOT EXISTS needs the CREATE privilege even when
		// the object exists, so look first: a role that may only use the
		// tables opens a migrated schema.
		var schemaExists, tableExists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1), to_regclass($2) IS NOT NULL`,
			s.schema, s.q.migrations).Scan(&schemaExists, &tableExists); err != nil {
			return fmt.Errorf("looking for the schema: %w", err)
		}
		if !schemaExists {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{s.schema}.Sanitize()); err != nil {
				return fmt.Errorf("creating the schema: %w", err)
			}
		}
		if !tableExists {
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.q.migrations+` (
				version    integer PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL)`); err != nil {
				return fmt.Errorf("creating the migrations table: %w", err)
			}
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s.q.migrations).Scan(&current); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this Tidemark knows (%d); upgrade Tidemark", current, len(migrations))
		}
		for _, m := range migrations[current:] {
			// Without arguments pgx uses the simple protocol, which runs a
			// script of several statements.
			if _, err := tx.Exec(ctx, s.q.replace(m.SQL)); err != nil {
				return fmt.Errorf("applying migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+s.q.migrations+` (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now()); err != nil {
				return fmt.Errorf("recording migration %s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// tx runs fn in a transaction; errors are classified.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return classify(ctx, fmt.Errorf("beginning a transaction: %w", err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return classify(ctx, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return classify(ctx, fmt.Errorf("committing: %w", err))
	}
	return nil
}

// send sends the statements queued in b to the server at once and calls
// read to consume their results in order. pgx ends the batch with a single
// Sync, so the server runs it as one implicit transaction: if a statement
// fails, the ones before it are rolled back and the ones after it are not
// run. The server commits as soon as the batch succeeds, so read must not
// expect an error of its own to roll anything back. Errors are classified.
func (s *Store) send(ctx context.Context, b *pgx.Batch, read func(br pgx.BatchResults) error) error {
	br := s.pool.SendBatch(ctx, b)
	err := read(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return classify(ctx, err)
}

// classify marks errors a retry may fix; see pgdb.Classify.
func classify(ctx context.Context, err error) error { return pgdb.Classify(ctx, err) }

// FlowGet implements statestore.Store.
func (s *Store) FlowGet(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	f := statestore.Flow{Name: p.Flow}
	b := &pgx.Batch{}
	b.Queue(s.q.flowCreate, p.Flow, time.Now())
	b.Queue(s.q.flowGen, p.Flow)
	err := s.send(ctx, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.QueryRow().Scan(&f.Gen)
	})
	if err != nil {
		return statestore.Flow{}, fmt.Errorf("getting flow %s: %w", p.Flow, err)
	}
	return f, nil
}

// FlowFind implements statestore.Store.
func (s *Store) FlowFind(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	f := statestore.Flow{Name: p.Flow}
	err := s.pool.QueryRow(ctx, s.q.flowGen, p.Flow).Scan(&f.Gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return statestore.Flow{}, fmt.Errorf("flow %s: %w", p.Flow, statestore.ErrNotFound)
	}
	if err != nil {
		return statestore.Flow{}, classify(ctx, fmt.Errorf("finding flow %s: %w", p.Flow, err))
	}
	return f, nil
}

// flowLockKey is the advisory lock of a flow's updates in schema.
func flowLockKey(schema, flow string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tidemark flow lock\x00"))
	h.Write([]byte(schema))
	h.Write([]byte{0})
	h.Write([]byte(flow))
	return int64(h.Sum64())
}

// FlowLock implements statestore.Store with a session advisory lock, held on
// a connection of its own until release; the server releases it if the
// connection or the process dies. Each taking advances the flow's lock
// epoch, by which a holder whose session ended learns, taking the lock
// again, whether another held it meanwhile, and records the holder in the
// flow's row of the locks table, which a refused FlowLock reads.
func (s *Store) FlowLock(ctx context.Context, p statestore.FlowLockParams) (statestore.Lock, error) {
	l := &sessionLock{s: s, key: flowLockKey(s.schema, p.Flow), flow: p.Flow}
	conn, err := l.take(ctx)
	if err != nil {
		return nil, err
	}
	h := statestore.ThisProcess(time.Now())
	if err := conn.QueryRow(ctx, s.q.lockAdvance, p.Flow, h.PID, h.Host, h.Since).Scan(&l.epoch); err != nil {
		l.drop(conn)
		return nil, classify(ctx, fmt.Errorf("locking flow %s: %w", p.Flow, err))
	}
	l.conn = conn
	return l, nil
}

// lockCheckTimeout bounds a check of a session lock: a server that does
// not answer that long counts as gone.
const lockCheckTimeout = 10 * time.Second

// sessionLock is a session advisory lock, held while its connection's
// session lives.
type sessionLock struct {
	s    *Store
	key  int64
	flow string
	// epoch is the flow's lock epoch when this lock took it.
	epoch int64

	mu   sync.Mutex
	conn *pgxpool.Conn
	// lost is set once the lock is known to have gone to another holder,
	// or may have.
	lost error
}

// take takes the advisory lock on a connection of its own.
func (l *sessionLock) take(ctx context.Context) (*pgxpool.Conn, error) {
	conn, err := l.s.pool.Acquire(ctx)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("locking flow %s: %w", l.flow, err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil {
		conn.Hijack().Close(ctx)
		return nil, classify(ctx, fmt.Errorf("locking flow %s: %w", l.flow, err))
	}
	if !ok {
		defer conn.Release()
		return nil, &statestore.LockedError{Flow: l.flow, Holder: l.holder(ctx, conn)}
	}
	return conn, nil
}

// holder returns who holds the lock, as recorded by its session; zero
// when unknown: the holder has not recorded itself yet, or the record
// cannot be read (the refusal matters more than its details).
func (l *sessionLock) holder(ctx context.Context, conn *pgxpool.Conn) statestore.LockHolder {
	var (
		pid   *int32
		host  *string
		since *time.Time
	)
	if err := conn.QueryRow(ctx, l.s.q.lockHolder, l.flow, l.key).Scan(&pid, &host, &since); err != nil || pid == nil {
		return statestore.LockHolder{}
	}
	h := statestore.LockHolder{PID: int(*pid)}
	if host != nil {
		h.Host = *host
	}
	if since != nil {
		h.Since = *since
	}
	return h
}

// drop unlocks and gives back a connection holding the lock; one that
// may hold it still is closed instead.
func (l *sessionLock) drop(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), lockCheckTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		conn.Hijack().Close(ctx)
		return
	}
	conn.Release()
}

// Check implements statestore.Lock. The lock is held while its session
// answers, since the session never unlocks it before Release. When the
// session ended (the server restarted, the connection dropped), Check
// takes the lock again: if nobody took it meanwhile — the epoch did not
// move — the lock is held as before; otherwise it is lost. A server that
// cannot be reached yet gives a retryable error.
func (l *sessionLock) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if l.conn != nil {
		// Not the caller's context: a query cancelled midway closes the
		// connection, which would give up the lock.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockCheckTimeout)
		_, err := l.conn.Exec(qctx, `SELECT 1`)
		cancel()
		if err == nil {
			return nil
		}
		l.conn.Hijack().Close(ctx)
		l.conn = nil
	}
	conn, err := l.take(ctx)
	if errors.Is(err, statestore.ErrLocked) {
		l.lost = fmt.Errorf("flow %s: %w: its session ended, and another holds it now", l.flow, statestore.ErrLockLost)
		return l.lost
	}
	if err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, l.s.q.lockRetake, l.flow, l.epoch)
	if err != nil {
		l.drop(conn)
		return classify(ctx, fmt.Errorf("locking flow %s again: %w", l.flow, err))
	}
	if tag.RowsAffected() == 0 {
		l.drop(conn)
		l.lost = fmt.Errorf("flow %s: %w: its session ended, and another held it meanwhile", l.flow, statestore.ErrLockLost)
		return l.lost
	}
	l.conn = conn
	return nil
}

// Release implements statestore.Lock.
func (l *sessionLock) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.drop(l.conn)
		l.conn = nil
	}
}

// FlowDrop implements statestore.Store.
func (s *Store) FlowDrop(ctx context.Context, p statestore.FlowDropParams) error {
	b := &pgx.Batch{}
	for _, q := range s.q.flowDrop {
		b.Queue(q, p.Flow)
	}
	err := s.send(ctx, b, func(br pgx.BatchResults) error {
		for range s.q.flowDrop {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dropping flow %s: %w", p.Flow, err)
	}
	return nil
}

// SourceEnsure implements statestore.Store.
func (s *Store) SourceEnsure(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	var id int64
	b := &pgx.Batch{}
	b.Queue(s.q.sourceCreate, p.Flow, p.Name)
	b.Queue(s.q.sourceID, p.Flow, p.Name)
	err := s.send(ctx, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.QueryRow().Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("registering source %s/%s: %w", p.Flow, p.Name, err)
	}
	return id, nil
}

// SourceFind implements statestore.Store.
func (s *Store) SourceFind(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, s.q.sourceID, p.Flow, p.Name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("source %s/%s: %w", p.Flow, p.Name, statestore.ErrNotFound)
	}
	if err != nil {
		return 0, classify(ctx, fmt.Errorf("finding source %s/%s: %w", p.Flow, p.Name, err))
	}
	return id, nil
}

// SourceStatus implements statestore.Store.
func (s *Store) SourceStatus(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceStatus, error) {
	var (
		st   statestore.SourceStatus
		last *time.Time
	)
	var err error
	if p.FailingOnly {
		err = s.pool.QueryRow(ctx, s.q.sourceFailing, p.SourceID).Scan(&st.Failing)
	} else {
		err = s.pool.QueryRow(ctx, s.q.sourceStatus, p.SourceID).Scan(&st.Rows, &st.Failing, &last)
	}
	if err != nil {
		return statestore.SourceStatus{}, classify(ctx, fmt.Errorf("reading the status of source %d: %w", p.SourceID, err))
	}
	st.LastProcessedAt = utc(last)
	return st, nil
}

// SourceNotesGet implements statestore.Store.
func (s *Store) SourceNotesGet(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceNotes, error) {
	var n statestore.SourceNotes
	err := s.pool.QueryRow(ctx, s.q.sourceNotes, p.SourceID).Scan(&n.Options, &n.LastUpdate)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return n, classify(ctx, fmt.Errorf("reading the notes of source %d: %w", p.SourceID, err))
	}
	return n, nil
}

// SourceNotesSave implements statestore.Store.
func (s *Store) SourceNotesSave(ctx context.Context, p statestore.SourceNotesSaveParams) error {
	if _, err := s.pool.Exec(ctx, s.q.sourceNotesSave, p.SourceID, p.Options, p.LastUpdate); err != nil {
		return classify(ctx, fmt.Errorf("saving the notes of source %d: %w", p.SourceID, err))
	}
	return nil
}

// utc returns *t in UTC, or the zero time for nil.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func scanTarget(row pgx.Row) (statestore.Target, error) {
	var (
		t       statestore.Target
		staged  []byte
		updated time.Time
	)
	if err := row.Scan(&t.ID, &t.Flow, &t.Kind, &t.Key, &t.ParentID, &t.Exists, &t.Record, &staged, &t.DestroyedGen, &t.LostGen, &updated); err != nil {
		return t, err
	}
	t.UpdatedAt = updated.UTC()
	var err error
	if t.Staged, err = statestore.DecodeRecords(staged); err != nil {
		return t, fmt.Errorf("target %s: %w", t.Key, err)
	}
	return t, nil
}

// TargetList implements statestore.Store.
func (s *Store) TargetList(ctx context.Context, p statestore.TargetListParams) ([]statestore.Target, error) {
	rows, err := s.pool.Query(ctx, s.q.targetList, p.Flow)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("listing the targets of flow %s: %w", p.Flow, err))
	}
	defer rows.Close()
	var out []statestore.Target
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, classify(ctx, fmt.Errorf("listing the targets of flow %s: %w", p.Flow, err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(ctx, fmt.Errorf("listing the targets of flow %s: %w", p.Flow, err))
	}
	return out, nil
}

// TargetStage implements statestore.Store.
func (s *Store) TargetStage(ctx context.Context, p statestore.TargetStageParams) (statestore.Target, error) {
	var t statestore.Target
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Appending to the staged list decodes it, so the row is locked
		// between reading and writing it. A target created by another
		// process meanwhile is locked on the next turn.
		for range 3 {
			var (
				id     int64
				staged []byte
			)
			err := tx.QueryRow(ctx, s.q.targetLock, p.Flow, p.Key).Scan(&id, &staged)
			now := time.Now()
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				blob := statestore.EncodeRecords([][]byte{p.Record})
				t, err = scanTarget(tx.QueryRow(ctx, s.q.targetCreate, p.Flow, p.Kind, p.Key, p.ParentID, blob, now))
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
				return err
			case err != nil:
				return err
			}
			records, err := statestore.DecodeRecords(staged)
			if err != nil {
				return err
			}
			if !statestore.ContainsRecord(records, p.Record) {
				records = append(records, p.Record)
			}
			blob := statestore.EncodeRecords(records)
			t, err = scanTarget(tx.QueryRow(ctx, s.q.targetRestage, id, blob, p.Kind, now))
			return err
		}
		return errors.New("the target keeps being created and deleted concurrently")
	})
	if err != nil {
		return statestore.Target{}, fmt.Errorf("staging target %s of flow %s: %w", p.Key, p.Flow, err)
	}
	return t, nil
}

// TargetCommit implements statestore.Store.
func (s *Store) TargetCommit(ctx context.Context, p statestore.TargetCommitParams) (statestore.TargetCommitResult, error) {
	var res statestore.TargetCommitResult
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if !p.Exists {
			if _, err := tx.Exec(ctx, s.q.targetDisown, p.ID); err != nil {
				return fmt.Errorf("dropping the ownership of its children: %w", err)
			}
			if _, err := tx.Exec(ctx, s.q.targetDelete, p.ID); err != nil {
				return fmt.Errorf("deleting it and its attachments: %w", err)
			}
		} else {
			tag, err := tx.Exec(ctx, s.q.targetCommit, p.ID, p.Flow, p.Record, time.Now())
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return statestore.ErrNotFound
			}
			if p.Invalidate != target.InvalidateNone {
				var gen int64
				err := tx.QueryRow(ctx, s.q.flowAdvance, p.Flow).Scan(&gen)
				if errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("flow %s: %w", p.Flow, statestore.ErrNotFound)
				} else if err != nil {
					return fmt.Errorf("advancing the generation of flow %s: %w", p.Flow, err)
				}
				q := s.q.targetLost
				if p.Invalidate == target.InvalidateDestructive {
					q = s.q.targetDestroyed
					if _, err := tx.Exec(ctx, s.q.targetDisown, p.ID); err != nil {
						return fmt.Errorf("dropping the ownership of its children: %w", err)
					}
					if err := s.stageAttachmentDrops(ctx, tx, p.ID); err != nil {
						return fmt.Errorf("staging the re-creation of its attachments: %w", err)
					}
				}
				if _, err := tx.Exec(ctx, q, p.ID, gen); err != nil {
					return fmt.Errorf("recording the %s invalidation: %w", p.Invalidate, err)
				}
			}
		}
		err := tx.QueryRow(ctx, s.q.flowGen, p.Flow).Scan(&res.Gen)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("flow %s: %w", p.Flow, statestore.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return statestore.TargetCommitResult{}, fmt.Errorf("committing target %d of flow %s: %w", p.ID, p.Flow, err)
	}
	return res, nil
}

// stageAttachmentDrops stages a drop on every attachment of a target that
// was destroyed, so that the next setup creates them again.
func (s *Store) stageAttachmentDrops(ctx context.Context, tx pgx.Tx, parent int64) error {
	rows, err := tx.Query(ctx, s.q.attachmentsLock, parent)
	if err != nil {
		return err
	}
	type att struct {
		id     int64
		staged []byte
	}
	atts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (att, error) {
		var a att
		err := r.Scan(&a.id, &a.staged)
		return a, err
	})
	if err != nil {
		return err
	}
	for _, a := range atts {
		blob, changed, err := statestore.StageDrop(a.staged)
		if err != nil {
			return err
		}
		if !changed {
			continue
		}
		if _, err := tx.Exec(ctx, s.q.attachmentStage, a.id, blob); err != nil {
			return err
		}
	}
	return nil
}

func scanRowMeta(rows pgx.Rows) (statestore.RowMeta, error) {
	var m statestore.RowMeta
	err := rows.Scan(&m.ID, &m.Key, &m.Ordinal, &m.ContentFP, &m.LogicFP, &m.Gen, &m.Staged, &m.ErrorCount)
	return m, err
}

func collectRowMetas(out []statestore.RowMeta, rows pgx.Rows) ([]statestore.RowMeta, error) {
	defer rows.Close()
	for rows.Next() {
		m, err := scanRowMeta(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RowLookup implements statestore.Store.
func (s *Store) RowLookup(ctx context.Context, p statestore.RowLookupParams) ([]statestore.RowMeta, error) {
	out := make([]statestore.RowMeta, 0, len(p.Keys))
	if len(p.Keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, s.q.rowLookup, p.SourceID, p.Keys)
	if err == nil {
		out, err = collectRowMetas(out, rows)
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("looking up %d rows of source %d: %w", len(p.Keys), p.SourceID, err))
	}
	return out, nil
}

// RowLoad implements statestore.Store.
func (s *Store) RowLoad(ctx context.Context, p statestore.RowLoadParams) ([]statestore.RowTracking, error) {
	out := make([]statestore.RowTracking, 0, len(p.IDs))
	if len(p.IDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, s.q.rowLoad, p.IDs)
	if err == nil {
		var t statestore.RowTracking
		_, err = pgx.ForEachRow(rows, []any{&t.ID, &t.Tracking, &t.Staged}, func() error {
			out = append(out, t)
			return nil
		})
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("loading %d rows: %w", len(p.IDs), err))
	}
	return out, nil
}

// limit returns a LIMIT argument: NULL, no limit, for a negative n, as in
// SQLite.
func limit(n int) any {
	if n < 0 {
		return nil
	}
	return int64(n)
}

// RowScan implements statestore.Store.
func (s *Store) RowScan(ctx context.Context, p statestore.RowScanParams) ([]statestore.RowMeta, error) {
	rows, err := s.pool.Query(ctx, s.q.rowScan, p.SourceID, p.AfterID, limit(p.Limit))
	var out []statestore.RowMeta
	if err == nil {
		out, err = collectRowMetas(nil, rows)
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("scanning the rows of source %d after id %d: %w", p.SourceID, p.AfterID, err))
	}
	return out, nil
}

// RowCount implements statestore.Store.
func (s *Store) RowCount(ctx context.Context, p statestore.RowCountParams) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, s.q.rowCount, p.SourceID).Scan(&n); err != nil {
		return 0, classify(ctx, fmt.Errorf("counting the rows of source %d: %w", p.SourceID, err))
	}
	return n, nil
}

// RowFailures implements statestore.Store.
func (s *Store) RowFailures(ctx context.Context, p statestore.RowFailuresParams) ([]statestore.RowFailure, error) {
	rows, err := s.pool.Query(ctx, s.q.rowErrors, p.SourceID, limit(p.Limit))
	var out []statestore.RowFailure
	if err == nil {
		var (
			e  statestore.RowFailure
			at *time.Time
		)
		_, err = pgx.ForEachRow(rows, []any{&e.Key, &e.Message, &e.Count, &at}, func() error {
			e.At = utc(at)
			out = append(out, e)
			return nil
		})
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("listing the failing rows of source %d: %w", p.SourceID, err))
	}
	return out, nil
}

// ownerArrays are ownerships as the columns unnest takes.
type ownerArrays struct {
	targetIDs []int64
	keyHashes [][]byte
	rowIDs    []int64
}

func (a *ownerArrays) add(keys []statestore.OwnerKey, rowID int64) {
	for i := range keys {
		a.targetIDs = append(a.targetIDs, keys[i].TargetID)
		a.keyHashes = append(a.keyHashes, keys[i].KeyHash[:])
		a.rowIDs = append(a.rowIDs, rowID)
	}
}

func (a *ownerArrays) len() int { return len(a.targetIDs) }

// OwnerFind implements statestore.Store.
func (s *Store) OwnerFind(ctx context.Context, p statestore.OwnerFindParams) ([]statestore.Owner, error) {
	if len(p.Keys) == 0 {
		return nil, nil
	}
	var keys ownerArrays
	keys.add(p.Keys, 0)
	rows, err := s.pool.Query(ctx, s.q.ownerFind, keys.targetIDs, keys.keyHashes)
	var out []statestore.Owner
	if err == nil {
		var ord, rowID int64
		_, err = pgx.ForEachRow(rows, []any{&ord, &rowID}, func() error {
			if ord < 1 || ord > int64(len(p.Keys)) {
				return fmt.Errorf("unexpected key ordinal %d", ord)
			}
			out = append(out, statestore.Owner{OwnerKey: p.Keys[ord-1], RowID: rowID})
			return nil
		})
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("finding the owners of %d target keys: %w", len(p.Keys), err))
	}
	return out, nil
}

// rowInfoColumns are the columns of a statestore.RowInfo, in the order it is scanned.
const rowInfoColumns = `id, source_id, key, ordinal, content_fp, logic_fp, gen, tracking, staged, coalesce(error, ''), error_count, error_at, processed_at`

// rowInfoNoBlobs are rowInfoColumns without the blobs.
const rowInfoNoBlobs = `id, source_id, key, ordinal, content_fp, logic_fp, gen, NULL, NULL, coalesce(error, ''), error_count, error_at, processed_at`

func collectRowInfos(rows pgx.Rows) ([]statestore.RowInfo, error) {
	var out []statestore.RowInfo
	var (
		r             statestore.RowInfo
		errAt, doneAt *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&r.ID, &r.SourceID, &r.Key, &r.Ordinal, &r.ContentFP, &r.LogicFP, &r.Gen, &r.Tracking, &r.Staged,
		&r.Error, &r.ErrorCount, &errAt, &doneAt}, func() error {
		row := r
		if r.Ordinal != nil {
			o := *r.Ordinal
			row.Ordinal = &o
		}
		if errAt != nil {
			row.ErrorAt = errAt.UTC()
		}
		if doneAt != nil {
			row.ProcessedAt = doneAt.UTC()
		}
		out = append(out, row)
		r = statestore.RowInfo{}
		errAt, doneAt = nil, nil
		return nil
	})
	return out, err
}

// RowFind implements statestore.Store.
func (s *Store) RowFind(ctx context.Context, p statestore.RowFindParams) (statestore.RowInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rowInfoColumns+` FROM `+s.q.replace(`{{rows}}`)+` WHERE source_id = $1 AND key = $2`, p.SourceID, p.Key)
	var out []statestore.RowInfo
	if err == nil {
		out, err = collectRowInfos(rows)
	}
	if err != nil {
		return statestore.RowInfo{}, classify(ctx, fmt.Errorf("finding row %q: %w", p.Key, err))
	}
	if len(out) == 0 {
		return statestore.RowInfo{}, fmt.Errorf("row %q: %w", p.Key, statestore.ErrNotFound)
	}
	return out[0], nil
}

// RowGet implements statestore.Store.
func (s *Store) RowGet(ctx context.Context, p statestore.RowGetParams) ([]statestore.RowInfo, error) {
	if len(p.IDs) == 0 {
		return nil, nil
	}
	cols := rowInfoNoBlobs
	if p.Blobs {
		cols = rowInfoColumns
	}
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM `+s.q.replace(`{{rows}}`)+` WHERE id = ANY($1) ORDER BY id`, p.IDs)
	var out []statestore.RowInfo
	if err == nil {
		out, err = collectRowInfos(rows)
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("getting %d rows: %w", len(p.IDs), err))
	}
	return out, nil
}

// RowPage implements statestore.Store.
func (s *Store) RowPage(ctx context.Context, p statestore.RowPageParams) ([]statestore.RowInfo, error) {
	q := `SELECT ` + rowInfoColumns + ` FROM ` + s.q.replace(`{{rows}}`) + ` WHERE source_id = $1 AND key > $2`
	if p.Failed {
		q += ` AND error IS NOT NULL`
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY key LIMIT $3`, p.SourceID, p.After, p.Limit)
	var out []statestore.RowInfo
	if err == nil {
		out, err = collectRowInfos(rows)
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("paging rows: %w", err))
	}
	return out, nil
}

// OwnerExists implements statestore.Store.
func (s *Store) OwnerExists(ctx context.Context, p statestore.OwnerExistsParams) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, s.q.ownerExists, p.TargetID).Scan(&ok); err != nil {
		return false, classify(ctx, fmt.Errorf("looking for owners of target %d: %w", p.TargetID, err))
	}
	return ok, nil
}

// Precommit implements statestore.Store. Its statements, at most two
// whatever the number of rows, are sent as one batch: insert the new rows
// (and return their ids) and replace the staged blobs of the others.
// Ownership is taken at commit, not here.
func (s *Store) Precommit(ctx context.Context, p statestore.PrecommitParams) ([]int64, error) {
	ids := make([]int64, len(p.Rows))
	if len(p.Rows) == 0 {
		return ids, nil
	}
	var (
		// New rows, by key, and staged rows, by id; a row given twice
		// is staged with its last blob, as if the rows were staged in
		// turn.
		newKeys   []string
		newStaged [][]byte
		newIndex  map[string]int
		oldIDs    []int64
		oldStaged [][]byte
		oldIndex  map[int64]int
	)
	for i := range p.Rows {
		r := &p.Rows[i]
		if r.ID == 0 {
			if newIndex == nil {
				newIndex = make(map[string]int)
			}
			if j, ok := newIndex[r.Key]; ok {
				newStaged[j] = r.Staged
			} else {
				newIndex[r.Key] = len(newKeys)
				newKeys = append(newKeys, r.Key)
				newStaged = append(newStaged, r.Staged)
			}
		} else {
			ids[i] = r.ID
			if oldIndex == nil {
				oldIndex = make(map[int64]int)
			}
			if j, ok := oldIndex[r.ID]; ok {
				oldStaged[j] = r.Staged
			} else {
				oldIndex[r.ID] = len(oldIDs)
				oldIDs = append(oldIDs, r.ID)
				oldStaged = append(oldStaged, r.Staged)
			}
		}
	}

	b := &pgx.Batch{}
	if len(newKeys) > 0 {
		b.Queue(s.q.rowInsert, p.SourceID, newKeys, newStaged)
	}
	if len(oldIDs) > 0 {
		b.Queue(s.q.rowStage, oldIDs, oldStaged)
	}
	err := s.send(ctx, b, func(br pgx.BatchResults) error {
		if len(newKeys) > 0 {
			rows, err := br.Query()
			inserted := make(map[string]int64, len(newKeys))
			if err == nil {
				var (
					id  int64
					key string
				)
				_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
					inserted[key] = id
					return nil
				})
			}
			if err != nil {
				return fmt.Errorf("inserting %d new rows: %w", len(newKeys), err)
			}
			for i := range p.Rows {
				if r := &p.Rows[i]; r.ID == 0 {
					id, ok := inserted[r.Key]
					if !ok {
						return fmt.Errorf("inserting row %q: no id returned", r.Key)
					}
					ids[i] = id
				}
			}
		}
		if len(oldIDs) > 0 {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("staging %d rows: %w", len(oldIDs), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("precommitting %d rows of source %d: %w", len(p.Rows), p.SourceID, err)
	}
	return ids, nil
}

// Commit implements statestore.Store. Its statements, at most seven
// whatever the number of rows, are sent as one batch, in the order the
// SQLite driver applies them: commit the updated rows, bump ordinals,
// record failures of known rows, then of new ones, drop ownerships, delete
// rows, and add the changes to the outbox.
func (s *Store) Commit(ctx context.Context, p statestore.CommitParams) error {
	n := len(p.Rows) + len(p.Bumps) + len(p.Failed) + len(p.Deletes)
	if n == 0 && len(p.Changes) == 0 {
		return nil
	}
	var (
		disown, own ownerArrays
		b           = &pgx.Batch{}
		ops         []string // what each queued statement does, for errors
	)
	queue := func(op, sql string, args ...any) {
		b.Queue(sql, args...)
		ops = append(ops, op)
	}

	if len(p.Rows) > 0 {
		// A row given twice is committed with its last outcome.
		var (
			index    = make(map[int64]int, len(p.Rows))
			ids      = make([]int64, 0, len(p.Rows))
			ordinals = make([]*int64, 0, len(p.Rows))
			contents = make([][]byte, 0, len(p.Rows))
			logics   = make([][]byte, 0, len(p.Rows))
			gens     = make([]int64, 0, len(p.Rows))
			tracking = make([][]byte, 0, len(p.Rows))
		)
		for i := range p.Rows {
			r := &p.Rows[i]
			disown.add(r.DroppedOwners, r.ID)
			own.add(r.NewOwners, r.ID)
			if j, ok := index[r.ID]; ok {
				ordinals[j], contents[j], logics[j], gens[j], tracking[j] = r.Ordinal, r.ContentFP, r.LogicFP, r.Gen, r.Tracking
				continue
			}
			index[r.ID] = len(ids)
			ids = append(ids, r.ID)
			ordinals = append(ordinals, r.Ordinal)
			contents = append(contents, r.ContentFP)
			logics = append(logics, r.LogicFP)
			gens = append(gens, r.Gen)
			tracking = append(tracking, r.Tracking)
		}
		queue(fmt.Sprintf("committing %d rows", len(ids)), s.q.rowCommit, p.At, ids, ordinals, contents, logics, gens, tracking)
		if own.len() > 0 {
			queue(fmt.Sprintf("recording %d ownerships", own.len()), s.q.ownerAdd, own.targetIDs, own.keyHashes, own.rowIDs)
		}
	}

	if len(p.Bumps) > 0 {
		var (
			index    = make(map[int64]int, len(p.Bumps))
			ids      = make([]int64, 0, len(p.Bumps))
			ordinals = make([]*int64, 0, len(p.Bumps))
		)
		for _, bump := range p.Bumps {
			if j, ok := index[bump.ID]; ok {
				ordinals[j] = bump.Ordinal
				continue
			}
			index[bump.ID] = len(ids)
			ids = append(ids, bump.ID)
			ordinals = append(ordinals, bump.Ordinal)
		}
		queue(fmt.Sprintf("updating the ordinals of %d rows", len(ids)), s.q.rowBump, p.At, ids, ordinals)
	}

	if len(p.Failed) > 0 {
		// A row failing twice counts two failures, with the last message.
		var (
			old  failureSet[int64]
			news failureSet[string]
		)
		for _, e := range p.Failed {
			msg := cleanText(e.Message)
			if e.ID != 0 {
				old.add(e.ID, msg)
			} else {
				news.add(e.Key, msg)
			}
		}
		oldIDs, oldMessages, oldCounts := old.keys, old.messages, old.counts
		newKeys, newMessages, newCounts := news.keys, news.messages, news.counts
		if len(oldIDs) > 0 {
			queue(fmt.Sprintf("recording the failures of %d rows", len(oldIDs)), s.q.rowFail, p.At, oldIDs, oldMessages, oldCounts)
		}
		if len(newKeys) > 0 {
			queue(fmt.Sprintf("recording the failures of %d new rows", len(newKeys)), s.q.rowFailNew, p.SourceID, p.At, newKeys, newMessages, newCounts)
		}
	}

	var deletes []int64
	for _, d := range p.Deletes {
		disown.add(d.Owners, d.ID)
		deletes = append(deletes, d.ID)
	}
	if disown.len() > 0 {
		queue(fmt.Sprintf("dropping %d ownerships", disown.len()), s.q.ownerDrop, disown.targetIDs, disown.keyHashes, disown.rowIDs)
	}
	if len(deletes) > 0 {
		queue(fmt.Sprintf("deleting %d rows", len(deletes)), s.q.rowDelete, deletes)
	}
	if len(p.Changes) > 0 {
		c := newChangeArrays(p.Changes)
		queue(fmt.Sprintf("adding %d changes to the outbox", len(p.Changes)), s.o.changeAdd,
			p.At, c.targetIDs, c.sourceIDs, c.rowKeys, c.keys, c.seqs, c.olds, c.news)
	}

	read := func(br pgx.BatchResults) error {
		for _, op := range ops {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		return nil
	}
	var err error
	if p.Fence == nil {
		err = s.send(ctx, b, read)
	} else {
		// A fenced commit checks the worker's claims first, in the same
		// transaction, and lands nothing without them.
		err = s.tx(ctx, func(tx pgx.Tx) error {
			if err := s.fenced(ctx, tx, p.Fence); err != nil {
				return err
			}
			br := tx.SendBatch(ctx, b)
			if err := read(br); err != nil {
				_ = br.Close()
				return err
			}
			return br.Close()
		})
	}
	if err != nil {
		return fmt.Errorf("committing %d rows and %d changes of source %d: %w", n, len(p.Changes), p.SourceID, err)
	}
	return nil
}

// failureSet gathers the failures of a commit by row, as column arrays: a
// row failing twice counts two failures, with the last message.
type failureSet[K comparable] struct {
	index    map[K]int
	keys     []K
	messages []string
	counts   []int64
}

func (f *failureSet[K]) add(k K, msg string) {
	if j, ok := f.index[k]; ok {
		f.messages[j] = msg
		f.counts[j]++
		return
	}
	if f.index == nil {
		f.index = make(map[K]int)
	}
	f.index[k] = len(f.keys)
	f.keys = append(f.keys, k)
	f.messages = append(f.messages, msg)
	f.counts = append(f.counts, 1)
}

// cleanText makes s storable as PostgreSQL text, which must be valid UTF-8
// without NUL characters, replacing what is not with U+FFFD. It is used for
// error messages only, which are shown, not matched.
func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
