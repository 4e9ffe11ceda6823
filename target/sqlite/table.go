package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"iter"
	"strings"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/table"
)

// Table is a table of rows of type T in a SQLite database.
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
	table.CheckColumn(t.Target, "sqlite", "to order search ties by", column)
	t.newestFirst = column
}

// searchOrder is the ORDER BY of a search, after rank.
func (t *Table[T]) searchOrder() string {
	if t.newestFirst == "" {
		return t.orderBy()
	}
	return quote(t.Spec().Table) + "." + quote(t.newestFirst) + " DESC, " + t.orderBy()
}

// DeclareTable declares the table name in db, holding rows of type T (see
// package table for the mapping of struct fields to columns), as a target
// of flow f. An empty name takes the default of table.TableName.
func DeclareTable[T any](f *tidemark.Flow, db *DB, name string) *Table[T] {
	name = table.TableName[T](f, name)
	t := table.Declare[T](f, db.sinks, table.Options{
		Kind:  "sqlite.table",
		Key:   target.Key("sqlite:" + db.name + "/" + name),
		Table: name,
	})
	return &Table[T]{Target: t, db: db}
}

// Name returns the table's name.
func (t *Table[T]) Name() string { return t.Spec().Table }

// columns returns the table's column list, qualified by the table name.
func (t *Table[T]) columns() string {
	spec := t.Spec()
	cols := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		cols[i] = quote(spec.Table) + "." + quote(c.Name)
	}
	return strings.Join(cols, ", ")
}

func (t *Table[T]) orderBy() string {
	spec := t.Spec()
	pk := make([]string, len(spec.PrimaryKey))
	for i, p := range spec.PrimaryKey {
		pk[i] = quote(spec.Table) + "." + quote(p)
	}
	return strings.Join(pk, ", ")
}

// Rows returns every row of the table, in primary key order. A table the
// database does not have is a *table.NotSetUpError.
func (t *Table[T]) Rows(ctx context.Context) iter.Seq2[T, error] {
	return t.Iterate(func() (table.RowScanner, func(), error) {
		rows, err := t.db.db.QueryContext(ctx, `SELECT `+t.columns()+` FROM `+quote(t.Name())+` ORDER BY `+t.orderBy())
		if err != nil {
			if missing := t.missing(ctx, ""); missing != nil {
				return nil, nil, missing
			}
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	})
}

// FullTextSpec is the setup state of a full-text index.
type FullTextSpec struct {
	// Column is the text column indexed.
	Column string `json:"column"`
	// Tokenizer is the FTS5 tokenizer; the default stems English words.
	Tokenizer string `json:"tokenizer"`
}

const (
	fullTextKind     = "fulltext"
	defaultTokenizer = "porter unicode61 remove_diacritics 2"
)

// FullTextOption configures a full-text index.
type FullTextOption func(*FullTextSpec)

// Tokenizer sets the FTS5 tokenizer, such as "unicode61" to index words as
// they are, without English stemming.
func Tokenizer(tokenizer string) FullTextOption {
	return func(s *FullTextSpec) { s.Tokenizer = tokenizer }
}

// FullText declares a full-text index of the text column of t, kept in
// step with the table, which Search queries. A table has at most one.
func FullText[T any](t *Table[T], column string, opts ...FullTextOption) {
	spec := FullTextSpec{Column: column, Tokenizer: defaultTokenizer}
	for _, o := range opts {
		o(&spec)
	}
	table.AttachFullText(t.Target, "sqlite", fullTextKind, column, spec)
	t.fullText = &spec
}

// Search returns the rows whose indexed text matches query, best first, at
// most limit (20 if limit is 0). The query is in web-search syntax (see
// table.ParseQuery); an empty one is table.ErrEmptyQuery, one past the
// bounds of package table a *table.SearchTooLargeError. The search takes at
// most table.SearchTimeout, or until ctx ends if sooner: SQLite interrupts
// the query then. A table or index the database does not have is a
// *table.NotSetUpError.
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
	return t.search(ctx, q, table.SearchOptions{Limit: limit})
}

// SearchPage returns a page of the rows Search would return, best first,
// and the number of rows that match (counted up to table.MaxSearchCount).
// An offset past table.MaxSearchOffset is a *table.SearchTooLargeError.
// The count and the page take table.SearchTimeout together.
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
	fts := quote(ftsName(t.Name()))
	var n int
	err = t.db.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s MATCH ? LIMIT ?)`, fts, fts),
		q.FTS5(), table.MaxSearchCount+1).Scan(&n)
	if err != nil {
		return table.SearchPage[T]{}, t.searchError(ctx, err)
	}
	page := table.SearchPage[T]{Total: min(n, table.MaxSearchCount), TotalCapped: n > table.MaxSearchCount}
	if opts.Offset < n {
		if page.Hits, err = t.search(ctx, q, opts); err != nil {
			return table.SearchPage[T]{}, err
		}
	}
	return page, nil
}

func (t *Table[T]) noFullText() error {
	return fmt.Errorf("sqlite: table %s has no full-text index; declare one with sqlite.FullText", t.Name())
}

// search runs a parsed query for a page of hits.
func (t *Table[T]) search(ctx context.Context, q table.Query, opts table.SearchOptions) ([]table.Hit[T], error) {
	if t.fullText == nil {
		return nil, t.noFullText()
	}
	fts := quote(ftsName(t.Name()))
	rows, err := t.db.db.QueryContext(ctx, fmt.Sprintf(`SELECT %s, -bm25(%s), snippet(%s, 0, ?, ?, '…', 24)
		FROM %s JOIN %s ON %s.rowid = %s.rowid
		WHERE %s MATCH ? ORDER BY bm25(%s), %s LIMIT ? OFFSET ?`,
		t.columns(), fts, fts, fts, quote(t.Name()), quote(t.Name()), fts, fts, fts, t.searchOrder()),
		table.HighlightStart, table.HighlightEnd, q.FTS5(), opts.Limit, opts.Offset)
	if err != nil {
		return nil, t.searchError(ctx, err)
	}
	defer rows.Close()
	var hits []table.Hit[T]
	for rows.Next() {
		var h table.Hit[T]
		var err error
		if h.Row, err = t.Scan(rows, &h.Score, &h.Snippet); err != nil {
			return nil, t.searchError(ctx, err)
		}
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, t.searchError(ctx, err)
	}
	return hits, nil
}

// searchError returns the error of a search that failed with err: a
// *table.NotSetUpError if the table or its index is missing, why ctx ended
// if it did, or else err.
func (t *Table[T]) searchError(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		if missing := t.missing(ctx, ftsName(t.Name())); missing != nil {
			return fmt.Errorf("searching table %s: %w", t.Name(), missing)
		}
	}
	return table.SearchCanceled(ctx, t.Name(), err)
}

// missing returns a *table.NotSetUpError if the database lacks the table
// or, if fts is not empty, its full-text index; nil if it has them or the
// check fails.
func (t *Table[T]) missing(ctx context.Context, fts string) error {
	var hasTable, hasIndex bool
	err := t.db.db.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?),
		EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?)`, t.Name(), fts).Scan(&hasTable, &hasIndex)
	switch {
	case err != nil:
		return nil
	case !hasTable:
		return &table.NotSetUpError{Table: t.Name()}
	case fts != "" && !hasIndex:
		return &table.NotSetUpError{Table: t.Name(), Missing: "its full-text index " + fts}
	}
	return nil
}

func ftsName(tableName string) string { return tableName + "_fts" }

// fullTextHandler reconciles a table's full-text index; its record is the
// spec as JSON.
type fullTextHandler struct {
	d     *DB
	table string
}

type fullTextAction struct {
	table string
	cur   *FullTextSpec // nil: drop
}

func (a fullTextAction) String() string {
	if a.cur == nil {
		return "drop the full-text index of " + a.table
	}
	return fmt.Sprintf("index %s.%s for full-text search", a.table, a.cur.Column)
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
	return &target.Reconciled{Action: target.Do(h.d.ftsSink, fullTextAction{table: h.table, cur: desired}), Record: rec}, nil
}

// applyFullText creates or drops full-text indexes. Creating one drops what
// may be there first, so that it reaches the new spec from any state, and
// indexes the rows the table has.
func (d *DB) applyFullText(ctx context.Context, actions []fullTextAction) error {
	for _, a := range actions {
		err := d.tx(ctx, func(tx *sql.Tx) error {
			if err := dropFullText(ctx, tx, a.table); err != nil {
				return err
			}
			if a.cur == nil {
				return nil
			}
			return createFullText(ctx, tx, a.table, a.cur)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func dropFullText(ctx context.Context, tx *sql.Tx, tableName string) error {
	fts := ftsName(tableName)
	for _, q := range []string{
		`DROP TRIGGER IF EXISTS ` + quote(fts+"_ai"),
		`DROP TRIGGER IF EXISTS ` + quote(fts+"_ad"),
		`DROP TRIGGER IF EXISTS ` + quote(fts+"_au"),
		`DROP TABLE IF EXISTS ` + quote(fts),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func createFullText(ctx context.Context, tx *sql.Tx, tableName string, spec *FullTextSpec) error {
	fts, t, col := quote(ftsName(tableName)), quote(tableName), quote(spec.Column)
	insert := fmt.Sprintf(`INSERT INTO %s(rowid, %s) VALUES (new.rowid, new.%s);`, fts, col, col)
	remove := fmt.Sprintf(`INSERT INTO %s(%s, rowid, %s) VALUES ('delete', old.rowid, old.%s);`, fts, fts, col, col)
	for _, q := range []string{
		fmt.Sprintf(`CREATE VIRTUAL TABLE %s USING fts5(%s, content=%s, content_rowid='rowid', tokenize=%s)`,
			fts, col, literal(tableName), literal(spec.Tokenizer)),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER INSERT ON %s BEGIN %s END`, quote(ftsName(tableName)+"_ai"), t, insert),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER DELETE ON %s BEGIN %s END`, quote(ftsName(tableName)+"_ad"), t, remove),
		fmt.Sprintf(`CREATE TRIGGER %s AFTER UPDATE ON %s BEGIN %s %s END`, quote(ftsName(tableName)+"_au"), t, remove, insert),
		fmt.Sprintf(`INSERT INTO %s(%s) VALUES ('rebuild')`, fts, fts),
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
