// Package postgres is a Tidemark target that keeps tables in PostgreSQL:
// rows from Go structs, schema evolution, fast batched writes, full-text
// search and SQL commands with teardown.
//
// Connect to a database with Connect (or wrap a pool with New), declare a
// table with DeclareTable, and its rows with the table's Declare in the
// flow's processing function. The table is created on the first update,
// in the DB's schema — refused, with an error matching table.ErrNotOurs,
// where a relation of its name exists there that Tidemark did not create. A
// field added to the row type adds a column; a field removed drops its
// column; a field whose type changed alters its column (falling back to
// dropping and adding it when the data does not convert); a new primary key
// recreates the table. Every such change writes every row again. Setup
// looks at the live table, so it completes whatever an interrupted change
// left.
//
// Rows are written in batches that span many source rows, one transaction
// per table per batch: upserts are copied (COPY) into a temporary table and
// merged with INSERT … ON CONFLICT DO UPDATE; into a table that was empty
// when the update began they are copied straight in. Deletes use
// = ANY($1). Identifiers are always quoted; text is stored without NUL and
// with invalid UTF-8 replaced, so no value fails a batch. Options.Writers
// spreads large batches over several connections.
//
// FullText keeps a stored generated tsvector column with a GIN index on a
// text column; Table.Search ranks matches with websearch_to_tsquery and
// ts_rank and highlights them with ts_headline. SQLCommand runs SQL of your
// own (an index, a view, a trigger) on setup, and its teardown when it
// changes or is no longer declared.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark/internal/pgdb"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/table"
)

// DB is a PostgreSQL database that tables are written to.
type DB struct {
	name    string
	pool    *pgxpool.Pool
	owned   bool
	opts    Options
	sinks   *table.Sinks
	ftsSink *target.SinkFunc[fullTextAction]
	// ftsNew applies the full-text indexes created anew, checking first
	// that their columns are not someone else's.
	ftsNew  *table.Guard[fullTextAction]
	sqlSink *target.SinkFunc[sqlCommandAction]

	// fresh holds the tables found empty at their first write since the
	// DB was opened: their upserts are copied straight in until a copy
	// meets an existing row.
	mu    sync.Mutex
	fresh map[string]bool
}

// Options configure a DB.
type Options struct {
	// Schema is the schema of the tables; default "public".
	Schema string
	// Writers is how many connections write a large batch at once
	// (default 1). More can speed an initial load up; each writes its share
	// of the batch's source rows, every table of them, in a transaction of
	// its own, so that a source row is written all or nothing.
	Writers int
}

// Connect connects to the database at url. name is the database's stable
// logical name: it keys the tables Tidemark tracks in it, so that the URL
// (host, credentials) can change without orphaning them.
func Connect(ctx context.Context, name, url string, opts Options) (*DB, error) {
	pool, err := pgdb.NewPool(ctx, url, pgx.QueryExecModeDescribeExec)
	if err != nil {
		return nil, fmt.Errorf("postgres target %s: %w", name, err)
	}
	d, err := New(name, pool, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	d.owned = true
	return d, nil
}

// New wraps a pool of your own, which Close leaves open. Its connections
// must not cache statements (their DefaultQueryExecMode must be
// QueryExecModeDescribeExec or QueryExecModeExec): a table's columns change
// with its row type, and a cached description would have COPY encode values
// with the old column types.
func New(name string, pool *pgxpool.Pool, opts Options) (*DB, error) {
	if name == "" || pool == nil {
		return nil, errors.New("postgres target: a database needs a logical name and a pool")
	}
	switch mode := pool.Config().ConnConfig.DefaultQueryExecMode; mode {
	case pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol:
	default:
		return nil, fmt.Errorf("postgres target: the pool caches statements (%v); set its ConnConfig.DefaultQueryExecMode to pgx.QueryExecModeDescribeExec, since tables change with their row types", mode)
	}
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if opts.Writers == 0 {
		opts.Writers = 1
	}
	if opts.Writers < 1 || opts.Writers > 64 {
		return nil, fmt.Errorf("postgres target: Writers must be between 1 and 64, got %d", opts.Writers)
	}
	d := &DB{name: name, pool: pool, opts: opts, fresh: make(map[string]bool)}
	d.sinks = table.NewSinks(driver{d})
	d.ftsSink = target.NewSink(d.applyFullText)
	d.ftsNew = table.NewGuard[fullTextAction](d.ftsSink, d.checkFullText)
	d.sqlSink = target.NewSink(d.applySQLCommands)
	return d, nil
}

// Close closes the pool if Connect opened it.
func (d *DB) Close() {
	if d.owned {
		d.pool.Close()
	}
}

// Pool returns the connection pool, for queries of your own.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// ident quotes an identifier.
func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// name returns an identifier made of parts, shortened with a hash when it
// would pass PostgreSQL's 63-byte limit, which silently truncates.
func name(parts ...string) string {
	n := strings.Join(parts, "_")
	if len(n) <= 63 {
		return n
	}
	h := fnv.New32a()
	h.Write([]byte(n))
	return fmt.Sprintf("%s_%08x", n[:54], h.Sum32())
}

func (d *DB) qualified(table string) string { return ident(d.opts.Schema, table) }

func classify(ctx context.Context, err error) error { return pgdb.Classify(ctx, err) }

// driver implements table.Driver for PostgreSQL.
type driver struct{ d *DB }

// SQLType implements table.Driver.
func (driver) SQLType(c table.Column) string {
	switch c.Kind {
	case table.KindInt:
		return "bigint"
	case table.KindFloat:
		return "double precision"
	case table.KindBool:
		return "boolean"
	case table.KindTime:
		return "timestamp with time zone"
	case table.KindBytes:
		return "bytea"
	case table.KindJSON:
		return "jsonb"
	default:
		return "text"
	}
}

// zero is a kind's zero, the default a NOT NULL column is added with (the
// rows are then written again).
func zero(k table.Kind) string {
	switch k {
	case table.KindInt, table.KindFloat:
		return "0"
	case table.KindBool:
		return "false"
	case table.KindTime:
		return "'epoch'"
	case table.KindBytes:
		return `'\x'`
	case table.KindJSON:
		return "'null'"
	default:
		return "''"
	}
}

// ApplySetup implements table.Driver: each change in a transaction of its
// own, converging on the live table.
func (dr driver) ApplySetup(ctx context.Context, changes []table.SetupChange) error {
	d := dr.d
	for _, c := range changes {
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident(d.opts.Schema)); err != nil {
				return err
			}
			if c.Cur == nil {
				for _, p := range c.Prev {
					if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+d.qualified(p.Table)); err != nil {
						return err
					}
				}
				return nil
			}
			return d.converge(ctx, tx, c.Cur, c.Change)
		})
		if err != nil {
			what := "dropping"
			if c.Cur != nil {
				what = "setting up table " + c.Cur.Table
			}
			return classify(ctx, fmt.Errorf("%s: %w", what, err))
		}
		if c.Cur != nil {
			d.forget(c.Cur.Table)
		}
	}
	return nil
}

// CheckCreate implements table.CreateChecker: a table to create must not
// exist in the DB's schema, as a table or any other relation.
func (dr driver) CheckCreate(ctx context.Context, tables []*table.Spec) error {
	d := dr.d
	for _, s := range tables {
		var found bool
		if err := d.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, d.qualified(s.Table)).Scan(&found); err != nil {
			return classify(ctx, fmt.Errorf("checking table %s: %w", s.Table, err))
		}
		if found {
			return &table.NotOursError{Kind: "table", Name: d.opts.Schema + "." + s.Table, Table: d.opts.Schema + "." + s.Table}
		}
	}
	return nil
}

// checkFullText checks full-text indexes about to be created: the
// tsvector column of each must not exist in its table.
func (d *DB) checkFullText(ctx context.Context, actions []fullTextAction) error {
	for _, a := range actions {
		col := fullTextColumn(a.cur.Column)
		var found bool
		if err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped)`, d.qualified(a.table), col).Scan(&found); err != nil {
			return classify(ctx, fmt.Errorf("checking column %s of table %s: %w", col, a.table, err))
		}
		if found {
			t := d.opts.Schema + "." + a.table
			return &table.NotOursError{Kind: "column", Name: t + "." + col, Table: t, Role: "the full-text index"}
		}
	}
	return nil
}

// liveColumn is a column as the catalog describes it.
type liveColumn struct {
	name      string
	typ       string // without type modifier
	fullType  string
	notNull   bool
	generated bool
}

func (d *DB) liveColumns(ctx context.Context, tx pgx.Tx, tableName string) ([]liveColumn, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, NULL), format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> ''
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, d.qualified(tableName))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (liveColumn, error) {
		var c liveColumn
		err := r.Scan(&c.name, &c.typ, &c.fullType, &c.notNull, &c.generated)
		return c, err
	})
}

func (d *DB) livePrimaryKey(ctx context.Context, tx pgx.Tx, tableName string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY array_position(i.indkey, a.attnum)`, d.qualified(tableName))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// baseType returns the catalog's name of a type, without its modifier.
func baseType(ctx context.Context, tx pgx.Tx, typ string) (string, error) {
	var out *string
	if err := tx.QueryRow(ctx, `SELECT format_type(to_regtype($1), NULL)`, typ).Scan(&out); err != nil {
		return "", err
	}
	if out == nil {
		return "", fmt.Errorf("unknown type %q", typ)
	}
	return *out, nil
}

func (d *DB) createTable(ctx context.Context, tx pgx.Tx, s *table.Spec) error {
	var cols []string
	for _, c := range s.Columns {
		def := ident(c.Name) + " " + c.Type
		if !c.Nullable {
			def += " NOT NULL"
		}
		cols = append(cols, def)
	}
	pk := make([]string, len(s.PrimaryKey))
	for i, p := range s.PrimaryKey {
		pk[i] = ident(p)
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY (%s))`,
		d.qualified(s.Table), strings.Join(cols, ", "), strings.Join(pk, ", ")))
	return err
}

// converge brings the table to s from whatever it is.
func (d *DB) converge(ctx context.Context, tx pgx.Tx, s *table.Spec, change table.Change) error {
	live, err := d.liveColumns(ctx, tx, s.Table)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return d.createTable(ctx, tx, s)
	}
	pk, err := d.livePrimaryKey(ctx, tx, s.Table)
	if err != nil {
		return err
	}
	recreate := !slices.Equal(pk, s.PrimaryKey)
	byName := make(map[string]liveColumn, len(live))
	for _, c := range live {
		byName[c.name] = c
	}
	for _, name := range s.PrimaryKey {
		c, _ := s.Column(name)
		base, err := baseType(ctx, tx, c.Type)
		if err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
		if lc, ok := byName[name]; !ok || lc.typ != base {
			recreate = true
		}
	}
	if recreate {
		if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+d.qualified(s.Table)); err != nil {
			return err
		}
		return d.createTable(ctx, tx, s)
	}
	t := d.qualified(s.Table)
	for _, c := range s.Columns {
		if slices.Contains(s.PrimaryKey, c.Name) {
			continue
		}
		lc, ok := byName[c.Name]
		if !ok {
			if err := addColumn(ctx, tx, t, c); err != nil {
				return err
			}
			continue
		}
		base, err := baseType(ctx, tx, c.Type)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.Name, err)
		}
		changed := slices.ContainsFunc(change.Alter, func(a table.ColumnSpec) bool { return a.Name == c.Name })
		if changed || lc.typ != base || lc.notNull == c.Nullable {
			if err := alterColumn(ctx, tx, t, c); err != nil {
				return err
			}
		}
	}
	for _, lc := range live {
		if _, ok := s.Column(lc.name); ok || lc.generated {
			continue // generated columns belong to attachments
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+t+` DROP COLUMN IF EXISTS `+ident(lc.name)); err != nil {
			return fmt.Errorf("dropping column %s: %w", lc.name, err)
		}
	}
	return nil
}

func addColumn(ctx context.Context, tx pgx.Tx, t string, c table.ColumnSpec) error {
	q := `ALTER TABLE ` + t + ` ADD COLUMN IF NOT EXISTS ` + ident(c.Name) + ` ` + c.Type
	if !c.Nullable {
		q += ` NOT NULL DEFAULT ` + zero(c.Kind)
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("adding column %s: %w", c.Name, err)
	}
	if !c.Nullable {
		if _, err := tx.Exec(ctx, `ALTER TABLE `+t+` ALTER COLUMN `+ident(c.Name)+` DROP DEFAULT`); err != nil {
			return fmt.Errorf("adding column %s: %w", c.Name, err)
		}
	}
	return nil
}

// alterColumn changes a column's type and nullability, converting its data;
// where the data does not convert, it replaces the column (the rows are
// written again).
func alterColumn(ctx context.Context, tx pgx.Tx, t string, c table.ColumnSpec) error {
	col := ident(c.Name)
	null := ` DROP NOT NULL`
	if !c.Nullable {
		null = ` SET NOT NULL`
	}
	if _, err := tx.Exec(ctx, `SAVEPOINT tidemark_alter`); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `ALTER TABLE `+t+` ALTER COLUMN `+col+` TYPE `+c.Type+` USING `+col+`::`+c.Type+`, ALTER COLUMN `+col+null)
	if err == nil {
		_, err = tx.Exec(ctx, `RELEASE SAVEPOINT tidemark_alter`)
		return err
	}
	if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT tidemark_alter`); rerr != nil {
		return errors.Join(err, rerr)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+t+` DROP COLUMN IF EXISTS `+col); err != nil {
		return fmt.Errorf("replacing column %s: %w", c.Name, err)
	}
	return addColumn(ctx, tx, t, c)
}

// forget drops what is known of a table's emptiness: its setup changed.
func (d *DB) forget(tableName string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.fresh, tableName)
}

// Write implements table.Driver: every write of the call in one
// transaction, so that a failed call writes nothing.
func (dr driver) Write(ctx context.Context, writes []table.Write) error {
	return classify(ctx, pgx.BeginFunc(ctx, dr.d.pool, func(tx pgx.Tx) error {
		for _, w := range writes {
			if err := dr.d.write(ctx, tx, w); err != nil {
				return fmt.Errorf("writing to table %s: %w", w.Table.Table, err)
			}
		}
		return nil
	}))
}

// Concurrency implements table.ConcurrentDriver: Options.Writers calls of
// Write may run at once, each on a connection of its own.
func (dr driver) Concurrency() int { return dr.d.opts.Writers }

// copyRows streams rows to COPY.
type copyRows struct {
	rows [][]any
	i    int
}

func (c *copyRows) Next() bool             { c.i++; return c.i <= len(c.rows) }
func (c *copyRows) Values() ([]any, error) { return c.rows[c.i-1], nil }
func (c *copyRows) Err() error             { return nil }

func (d *DB) write(ctx context.Context, tx pgx.Tx, w table.Write) error {
	s := w.Table
	if len(w.Deletes) > 0 {
		if err := d.delete(ctx, tx, s, w.Deletes); err != nil {
			return err
		}
	}
	if len(w.Upserts) == 0 {
		return nil
	}
	fresh, err := d.isFresh(ctx, tx, s.Table)
	if err != nil {
		return err
	}
	return d.upsert(ctx, tx, s, w.Upserts, fresh)
}

// isFresh reports whether upserts into the table may be copied straight in:
// it was empty at its first write since the DB was opened, and no copy has
// met an existing row since.
func (d *DB) isFresh(ctx context.Context, tx pgx.Tx, tableName string) (bool, error) {
	d.mu.Lock()
	fresh, known := d.fresh[tableName]
	d.mu.Unlock()
	if known {
		return fresh, nil
	}
	var empty bool
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+d.qualified(tableName)+`)`).Scan(&empty); err != nil {
		return false, err
	}
	d.mu.Lock()
	d.fresh[tableName] = empty
	d.mu.Unlock()
	return empty, nil
}

func (d *DB) notFresh(tableName string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fresh[tableName] = false
}

// upsert writes rows in tx: copied straight into a fresh table, else
// through a temporary table and INSERT … ON CONFLICT.
func (d *DB) upsert(ctx context.Context, tx pgx.Tx, s *table.Spec, rows [][]any, fresh bool) error {
	cols := s.ColumnNames()
	if fresh {
		// In a savepoint, so that a row found to exist leaves the
		// transaction usable for the merge.
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.CopyFrom(ctx, pgx.Identifier{d.opts.Schema, s.Table}, cols, &copyRows{rows: rows})
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			return err
		}
		d.notFresh(s.Table) // a row exists: merge from now on
	}
	stage := ident(name("tidemark_stage", s.Table))
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = ident(c)
	}
	colList := strings.Join(quoted, ", ")
	if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMPORARY TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA`,
		stage, colList, d.qualified(s.Table))); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{name("tidemark_stage", s.Table)}, cols, &copyRows{rows: rows}); err != nil {
		return err
	}
	pk := make([]string, len(s.PrimaryKey))
	for i, p := range s.PrimaryKey {
		pk[i] = ident(p)
	}
	var set []string
	for _, c := range cols {
		if !slices.Contains(s.PrimaryKey, c) {
			set = append(set, ident(c)+" = EXCLUDED."+ident(c))
		}
	}
	conflict := "DO NOTHING"
	if len(set) > 0 {
		conflict = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) %s`,
		d.qualified(s.Table), colList, colList, stage, strings.Join(pk, ", "), conflict))
	return err
}

func (d *DB) delete(ctx context.Context, tx pgx.Tx, s *table.Spec, keys [][]any) error {
	t := d.qualified(s.Table)
	if len(s.PrimaryKey) == 1 {
		c, _ := s.Column(s.PrimaryKey[0])
		ids := make([]any, len(keys))
		for i, k := range keys {
			ids[i] = k[0]
		}
		_, err := tx.Exec(ctx, `DELETE FROM `+t+` WHERE `+ident(c.Name)+` = ANY($1::`+c.Type+`[])`, ids)
		return err
	}
	// A composite key: one array per column, zipped by unnest.
	args := make([]any, len(s.PrimaryKey))
	var arrays, conds, names []string
	for i, p := range s.PrimaryKey {
		c, _ := s.Column(p)
		col := make([]any, len(keys))
		for j, k := range keys {
			col[j] = k[i]
		}
		args[i] = col
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", i+1, c.Type))
		names = append(names, fmt.Sprintf("k%d", i))
		conds = append(conds, fmt.Sprintf("t.%s = d.k%d", ident(p), i))
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s AS t USING unnest(%s) AS d(%s) WHERE %s`,
		t, strings.Join(arrays, ", "), strings.Join(names, ", "), strings.Join(conds, " AND ")), args...)
	return err
}

// Attachment implements table.Driver: "fulltext" and "sql".
func (dr driver) Attachment(t *table.Spec, kind string) (target.Erased, bool) {
	switch kind {
	case fullTextKind:
		return target.Erase(table.GuardCreate[FullTextSpec](dr.d.ftsNew, &fullTextHandler{d: dr.d, table: t.Table})), true
	case sqlCommandKind:
		return target.Erase[SQLCommandSpec](&sqlCommandHandler{d: dr.d, table: t.Table}), true
	}
	return target.Erased{}, false
}
