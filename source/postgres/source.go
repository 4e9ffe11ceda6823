package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark"
)

// Options configure a Source.
type Options struct {
	// Schema is the table's schema; "public" by default.
	Schema string
	// Table is the table (or view) to list. Required.
	Table string
	// Key are the columns that identify a row. Required.
	Key []string
	// Ordinal, when set, is a column whose value grows whenever its row
	// changes: timestamp, timestamptz, smallint, integer or bigint. A
	// NULL ordinal makes its row be read on every update.
	Ordinal string
	// Columns are the columns of a row's value; every column by default.
	Columns []string
	// Where, when set, is an SQL condition on the table's columns that
	// keeps the rows listed, such as "deleted_at IS NULL". It is the
	// caller's SQL, put in the queries as it is: never outside input.
	Where string
	// Logger receives a warning when a notification cannot be read; by
	// default nothing is logged.
	Logger *slog.Logger
}

// Row is a row's value: its columns by name, as pgx scans them.
type Row map[string]any

// Source lists and reads a table's rows.
type Source struct {
	pool *pgxpool.Pool
	o    Options
	log  *slog.Logger
	// The SQL fragments of the queries, quoted.
	table    string // "schema"."table"
	keyExpr  string // the key's text, over the table's alias t
	keyMatch string // WHERE of one key: t."k1" = $1::type1 AND …
	ordExpr  string // the ordinal as bigint, or NULL
	fpExpr   string // the content's MD5
	cols     string // the value's columns, over t
	where    string // " AND (…)" or ""
	// name is what the trigger, its function and the channel are named
	// after: a hash of the source's table, key, columns, ordinal and
	// filter, so that sources of other flows over the table have their own.
	name string
	// view says the table is a view, which has no trigger: no change
	// stream, the periodic listing alone.
	view bool
	// keyTypes are the key columns' types, for the casts of a key.
	keyTypes []string
}

var (
	_ tidemark.Source[string, Row] = (*Source)(nil)
	_ tidemark.Watcher[string]     = (*Source)(nil)
	_ tidemark.OptionsDescriber    = (*Source)(nil)
	_ tidemark.SourceDropper       = (*Source)(nil)
	_ tidemark.OrdinalProvider     = (*Source)(nil)
)

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// New returns a Source over the table o names, read through pool. It
// checks that the table and the columns exist, and the ordinal's type.
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Source, error) {
	if o.Schema == "" {
		o.Schema = "public"
	}
	switch {
	case o.Table == "":
		return nil, errors.New("source/postgres: Options.Table is required")
	case len(o.Key) == 0:
		return nil, errors.New("source/postgres: Options.Key needs at least one column")
	}
	s := &Source{pool: pool, o: o, log: o.Logger, table: ident(o.Schema) + "." + ident(o.Table)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	types, err := s.columnTypes(ctx)
	if err != nil {
		return nil, err
	}
	check := func(what, c string) (string, error) {
		t, ok := types[c]
		if !ok {
			return "", fmt.Errorf("source/postgres: table %s.%s has no column %q (%s)", o.Schema, o.Table, c, what)
		}
		return t, nil
	}
	var matches []string
	for i, k := range o.Key {
		t, err := check("a key column", k)
		if err != nil {
			return nil, err
		}
		matches = append(matches, fmt.Sprintf("t.%s = $%d::%s", ident(k), i+1, t))
		s.keyTypes = append(s.keyTypes, t)
	}
	s.keyExpr = s.keyOver("t")
	s.keyMatch = strings.Join(matches, " AND ")
	s.ordExpr = "NULL::bigint"
	if o.Ordinal != "" {
		t, err := check("the ordinal", o.Ordinal)
		if err != nil {
			return nil, err
		}
		switch c := "t." + ident(o.Ordinal); {
		case strings.HasPrefix(t, "timestamp"):
			s.ordExpr = "(extract(epoch FROM " + c + ") * 1000000)::bigint"
		case t == "smallint" || t == "integer" || t == "bigint":
			s.ordExpr = c + "::bigint"
		default:
			return nil, fmt.Errorf("source/postgres: ordinal column %q is %s: it must be a timestamp or an integer", o.Ordinal, t)
		}
	}
	if len(o.Columns) == 0 {
		s.cols, s.fpExpr = "t.*", "md5(t::text)"
	} else {
		var cs []string
		for _, c := range o.Columns {
			if _, err := check("a value column", c); err != nil {
				return nil, err
			}
			cs = append(cs, "t."+ident(c))
		}
		s.cols = strings.Join(cs, ", ")
		s.fpExpr = "md5(ROW(" + s.cols + ")::text)"
	}
	// A row with a NULL key part has no key: it is no row, in the
	// listing as in Get (where = never holds for NULL).
	for _, k := range o.Key {
		s.where += " AND t." + ident(k) + " IS NOT NULL"
	}
	if o.Where != "" {
		s.where += " AND (" + o.Where + ")"
	}
	h := sha256.Sum256([]byte(strings.Join([]string{o.Schema, o.Table, strings.Join(o.Key, "\x01"), o.Ordinal, strings.Join(o.Columns, "\x01"), o.Where}, "\x00")))
	s.name = "tidemark_" + hex.EncodeToString(h[:6])
	if err := pool.QueryRow(ctx, `SELECT relkind IN ('v', 'm') FROM pg_class WHERE oid = $1::regclass`, s.table).Scan(&s.view); err != nil {
		return nil, fmt.Errorf("source/postgres: table %s.%s: %w", o.Schema, o.Table, err)
	}
	// The filter is checked once, by asking for no row.
	if _, err := pool.Exec(ctx, "SELECT 1 FROM "+s.table+" AS t WHERE false"+s.where); err != nil {
		return nil, fmt.Errorf("source/postgres: the filter %q: %w", o.Where, err)
	}
	return s, nil
}

// keyOver is the key's text over the record alias (t, NEW, OLD): the key
// column's text, or the JSON array of the key columns' texts.
func (s *Source) keyOver(alias string) string {
	texts := make([]string, len(s.o.Key))
	for i, k := range s.o.Key {
		texts[i] = alias + "." + ident(k) + "::text"
	}
	if len(texts) == 1 {
		return texts[0]
	}
	return "json_build_array(" + strings.Join(texts, ", ") + ")::text"
}

// columnTypes returns the table's columns and their types.
func (s *Source) columnTypes(ctx context.Context) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute AS a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, s.table)
	if err != nil {
		return nil, fmt.Errorf("source/postgres: table %s.%s: %w", s.o.Schema, s.o.Table, err)
	}
	types := make(map[string]string)
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		types[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source/postgres: table %s.%s: %w", s.o.Schema, s.o.Table, err)
	}
	return types, nil
}

// DescribeOptions implements tidemark.OptionsDescriber: another table,
// key or filter asks before deleting what it leaves out.
func (s *Source) DescribeOptions() map[string]string {
	return map[string]string{"table": s.o.Schema + "." + s.o.Table, "key": strings.Join(s.o.Key, ","), "where": s.o.Where}
}

// ProvidesOrdinal says whether the listing's ordinals are trustworthy:
// when there is an ordinal column.
func (s *Source) ProvidesOrdinal() bool { return s.o.Ordinal != "" }

// List yields every row the filter keeps, in key order, with its ordinal,
// or without an ordinal column its content fingerprint. It streams: the
// rows are not held.
func (s *Source) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		fp := "NULL::text"
		if s.o.Ordinal == "" {
			fp = s.fpExpr
		}
		order := make([]string, len(s.o.Key))
		for i, k := range s.o.Key {
			order[i] = "t." + ident(k)
		}
		rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT %s, %s, %s FROM %s AS t WHERE true%s ORDER BY %s",
			s.keyExpr, s.ordExpr, fp, s.table, s.where, strings.Join(order, ", ")))
		if err != nil {
			yield(tidemark.Listed[string]{}, s.fail("listing", ctx, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var (
				key string
				ord *int64
				sum *string
			)
			if err := rows.Scan(&key, &ord, &sum); err != nil {
				yield(tidemark.Listed[string]{}, s.fail("listing", ctx, err))
				return
			}
			l := tidemark.Listed[string]{Key: key, Ordinal: tidemark.NoOrdinal}
			if ord != nil {
				l.Ordinal = tidemark.Ordinal(*ord)
			}
			if sum != nil {
				l.Fingerprint = []byte(*sum)
			}
			if !yield(l, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(tidemark.Listed[string]{}, s.fail("listing", ctx, err))
		}
	}
}

// fail wraps a query's error, marked retryable unless ctx ended.
func (s *Source) fail(what string, ctx context.Context, err error) error {
	err = fmt.Errorf("source/postgres: %s %s.%s: %w", what, s.o.Schema, s.o.Table, err)
	if ctx.Err() != nil {
		return err
	}
	return tidemark.Retryable(err)
}

// keyArgs decodes a key into the key columns' texts.
func (s *Source) keyArgs(key string) ([]any, bool) {
	if len(s.o.Key) == 1 {
		return []any{key}, true
	}
	var parts []*string
	if err := json.Unmarshal([]byte(key), &parts); err != nil || len(parts) != len(s.o.Key) {
		return nil, false
	}
	args := make([]any, len(parts))
	for i, p := range parts {
		if p == nil {
			return nil, false
		}
		args[i] = *p
	}
	return args, true
}

// getError is the error of a Get of the key args that failed with err. A
// data exception (SQLSTATE class 22) is the key's own when the key does
// not cast to the key columns' types: no row has that key. Otherwise it is
// the row's data failing the filter or a cast, which fails the row (a
// retry does not fix it); it is not gone.
func (s *Source) getError(ctx context.Context, args []any, err error) error {
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.SQLState(), "22") {
		return s.fail("reading", ctx, err)
	}
	casts := make([]string, len(args))
	for i, t := range s.keyTypes {
		casts[i] = fmt.Sprintf("$%d::%s", i+1, t)
	}
	if _, cerr := s.pool.Exec(ctx, "SELECT "+strings.Join(casts, ", "), args...); cerr != nil {
		if errors.As(cerr, &pgErr) && strings.HasPrefix(pgErr.SQLState(), "22") {
			return errNoSuchKey
		}
		return s.fail("reading", ctx, cerr)
	}
	return fmt.Errorf("source/postgres: reading %s.%s: %w", s.o.Schema, s.o.Table, err)
}

// gone returns what a Get that failed with err returns: the row gone
// when no row can have the key, else the error.
func (s *Source) gone(ctx context.Context, args []any, err error) (tidemark.Fetched[Row], error) {
	if err := s.getError(ctx, args, err); !errors.Is(err, errNoSuchKey) {
		return tidemark.Fetched[Row]{}, err
	}
	return tidemark.Fetched[Row]{}, nil
}

// errNoSuchKey is getError's word for a key no row can have.
var errNoSuchKey = errors.New("no such key")

// Get reads the row key: its columns, its ordinal and its content's MD5
// (the fingerprint). A key no row has, or that the filter leaves out, is
// gone; so is a key that cannot be one.
func (s *Source) Get(ctx context.Context, key string) (tidemark.Fetched[Row], error) {
	args, ok := s.keyArgs(key)
	if !ok {
		return tidemark.Fetched[Row]{}, nil
	}
	rows, err := s.pool.Query(ctx, fmt.Sprintf("SELECT %s, %s, %s FROM %s AS t WHERE %s%s",
		s.ordExpr, s.fpExpr, s.cols, s.table, s.keyMatch, s.where), args...)
	if err != nil {
		return s.gone(ctx, args, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return s.gone(ctx, args, err)
		}
		return tidemark.Fetched[Row]{}, nil
	}
	vals, err := rows.Values()
	if err != nil {
		return tidemark.Fetched[Row]{}, s.fail("reading", ctx, err)
	}
	fields := rows.FieldDescriptions()
	row := make(Row, len(vals)-2)
	for i := 2; i < len(vals); i++ {
		row[fields[i].Name] = vals[i]
	}
	f := tidemark.Fetched[Row]{Exists: true, Value: row}
	if ord, ok := vals[0].(int64); ok {
		f.Ordinal = tidemark.Ordinal(ord)
	}
	if sum, ok := vals[1].(string); ok {
		f.Fingerprint = []byte(sum)
	}
	rows.Close()
	return f, rows.Err()
}
