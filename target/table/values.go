package table

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark/target"
)

// Values returns the column values of row, in column order, as the driver
// writes them: string, int64, float64, bool, time.Time (UTC), []byte, JSON
// as []byte, or nil for NULL. Text is cleaned (see CleanText).
func (s *Schema) Values(row any) ([]any, error) {
	v := reflect.ValueOf(row)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, fmt.Errorf("table: nil %s row", s.Type)
		}
		v = v.Elem()
	}
	if v.Type() != s.Type {
		return nil, fmt.Errorf("table: got a %s row, want %s", v.Type(), s.Type)
	}
	out := make([]any, len(s.Columns))
	for i := range s.Columns {
		c := &s.Columns[i]
		val, err := c.value(v.FieldByIndex(c.field))
		if err != nil {
			return nil, fmt.Errorf("table: column %q: %w", c.Name, err)
		}
		out[i] = val
	}
	return out, nil
}

func (c *Column) value(f reflect.Value) (any, error) {
	if c.ptr {
		if f.IsNil() {
			return nil, nil
		}
		f = f.Elem()
	}
	switch c.Kind {
	case KindText:
		return CleanText(f.String()), nil
	case KindInt:
		if c.unsigned {
			u := f.Uint()
			if u > math.MaxInt64 {
				return nil, fmt.Errorf("%d does not fit a signed 64-bit integer", u)
			}
			return int64(u), nil
		}
		if f.CanInt() {
			return f.Int(), nil
		}
		return int64(f.Uint()), nil
	case KindFloat:
		return f.Float(), nil
	case KindBool:
		return f.Bool(), nil
	case KindTime:
		return f.Interface().(time.Time).UTC(), nil
	case KindBytes:
		if f.Kind() == reflect.Array {
			b := make([]byte, f.Len())
			reflect.Copy(reflect.ValueOf(b), f)
			return b, nil
		}
		if f.IsNil() {
			if c.Nullable {
				return nil, nil
			}
			return []byte{}, nil
		}
		return bytes.Clone(f.Bytes()), nil
	case KindJSON:
		if f.Kind() == reflect.Interface && f.IsNil() || (f.Kind() == reflect.Map || f.Kind() == reflect.Slice) && f.IsNil() && c.Nullable {
			return nil, nil
		}
		if raw, ok := f.Interface().(json.RawMessage); ok {
			if len(raw) == 0 {
				if c.Nullable {
					return nil, nil
				}
				return []byte("null"), nil
			}
			return CleanJSON(raw)
		}
		b, err := json.Marshal(f.Interface())
		if err != nil {
			return nil, err
		}
		return CleanJSON(b)
	}
	return nil, fmt.Errorf("unknown kind %s", c.Kind)
}

// CleanText returns s as valid UTF-8 without NUL: NUL bytes are dropped and
// each invalid byte replaced by U+FFFD, as encoding/json does in JSON
// columns. PostgreSQL refuses both in text.
func CleanText(s string) string {
	s = validUTF8(s)
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return s
}

// validUTF8 replaces each invalid byte of s by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// CleanJSON returns a JSON document with the NUL characters of its strings
// dropped and invalid UTF-8 replaced: PostgreSQL's jsonb refuses \u0000.
func CleanJSON(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		b = []byte(validUTF8(string(b)))
	}
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return b, nil
	}
	// Rewrite the strings: decode, drop NULs, encode again.
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return json.Marshal(stripNUL(v))
}

func stripNUL(v any) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "\x00", "")
	case []any:
		for i := range x {
			x[i] = stripNUL(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[strings.ReplaceAll(k, "\x00", "")] = stripNUL(val)
		}
		return out
	default:
		return v
	}
}

// Set stores column values, as a driver scanned them, into the fields of
// the row dst points to. A value may be any of the types Values returns,
// or a form drivers commonly return for a kind: an integer of any size, a
// string for a time or JSON, an int64 for a bool, a string for bytes.
func (s *Schema) Set(dst any, values []any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Type() != s.Type {
		return fmt.Errorf("table: Set wants a *%s, got %T", s.Type, dst)
	}
	if len(values) != len(s.Columns) {
		return fmt.Errorf("table: Set got %d values for %d columns", len(values), len(s.Columns))
	}
	row := v.Elem()
	for i := range s.Columns {
		c := &s.Columns[i]
		if err := c.set(row.FieldByIndex(c.field), values[i]); err != nil {
			return fmt.Errorf("table: column %q: %w", c.Name, err)
		}
	}
	return nil
}

func (c *Column) set(f reflect.Value, val any) error {
	if val == nil {
		f.SetZero()
		return nil
	}
	if c.ptr {
		p := reflect.New(f.Type().Elem())
		if err := c.setValue(p.Elem(), val); err != nil {
			return err
		}
		f.Set(p)
		return nil
	}
	return c.setValue(f, val)
}

func (c *Column) setValue(f reflect.Value, val any) error {
	switch c.Kind {
	case KindText:
		switch x := val.(type) {
		case string:
			f.SetString(x)
		case []byte:
			f.SetString(string(x))
		default:
			return fmt.Errorf("cannot store %T in a string", val)
		}
	case KindInt:
		n, err := toInt64(val)
		if err != nil {
			return err
		}
		if f.CanInt() {
			if f.OverflowInt(n) {
				return fmt.Errorf("%d overflows %s", n, f.Type())
			}
			f.SetInt(n)
		} else {
			if n < 0 || f.OverflowUint(uint64(n)) {
				return fmt.Errorf("%d overflows %s", n, f.Type())
			}
			f.SetUint(uint64(n))
		}
	case KindFloat:
		switch x := val.(type) {
		case float64:
			f.SetFloat(x)
		case float32:
			f.SetFloat(float64(x))
		default:
			n, err := toInt64(val)
			if err != nil {
				return err
			}
			f.SetFloat(float64(n))
		}
	case KindBool:
		switch x := val.(type) {
		case bool:
			f.SetBool(x)
		default:
			n, err := toInt64(val)
			if err != nil {
				return err
			}
			f.SetBool(n != 0)
		}
	case KindTime:
		switch x := val.(type) {
		case time.Time:
			f.Set(reflect.ValueOf(x.UTC()))
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return err
			}
			f.Set(reflect.ValueOf(t.UTC()))
		default:
			return fmt.Errorf("cannot store %T in a time", val)
		}
	case KindBytes:
		var b []byte
		switch x := val.(type) {
		case []byte:
			b = bytes.Clone(x)
		case string:
			b = []byte(x)
		default:
			return fmt.Errorf("cannot store %T in bytes", val)
		}
		if f.Kind() == reflect.Array {
			if len(b) != f.Len() {
				return fmt.Errorf("%d bytes for a %s", len(b), f.Type())
			}
			reflect.Copy(f, reflect.ValueOf(b))
			return nil
		}
		f.SetBytes(b)
	case KindJSON:
		var b []byte
		switch x := val.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		default:
			// A driver that decoded the JSON already: encode it again.
			var err error
			if b, err = json.Marshal(x); err != nil {
				return err
			}
		}
		if f.Type() == rawMessageType {
			f.SetBytes(bytes.Clone(b))
			return nil
		}
		p := reflect.New(f.Type())
		if err := json.Unmarshal(b, p.Interface()); err != nil {
			return err
		}
		f.Set(p.Elem())
	}
	return nil
}

func toInt64(val any) (int64, error) {
	switch x := val.(type) {
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	default:
		return 0, fmt.Errorf("cannot store %T in an integer", val)
	}
}

// Key returns the key of a row: its primary key values, encoded as a JSON
// array (times in RFC 3339 with nanoseconds, bytes in base64).
func (s *Schema) Key(values []any) (target.Key, error) {
	parts := make([]any, len(s.PrimaryKey))
	for i, ci := range s.PrimaryKey {
		switch x := values[ci].(type) {
		case time.Time:
			parts[i] = x.UTC().Format(time.RFC3339Nano)
		default:
			parts[i] = x
		}
	}
	b, err := json.Marshal(parts)
	if err != nil {
		return "", fmt.Errorf("table: encoding the primary key: %w", err)
	}
	return target.Key(b), nil
}

// DecodeKey returns the primary key values a key encodes, typed as Values
// returns them.
func (s *Schema) DecodeKey(key target.Key) ([]any, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(key), &raw); err != nil {
		return nil, fmt.Errorf("table: decoding key %s: %w", key, err)
	}
	if len(raw) != len(s.PrimaryKey) {
		return nil, fmt.Errorf("table: key %s has %d parts, the primary key %d", key, len(raw), len(s.PrimaryKey))
	}
	out := make([]any, len(raw))
	for i, ci := range s.PrimaryKey {
		var err error
		switch s.Columns[ci].Kind {
		case KindText:
			var v string
			err = json.Unmarshal(raw[i], &v)
			out[i] = v
		case KindInt:
			var v int64
			err = json.Unmarshal(raw[i], &v)
			out[i] = v
		case KindBool:
			var v bool
			err = json.Unmarshal(raw[i], &v)
			out[i] = v
		case KindTime:
			var v string
			if err = json.Unmarshal(raw[i], &v); err == nil {
				var t time.Time
				t, err = time.Parse(time.RFC3339Nano, v)
				out[i] = t.UTC()
			}
		case KindBytes:
			var v string
			if err = json.Unmarshal(raw[i], &v); err == nil {
				out[i], err = base64.StdEncoding.DecodeString(v)
			}
		default:
			err = fmt.Errorf("a %s column cannot be in a key", s.Columns[ci].Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("table: decoding key %s: %w", key, err)
		}
	}
	return out, nil
}
