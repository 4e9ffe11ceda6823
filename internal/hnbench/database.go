package hnbench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/hnindex"
	"github.com/tidemark/tidemark/source/hackernews"
	"github.com/tidemark/tidemark/target/sqlite"
)

// columns are hn_messages' columns, as DESIGN.md names them.
var columns = []string{"id", "thread_id", "parent_id", "content_type", "author", "text", "url", "created_at"}

// database is the database a backend's scenarios run against.
type database struct {
	b       *bench
	backend string
	// url is the current database: a file path or a postgres:// URL.
	url string
	n   int
}

func newDatabase(b *bench, backend string) *database { return &database{b: b, backend: backend} }

// fresh makes a new, empty database and returns its location.
func (d *database) fresh(ctx context.Context) (string, error) {
	d.close(ctx)
	d.n++
	if d.backend == "sqlite" {
		d.url = filepath.Join(d.b.cfg.Dir, fmt.Sprintf("sqlite-%d.db", d.n))
		return d.url, nil
	}
	name := fmt.Sprintf("hnbench_%d_%d", os.Getpid(), d.n)
	if err := pgExec(ctx, d.b.cfg.PostgresURL, `CREATE DATABASE `+name); err != nil {
		return "", err
	}
	u, err := url.Parse(d.b.cfg.PostgresURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	d.url = u.String()
	return d.url, nil
}

// close drops the current database.
func (d *database) close(ctx context.Context) {
	if d.url == "" {
		return
	}
	if d.backend == "sqlite" {
		removeSQLite(d.url)
	} else {
		u, _ := url.Parse(d.url)
		name := strings.TrimPrefix(u.Path, "/")
		if err := pgExec(context.WithoutCancel(ctx), d.b.cfg.PostgresURL, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			d.b.log.Warn("dropping a benchmark database", "db", name, "err", err)
		}
	}
	d.url = ""
}

func pgExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// count returns the rows of hn_messages.
func (d *database) count(ctx context.Context) (int64, error) {
	return d.countTable(ctx, d.url, "hn_messages")
}

func (d *database) countTable(ctx context.Context, at, table string) (int64, error) {
	var n int64
	if d.backend == "sqlite" {
		db, err := sql.Open("sqlite", at)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		return n, db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n)
	}
	conn, err := pgx.Connect(ctx, at)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	return n, conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n)
}

// writeLimit loads exactly the rows the sync wrote with the plain tool,
// into the same table definition: psql \copy for PostgreSQL (into a table
// LIKE hn_messages INCLUDING ALL: its generated tsvector column and GIN
// index), one transaction of prepared inserts for SQLite (into a database
// set up by hnindex: the same table and full-text triggers).
func (d *database) writeLimit(ctx context.Context, runs int) (Result, error) {
	if d.backend == "postgres" {
		return d.psqlCopy(ctx, runs)
	}
	return d.bulkInsert(ctx, runs)
}

func (d *database) psqlCopy(ctx context.Context, runs int) (Result, error) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		return Result{}, fmt.Errorf("psql is not installed: %w", err)
	}
	csv := filepath.Join(d.b.cfg.Dir, "rows.csv")
	defer os.Remove(csv)
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close(ctx)
	f, err := os.Create(csv)
	if err != nil {
		return Result{}, err
	}
	_, err = conn.PgConn().CopyTo(ctx, f, `COPY (SELECT `+strings.Join(columns, ", ")+` FROM hn_messages) TO STDOUT WITH (FORMAT csv)`)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Result{}, fmt.Errorf("exporting the rows: %w", err)
	}
	r := Result{Backend: d.backend, Scenario: "write limit: psql \\copy", Rows: int64(d.b.rows)}
	for range runs {
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS copy_target; CREATE TABLE copy_target (LIKE hn_messages INCLUDING ALL)`); err != nil {
			return r, err
		}
		run, err := d.b.process(ctx, nil, psql, d.url, "-v", "ON_ERROR_STOP=1", "-c",
			`\copy copy_target (`+strings.Join(columns, ", ")+`) FROM '`+csv+`' WITH (FORMAT csv)`)
		if err != nil {
			return r, err
		}
		if n, err := d.countTable(ctx, d.url, "copy_target"); err != nil || n != int64(d.b.rows) {
			return r, fmt.Errorf("psql copied %d rows, want %d (%v)", n, d.b.rows, err)
		}
		r.Seconds = append(r.Seconds, run.seconds)
		r.PeakRSS = max(r.PeakRSS, run.rss)
	}
	_, err = conn.Exec(ctx, `DROP TABLE copy_target`)
	return r, err
}

func (d *database) bulkInsert(ctx context.Context, runs int) (Result, error) {
	src, err := sql.Open("sqlite", d.url)
	if err != nil {
		return Result{}, err
	}
	var rows [][]any
	q, err := src.QueryContext(ctx, `SELECT `+strings.Join(columns, ", ")+` FROM hn_messages`)
	if err != nil {
		src.Close()
		return Result{}, err
	}
	for q.Next() {
		row := make([]any, len(columns))
		ptrs := make([]any, len(columns))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := q.Scan(ptrs...); err != nil {
			q.Close()
			src.Close()
			return Result{}, err
		}
		rows = append(rows, row)
	}
	q.Close()
	src.Close()

	r := Result{Backend: d.backend, Scenario: "write limit: one-transaction bulk insert", Rows: int64(len(rows))}
	for i := range runs {
		path := filepath.Join(d.b.cfg.Dir, fmt.Sprintf("bulk-%d.db", i))
		if _, err := d.b.process(ctx, nil, d.b.cfg.Binary, "setup", "--yes", "--db", path); err != nil {
			return r, err
		}
		db, err := sqlite.Open(ctx, "main", path)
		if err != nil {
			return r, err
		}
		start := time.Now()
		err = insertAll(ctx, db.SQL(), rows)
		elapsed := time.Since(start)
		db.Close()
		removeSQLite(path)
		if err != nil {
			return r, err
		}
		r.Seconds = append(r.Seconds, elapsed.Seconds())
	}
	return r, nil
}

func insertAll(ctx context.Context, db *sql.DB, rows [][]any) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO hn_messages (`+strings.Join(columns, ", ")+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	for _, row := range rows {
		if _, err := stmt.ExecContext(ctx, row...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// naive is the approach Tidemark replaces: list, fetch every thread, and
// upsert every row one statement at a time, each its own transaction,
// into the same table definition.
func (d *database) naive(ctx context.Context) (Result, error) {
	r := Result{Backend: d.backend, Scenario: "naive: fetch every thread, upsert row by row"}
	var upsert func(ctx context.Context, m hnindex.Message) error
	var done func()
	switch d.backend {
	case "sqlite":
		path := filepath.Join(d.b.cfg.Dir, "naive.db")
		if _, err := d.b.process(ctx, nil, d.b.cfg.Binary, "setup", "--yes", "--db", path); err != nil {
			return r, err
		}
		db, err := sqlite.Open(ctx, "main", path)
		if err != nil {
			return r, err
		}
		stmt := `INSERT INTO hn_messages (` + strings.Join(columns, ", ") + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET thread_id = excluded.thread_id, parent_id = excluded.parent_id, content_type = excluded.content_type,
			author = excluded.author, text = excluded.text, url = excluded.url, created_at = excluded.created_at`
		upsert = func(ctx context.Context, m hnindex.Message) error {
			var at any
			if m.CreatedAt != nil {
				at = m.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000000Z")
			}
			_, err := db.SQL().ExecContext(ctx, stmt, m.ID, m.ThreadID, m.ParentID, m.ContentType, m.Author, m.Text, m.URL, at)
			return err
		}
		done = func() {
			db.Close()
			removeSQLite(path)
		}
	default:
		conn, err := pgx.Connect(ctx, d.url)
		if err != nil {
			return r, err
		}
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS naive_target; CREATE TABLE naive_target (LIKE hn_messages INCLUDING ALL)`); err != nil {
			conn.Close(ctx)
			return r, err
		}
		stmt := `INSERT INTO naive_target (` + strings.Join(columns, ", ") + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO UPDATE SET thread_id = excluded.thread_id, parent_id = excluded.parent_id, content_type = excluded.content_type,
			author = excluded.author, text = excluded.text, url = excluded.url, created_at = excluded.created_at`
		upsert = func(ctx context.Context, m hnindex.Message) error {
			_, err := conn.Exec(ctx, stmt, m.ID, m.ThreadID, m.ParentID, m.ContentType, m.Author, m.Text, m.URL, m.CreatedAt)
			return err
		}
		done = func() {
			conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS naive_target`)
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	defer done()

	src, err := hackernews.New(hackernews.Options{BaseURL: d.b.url, MaxResults: d.b.maxResults(), RequestsPerSecond: 1e6, Concurrency: 16})
	if err != nil {
		return r, err
	}
	d.b.fake.ResetCounts()
	start := time.Now()
	threads := make(chan hackernews.Thread, 16)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(threads)
		fetch, fctx := errgroup.WithContext(gctx)
		fetch.SetLimit(16)
		for l, err := range src.List(fctx) {
			if err != nil {
				return err
			}
			fetch.Go(func() error {
				f, err := src.Get(fctx, l.Key)
				if err != nil || !f.Exists {
					return err
				}
				select {
				case threads <- f.Value:
					return nil
				case <-fctx.Done():
					return fctx.Err()
				}
			})
		}
		return fetch.Wait()
	})
	var written int64
	g.Go(func() error {
		for t := range threads {
			for _, m := range hnindex.Messages(t) {
				if err := upsert(gctx, m); err != nil {
					return err
				}
				written++
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return r, err
	}
	r.Seconds = []float64{time.Since(start).Seconds()}
	r.Rows = written
	c := d.b.fake.Requests()
	r.ListingRequests, r.ItemRequests = c.Listing, c.Items
	return r, nil
}

// removeSQLite removes a SQLite database with its WAL, shared memory and
// flow lock files.
func removeSQLite(path string) {
	locks, _ := filepath.Glob(path + ".*.lock")
	for _, f := range append([]string{path, path + "-wal", path + "-shm"}, locks...) {
		os.Remove(f)
	}
}
