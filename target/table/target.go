package table

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// Target is a table of a flow: where its processing function declares rows
// of type T. Drivers wrap it with their own table type.
type Target[T any] struct {
	inner  *tidemark.Target[Values]
	schema *Schema
	spec   Spec
	// fullText says a full-text index was attached.
	fullText bool
}

// Options name a table.
type Options struct {
	// Kind names the driver's table handler, as tidemark.DeclareContainer
	// takes it ("postgres.table").
	Kind string
	// Key is the table's persistent key: the database's stable logical
	// name and the table's qualified name, so that credentials can change
	// without orphaning the table.
	Key target.Key
	// Schema is the database schema of the table, if the dialect has them.
	Schema string
	// Table is the table's name.
	Table string
}

// TableName returns name, or, when name is empty, the default name of a
// table of rows of type T in flow f: the flow's name and T's name in
// snake_case, joined by two underscores (flow "HNIndex", type Message:
// "hn_index__message"). The default follows the Go type: renaming the type
// renames the table, which a setup then drops and creates anew. Pass a
// name to keep a table's name whatever the code calls things.
func TableName[T any](f *tidemark.Flow, name string) string {
	if name != "" {
		return name
	}
	typ := reflect.TypeFor[T]()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Name() == "" {
		return "" // Declare reports that the table needs a name
	}
	// A generic type's name carries its type arguments.
	base, _, _ := strings.Cut(typ.Name(), "[")
	return SnakeCase(f.Name()) + "__" + SnakeCase(base)
}

// Declare declares a table of rows of type T in flow f, written through
// sinks. A mistake (a row type that cannot be a table) is reported by
// tidemark.Open.
func Declare[T any](f *tidemark.Flow, sinks *Sinks, o Options) *Target[T] {
	schema, err := SchemaOf[T]()
	if err != nil {
		f.AddError(err)
		schema = &Schema{}
	}
	if o.Table == "" {
		f.AddError(fmt.Errorf("table: a table of %s, an unnamed type, needs a name", reflect.TypeFor[T]()))
	}
	spec := Spec{Schema: o.Schema, Table: o.Table}
	for _, c := range schema.Columns {
		typ := c.SQLType
		if typ == "" {
			typ = sinks.driver.SQLType(c)
		}
		spec.Columns = append(spec.Columns, ColumnSpec{Name: c.Name, Type: typ, Kind: c.Kind, Nullable: c.Nullable})
		if c.PrimaryKey {
			spec.PrimaryKey = append(spec.PrimaryKey, c.Name)
		}
	}
	inner := tidemark.DeclareContainer[Spec, Values](f, o.Kind, o.Key, NewHandler(sinks, schema), spec)
	return &Target[T]{inner: inner, schema: schema, spec: spec}
}

// Declare declares, while processing r, that row should exist in the
// table, keyed by its primary key. A row whose key cannot be stored fails
// the source row.
func (t *Target[T]) Declare(r *tidemark.Row, row T) {
	values, err := t.schema.Values(&row)
	if err != nil {
		panic(fmt.Sprintf("table %s: %v", t.spec.Table, err))
	}
	key, err := t.schema.Key(values)
	if err != nil {
		panic(fmt.Sprintf("table %s: %v", t.spec.Table, err))
	}
	t.inner.Declare(r, key, values)
}

// Schema returns the table's schema.
func (t *Target[T]) Schema() *Schema { return t.schema }

// Spec returns the table's setup state.
func (t *Target[T]) Spec() Spec { return t.spec }

// Inner returns the underlying target, to attach attachments to.
func (t *Target[T]) Inner() *tidemark.Target[Values] { return t.inner }

// RowScanner is a query result, as *sql.Rows and pgx.Rows both are.
type RowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Scan reads the current row of rows: the table's columns, in order, into a
// T, then the values after them into extra.
func (t *Target[T]) Scan(rows RowScanner, extra ...any) (T, error) {
	var row T
	values := make([]any, len(t.spec.Columns))
	dest := make([]any, 0, len(values)+len(extra))
	for i := range values {
		dest = append(dest, &values[i])
	}
	if err := rows.Scan(append(dest, extra...)...); err != nil {
		return row, err
	}
	return row, t.schema.Set(&row, values)
}

// Iterate yields the rows of a query of the table's columns, then closes
// it. query runs the query; errors are wrapped as reading the table.
func (t *Target[T]) Iterate(query func() (RowScanner, func(), error)) func(yield func(T, error) bool) {
	return func(yield func(T, error) bool) {
		var zero T
		rows, closeRows, err := query()
		if err != nil {
			yield(zero, fmt.Errorf("reading table %s: %w", t.spec.Table, err))
			return
		}
		defer closeRows()
		for rows.Next() {
			row, err := t.Scan(rows)
			if err != nil {
				yield(zero, fmt.Errorf("reading table %s: %w", t.spec.Table, err))
				return
			}
			if !yield(row, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(zero, fmt.Errorf("reading table %s: %w", t.spec.Table, err))
		}
	}
}

// AttachFullText attaches spec, of kind, to the table as its full-text
// index of column. A column that cannot have it (it must exist and hold
// text) and a second index on the table are mistakes reported on the flow,
// each prefixed with dialect.
func AttachFullText[T, S any](t *Target[T], dialect, kind, column string, spec S) {
	f := t.inner.Flow()
	if err := t.checkFullText(column); err != nil {
		f.AddError(fmt.Errorf("%s: %w", dialect, err))
	}
	if t.fullText {
		f.AddError(fmt.Errorf("%s: table %s has a full-text index already", dialect, t.spec.Table))
	}
	t.fullText = true
	tidemark.Attach(t.inner, kind, "index", spec)
}

// CheckColumn reports on the flow, prefixed with dialect, a column the
// table lacks, named by what (such as "to order search ties by").
func CheckColumn[T any](t *Target[T], dialect, what, column string) {
	if _, ok := t.spec.Column(column); !ok {
		t.inner.Flow().AddError(fmt.Errorf("%s: table %s has no column %q %s", dialect, t.spec.Table, column, what))
	}
}

// checkFullText returns why column cannot have the table's full-text
// index, if it cannot: it must exist and hold text.
func (t *Target[T]) checkFullText(column string) error {
	c, ok := t.spec.Column(column)
	switch {
	case !ok:
		return fmt.Errorf("table %s has no column %q to index", t.spec.Table, column)
	case c.Kind != KindText:
		return fmt.Errorf("column %q of table %s holds %s, not text", column, t.spec.Table, c.Kind)
	}
	return nil
}
