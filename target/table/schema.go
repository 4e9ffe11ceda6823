// Package table is the dialect-free core of Tidemark's table targets: the
// schema of a table from a Go struct, the conversion of rows to column
// values and back, the setup state of a table and its diff, and the
// handlers that reconcile a table and its rows on the target-state API.
// target/postgres and target/sqlite plug a Driver into it.
//
// # Columns from struct fields
//
// Every exported field of the row struct is a column, except fields tagged
// `tidemark:"-"`. An embedded struct without a tag contributes its fields.
// The tag's first element names the column; the default is the field name
// in snake_case (ThreadID → thread_id, URL → url). Further elements:
//
//	pk           the column is (part of) the primary key, in field order
//	type=T       the column's SQL type, instead of the dialect's default
//	nullable     the column accepts NULL (pointer fields always do)
//
// For example:
//
//	type Message struct {
//		ID        string     `tidemark:"id,pk"`
//		ThreadID  string     `tidemark:"thread_id"`
//		ParentID  *string    `tidemark:"parent_id"`  // nullable: a pointer
//		CreatedAt *time.Time `tidemark:"created_at"`
//	}
//
// # Type mapping
//
//	Go                                  PostgreSQL          SQLite
//	string                              text                TEXT
//	int, int8 … int64, uint8 … uint32   bigint              INTEGER
//	uint, uint64 (at most MaxInt64)     bigint              INTEGER
//	float32, float64                    double precision    REAL
//	bool                                boolean             INTEGER (0, 1)
//	time.Time (stored in UTC)           timestamptz         TEXT (RFC 3339, nanoseconds, UTC)
//	[]byte, [N]byte                     bytea               BLOB
//	*T                                  T, nullable         T, nullable
//	maps, slices, arrays, structs,      jsonb               TEXT (JSON)
//	json.RawMessage
//
// Text is stored as valid UTF-8 without NUL: NUL bytes are dropped and
// invalid bytes replaced by U+FFFD, in text columns and inside JSON alike,
// so that no value fails a batch. A primary key column must be text, an
// integer, a bool, a time or bytes.
package table

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// Kind is the kind of value a column holds.
type Kind uint8

// Kinds of columns.
const (
	KindText Kind = iota + 1
	KindInt
	KindFloat
	KindBool
	KindTime
	KindBytes
	KindJSON
)

func (k Kind) String() string {
	switch k {
	case KindText:
		return "text"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindBool:
		return "bool"
	case KindTime:
		return "time"
	case KindBytes:
		return "bytes"
	case KindJSON:
		return "json"
	default:
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
}

// Column is one column of a table, mapped from a struct field.
type Column struct {
	// Name is the column's SQL name.
	Name string
	// Kind is the kind of value it holds.
	Kind Kind
	// Nullable says the column accepts NULL.
	Nullable bool
	// SQLType overrides the dialect's type for Kind; empty otherwise.
	SQLType string
	// PrimaryKey says the column is part of the primary key.
	PrimaryKey bool

	field    []int // reflect field index path
	unsigned bool  // a uint or uint64 field, checked against MaxInt64
	ptr      bool  // a pointer field
}

// Schema is the columns of a row type, in field order.
type Schema struct {
	Type    reflect.Type
	Columns []Column
	// PrimaryKey holds the indexes in Columns of the primary key's columns,
	// in order.
	PrimaryKey []int
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
)

// SchemaOf returns the schema of row type T, which must be a struct with at
// least one column and a primary key.
func SchemaOf[T any]() (*Schema, error) {
	return SchemaFor(reflect.TypeFor[T]())
}

// SchemaFor returns the schema of the struct type t.
func SchemaFor(t reflect.Type) (*Schema, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("table: a row type must be a struct, got %s", t)
	}
	s := &Schema{Type: t}
	if err := s.addFields(t, nil); err != nil {
		return nil, err
	}
	if len(s.Columns) == 0 {
		return nil, fmt.Errorf("table: %s has no exported field to store", t)
	}
	seen := make(map[string]string)
	for i, c := range s.Columns {
		if other, dup := seen[c.Name]; dup {
			return nil, fmt.Errorf("table: %s: fields %s and %s both map to column %q", t, other, fieldName(t, c.field), c.Name)
		}
		seen[c.Name] = fieldName(t, c.field)
		if c.PrimaryKey {
			switch c.Kind {
			case KindFloat, KindJSON:
				return nil, fmt.Errorf("table: %s: primary key column %q must be text, an integer, a bool, a time or bytes, not %s", t, c.Name, c.Kind)
			}
			if c.ptr {
				return nil, fmt.Errorf("table: %s: primary key column %q cannot be a pointer (NULL)", t, c.Name)
			}
			s.PrimaryKey = append(s.PrimaryKey, i)
		}
	}
	if len(s.PrimaryKey) == 0 {
		return nil, fmt.Errorf("table: %s has no primary key; tag a field `tidemark:\"name,pk\"`", t)
	}
	return s, nil
}

func fieldName(t reflect.Type, index []int) string {
	return t.FieldByIndex(index).Name
}

func (s *Schema) addFields(t reflect.Type, prefix []int) error {
	for i := range t.NumField() {
		f := t.Field(i)
		index := append(append([]int(nil), prefix...), i)
		tag, hasTag := f.Tag.Lookup("tidemark")
		if tag == "-" {
			continue
		}
		if f.Anonymous && !hasTag {
			ft := f.Type
			if ft.Kind() == reflect.Struct && ft != timeType {
				if err := s.addFields(ft, index); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		c, err := column(f, tag)
		if err != nil {
			return fmt.Errorf("table: %s.%s: %w", s.Type, f.Name, err)
		}
		c.field = index
		s.Columns = append(s.Columns, c)
	}
	return nil
}

func column(f reflect.StructField, tag string) (Column, error) {
	parts := strings.Split(tag, ",")
	c := Column{Name: strings.TrimSpace(parts[0])}
	if c.Name == "" {
		c.Name = SnakeCase(f.Name)
	}
	for _, opt := range parts[1:] {
		opt = strings.TrimSpace(opt)
		switch {
		case opt == "pk":
			c.PrimaryKey = true
		case opt == "nullable":
			c.Nullable = true
		case strings.HasPrefix(opt, "type="):
			c.SQLType = strings.TrimSpace(strings.TrimPrefix(opt, "type="))
			if c.SQLType == "" {
				return c, fmt.Errorf("empty type= in tag %q", tag)
			}
		case opt == "":
		default:
			return c, fmt.Errorf("unknown tag option %q in %q (want pk, nullable or type=...)", opt, tag)
		}
	}
	t := f.Type
	if t.Kind() == reflect.Pointer && t != rawMessageType {
		c.ptr, c.Nullable = true, true
		t = t.Elem()
	}
	switch {
	case t == timeType:
		c.Kind = KindTime
	case t == rawMessageType:
		c.Kind = KindJSON
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8,
		t.Kind() == reflect.Array && t.Elem().Kind() == reflect.Uint8:
		c.Kind = KindBytes
	default:
		switch t.Kind() {
		case reflect.String:
			c.Kind = KindText
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint8, reflect.Uint16, reflect.Uint32:
			c.Kind = KindInt
		case reflect.Uint, reflect.Uint64, reflect.Uintptr:
			c.Kind, c.unsigned = KindInt, true
		case reflect.Float32, reflect.Float64:
			c.Kind = KindFloat
		case reflect.Bool:
			c.Kind = KindBool
		case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct, reflect.Interface:
			c.Kind = KindJSON
		default:
			return c, fmt.Errorf("type %s cannot be stored in a column", f.Type)
		}
	}
	return c, nil
}

// SnakeCase turns a Go identifier into snake_case, keeping initialisms
// together: ThreadID → thread_id, HTMLText → html_text, URL → url.
func SnakeCase(name string) string {
	runes := []rune(name)
	var b strings.Builder
	for i, r := range runes {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && (unicode.IsLower(runes[i-1]) || unicode.IsDigit(runes[i-1]))
			nextLower := i+1 < len(runes) && unicode.IsLower(runes[i+1])
			if i > 0 && (prevLower || nextLower && unicode.IsUpper(runes[i-1])) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ColumnIndex returns the index of the column called name, or -1.
func (s *Schema) ColumnIndex(name string) int {
	for i, c := range s.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}
