package table

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

type base struct {
	TenantID int64 `tidemark:"tenant,pk"`
}

type message struct {
	base
	ID        string            `tidemark:"id,pk"`
	ThreadID  string            // thread_id
	ParentID  *string           `tidemark:"parent_id"`
	Score     float64           `tidemark:",type=real"`
	Seen      bool              `tidemark:",nullable"`
	At        time.Time         `tidemark:"created_at"`
	Raw       []byte            `tidemark:"raw"`
	Digest    [4]byte           `tidemark:"digest"`
	Tags      []string          `tidemark:"tags"`
	Meta      map[string]any    `tidemark:"meta"`
	Doc       json.RawMessage   `tidemark:"doc"`
	Count     uint32            `tidemark:"count"`
	Big       uint64            `tidemark:"big"`
	Skipped   string            `tidemark:"-"`
	HTMLTitle string            // html_title
	Nested    struct{ A int }   `tidemark:"nested"`
	Labels    map[string]string `tidemark:"labels,nullable"`
	private   int
}

func TestSchema(t *testing.T) {
	t.Parallel()
	s, err := SchemaOf[message]()
	require.NoError(t, err)
	var got []string
	for _, c := range s.Columns {
		got = append(got, c.Name+":"+c.Kind.String())
	}
	require.Equal(t, []string{
		"tenant:int", "id:text", "thread_id:text", "parent_id:text", "score:float", "seen:bool",
		"created_at:time", "raw:bytes", "digest:bytes", "tags:json", "meta:json", "doc:json",
		"count:int", "big:int", "html_title:text", "nested:json", "labels:json",
	}, got)
	require.Equal(t, []int{0, 1}, s.PrimaryKey)
	require.True(t, s.Columns[s.ColumnIndex("parent_id")].Nullable, "a pointer is nullable")
	require.True(t, s.Columns[s.ColumnIndex("seen")].Nullable)
	require.False(t, s.Columns[s.ColumnIndex("id")].Nullable)
	require.Equal(t, "real", s.Columns[s.ColumnIndex("score")].SQLType)
	require.Equal(t, -1, s.ColumnIndex("skipped"))
}

func TestSnakeCase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ID": "id", "ThreadID": "thread_id", "HTMLText": "html_text", "URL": "url",
		"CreatedAt": "created_at", "A1B2": "a1_b2", "simple": "simple", "ParentID2": "parent_id2",
	} {
		require.Equal(t, want, SnakeCase(in), in)
	}
}

func TestSchemaErrors(t *testing.T) {
	t.Parallel()
	type noPK struct{ A string }
	type floatPK struct {
		A float64 `tidemark:",pk"`
	}
	type ptrPK struct {
		A *string `tidemark:",pk"`
	}
	type dup struct {
		A string `tidemark:"x,pk"`
		B string `tidemark:"x"`
	}
	type badOpt struct {
		A string `tidemark:",pk,unique"`
	}
	type chanField struct {
		A string `tidemark:",pk"`
		C chan int
	}
	for name, f := range map[string]func() error{
		"no pk":      func() error { _, err := SchemaOf[noPK](); return err },
		"float pk":   func() error { _, err := SchemaOf[floatPK](); return err },
		"pointer pk": func() error { _, err := SchemaOf[ptrPK](); return err },
		"duplicate":  func() error { _, err := SchemaOf[dup](); return err },
		"bad option": func() error { _, err := SchemaOf[badOpt](); return err },
		"chan":       func() error { _, err := SchemaOf[chanField](); return err },
		"not struct": func() error { _, err := SchemaOf[string](); return err },
	} {
		require.Error(t, f(), name)
	}
}

func TestValuesRoundTrip(t *testing.T) {
	t.Parallel()
	s, err := SchemaOf[message]()
	require.NoError(t, err)
	parent := "p\x00arent"
	at := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.FixedZone("X", 3600))
	in := message{
		base: base{TenantID: 7}, ID: "id-\xff", ThreadID: "t", ParentID: &parent, Score: 1.5, Seen: true,
		At: at, Raw: []byte{0, 1, 2}, Digest: [4]byte{9, 8, 7, 6}, Tags: []string{"a\x00b"},
		Meta: map[string]any{"k\x00": "v\x00"}, Doc: json.RawMessage(`{"x":"\u0000y"}`), Count: 3, Big: 1 << 40,
		HTMLTitle: "h", Nested: struct{ A int }{5}, private: 1,
	}
	values, err := s.Values(&in)
	require.NoError(t, err)
	require.Equal(t, "id-\uFFFD", values[1], "invalid UTF-8 replaced")
	require.Equal(t, "parent", values[3], "NUL dropped")
	require.Equal(t, at.UTC(), values[6])
	require.JSONEq(t, `["ab"]`, string(values[9].([]byte)))
	require.JSONEq(t, `{"k":"v"}`, string(values[10].([]byte)))
	require.JSONEq(t, `{"x":"y"}`, string(values[11].([]byte)))
	require.Nil(t, values[16], "a nil map in a nullable column is NULL")

	var out message
	require.NoError(t, s.Set(&out, values))
	require.Equal(t, int64(7), out.TenantID)
	require.Equal(t, "parent", *out.ParentID)
	require.Equal(t, at.UTC(), out.At)
	require.Equal(t, [4]byte{9, 8, 7, 6}, out.Digest)
	require.Equal(t, []string{"ab"}, out.Tags)
	require.Equal(t, map[string]any{"k": "v"}, out.Meta)
	require.Equal(t, uint64(1<<40), out.Big)
	require.Equal(t, 5, out.Nested.A)
	require.Nil(t, out.Labels)

	// Forms drivers return: an int64 for a bool, a string for a time.
	values[5] = int64(1)
	values[6] = at.UTC().Format(time.RFC3339Nano)
	values[12] = int32(3)
	require.NoError(t, s.Set(&out, values))
	require.True(t, out.Seen)
	require.Equal(t, at.UTC(), out.At)

	_, err = s.Values(&message{Big: math.MaxUint64})
	require.ErrorContains(t, err, "does not fit a signed 64-bit integer")
}

func TestKeys(t *testing.T) {
	t.Parallel()
	type composite struct {
		At   time.Time `tidemark:",pk"`
		Name string    `tidemark:",pk"`
		N    int       `tidemark:",pk"`
		B    []byte    `tidemark:",pk"`
		Ok   bool      `tidemark:",pk"`
		V    string
	}
	s, err := SchemaOf[composite]()
	require.NoError(t, err)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	values, err := s.Values(composite{At: at, Name: `a"b`, N: -3, B: []byte{1, 2}, Ok: true, V: "x"})
	require.NoError(t, err)
	key, err := s.Key(values)
	require.NoError(t, err)
	require.Equal(t, target.Key(`["2026-01-02T03:04:05.000000006Z","a\"b",-3,"AQI=",true]`), key)
	pk, err := s.DecodeKey(key)
	require.NoError(t, err)
	require.Equal(t, []any{at, `a"b`, int64(-3), []byte{1, 2}, true}, pk)

	_, err = s.DecodeKey(`["x"]`)
	require.ErrorContains(t, err, "has 1 parts")
}

func TestDiff(t *testing.T) {
	t.Parallel()
	base := Spec{Table: "t", PrimaryKey: []string{"id"}, Columns: []ColumnSpec{{Name: "id", Type: "text"}, {Name: "a", Type: "text"}, {Name: "b", Type: "bigint"}}}
	same := base
	require.True(t, Diff(&base, &same).Empty())
	require.Equal(t, target.InvalidateNone, Diff(&base, &same).Invalidation())

	added := base
	added.Columns = append(append([]ColumnSpec(nil), base.Columns...), ColumnSpec{Name: "c", Type: "text", Nullable: true})
	c := Diff(&base, &added)
	require.Equal(t, []ColumnSpec{{Name: "c", Type: "text", Nullable: true}}, c.Add)
	require.Equal(t, target.InvalidateLossy, c.Invalidation())
	require.Equal(t, []string{"c"}, Diff(&added, &base).Drop)

	retyped := base
	retyped.Columns = []ColumnSpec{{Name: "id", Type: "text"}, {Name: "a", Type: "text"}, {Name: "b", Type: "double precision"}}
	c = Diff(&base, &retyped)
	require.Equal(t, []ColumnSpec{{Name: "b", Type: "double precision"}}, c.Alter)
	require.Equal(t, "alter column b to double precision not null", c.String())

	newKey := base
	newKey.PrimaryKey = []string{"id", "a"}
	c = Diff(&base, &newKey)
	require.True(t, c.Recreate)
	require.Equal(t, target.InvalidateDestructive, c.Invalidation())

	keyType := base
	keyType.Columns = []ColumnSpec{{Name: "id", Type: "bigint"}, {Name: "a", Type: "text"}, {Name: "b", Type: "bigint"}}
	require.True(t, Diff(&base, &keyType).Recreate, "a primary key column's type changed")

	m := Diff(&base, &added).Merge(Diff(&retyped, &added))
	require.Len(t, m.Add, 1, "merged once")
	require.Len(t, m.Alter, 1)
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`rust`:                      `("rust")`,
		`rust  go`:                  `("rust" AND "go")`,
		`"hello world" go`:          `("hello world" AND "go")`,
		`go -java`:                  `(("go") NOT "java")`,
		`go OR rust`:                `("go") OR ("rust")`,
		`a b OR c -d`:               `("a" AND "b") OR (("c") NOT "d")`,
		`say "it's ""quoted"`:       `("say" AND "it's" AND "quoted")`,
		`unterminated "phrase here`: `("unterminated" AND "phrase here")`,
		`x:y NEAR(a b) ^c *`:        `("x:y" AND "NEAR(a" AND "b)" AND "^c")`,
		`émigré Ünïcode`:            `("émigré" AND "Ünïcode")`,
		`-only OR also`:             `("also")`,
		`a - b`:                     `("a" AND "b")`,
	} {
		q, err := ParseQuery(in)
		require.NoError(t, err, in)
		require.Equal(t, want, q.FTS5(), in)
	}
	for _, in := range []string{"", "   ", `""`, `"   "`, "OR", "-foo", "!!! ???", "- -"} {
		_, err := ParseQuery(in)
		require.ErrorIs(t, err, ErrEmptyQuery, in)
	}
}

type generic[T any] struct {
	ID T `tidemark:"id,pk"`
}

func TestTableName(t *testing.T) {
	f := tidemark.NewFlow("HNIndex")
	require.Equal(t, "hn_index__message", TableName[message](f, ""))
	require.Equal(t, "hn_index__message", TableName[*message](f, ""), "a pointer type names its element")
	require.Equal(t, "hn_index__generic", TableName[generic[int]](f, ""), "type arguments are left out")
	require.Equal(t, "stories", TableName[message](f, "stories"), "a name given is kept")
	require.Empty(t, TableName[struct{ ID int }](f, ""), "an unnamed type has no default")
}
