package fingerprint

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type point struct {
	X, Y int
}

type tagged struct {
	Name   string
	Cache  []byte `fingerprint:"-"`
	hidden int
}

type embedded struct {
	point
	Z int
}

type opaque struct{ v int }

type tree struct {
	Val      int
	Children []*tree
}

// TestEncodingBytes pins the canonical encoding of simple values byte for
// byte, as documented in the package comment.
func TestEncodingBytes(t *testing.T) {
	t.Parallel()

	tests := map[string]struct {
		value any
		want  string // hex
	}{
		"nil":             {nil, "00"},
		"false":           {false, "01"},
		"true":            {true, "02"},
		"int 1":           {1, "030000000000000001"},
		"int8 -1":         {int8(-1), "03ffffffffffffffff"},
		"uint16 258":      {uint16(258), "040000000000000102"},
		"float 1.5":       {1.5, "053ff8000000000000"},
		"float -0":        {math.Copysign(0, -1), "050000000000000000"},
		"float NaN":       {math.NaN(), "057ff8000000000001"},
		"float32 0.5":     {float32(0.5), "053fe0000000000000"},
		"complex 1+2i":    {complex(1, 2), "063ff00000000000004000000000000000"},
		"string":          {"hé", "0703" + "68c3a9"},
		"empty string":    {"", "0700"},
		"bytes":           {[]byte{1, 2}, "08020102"},
		"byte array":      {[2]byte{1, 2}, "08020102"},
		"nil bytes":       {[]byte(nil), "00"},
		"empty bytes":     {[]byte{}, "0800"},
		"time UTC":        {time.Date(2024, 5, 29, 16, 41, 7, 5, time.UTC), "090000000066575aa300000005"},
		"nil slice":       {[]int(nil), "00"},
		"empty slice":     {[]int{}, "0a00"},
		"list":            {[]bool{true, false}, "0a020201"},
		"array":           {[2]bool{true, false}, "0a020201"},
		"nil map":         {map[string]int(nil), "00"},
		"map sorted":      {map[string]bool{"b": true, "a": false}, "0b02" + "070161" + "01" + "070162" + "02"},
		"struct":          {point{X: 1, Y: 2}, "0c02" + "0158" + "030000000000000001" + "0159" + "030000000000000002"},
		"skips fields":    {tagged{Name: "n", Cache: []byte{9}, hidden: 3}, "0c01" + "044e616d65" + "07016e"},
		"pointer":         {&point{X: 1, Y: 2}, "0c02" + "0158" + "030000000000000001" + "0159" + "030000000000000002"},
		"nil pointer":     {(*point)(nil), "00"},
		"interface slice": {[]any{nil, "x"}, "0a02" + "00" + "070178"},
		"embedded":        {embedded{point: point{1, 2}, Z: 3}, "0c01" + "015a" + "030000000000000003"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Append(nil, tt.value)
			require.NoError(t, err)
			require.Equal(t, tt.want, hex.EncodeToString(got))
		})
	}
}

// TestGolden pins fingerprints: a change here means every stored row would
// look changed after an upgrade.
func TestGolden(t *testing.T) {
	t.Parallel()

	type message struct {
		ID        string
		ThreadID  string
		ParentID  *string
		Author    *string
		Text      string
		CreatedAt time.Time
		Tags      map[string][]string
		Score     float64
	}
	parent := "40500071"
	golden := map[string]struct {
		value any
		want  string
	}{
		"nil":    {nil, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},
		"string": {"hello", "d724f70e1c9e4f40ad0cfcfb14113c06d1d8b51833965a46a758ac99547eba50"},
		"int":    {int64(42), "3c3fe45445e589c9cacff2e23309b18a878a4683c3cdfe2a667b8a7048b72425"},
		// Cross-checked against an independent Python implementation of the
		// documented encoding.
		"message": {message{
			ID:        "40500123",
			ThreadID:  "40500071",
			ParentID:  &parent,
			Text:      "I ♥ HN\n\nsecond paragraph",
			CreatedAt: time.Date(2024, 5, 29, 16, 41, 7, 0, time.FixedZone("CEST", 2*3600)),
			Tags:      map[string][]string{"b": {"x"}, "a": nil, "c": {}},
			Score:     0.25,
		}, "d2223694f76b0db2f35ac4e252b54e1636d3c70c4b99f97487b1da610571fa30"},
	}
	for name, g := range golden {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fp, err := Of(g.value)
			require.NoError(t, err)
			require.Equal(t, g.want, fp.String())
			enc, err := Append(nil, g.value)
			require.NoError(t, err)
			require.Equal(t, sha256.Sum256(enc), [32]byte(fp), "a fingerprint is the SHA-256 of the encoding")
		})
	}
}

func TestEquivalences(t *testing.T) {
	t.Parallel()

	same := func(a, b any) {
		t.Helper()
		fa, err := Of(a)
		require.NoError(t, err)
		fb, err := Of(b)
		require.NoError(t, err)
		require.Equal(t, fa, fb, "%#v and %#v", a, b)
	}
	differ := func(a, b any) {
		t.Helper()
		fa, err := Of(a)
		require.NoError(t, err)
		fb, err := Of(b)
		require.NoError(t, err)
		require.NotEqual(t, fa, fb, "%#v and %#v", a, b)
	}

	instant := time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC)
	same(instant, instant.In(time.FixedZone("X", -7*3600)))
	withMonotonic := time.Now()
	same(withMonotonic, withMonotonic.Round(0)) // Round(0) strips the monotonic reading
	differ(instant, instant.Add(time.Nanosecond))

	same(int32(7), int64(7))
	differ(int(7), uint(7))
	differ(7, 7.0)
	differ("7", 7)
	differ("ab", []byte("ab"))

	differ([]int(nil), []int{})
	differ(map[string]int(nil), map[string]int{})
	differ((*string)(nil), "")
	s := "x"
	same(&s, "x")

	same(map[int]string{1: "a", 2: "b", 3: "c"}, map[int]string{3: "c", 1: "a", 2: "b"})
	differ(map[int]string{1: "a"}, map[int]string{1: "b"})

	// List boundaries cannot be shifted: ["ab","c"] vs ["a","bc"].
	differ([]string{"ab", "c"}, []string{"a", "bc"})
	differ(point{1, 2}, point{2, 1})
	differ(point{1, 2}, struct{ X, Z int }{1, 2})

	type ID string
	same(ID("a"), "a")
}

func TestMarshaledStruct(t *testing.T) {
	t.Parallel()

	a, err := Of(netip.MustParseAddr("192.0.2.1"))
	require.NoError(t, err)
	b, err := Of(netip.MustParseAddr("192.0.2.2"))
	require.NoError(t, err)
	require.NotEqual(t, a, b)

	enc, err := Append(nil, netip.MustParseAddr("192.0.2.1"))
	require.NoError(t, err)
	require.Equal(t, byte(tagMarshaled), enc[0])
}

func TestUnsupported(t *testing.T) {
	t.Parallel()

	for name, v := range map[string]any{
		"chan":   make(chan int),
		"func":   func() {},
		"opaque": opaque{v: 1},
		"nested": map[string]any{"f": func() {}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Of(v)
			require.ErrorIs(t, err, ErrUnsupported)
		})
	}
}

func TestCycle(t *testing.T) {
	t.Parallel()

	type node struct{ Next *node }
	n := &node{}
	n.Next = n
	_, err := Of(n)
	require.ErrorIs(t, err, ErrUnsupported)
	require.Contains(t, err.Error(), "cycle")

	m := map[string]any{}
	m["self"] = m
	_, err = Of(m)
	require.ErrorIs(t, err, ErrUnsupported)
}

// TestDeep shows that a legitimately deep value, such as a comment tree
// nested 20,000 levels, is encoded, not mistaken for a cycle.
func TestDeep(t *testing.T) {
	t.Parallel()

	root := &tree{Val: 0}
	cur := root
	for i := 1; i < 20000; i++ {
		next := &tree{Val: i}
		cur.Children = []*tree{next}
		cur = next
	}
	fp1, err := Of(root)
	require.NoError(t, err)
	cur.Val = -1
	fp2, err := Of(root)
	require.NoError(t, err)
	require.NotEqual(t, fp1, fp2)
}

func TestHasherReuse(t *testing.T) {
	t.Parallel()

	var h Hasher
	big := strings.Repeat("x", 2<<20)
	for _, v := range []any{"a", big, point{1, 2}, "a"} {
		got, err := h.Sum(v)
		require.NoError(t, err)
		want, err := Of(v)
		require.NoError(t, err)
		require.Equal(t, want, got)
		enc, err := Append(nil, v)
		require.NoError(t, err)
		require.Equal(t, len(enc), h.Len())
	}
}

func BenchmarkOf(b *testing.B) {
	type message struct {
		ID, ThreadID, Text string
		ParentID           *string
		CreatedAt          time.Time
	}
	p := "1"
	m := message{ID: "40500123", ThreadID: "40500071", ParentID: &p, Text: strings.Repeat("lorem ipsum ", 40), CreatedAt: time.Now()}
	var h Hasher
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Sum(m); err != nil {
			b.Fatal(err)
		}
	}
}
