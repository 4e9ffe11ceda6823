// Package sqlite is a Tidemark target that keeps tables in a SQLite
// database (modernc.org/sqlite, pure Go): rows from Go structs, schema
// evolution, and full-text search through FTS5.
//
// Declare a table with DeclareTable; its rows with the table's Declare, in
// the flow's processing function. The table is created on the first update
// — refused, with an error matching table.ErrNotOurs, where a table of its
// name (or of its full-text table's, name_fts) exists that Tidemark did not
// create; a field added to the row type adds a column, a field removed drops it, a
// field whose type changed replaces its column (SQLite cannot change a
// column's type), and a new primary key recreates the table; every such
// change writes every row again. The database is opened in WAL mode; one
// writer (Tidemark's) and any number of readers (Search, Rows) share it,
// and it may be the same file as the state store.
//
// FullText keeps an FTS5 index of a text column in step with the table,
// through triggers, and Table.Search queries it: a web-search syntax
// (words, "phrases", -exclusions, OR) that user text cannot break, ranked by
// bm25, with a highlighted snippet.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/sqlitedb"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/table"
)

// DB is a SQLite database that tables are written to.
type DB struct {
	name    string
	path    string
	db      *sql.DB
	sinks   *table.Sinks
	ftsSink *target.SinkFunc[fullTextAction]
	// ftsNew applies the full-text indexes created anew, checking first
	// that their tables are not someone else's.
	ftsNew *table.Guard[fullTextAction]
}

// Open opens (creating if needed) the database file at path. name is the
// database's stable logical name: it keys the tables Tidemark tracks in it,
// so that the file can move without orphaning them.
func Open(ctx context.Context, name, path string) (*DB, error) {
	if name == "" {
		return nil, errors.New("sqlite target: a database needs a logical name")
	}
	sdb, err := sqlitedb.Open(ctx, path, 4)
	if err != nil {
		return nil, fmt.Errorf("sqlite target: %w", err)
	}
	d := &DB{name: name, path: path, db: sdb}
	d.sinks = table.NewSinks(driver{d})
	d.ftsSink = target.NewSink(d.applyFullText)
	d.ftsNew = table.NewGuard[fullTextAction](d.ftsSink, d.checkFullText)
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// SQL returns the database, for queries of your own.
func (d *DB) SQL() *sql.DB { return d.db }

// quote quotes an identifier.
func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// driver implements table.Driver for SQLite.
type driver struct{ d *DB }

// SQLType implements table.Driver.
func (driver) SQLType(c table.Column) string {
	switch c.Kind {
	case table.KindInt, table.KindBool:
		return "INTEGER"
	case table.KindFloat:
		return "REAL"
	case table.KindBytes:
		return "BLOB"
	default: // text, time, JSON
		return "TEXT"
	}
}

// tx runs fn in an immediate transaction, marking a busy database
// retryable.
func (d *DB) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return classify(err)
	}
	return classify(tx.Commit())
}

func classify(err error) error { return sqlitedb.Classify(err) }

// liveColumn is a column of a table as SQLite describes it.
type liveColumn struct {
	name    string
	typ     string
	notNull bool
	pk      int // position in the primary key, from 1; 0 if not in it
}

func tableInfo(ctx context.Context, tx *sql.Tx, name string) ([]liveColumn, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info(?)`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []liveColumn
	for rows.Next() {
		var c liveColumn
		if err := rows.Scan(&c.name, &c.typ, &c.notNull, &c.pk); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// exists reports whether the database holds a table, view or index called
// name, which SQLite compares without case.
func (d *DB) exists(ctx context.Context, name string) (bool, error) {
	var n int
	err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view', 'index') AND name = ? COLLATE NOCASE`, name).Scan(&n)
	return n > 0, classify(err)
}

// CheckCreate implements table.CreateChecker: a table to create must not
// exist, nor its full-text table, which setting the table up would drop.
func (dr driver) CheckCreate(ctx context.Context, tables []*table.Spec) error {
	for _, s := range tables {
		for _, name := range []string{s.Table, ftsName(s.Table)} {
			found, err := dr.d.exists(ctx, name)
			if err != nil {
				return fmt.Errorf("checking table %s: %w", name, err)
			}
			if found {
				return notOurs(s.Table, name)
			}
		}
	}
	return nil
}

// checkFullText checks full-text indexes about to be created: their
// tables must not exist.
func (d *DB) checkFullText(ctx context.Context, actions []fullTextAction) error {
	for _, a := range actions {
		found, err := d.exists(ctx, ftsName(a.table))
		if err != nil {
			return fmt.Errorf("checking table %s: %w", ftsName(a.table), err)
		}
		if found {
			return notOurs(a.table, ftsName(a.table))
		}
	}
	return nil
}

// notOurs refuses the table declared, for the relation found.
func notOurs(declared, found string) error {
	err := &table.NotOursError{Kind: "table", Name: found, Table: declared}
	if found != declared {
		err.Role = "the full-text index"
	}
	return err
}

// ApplySetup implements table.Driver.
func (dr driver) ApplySetup(ctx context.Context, changes []table.SetupChange) error {
	for _, c := range changes {
		err := dr.d.tx(ctx, func(tx *sql.Tx) error {
			if c.Cur == nil {
				for _, name := range prevNames(c.Prev) {
					if err := dropTable(ctx, tx, name); err != nil {
						return err
					}
				}
				return nil
			}
			return converge(ctx, tx, c.Cur)
		})
		if err != nil {
			return fmt.Errorf("setting up table %s: %w", describeTable(c), err)
		}
	}
	return nil
}

func describeTable(c table.SetupChange) string {
	if c.Cur != nil {
		return c.Cur.Table
	}
	return strings.Join(prevNames(c.Prev), ", ")
}

func prevNames(prev []table.Spec) []string {
	var names []string
	for _, p := range prev {
		if !slices.Contains(names, p.Table) {
			names = append(names, p.Table)
		}
	}
	return names
}

func dropTable(ctx context.Context, tx *sql.Tx, name string) error {
	if err := dropFullText(ctx, tx, name); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS `+quote(name))
	return err
}

func createTable(ctx context.Context, tx *sql.Tx, s *table.Spec) error {
	var cols []string
	for _, c := range s.Columns {
		cols = append(cols, columnDef(c, false))
	}
	pk := make([]string, len(s.PrimaryKey))
	for i, p := range s.PrimaryKey {
		pk[i] = quote(p)
	}
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (%s, PRIMARY KEY (%s))`,
		quote(s.Table), strings.Join(cols, ", "), strings.Join(pk, ", ")))
	return err
}

// columnDef is a column's definition; a NOT NULL column added to a table
// with rows needs a default, its kind's zero (the rows are written again).
func columnDef(c table.ColumnSpec, withDefault bool) string {
	def := quote(c.Name) + " " + c.Type
	if !c.Nullable {
		def += " NOT NULL"
		if withDefault {
			def += " DEFAULT " + zero(c.Kind)
		}
	}
	return def
}

func zero(k table.Kind) string {
	switch k {
	case table.KindInt, table.KindBool, table.KindFloat:
		return "0"
	case table.KindBytes:
		return "x''"
	case table.KindJSON:
		return "'null'"
	case table.KindTime:
		return "'0001-01-01T00:00:00.000000000Z'"
	default:
		return "''"
	}
}

// converge brings the table to s from whatever it is: created if missing,
// recreated if its primary key differs, columns added, dropped, or replaced
// when their type or nullability differs.
func converge(ctx context.Context, tx *sql.Tx, s *table.Spec) error {
	live, err := tableInfo(ctx, tx, s.Table)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return createTable(ctx, tx, s)
	}
	if !samePrimaryKey(live, s) {
		if err := dropTable(ctx, tx, s.Table); err != nil {
			return err
		}
		return createTable(ctx, tx, s)
	}
	byName := make(map[string]liveColumn, len(live))
	for _, c := range live {
		byName[c.name] = c
	}
	for _, c := range s.Columns {
		lc, ok := byName[c.Name]
		switch {
		case !ok:
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+quote(s.Table)+` ADD COLUMN `+columnDef(c, true)); err != nil {
				return fmt.Errorf("adding column %s: %w", c.Name, err)
			}
		case lc.pk == 0 && (!strings.EqualFold(lc.typ, c.Type) || lc.notNull == c.Nullable):
			// SQLite cannot change a column: replace it.
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+quote(s.Table)+` DROP COLUMN `+quote(c.Name)); err != nil {
				return fmt.Errorf("replacing column %s: %w", c.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+quote(s.Table)+` ADD COLUMN `+columnDef(c, true)); err != nil {
				return fmt.Errorf("replacing column %s: %w", c.Name, err)
			}
		}
	}
	for _, lc := range live {
		if _, ok := s.Column(lc.name); !ok {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+quote(s.Table)+` DROP COLUMN `+quote(lc.name)); err != nil {
				return fmt.Errorf("dropping column %s: %w", lc.name, err)
			}
		}
	}
	return nil
}

func samePrimaryKey(live []liveColumn, s *table.Spec) bool {
	pk := make([]liveColumn, 0, len(s.PrimaryKey))
	for _, c := range live {
		if c.pk > 0 {
			pk = append(pk, c)
		}
	}
	slices.SortFunc(pk, func(a, b liveColumn) int { return a.pk - b.pk })
	if len(pk) != len(s.PrimaryKey) {
		return false
	}
	for i, name := range s.PrimaryKey {
		c, _ := s.Column(name)
		if pk[i].name != name || !strings.EqualFold(pk[i].typ, c.Type) {
			return false
		}
	}
	return true
}

// timeLayout stores times with a fixed width, so that they sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// sqlValue converts a column value to what SQLite stores.
// Value returns v, a value of a column as table.Schema gives it, as this
// package stores it: a bool as 0 or 1, a time as text in UTC.
func Value(v any) any { return sqlValue(v) }

func sqlValue(v any) any {
	switch x := v.(type) {
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	case time.Time:
		return x.UTC().Format(timeLayout)
	default:
		return v
	}
}

// Write implements table.Driver: one transaction per table.
func (dr driver) Write(ctx context.Context, writes []table.Write) error {
	return dr.d.tx(ctx, func(tx *sql.Tx) error {
		for _, w := range writes {
			if err := write(ctx, tx, w); err != nil {
				return fmt.Errorf("writing to table %s: %w", w.Table.Table, err)
			}
		}
		return nil
	})
}

func write(ctx context.Context, tx *sql.Tx, w table.Write) error {
	s := w.Table
	if len(w.Upserts) > 0 {
		cols := make([]string, len(s.Columns))
		for i, c := range s.Columns {
			cols[i] = quote(c.Name)
		}
		pk := make([]string, len(s.PrimaryKey))
		for i, p := range s.PrimaryKey {
			pk[i] = quote(p)
		}
		var set []string
		for _, c := range s.Columns {
			if !slices.Contains(s.PrimaryKey, c.Name) {
				set = append(set, quote(c.Name)+" = excluded."+quote(c.Name))
			}
		}
		conflict := "DO NOTHING"
		if len(set) > 0 {
			conflict = "DO UPDATE SET " + strings.Join(set, ", ")
		}
		stmt, err := tx.PrepareContext(ctx, fmt.Sprintf(`INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) %s`,
			quote(s.Table), strings.Join(cols, ", "), strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "), strings.Join(pk, ", "), conflict))
		if err != nil {
			return err
		}
		defer stmt.Close()
		args := make([]any, len(s.Columns))
		for _, row := range w.Upserts {
			for i, v := range row {
				args[i] = sqlValue(v)
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
	}
	if len(w.Deletes) > 0 {
		conds := make([]string, len(s.PrimaryKey))
		for i, p := range s.PrimaryKey {
			conds[i] = quote(p) + " = ?"
		}
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM `+quote(s.Table)+` WHERE `+strings.Join(conds, " AND "))
		if err != nil {
			return err
		}
		defer stmt.Close()
		args := make([]any, len(s.PrimaryKey))
		for _, pk := range w.Deletes {
			for i, v := range pk {
				args[i] = sqlValue(v)
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Attachment implements table.Driver: "fulltext".
func (dr driver) Attachment(t *table.Spec, kind string) (target.Erased, bool) {
	if kind != fullTextKind {
		return target.Erased{}, false
	}
	return target.Erase(table.GuardCreate[FullTextSpec](dr.d.ftsNew, &fullTextHandler{d: dr.d, table: t.Table})), true
}
