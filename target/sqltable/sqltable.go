// Package sqltable is one table API over both SQL databases Tidemark
// writes: a database opened from a URL — a SQLite file path or a
// postgres:// URL — and tables declared on it, with full-text search, the
// same whichever the database. A flow written on it never switches on the
// backend:
//
//	db, err := sqltable.Open(ctx, "main", url, sqltable.Options{})
//	messages := sqltable.Declare[Message](flow, db, "hn_messages")
//	sqltable.FullText(messages, "text", sqltable.FullTextOptions{})
//	// in the processing function: messages.Declare(r, m)
//	hits, err := messages.Search(ctx, "rust sqlite", 10)
//
// The backends' own packages, target/sqlite and target/postgres, remain for
// what only one of them has (a PostgreSQL schema, SQL command attachments,
// an FTS5 tokenizer).
package sqltable

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/dburl"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/postgres"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/target/table"
)

// Options configure a database.
type Options struct {
	// Writers is how many connections write a large batch at once on
	// PostgreSQL (default 1; see postgres.Options.Writers). SQLite has one
	// writer.
	Writers int
}

// DB is a SQL database for tables: SQLite or PostgreSQL.
type DB struct {
	url      string
	sqlite   *sqlite.DB
	postgres *postgres.DB
}

// IsPostgres reports whether url names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgres(url string) bool { return dburl.IsPostgres(url) }

// Open opens the database at url: a postgres:// URL connects to
// PostgreSQL, anything else is the path of a SQLite file, created if
// missing. name is the database's stable logical name (see sqlite.Open and
// postgres.Connect).
func Open(ctx context.Context, name, url string, opts Options) (*DB, error) {
	if url == "" {
		return nil, errors.New("sqltable: no database URL: give a SQLite file path or a postgres:// URL")
	}
	d := &DB{url: url}
	var err error
	if IsPostgres(url) {
		d.postgres, err = postgres.Connect(ctx, name, dburl.Normalize(url), postgres.Options{Writers: opts.Writers})
	} else {
		d.sqlite, err = sqlite.Open(ctx, name, url)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// FromSQLite wraps a SQLite database opened by package sqlite.
func FromSQLite(db *sqlite.DB, url string) *DB { return &DB{url: url, sqlite: db} }

// FromPostgres wraps a PostgreSQL database opened by package postgres.
func FromPostgres(db *postgres.DB, url string) *DB { return &DB{url: url, postgres: db} }

// URL returns the URL the database was opened with: where Tidemark's state
// store goes too, by default.
func (d *DB) URL() string { return d.url }

// SQLite returns the SQLite database, nil on PostgreSQL.
func (d *DB) SQLite() *sqlite.DB { return d.sqlite }

// Postgres returns the PostgreSQL database, nil on SQLite.
func (d *DB) Postgres() *postgres.DB { return d.postgres }

// Close closes the database.
func (d *DB) Close() error {
	if d.sqlite != nil {
		return d.sqlite.Close()
	}
	if d.postgres != nil {
		d.postgres.Close()
	}
	return nil
}

// Table is a table target of row type T on either database.
type Table[T any] struct {
	sqlite   *sqlite.Table[T]
	postgres *postgres.Table[T]
}

// Declare declares the table name of rows of type T on db as a target of
// f; see sqlite.DeclareTable and postgres.DeclareTable for the columns,
// types and name rules, which are the same on both.
func Declare[T any](f *tidemark.Flow, db *DB, name string) *Table[T] {
	if db.postgres != nil {
		return &Table[T]{postgres: postgres.DeclareTable[T](f, db.postgres, name)}
	}
	return &Table[T]{sqlite: sqlite.DeclareTable[T](f, db.sqlite, name)}
}

// Declare declares row as one of the table's rows, in a processing
// function.
func (t *Table[T]) Declare(r *tidemark.Row, row T) {
	if t.postgres != nil {
		t.postgres.Declare(r, row)
		return
	}
	t.sqlite.Declare(r, row)
}

// OnChange attaches hook to the table t: see table.OnChange.
func OnChange[T any](t *Table[T], hook func(ctx context.Context, c tidemark.TargetChange[T]) error, opts ...tidemark.HookOption) {
	if t.postgres != nil {
		table.OnChange(t.postgres.Target, hook, opts...)
		return
	}
	table.OnChange(t.sqlite.Target, hook, opts...)
}

// Key returns the table's key as a target: its key in an update's stats
// (UpdateStats.Targets) and in the flow's status.
func (t *Table[T]) Key() target.Key {
	if t.postgres != nil {
		return t.postgres.Inner().Key()
	}
	return t.sqlite.Inner().Key()
}

// Name returns the table's name.
func (t *Table[T]) Name() string {
	if t.postgres != nil {
		return t.postgres.Name()
	}
	return t.sqlite.Name()
}

// Rows streams the table's rows in primary key order.
func (t *Table[T]) Rows(ctx context.Context) iter.Seq2[T, error] {
	if t.postgres != nil {
		return t.postgres.Rows(ctx)
	}
	return t.sqlite.Rows(ctx)
}

// Search returns the rows whose indexed text matches query, best first, at
// most limit (20 if limit is 0), with snippets. The query is in web-search
// syntax (see table.ParseQuery); an empty one is table.ErrEmptyQuery.
func (t *Table[T]) Search(ctx context.Context, query string, limit int) ([]table.Hit[T], error) {
	if t.postgres != nil {
		return t.postgres.Search(ctx, query, limit)
	}
	return t.sqlite.Search(ctx, query, limit)
}

// SearchPage returns a page of the rows Search would return and the
// number of rows that match (see table.SearchPage).
func (t *Table[T]) SearchPage(ctx context.Context, query string, opts table.SearchOptions) (table.SearchPage[T], error) {
	if t.postgres != nil {
		return t.postgres.SearchPage(ctx, query, opts)
	}
	return t.sqlite.SearchPage(ctx, query, opts)
}

// FullTextOptions configure a full-text index; the zero value indexes
// English with stemming.
type FullTextOptions struct {
	// Language is the language of the text: "english" (the default)
	// stems English words on both databases; "simple" indexes words as
	// they are. On PostgreSQL any text search configuration may be named;
	// on SQLite, whose stemmer knows only English, any other language
	// indexes words as they are.
	Language string
	// NewestFirst, when set, names a column (a time, such as created_at)
	// whose descending order breaks ties in rank: hits that match as well
	// come newest first, then in primary key order. Without it ties come in
	// primary key order.
	NewestFirst string
}

// FullText declares a full-text index of the text column of t, which
// Search queries. A table has at most one.
func FullText[T any](t *Table[T], column string, opts FullTextOptions) {
	lang := opts.Language
	if lang == "" {
		lang = "english"
	}
	if t.postgres != nil {
		postgres.FullText(t.postgres, column, lang)
		if opts.NewestFirst != "" {
			postgres.SearchNewestFirst(t.postgres, opts.NewestFirst)
		}
		return
	}
	if opts.NewestFirst != "" {
		sqlite.SearchNewestFirst(t.sqlite, opts.NewestFirst)
	}
	if lang == "english" {
		sqlite.FullText(t.sqlite, column)
		return
	}
	sqlite.FullText(t.sqlite, column, sqlite.Tokenizer("unicode61 remove_diacritics 2"))
}

// quoted returns the name of the table spec describes, quoted for the
// database's dialect, with its schema if any.
func (d *DB) quoted(spec table.Spec) string {
	if d.postgres != nil {
		if spec.Schema != "" {
			return pgx.Identifier{spec.Schema, spec.Table}.Sanitize()
		}
		return pgx.Identifier{spec.Table}.Sanitize()
	}
	return `"` + strings.ReplaceAll(spec.Table, `"`, `""`) + `"`
}

// RowCount returns the number of rows in the table spec describes.
func (d *DB) RowCount(ctx context.Context, spec table.Spec) (int64, error) {
	q := "SELECT count(*) FROM " + d.quoted(spec)
	var n int64
	var err error
	if d.postgres != nil {
		err = d.postgres.Pool().QueryRow(ctx, q).Scan(&n)
	} else {
		err = d.sqlite.SQL().QueryRowContext(ctx, q).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("counting the rows of %s: %w", spec.Table, d.missing(ctx, spec, err))
	}
	return n, nil
}

// missing returns a *table.NotSetUpError for a read that failed with err
// if the database lacks the table spec describes (dropped by hand, say),
// else err.
func (d *DB) missing(ctx context.Context, spec table.Spec, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var exists bool
	var check error
	if d.postgres != nil {
		check = d.postgres.Pool().QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, d.quoted(spec)).Scan(&exists)
	} else {
		check = d.sqlite.SQL().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?)`, spec.Table).Scan(&exists)
	}
	if check == nil && !exists {
		return &table.NotSetUpError{Table: spec.Table}
	}
	return err
}

// Lookup returns the row of the table spec describes whose primary key is
// key (encoded as table target keys are: a JSON array of the primary key's
// values), by column name; false when there is none.
func (d *DB) Lookup(ctx context.Context, spec table.Spec, key target.Key) (map[string]any, bool, error) {
	rows, err := d.LookupMany(ctx, spec, []target.Key{key})
	if err != nil {
		return nil, false, err
	}
	return rows[0], rows[0] != nil, nil
}

// lookupChunk is how many keys LookupMany asks for in one statement.
const lookupChunk = 500

// LookupMany returns the rows of the table spec describes whose primary
// keys are keys (as Lookup takes them), in the order of keys: nil for a key
// with no row. It asks for up to 500 keys in one statement.
func (d *DB) LookupMany(ctx context.Context, spec table.Spec, keys []target.Key) ([]map[string]any, error) {
	schema, err := spec.KeySchema()
	if err != nil {
		return nil, err
	}
	pk := make([]table.ColumnSpec, len(schema.PrimaryKey))
	for j, i := range schema.PrimaryKey {
		pk[j] = spec.Columns[i]
	}
	cols := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		cols[i] = "t." + d.quoted(table.Spec{Table: c.Name})
	}
	out := make([]map[string]any, len(keys))
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		// The keys are a VALUES list joined to the table, each with its
		// position, so that rows come back to their keys whatever their
		// types.
		var (
			args   []any
			tuples []string
		)
		param := func(v any, c *table.ColumnSpec) string {
			if d.postgres == nil {
				args = append(args, sqlite.Value(v))
				return "?"
			}
			args = append(args, v)
			if c == nil {
				return fmt.Sprintf("$%d::bigint", len(args))
			}
			return fmt.Sprintf("$%d::%s", len(args), c.Type)
		}
		for i, key := range chunk {
			vals, err := schema.DecodeKey(key)
			if err != nil {
				return nil, fmt.Errorf("table %s: %s is not a key of its primary key (%s): %w", spec.Table, key, strings.Join(spec.PrimaryKey, ", "), err)
			}
			ps := []string{param(int64(start+i), nil)}
			for j, v := range vals {
				ps = append(ps, param(v, &pk[j]))
			}
			tuples = append(tuples, "("+strings.Join(ps, ", ")+")")
		}
		names := []string{"tidemark_pos"}
		var on []string
		for j, c := range pk {
			names = append(names, fmt.Sprintf("k%d", j))
			on = append(on, fmt.Sprintf("t.%s = k.k%d", d.quoted(table.Spec{Table: c.Name}), j))
		}
		q := "WITH k(" + strings.Join(names, ", ") + ") AS (VALUES " + strings.Join(tuples, ", ") + ") SELECT k.tidemark_pos, " +
			strings.Join(cols, ", ") + " FROM " + d.quoted(spec) + " AS t JOIN k ON " + strings.Join(on, " AND ")
		if err := d.query(ctx, q, args, func(scan func(...any) error) error {
			var pos int64
			vals := make([]any, len(cols))
			ptrs := []any{&pos}
			for i := range vals {
				ptrs = append(ptrs, &vals[i])
			}
			if err := scan(ptrs...); err != nil {
				return err
			}
			row := make(map[string]any, len(cols))
			for i, c := range spec.Columns {
				if b, ok := vals[i].([]byte); ok && c.Kind != table.KindBytes {
					vals[i] = string(b)
				}
				row[c.Name] = vals[i]
			}
			if pos >= 0 && pos < int64(len(out)) {
				out[pos] = row
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("reading rows of %s: %w", spec.Table, d.missing(ctx, spec, err))
		}
	}
	return out, nil
}

// query runs q and calls each for each of its rows.
func (d *DB) query(ctx context.Context, q string, args []any, each func(scan func(...any) error) error) error {
	if d.postgres != nil {
		rows, err := d.postgres.Pool().Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		return eachRow(rows, each)
	}
	rows, err := d.sqlite.SQL().QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	return eachRow(rows, each)
}

// eachRow calls each for each of rows: pgx's or database/sql's.
func eachRow(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}, each func(scan func(...any) error) error) error {
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}
