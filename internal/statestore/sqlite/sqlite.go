// Package sqlite is the SQLite driver of Tidemark's state store: the default,
// a single file beside the app, in WAL mode so that reads run beside the one
// writer. It uses modernc.org/sqlite, a pure-Go SQLite.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/sqlitedb"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// maxParams bounds the parameters of one statement, under SQLite's limit.
const maxParams = 500

// Store is a state store in a SQLite file.
type Store struct {
	db   *sql.DB
	path string
}

var _ statestore.Store = (*Store)(nil)

// Exists reports whether the SQLite file at path holds a state store,
// writing nothing: false when there is no such file.
func Exists(ctx context.Context, path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	ok, err := sqlitedb.HasTable(ctx, path, "tidemark_migrations")
	if err != nil {
		return false, fmt.Errorf("sqlite state store: %w", err)
	}
	return ok, nil
}

// Open opens (creating if needed) the state store in the SQLite file at
// path and applies its migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, 4)
	if err != nil {
		return nil, fmt.Errorf("sqlite state store: %w", err)
	}
	s := &Store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the underlying database, for tests.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) migrate(ctx context.Context) error {
	migrations, err := statestore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS tidemark_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("creating the migrations table: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM tidemark_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("sqlite state store %s has schema version %d, newer than this Tidemark knows (%d)", s.path, current, len(migrations))
		}
		for _, m := range migrations[current:] {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("applying migration %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO tidemark_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, micros(time.Now())); err != nil {
				return fmt.Errorf("recording migration %s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// tx runs fn in an immediate transaction.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("beginning a transaction: %w", err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return classify(err)
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("committing: %w", err))
	}
	return nil
}

// classify marks errors a retry may fix: a busy or locked database.
func classify(err error) error { return sqlitedb.Classify(err) }

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func nullInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// FlowGet implements statestore.Store.
func (s *Store) FlowGet(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	f := statestore.Flow{Name: p.Flow}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tidemark_flows (name, gen, created_at) VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING`,
			p.Flow, micros(time.Now())); err != nil {
			return fmt.Errorf("creating flow %s: %w", p.Flow, err)
		}
		return tx.QueryRowContext(ctx, `SELECT gen FROM tidemark_flows WHERE name = ?`, p.Flow).Scan(&f.Gen)
	})
	if err != nil {
		return statestore.Flow{}, fmt.Errorf("getting flow %s: %w", p.Flow, err)
	}
	return f, nil
}

// FlowFind implements statestore.Store.
func (s *Store) FlowFind(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	f := statestore.Flow{Name: p.Flow}
	err := s.db.QueryRowContext(ctx, `SELECT gen FROM tidemark_flows WHERE name = ?`, p.Flow).Scan(&f.Gen)
	if errors.Is(err, sql.ErrNoRows) {
		return statestore.Flow{}, fmt.Errorf("flow %s: %w", p.Flow, statestore.ErrNotFound)
	}
	if err != nil {
		return statestore.Flow{}, classify(fmt.Errorf("finding flow %s: %w", p.Flow, err))
	}
	return f, nil
}

// FlowLock implements statestore.Store with an exclusive flock on a file
// beside the database, one per flow (see lockPath), which records the
// holder. Release removes the file. A process killed while holding the
// lock leaves the file behind, harmless: the next FlowLock takes it over,
// and its Release removes it.
func (s *Store) FlowLock(ctx context.Context, p statestore.FlowLockParams) (statestore.Lock, error) {
	release, err := lockFile(s.lockPath(p.Flow), p.Flow, statestore.ThisProcess(time.Now()))
	var locked *statestore.LockedError
	if errors.As(err, &locked) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("locking flow %s: %w", p.Flow, err)
	}
	return fileLock{release: release}, nil
}

// fileLock is a flock held by this process: it is lost only with the
// process.
type fileLock struct{ release func() }

// Check implements statestore.Lock: a flock cannot be lost.
func (fileLock) Check(context.Context) error { return nil }

// Release implements statestore.Lock.
func (l fileLock) Release() { l.release() }

// lockPath is the lock file of a flow: the database path as given, taken
// literally, then a dot, the flow's name kept to safe characters, a hash
// of the full name, and ".lock".
func (s *Store) lockPath(flow string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, flow)
	if len(safe) > 40 {
		safe = safe[:40]
	}
	h := fnv.New32a()
	h.Write([]byte(flow))
	return fmt.Sprintf("%s.%s-%08x.lock", canonical(s.path), safe, h.Sum32())
}

// canonical is the database's path with symbolic links resolved, so that
// two names of one database (a link, a relative and an absolute path) lock
// one file. A path that cannot be resolved is used as it is.
func canonical(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	return path
}

// FlowDrop implements statestore.Store.
func (s *Store) FlowDrop(ctx context.Context, p statestore.FlowDropParams) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM tidemark_outbox WHERE target_id IN (SELECT id FROM tidemark_targets WHERE flow = ?)`,
			`DELETE FROM tidemark_owners WHERE target_id IN (SELECT id FROM tidemark_targets WHERE flow = ?)`,
			`DELETE FROM tidemark_rows WHERE source_id IN (SELECT id FROM tidemark_sources WHERE flow = ?)`,
			`DELETE FROM tidemark_targets WHERE flow = ?`,
			`DELETE FROM tidemark_sources WHERE flow = ?`,
			`DELETE FROM tidemark_flows WHERE name = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, p.Flow); err != nil {
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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tidemark_sources (flow, name) VALUES (?, ?) ON CONFLICT (flow, name) DO NOTHING`, p.Flow, p.Name); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT id FROM tidemark_sources WHERE flow = ? AND name = ?`, p.Flow, p.Name).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("registering source %s/%s: %w", p.Flow, p.Name, err)
	}
	return id, nil
}

// SourceFind implements statestore.Store.
func (s *Store) SourceFind(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM tidemark_sources WHERE flow = ? AND name = ?`, p.Flow, p.Name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("source %s/%s: %w", p.Flow, p.Name, statestore.ErrNotFound)
	}
	if err != nil {
		return 0, classify(fmt.Errorf("finding source %s/%s: %w", p.Flow, p.Name, err))
	}
	return id, nil
}

// SourceStatus implements statestore.Store.
func (s *Store) SourceStatus(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceStatus, error) {
	var (
		st   statestore.SourceStatus
		last sql.NullInt64
	)
	var err error
	if p.FailingOnly {
		err = s.db.QueryRowContext(ctx, `SELECT count(*) FROM tidemark_rows INDEXED BY tidemark_rows_failing WHERE source_id = ? AND error IS NOT NULL`, p.SourceID).
			Scan(&st.Failing)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT count(processed_at), count(error), max(processed_at) FROM tidemark_rows WHERE source_id = ?`, p.SourceID).
			Scan(&st.Rows, &st.Failing, &last)
	}
	if err != nil {
		return st, classify(fmt.Errorf("reading source status: %w", err))
	}
	st.LastProcessedAt = fromMicros(last)
	return st, nil
}

// SourceNotesGet implements statestore.Store.
func (s *Store) SourceNotesGet(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceNotes, error) {
	var n statestore.SourceNotes
	err := s.db.QueryRowContext(ctx, `SELECT options, last_update FROM tidemark_sources WHERE id = ?`, p.SourceID).Scan(&n.Options, &n.LastUpdate)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return n, classify(fmt.Errorf("reading the notes of source %d: %w", p.SourceID, err))
	}
	return n, nil
}

// SourceNotesSave implements statestore.Store.
func (s *Store) SourceNotesSave(ctx context.Context, p statestore.SourceNotesSaveParams) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tidemark_sources SET options = coalesce(?, options), last_update = coalesce(?, last_update) WHERE id = ?`,
			nullBlob(p.Options), nullBlob(p.LastUpdate), p.SourceID)
		return err
	})
	if err != nil {
		return fmt.Errorf("saving the notes of source %d: %w", p.SourceID, err)
	}
	return nil
}

// nullBlob is b as a parameter, NULL when nil.
func nullBlob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

const targetColumns = `id, flow, kind, key, parent_id, committed, record, record IS NULL, staged, destroyed_gen, lost_gen, updated_at`

func scanTarget(row interface{ Scan(...any) error }) (statestore.Target, error) {
	var (
		t          statestore.Target
		committed  int
		recordNull bool
		staged     []byte
		updated    sql.NullInt64
	)
	if err := row.Scan(&t.ID, &t.Flow, &t.Kind, &t.Key, &t.ParentID, &committed, &t.Record, &recordNull, &staged, &t.DestroyedGen, &t.LostGen, &updated); err != nil {
		return t, err
	}
	if !recordNull && t.Record == nil {
		t.Record = []byte{} // the driver reads an empty blob as nil
	}
	t.Exists = committed != 0
	t.UpdatedAt = fromMicros(updated)
	var err error
	if t.Staged, err = statestore.DecodeRecords(staged); err != nil {
		return t, fmt.Errorf("target %s: %w", t.Key, err)
	}
	return t, nil
}

// TargetList implements statestore.Store.
func (s *Store) TargetList(ctx context.Context, p statestore.TargetListParams) ([]statestore.Target, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+targetColumns+` FROM tidemark_targets WHERE flow = ? ORDER BY id`, p.Flow)
	if err != nil {
		return nil, classify(fmt.Errorf("listing targets: %w", err))
	}
	defer rows.Close()
	var out []statestore.Target
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("listing targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("listing targets: %w", err))
	}
	return out, nil
}

// TargetStage implements statestore.Store.
func (s *Store) TargetStage(ctx context.Context, p statestore.TargetStageParams) (statestore.Target, error) {
	var t statestore.Target
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var (
			id     int64
			staged []byte
		)
		err := tx.QueryRowContext(ctx, `SELECT id, staged FROM tidemark_targets WHERE flow = ? AND key = ?`, p.Flow, p.Key).Scan(&id, &staged)
		now := micros(time.Now())
		switch {
		case errors.Is(err, sql.ErrNoRows):
			blob := statestore.EncodeRecords([][]byte{p.Record})
			if _, err := tx.ExecContext(ctx, `INSERT INTO tidemark_targets (flow, kind, key, parent_id, staged, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
				p.Flow, p.Kind, p.Key, p.ParentID, blob, now); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			records, err := statestore.DecodeRecords(staged)
			if err != nil {
				return err
			}
			if !statestore.ContainsRecord(records, p.Record) {
				records = append(records, p.Record)
			}
			blob := statestore.EncodeRecords(records)
			if _, err := tx.ExecContext(ctx, `UPDATE tidemark_targets SET staged = ?, kind = ?, updated_at = ? WHERE id = ?`, blob, p.Kind, now, id); err != nil {
				return err
			}
		}
		t, err = scanTarget(tx.QueryRowContext(ctx, `SELECT `+targetColumns+` FROM tidemark_targets WHERE flow = ? AND key = ?`, p.Flow, p.Key))
		return err
	})
	if err != nil {
		return t, fmt.Errorf("staging target %s: %w", p.Key, err)
	}
	return t, nil
}

// TargetCommit implements statestore.Store.
func (s *Store) TargetCommit(ctx context.Context, p statestore.TargetCommitParams) (statestore.TargetCommitResult, error) {
	var res statestore.TargetCommitResult
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if !p.Exists {
			if _, err := tx.ExecContext(ctx, `DELETE FROM tidemark_owners WHERE target_id = ?`, p.ID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM tidemark_outbox WHERE target_id IN (SELECT id FROM tidemark_targets WHERE id = ? OR parent_id = ?)`, p.ID, p.ID); err != nil {
				return fmt.Errorf("deleting the changes of its outbox: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM tidemark_targets WHERE id = ? OR parent_id = ?`, p.ID, p.ID); err != nil {
				return err
			}
		} else {
			r, err := tx.ExecContext(ctx, `UPDATE tidemark_targets SET committed = 1, record = ?, staged = NULL, updated_at = ? WHERE id = ? AND flow = ?`,
				nonNil(p.Record), micros(time.Now()), p.ID, p.Flow)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				return fmt.Errorf("target %d: %w", p.ID, statestore.ErrNotFound)
			}
			if p.Invalidate != target.InvalidateNone {
				var gen int64
				if err := tx.QueryRowContext(ctx, `UPDATE tidemark_flows SET gen = gen + 1 WHERE name = ? RETURNING gen`, p.Flow).Scan(&gen); err != nil {
					return fmt.Errorf("advancing the generation of flow %s: %w", p.Flow, err)
				}
				column := "lost_gen"
				if p.Invalidate == target.InvalidateDestructive {
					column = "destroyed_gen"
					if _, err := tx.ExecContext(ctx, `DELETE FROM tidemark_owners WHERE target_id = ?`, p.ID); err != nil {
						return err
					}
					if err := stageAttachmentDrops(ctx, tx, p.ID); err != nil {
						return err
					}
				}
				if _, err := tx.ExecContext(ctx, `UPDATE tidemark_targets SET `+column+` = ? WHERE id = ?`, gen, p.ID); err != nil {
					return err
				}
			}
		}
		return tx.QueryRowContext(ctx, `SELECT gen FROM tidemark_flows WHERE name = ?`, p.Flow).Scan(&res.Gen)
	})
	if err != nil {
		return res, fmt.Errorf("committing target %d: %w", p.ID, err)
	}
	return res, nil
}

// stageAttachmentDrops stages a drop on every attachment of a target that
// was destroyed, so that the next setup creates them again.
func stageAttachmentDrops(ctx context.Context, tx *sql.Tx, parent int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, staged FROM tidemark_targets WHERE parent_id = ?`, parent)
	if err != nil {
		return err
	}
	type att struct {
		id     int64
		staged []byte
	}
	var atts []att
	for rows.Next() {
		var a att
		if err := rows.Scan(&a.id, &a.staged); err != nil {
			rows.Close()
			return err
		}
		atts = append(atts, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
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
		if _, err := tx.ExecContext(ctx, `UPDATE tidemark_targets SET staged = ? WHERE id = ?`, blob, a.id); err != nil {
			return err
		}
	}
	return nil
}

// nonNil keeps an empty record distinct from NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	return b
}

const rowMetaColumns = `id, key, ordinal, content_fp, logic_fp, gen, staged IS NOT NULL, error_count`

func scanRowMeta(rows *sql.Rows) (statestore.RowMeta, error) {
	var (
		m       statestore.RowMeta
		ordinal sql.NullInt64
		staged  bool
	)
	if err := rows.Scan(&m.ID, &m.Key, &ordinal, &m.ContentFP, &m.LogicFP, &m.Gen, &staged, &m.ErrorCount); err != nil {
		return m, err
	}
	if ordinal.Valid {
		m.Ordinal = &ordinal.Int64
	}
	m.Staged = staged
	return m, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// RowLookup implements statestore.Store.
func (s *Store) RowLookup(ctx context.Context, p statestore.RowLookupParams) ([]statestore.RowMeta, error) {
	out := make([]statestore.RowMeta, 0, len(p.Keys))
	for chunk := range slices.Chunk(p.Keys, maxParams) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, p.SourceID)
		for _, k := range chunk {
			args = append(args, k)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+rowMetaColumns+` FROM tidemark_rows WHERE source_id = ? AND key IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, classify(fmt.Errorf("looking up rows: %w", err))
		}
		out, err = appendRowMetas(out, rows)
		if err != nil {
			return nil, classify(fmt.Errorf("looking up rows: %w", err))
		}
	}
	return out, nil
}

func appendRowMetas(out []statestore.RowMeta, rows *sql.Rows) ([]statestore.RowMeta, error) {
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

// RowLoad implements statestore.Store.
func (s *Store) RowLoad(ctx context.Context, p statestore.RowLoadParams) ([]statestore.RowTracking, error) {
	out := make([]statestore.RowTracking, 0, len(p.IDs))
	for chunk := range slices.Chunk(p.IDs, maxParams) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, `SELECT id, tracking, staged FROM tidemark_rows WHERE id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, classify(fmt.Errorf("loading rows: %w", err))
		}
		for rows.Next() {
			var t statestore.RowTracking
			if err := rows.Scan(&t.ID, &t.Tracking, &t.Staged); err != nil {
				rows.Close()
				return nil, classify(fmt.Errorf("loading rows: %w", err))
			}
			out = append(out, t)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, classify(fmt.Errorf("loading rows: %w", err))
		}
	}
	return out, nil
}

// RowScan implements statestore.Store.
func (s *Store) RowScan(ctx context.Context, p statestore.RowScanParams) ([]statestore.RowMeta, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+rowMetaColumns+` FROM tidemark_rows WHERE source_id = ? AND id > ? ORDER BY id LIMIT ?`,
		p.SourceID, p.AfterID, p.Limit)
	if err != nil {
		return nil, classify(fmt.Errorf("scanning rows: %w", err))
	}
	out, err := appendRowMetas(nil, rows)
	if err != nil {
		return nil, classify(fmt.Errorf("scanning rows: %w", err))
	}
	return out, nil
}

// RowCount implements statestore.Store.
func (s *Store) RowCount(ctx context.Context, p statestore.RowCountParams) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM tidemark_rows WHERE source_id = ?`, p.SourceID).Scan(&n); err != nil {
		return 0, classify(fmt.Errorf("counting rows: %w", err))
	}
	return n, nil
}

// RowFailures implements statestore.Store.
func (s *Store) RowFailures(ctx context.Context, p statestore.RowFailuresParams) ([]statestore.RowFailure, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, error, error_count, error_at FROM tidemark_rows
		WHERE source_id = ? AND error IS NOT NULL ORDER BY error_at DESC, id LIMIT ?`, p.SourceID, p.Limit)
	if err != nil {
		return nil, classify(fmt.Errorf("listing failing rows: %w", err))
	}
	defer rows.Close()
	var out []statestore.RowFailure
	for rows.Next() {
		var (
			e  statestore.RowFailure
			at sql.NullInt64
		)
		if err := rows.Scan(&e.Key, &e.Message, &e.Count, &at); err != nil {
			return nil, classify(fmt.Errorf("listing failing rows: %w", err))
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("listing failing rows: %w", err))
	}
	return out, nil
}

// rowInfoColumns are the columns of a statestore.RowInfo, in the order it is scanned.
const rowInfoColumns = `id, source_id, key, ordinal, content_fp, logic_fp, gen, tracking, staged, coalesce(error, ''), error_count, error_at, processed_at`

// rowInfoNoBlobs are rowInfoColumns without the blobs.
const rowInfoNoBlobs = `id, source_id, key, ordinal, content_fp, logic_fp, gen, NULL, NULL, coalesce(error, ''), error_count, error_at, processed_at`

func scanRowInfos(rows *sql.Rows) ([]statestore.RowInfo, error) {
	defer rows.Close()
	var out []statestore.RowInfo
	for rows.Next() {
		var (
			r             statestore.RowInfo
			ordinal       sql.NullInt64
			errAt, doneAt sql.NullInt64
		)
		if err := rows.Scan(&r.ID, &r.SourceID, &r.Key, &ordinal, &r.ContentFP, &r.LogicFP, &r.Gen, &r.Tracking, &r.Staged,
			&r.Error, &r.ErrorCount, &errAt, &doneAt); err != nil {
			return nil, err
		}
		if ordinal.Valid {
			r.Ordinal = &ordinal.Int64
		}
		r.ErrorAt, r.ProcessedAt = fromMicros(errAt), fromMicros(doneAt)
		out = append(out, r)
	}
	return out, rows.Err()
}

// RowFind implements statestore.Store.
func (s *Store) RowFind(ctx context.Context, p statestore.RowFindParams) (statestore.RowInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+rowInfoColumns+` FROM tidemark_rows WHERE source_id = ? AND key = ?`, p.SourceID, p.Key)
	if err != nil {
		return statestore.RowInfo{}, classify(fmt.Errorf("finding row %q: %w", p.Key, err))
	}
	out, err := scanRowInfos(rows)
	if err != nil {
		return statestore.RowInfo{}, classify(fmt.Errorf("finding row %q: %w", p.Key, err))
	}
	if len(out) == 0 {
		return statestore.RowInfo{}, fmt.Errorf("row %q: %w", p.Key, statestore.ErrNotFound)
	}
	return out[0], nil
}

// RowGet implements statestore.Store.
func (s *Store) RowGet(ctx context.Context, p statestore.RowGetParams) ([]statestore.RowInfo, error) {
	var out []statestore.RowInfo
	for chunk := range slices.Chunk(p.IDs, maxParams) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		cols := rowInfoNoBlobs
		if p.Blobs {
			cols = rowInfoColumns
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM tidemark_rows WHERE id IN (`+placeholders(len(chunk))+`) ORDER BY id`, args...)
		if err != nil {
			return nil, classify(fmt.Errorf("getting rows: %w", err))
		}
		got, err := scanRowInfos(rows)
		if err != nil {
			return nil, classify(fmt.Errorf("getting rows: %w", err))
		}
		out = append(out, got...)
	}
	return out, nil
}

// RowPage implements statestore.Store.
func (s *Store) RowPage(ctx context.Context, p statestore.RowPageParams) ([]statestore.RowInfo, error) {
	q := `SELECT ` + rowInfoColumns + ` FROM tidemark_rows WHERE source_id = ? AND key > ?`
	if p.Failed {
		q += ` AND error IS NOT NULL`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY key LIMIT ?`, p.SourceID, p.After, p.Limit)
	if err != nil {
		return nil, classify(fmt.Errorf("paging rows: %w", err))
	}
	out, err := scanRowInfos(rows)
	if err != nil {
		return nil, classify(fmt.Errorf("paging rows: %w", err))
	}
	return out, nil
}

// OwnerExists implements statestore.Store.
func (s *Store) OwnerExists(ctx context.Context, p statestore.OwnerExistsParams) (bool, error) {
	var ok bool
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tidemark_owners WHERE target_id = ?)`, p.TargetID).Scan(&ok); err != nil {
		return false, classify(fmt.Errorf("looking for owners of target %d: %w", p.TargetID, err))
	}
	return ok, nil
}

// OwnerFind implements statestore.Store.
func (s *Store) OwnerFind(ctx context.Context, p statestore.OwnerFindParams) ([]statestore.Owner, error) {
	if len(p.Keys) == 0 {
		return nil, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, classify(fmt.Errorf("finding owners: %w", err))
	}
	defer conn.Close()
	stmt, err := conn.PrepareContext(ctx, `SELECT row_id FROM tidemark_owners WHERE target_id = ? AND key_hash = ?`)
	if err != nil {
		return nil, classify(fmt.Errorf("finding owners: %w", err))
	}
	defer stmt.Close()
	var out []statestore.Owner
	for _, k := range p.Keys {
		rows, err := stmt.QueryContext(ctx, k.TargetID, k.KeyHash[:])
		if err != nil {
			return nil, classify(fmt.Errorf("finding owners: %w", err))
		}
		for rows.Next() {
			o := statestore.Owner{OwnerKey: k}
			if err := rows.Scan(&o.RowID); err != nil {
				rows.Close()
				return nil, classify(fmt.Errorf("finding owners: %w", err))
			}
			out = append(out, o)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, classify(fmt.Errorf("finding owners: %w", err))
		}
	}
	return out, nil
}

// Precommit implements statestore.Store.
func (s *Store) Precommit(ctx context.Context, p statestore.PrecommitParams) ([]int64, error) {
	ids := make([]int64, len(p.Rows))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		insert, err := tx.PrepareContext(ctx, `INSERT INTO tidemark_rows (source_id, key, staged) VALUES (?, ?, ?)
			ON CONFLICT (source_id, key) DO UPDATE SET staged = excluded.staged RETURNING id`)
		if err != nil {
			return err
		}
		defer insert.Close()
		update, err := tx.PrepareContext(ctx, `UPDATE tidemark_rows SET staged = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer update.Close()
		for i, r := range p.Rows {
			id := r.ID
			if id == 0 {
				if err := insert.QueryRowContext(ctx, p.SourceID, r.Key, r.Staged).Scan(&id); err != nil {
					return fmt.Errorf("inserting row %s: %w", r.Key, err)
				}
			} else if _, err := update.ExecContext(ctx, r.Staged, id); err != nil {
				return fmt.Errorf("staging row %s: %w", r.Key, err)
			}
			ids[i] = id
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("precommitting %d rows: %w", len(p.Rows), err)
	}
	return ids, nil
}

// Commit implements statestore.Store. The changes are added to the
// outbox last, in the same transaction.
func (s *Store) Commit(ctx context.Context, p statestore.CommitParams) error {
	at := micros(p.At)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		disown, err := tx.PrepareContext(ctx, `DELETE FROM tidemark_owners WHERE target_id = ? AND key_hash = ? AND row_id = ?`)
		if err != nil {
			return err
		}
		defer disown.Close()
		own, err := tx.PrepareContext(ctx, `INSERT INTO tidemark_owners (target_id, key_hash, row_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		defer own.Close()
		if len(p.Rows) > 0 {
			update, err := tx.PrepareContext(ctx, `UPDATE tidemark_rows SET ordinal = ?, content_fp = ?, logic_fp = ?, gen = ?, tracking = ?,
				staged = NULL, error = NULL, error_count = 0, error_at = NULL, processed_at = ? WHERE id = ?`)
			if err != nil {
				return err
			}
			defer update.Close()
			for _, r := range p.Rows {
				if _, err := update.ExecContext(ctx, nullInt(r.Ordinal), r.ContentFP, r.LogicFP, r.Gen, r.Tracking, at, r.ID); err != nil {
					return fmt.Errorf("committing row %d: %w", r.ID, err)
				}
				for _, o := range r.DroppedOwners {
					if _, err := disown.ExecContext(ctx, o.TargetID, o.KeyHash[:], r.ID); err != nil {
						return fmt.Errorf("dropping ownership of row %d: %w", r.ID, err)
					}
				}
				for _, o := range r.NewOwners {
					if _, err := own.ExecContext(ctx, o.TargetID, o.KeyHash[:], r.ID); err != nil {
						return fmt.Errorf("recording ownership of row %d: %w", r.ID, err)
					}
				}
			}
		}
		if len(p.Bumps) > 0 {
			bump, err := tx.PrepareContext(ctx, `UPDATE tidemark_rows SET ordinal = ?, error = NULL, error_count = 0, error_at = NULL, processed_at = ? WHERE id = ?`)
			if err != nil {
				return err
			}
			defer bump.Close()
			for _, b := range p.Bumps {
				if _, err := bump.ExecContext(ctx, nullInt(b.Ordinal), at, b.ID); err != nil {
					return fmt.Errorf("updating the ordinal of row %d: %w", b.ID, err)
				}
			}
		}
		for _, e := range p.Failed {
			if e.ID != 0 {
				_, err = tx.ExecContext(ctx, `UPDATE tidemark_rows SET error = ?, error_count = error_count + 1, error_at = ? WHERE id = ?`, e.Message, at, e.ID)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO tidemark_rows (source_id, key, error, error_count, error_at) VALUES (?, ?, ?, 1, ?)
					ON CONFLICT (source_id, key) DO UPDATE SET error = excluded.error, error_count = tidemark_rows.error_count + 1, error_at = excluded.error_at`,
					p.SourceID, e.Key, e.Message, at)
			}
			if err != nil {
				return fmt.Errorf("recording the failure of row %s: %w", e.Key, err)
			}
		}
		for _, d := range p.Deletes {
			for _, o := range d.Owners {
				if _, err := disown.ExecContext(ctx, o.TargetID, o.KeyHash[:], d.ID); err != nil {
					return fmt.Errorf("dropping ownership of row %d: %w", d.ID, err)
				}
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM tidemark_rows WHERE id = ?`, d.ID); err != nil {
				return fmt.Errorf("deleting row %d: %w", d.ID, err)
			}
		}
		if len(p.Changes) > 0 {
			if err := addChanges(ctx, tx, at, p.Changes); err != nil {
				return fmt.Errorf("adding %d changes to the outbox: %w", len(p.Changes), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("committing %d rows and %d changes: %w", len(p.Rows)+len(p.Bumps)+len(p.Failed)+len(p.Deletes), len(p.Changes), err)
	}
	return nil
}
