package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/table"
)

// Table is a table of rows of type T in a PostgreSQL database.
type Table[T any] struct {
	*table.Target[T]
	db       *DB
	fullText *FullTextSpec
	// newestFirst is the column whose descending order breaks ties in a
	// search's rank; "" for none (see SearchNewestFirst).
	newestFirst string
}

// SearchNewestFirst has Search and SearchPage break ties in rank by the
// column, descending (NULLs last), then by primary key: hits that match as
// well come newest first when the column is a time. column must be one of
// the table's (else the flow has an error); it changes no setup.
func SearchNewestFirst[T any](t *Table[T], column string) {
	table.CheckColumn(t.Target, "postgres", "to order search ties by", column)
	t.newestFirst = column
}

// searchOrder is the ORDER BY of a search, after rank.
func (t *Table[T]) searchOrder() string {
	if t.newestFirst == "" {
		return t.orderBy()
	}
	return "t." + ident(t.newestFirst) + " DESC NULLS LAST, " + t.orderBy()
}

// DeclareTable declares the table name, in the DB's schema, holding rows of
// type T (see package table for the mapping of struct fields to columns),
// as a target of flow f. An empty name takes the default of
// table.TableName. Names, of the table and of its columns, are at most 63
// bytes, PostgreSQL's limit.
func DeclareTable[T any](f *tidemark.Flow, db *DB, name string) *Table[T] {
	name = table.TableName[T](f, name)
	if len(name) > maxIdent {
		f.AddError(fmt.Errorf("postgres: table name %q is longer than %d bytes", name, maxIdent))
	}
	t := table.Declare[T](f, db.sinks, table.Options{
		Kind:   "postgres.table",
		Key:    target.Key("postgres:" + db.name + "/" + db.opts.Schema + "." + name),
		Schema: db.opts.Schema,
		Table:  name,
	})
	for _, c := range t.Schema().Columns {
		if len(c.Name) > maxIdent {
			f.AddError(fmt.Errorf("postgres: table %s: column name %q is longer than %d bytes", name, c.Name, maxIdent))
		}
	}
	return &Table[T]{Target: t, db: db}
}

// maxIdent is PostgreSQL's limit on the length of an identifier, past which
// it silently truncates.
const maxIdent = 63

// Name returns the table's name.
func (t *Table[T]) Name() string { return t.Spec().Table }

// QualifiedName returns the table's quoted, schema-qualified name.
func (t *Table[T]) QualifiedName() string { return t.db.qualified(t.Name()) }

// selectList returns the table's columns for a SELECT, JSON as text.
func (t *Table[T]) selectList() string {
	spec := t.Spec()
	cols := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		cols[i] = "t." + ident(c.Name)
		if c.Kind == table.KindJSON {
			cols[i] += "::text"
		}
	}
	return strings.Join(cols, ", ")
}

func (t *Table[T]) orderBy() string {
	spec := t.Spec()
	pk := make([]string, len(spec.PrimaryKey))
	for i, p := range spec.PrimaryKey {
		pk[i] = "t." + ident(p)
	}
	return strings.Join(pk, ", ")
}

// Rows returns every row of the table, in primary key order. A table the
// database does not have is a *table.NotSetUpError.
func (t *Table[T]) Rows(ctx context.Context) iter.Seq2[T, error] {
	return t.Iterate(func() (table.RowScanner, func(), error) {
		rows, err := t.db.pool.Query(ctx, `SELECT `+t.selectList()+` FROM `+t.QualifiedName()+` AS t ORDER BY `+t.orderBy())
		if err != nil {
			if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == codeUndefinedTable {
				if missing := t.missing(ctx, ""); missing != nil {
					return nil, nil, missing
				}
			}
			return nil, nil, classify(ctx, err)
		}
		return rows, rows.Close, nil
	})
}

// FullTextSpec is the setup state of a full-text index.
type FullTextSpec struct {
	// Column is the text column indexed.
	Column string `json:"column"`
	// Language is the text search configuration, such as "english".
	Language string `json:"language"`
	// MaxChars is how many characters of the text are indexed, from its
	// start (FullTextMaxChars); 0 indexes all of it, as tables set up
	// before the bound did, and fails on a text past tsvector's 1 MB.
	MaxChars int `json:"max_chars,omitempty"`
}

// FullTextMaxChars is how many characters of a text a full-text index
// holds, from its start. A tsvector holds at most 1 MB of words and
// positions, which PostgreSQL enforces by failing the row's write; the
// densest text measured — distinct two-letter hyphenated words of 4-byte
// letters — takes 7.4 bytes a character, so 100,000 characters fit with a
// quarter to spare, and the first 15,000 words of English prose are
// indexed.
const FullTextMaxChars = 100_000

const (
	fullTextKind    = "fulltext"
	defaultLanguage = "english"
)

// indexed returns the SQL of the part of column that the index holds.
func (s *FullTextSpec) indexed(column string) string {
	if s.MaxChars == 0 {
		return column
	}
	return fmt.Sprintf("left(%s, %d)", column, s.MaxChars)
}

// fullTextColumn is the generated tsvector column of an indexed column.
func fullTextColumn(column string) string { return name(column, "tsv") }

// FullText declares a full-text index of the text column of t: a stored
// generated tsvector column (named column_tsv) of the column's first
// FullTextMaxChars characters, with a GIN index, in the language's text
// search configuration (default "english"), which Search queries. A table
// has at most one.
func FullText[T any](t *Table[T], column, language string) {
	if language == "" {
		language = defaultLanguage
	}
	spec := FullTextSpec{Column: column, Language: language, MaxChars: FullTextMaxChars}
	table.AttachFullText(t.Target, "postgres", fullTextKind, column, spec)
	t.fullText = &spec
}

// Search returns the rows whose indexed text matches query, best first
// (by ts_rank), at most limit (20 if limit is 0), with a snippet from
// ts_headline. The query is in web-search syntax (see table.ParseQuery),
// given to websearch_to_tsquery as parsed, each term once; one with no
// word to look for is table.ErrEmptyQuery, one past the bounds of package
// table a *table.SearchTooLargeError. The search takes at most
// table.SearchTimeout, or until ctx ends if sooner: its statement_timeout
// has the server stop the query then. A table or index the database does
// not have is a *table.NotSetUpError.
func (t *Table[T]) Search(ctx context.Context, query string, limit int) ([]table.Hit[T], error) {
	if t.fullText == nil {
		return nil, t.noFullText()
	}
	q, limit, err := table.PrepareSearch(query, limit)
	if err != nil {
		return nil, err
	}
	ctx, cancel := table.WithSearchTimeout(ctx)
	defer cancel()
	var hits []table.Hit[T]
	err = timedRead(ctx, t.db, func(tx pgx.Tx) (err error) {
		hits, err = t.search(ctx, tx, q, table.SearchOptions{Limit: limit})
		return err
	})
	if err != nil {
		return nil, t.searchError(ctx, err)
	}
	return hits, nil
}

// SearchPage returns a page of the rows Search would return, best first,
// and the number of rows that match (counted up to table.MaxSearchCount),
// read in one transaction. An offset past table.MaxSearchOffset is a
// *table.SearchTooLargeError. The count and the page take
// table.SearchTimeout together.
func (t *Table[T]) SearchPage(ctx context.Context, query string, opts table.SearchOptions) (table.SearchPage[T], error) {
	if t.fullText == nil {
		return table.SearchPage[T]{}, t.noFullText()
	}
	q, opts, err := table.PrepareSearchPage(query, opts)
	if err != nil {
		return table.SearchPage[T]{}, err
	}
	ctx, cancel := table.WithSearchTimeout(ctx)
	defer cancel()
	var page table.SearchPage[T]
	err = timedRead(ctx, t.db, func(tx pgx.Tx) error {
		fts := t.fullText
		var n int
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s AS t WHERE t.%s @@ websearch_to_tsquery($1::regconfig, $2) LIMIT $3) AS c`,
			t.QualifiedName(), ident(fullTextColumn(fts.Column))), fts.Language, q.WebSearch(), table.MaxSearchCount+1).Scan(&n)
		if err != nil {
			return err
		}
		page = table.SearchPage[T]{Total: min(n, table.MaxSearchCount), TotalCapped: n > table.MaxSearchCount}
		if opts.Offset < n {
			page.Hits, err = t.search(ctx, tx, q, opts)
		}
		return err
	})
	if err != nil {
		return table.SearchPage[T]{}, t.searchError(ctx, err)
	}
	return page, nil
}

func (t *Table[T]) noFullText() error {
	return fmt.Errorf("postgres: table %s has no full-text index; declare one with postgres.FullText", t.Name())
}

// search runs a parsed query for a page of hits in tx.
func (t *Table[T]) search(ctx context.Context, tx pgx.Tx, q table.Query, opts table.SearchOptions) ([]table.Hit[T], error) {
	fts := t.fullText
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT %s, ts_rank(t.%s, q), ts_headline($1::regconfig, %s, q, $4)
		FROM %s AS t, websearch_to_tsquery($1::regconfig, $2) AS q
		WHERE t.%s @@ q ORDER BY %d DESC, %s LIMIT $3 OFFSET $5`,
		t.selectList(), ident(fullTextColumn(fts.Column)), fts.indexed("t."+ident(fts.Column)), t.QualifiedName(),
		ident(fullTextColumn(fts.Column)), len(t.Spec().Columns)+1, t.searchOrder()),
		fts.Language, q.WebSearch(), opts.Limit,
		"StartSel="+table.HighlightStart+", StopSel="+table.HighlightEnd+", MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=…",
		opts.Offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hits []table.Hit[T]
	for rows.Next() {
		var (
			h     table.Hit[T]
			score float32
			err   error
		)
		if h.Row, err = t.Scan(rows, &score, &h.Snippet); err != nil {
			return nil, err
		}
		h.Score = float64(score)
		hits = append(hits, h)
	}
	return hits, rows.Err()
}

// timedRead runs read in a read-only transaction whose statements the
// server cancels when ctx's deadline passes: pgx, on its own, only closes
// the connection, and the server runs the query to its end.
func timedRead(ctx context.Context, d *DB, read func(pgx.Tx) error) error {
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if deadline, ok := ctx.Deadline(); ok {
		ms := max(time.Until(deadline).Milliseconds(), 1)
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`, strconv.FormatInt(ms, 10)); err != nil {
			return err
		}
	}
	if err := read(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// PostgreSQL's error codes a read of a table tells apart.
const (
	codeUndefinedTable  = "42P01"
	codeUndefinedColumn = "42703"
	codeQueryCanceled   = "57014"
)

// searchError returns the error of a search that failed with err: a
// *table.NotSetUpError if the table or its tsvector column is missing, the
// timeout if the server stopped the query (or why ctx ended, if it did),
// or else err.
func (t *Table[T]) searchError(ctx context.Context, err error) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case codeUndefinedTable, codeUndefinedColumn:
			if missing := t.missing(ctx, fullTextColumn(t.fullText.Column)); missing != nil {
				return fmt.Errorf("searching table %s: %w", t.Name(), missing)
			}
		case codeQueryCanceled:
			// The statement_timeout, set to the time ctx has left, may
			// pass a moment before ctx ends.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return classify(ctx, table.SearchCanceled(ctx, t.Name(), err))
}

// missing returns a *table.NotSetUpError if the database lacks the table
// or, if column is not empty, that column of it; nil if it has them or the
// check fails.
func (t *Table[T]) missing(ctx context.Context, column string) error {
	var hasTable, hasColumn bool
	err := t.db.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
		EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $2 AND table_name = $3 AND column_name = $4)`,
		t.QualifiedName(), t.db.opts.Schema, t.Name(), column).Scan(&hasTable, &hasColumn)
	switch {
	case err != nil:
		return nil
	case !hasTable:
		return &table.NotSetUpError{Table: t.Name()}
	case column != "" && !hasColumn:
		return &table.NotSetUpError{Table: t.Name(), Missing: "its full-text column " + column}
	}
	return nil
}

// fullTextHandler reconciles a table's full-text index; its record is the
// spec as JSON.
type fullTextHandler struct {
	d     *DB
	table string
}

type fullTextAction struct {
	table   string
	cur     *FullTextSpec // nil: drop
	rebuild bool          // the column, language or bound changed
}

func (a fullTextAction) String() string {
	if a.cur == nil {
		return "drop the full-text index of " + a.table
	}
	if a.cur.MaxChars > 0 {
		return fmt.Sprintf("index %s.%s for full-text search (%s, its first %d characters)", a.table, a.cur.Column, a.cur.Language, a.cur.MaxChars)
	}
	return fmt.Sprintf("index %s.%s for full-text search (%s)", a.table, a.cur.Column, a.cur.Language)
}

func (h *fullTextHandler) Reconcile(_ target.Key, desired *FullTextSpec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.d.ftsSink, fullTextAction{table: h.table})}, nil
	}
	rec, err := json.Marshal(desired)
	if err != nil {
		return nil, err
	}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	a := fullTextAction{table: h.table, cur: desired}
	for _, p := range prev {
		if string(p) != string(rec) {
			a.rebuild = true
		}
	}
	return &target.Reconciled{Action: target.Do(h.d.ftsSink, a), Record: rec}, nil
}

// applyFullText creates or drops full-text indexes, idempotently.
func (d *DB) applyFullText(ctx context.Context, actions []fullTextAction) error {
	for _, a := range actions {
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			t := d.qualified(a.table)
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&exists); err != nil {
				return err
			}
			if a.cur == nil || a.rebuild {
				if exists {
					if err := dropFullText(ctx, tx, d, a.table); err != nil {
						return err
					}
				}
				if a.cur == nil {
					return nil
				}
			}
			col := fullTextColumn(a.cur.Column)
			idx := name(a.table, col, "idx")
			for _, q := range []string{
				fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s tsvector GENERATED ALWAYS AS (to_tsvector(%s::regconfig, coalesce(%s, ''))) STORED`,
					t, ident(col), literal(a.cur.Language), a.cur.indexed(ident(a.cur.Column))),
				fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING GIN (%s)`, ident(idx), t, ident(col)),
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return classify(ctx, fmt.Errorf("%s: %w", a, err))
		}
	}
	return nil
}

// dropFullText drops every generated tsvector column of a table, with its
// index: whatever a full-text index of any column left.
func dropFullText(ctx context.Context, tx pgx.Tx, d *DB, tableName string) error {
	live, err := d.liveColumns(ctx, tx, tableName)
	if err != nil {
		return err
	}
	for _, c := range live {
		if c.generated && c.typ == "tsvector" {
			// Dropping the column drops its index.
			if _, err := tx.Exec(ctx, `ALTER TABLE `+d.qualified(tableName)+` DROP COLUMN IF EXISTS `+ident(c.name)); err != nil {
				return err
			}
		}
	}
	return nil
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
