package table

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/target"
)

// Spec is the setup state of a table: its name and columns, with their SQL
// types resolved by the driver. It is the table's tracking record, as JSON.
type Spec struct {
	// Schema is the database schema holding the table; empty for the
	// default (and always for SQLite).
	Schema string `json:"schema,omitempty"`
	// Table is the table's name.
	Table      string       `json:"table"`
	Columns    []ColumnSpec `json:"columns"`
	PrimaryKey []string     `json:"primary_key"`
}

// ColumnSpec is a column of a table's setup state.
type ColumnSpec struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Kind     Kind   `json:"kind"`
	Nullable bool   `json:"nullable,omitempty"`
}

// Column returns the column called name.
func (s *Spec) Column(name string) (ColumnSpec, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return ColumnSpec{}, false
}

// ColumnNames returns the names of the columns, in order.
func (s *Spec) ColumnNames() []string {
	out := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		out[i] = c.Name
	}
	return out
}

// Change is what turns one setup state of a table into another.
type Change struct {
	// Recreate says the primary key changed: the table is dropped and
	// created again.
	Recreate bool
	Add      []ColumnSpec
	Drop     []string
	// Alter holds the columns whose type or nullability changed.
	Alter []ColumnSpec
}

// Diff returns the change from prev to cur.
func Diff(prev, cur *Spec) Change {
	var c Change
	if !slices.Equal(prev.PrimaryKey, cur.PrimaryKey) {
		c.Recreate = true
		return c
	}
	for _, name := range cur.PrimaryKey {
		p, _ := prev.Column(name)
		n, _ := cur.Column(name)
		if !strings.EqualFold(p.Type, n.Type) || p.Kind != n.Kind {
			c.Recreate = true
			return c
		}
	}
	for _, n := range cur.Columns {
		p, ok := prev.Column(n.Name)
		switch {
		case !ok:
			c.Add = append(c.Add, n)
		case !strings.EqualFold(p.Type, n.Type) || p.Kind != n.Kind || p.Nullable != n.Nullable:
			c.Alter = append(c.Alter, n)
		}
	}
	for _, p := range prev.Columns {
		if _, ok := cur.Column(p.Name); !ok {
			c.Drop = append(c.Drop, p.Name)
		}
	}
	return c
}

// Empty reports whether the change changes nothing.
func (c Change) Empty() bool {
	return !c.Recreate && len(c.Add) == 0 && len(c.Drop) == 0 && len(c.Alter) == 0
}

// Invalidation is what the change does to the table's rows: a new primary
// key destroys them; any column change leaves them to be written again
// (a new column must be filled, a changed one may have lost its values).
func (c Change) Invalidation() target.Invalidation {
	switch {
	case c.Recreate:
		return target.InvalidateDestructive
	case c.Empty():
		return target.InvalidateNone
	default:
		return target.InvalidateLossy
	}
}

// Merge adds the changes of o to c, once each.
func (c Change) Merge(o Change) Change {
	c.Recreate = c.Recreate || o.Recreate
	for _, a := range o.Add {
		if !slices.ContainsFunc(c.Add, func(x ColumnSpec) bool { return x.Name == a.Name }) {
			c.Add = append(c.Add, a)
		}
	}
	for _, d := range o.Drop {
		if !slices.Contains(c.Drop, d) {
			c.Drop = append(c.Drop, d)
		}
	}
	for _, a := range o.Alter {
		if !slices.ContainsFunc(c.Alter, func(x ColumnSpec) bool { return x.Name == a.Name }) {
			c.Alter = append(c.Alter, a)
		}
	}
	return c
}

// String describes the change for a setup plan.
func (c Change) String() string {
	if c.Recreate {
		return "recreate (the primary key changed)"
	}
	var parts []string
	for _, a := range c.Add {
		parts = append(parts, fmt.Sprintf("add column %s %s", a.Name, a.Type))
	}
	for _, d := range c.Drop {
		parts = append(parts, "drop column "+d)
	}
	for _, a := range c.Alter {
		null := "not null"
		if a.Nullable {
			null = "null"
		}
		parts = append(parts, fmt.Sprintf("alter column %s to %s %s", a.Name, a.Type, null))
	}
	return strings.Join(parts, ", ")
}

// KeySchema returns a Schema of the table's columns and primary key, as
// DecodeKey and Key need it: it knows no Go type, only the columns.
func (s *Spec) KeySchema() (*Schema, error) {
	schema := &Schema{}
	for _, c := range s.Columns {
		schema.Columns = append(schema.Columns, Column{Name: c.Name, Kind: c.Kind, Nullable: c.Nullable, PrimaryKey: slices.Contains(s.PrimaryKey, c.Name)})
	}
	for _, name := range s.PrimaryKey {
		i := slices.IndexFunc(s.Columns, func(c ColumnSpec) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("table %s: its primary key column %s is not a column", s.Table, name)
		}
		schema.PrimaryKey = append(schema.PrimaryKey, i)
	}
	return schema, nil
}

// NormalizeKey returns key, a JSON array of the primary key's values, as
// the table's target keys encode it: a time in RFC 3339 with nanoseconds in
// UTC, a number without exponent, and no spaces.
func (s *Spec) NormalizeKey(key target.Key) (target.Key, error) {
	schema, err := s.KeySchema()
	if err != nil {
		return "", err
	}
	parts, err := schema.DecodeKey(key)
	if err != nil {
		return "", fmt.Errorf("table %s: %s is not a key of its primary key (%s): %w", s.Table, key, strings.Join(s.PrimaryKey, ", "), err)
	}
	values := make([]any, len(schema.Columns))
	for i, ci := range schema.PrimaryKey {
		values[ci] = parts[i]
	}
	return schema.Key(values)
}
