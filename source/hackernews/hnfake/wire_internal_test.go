package hnfake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// reencode writes data again, compact, with the fake's string escaping and
// the numbers and key order as they are. When data is a body the real API
// sent, the result must be data itself.
func reencode(t *testing.T, data []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type container struct {
		object bool
		n      int
	}
	var out []byte
	var stack []container
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if tok == json.Delim('}') || tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			out = append(out, byte(tok.(json.Delim)))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				out = append(out, ':')
			case top.n > 0:
				out = append(out, ',')
			}
			top.n++
		}
		switch v := tok.(type) {
		case json.Delim:
			out = append(out, byte(v))
			stack = append(stack, container{object: v == '{'})
		case string:
			out = appendString(out, v)
		case json.Number:
			out = append(out, v...)
		case bool:
			out = strconv.AppendBool(out, v)
		case nil:
			out = append(out, "null"...)
		}
	}
}

// The compact search body in testdata is the real API's bytes: escaping every
// string of it the fake's way must give it back exactly, \u2014 and all.
func TestAppendStringMatchesRecordedBody(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/search-query_hiring-tags_story_author_whoishiring.json")
	require.NoError(t, err)
	require.Contains(t, string(data), `\u2014`)
	require.Equal(t, string(data), string(reencode(t, data))+"\n")
}

func TestAppendStringDecodesLikeEncodingJSON(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"empty":       "",
		"ascii":       "plain text",
		"html":        `<a href="https://x.example/">x</a> & <i>y</i>`,
		"escapes":     "quote \" backslash \\ slash /",
		"controls":    "\x00\x01\b\f\n\r\t\x1f\x7f",
		"bmp":         "naïve café — “quoted” 日本語",
		"astral":      "🙂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
		"separators":  "\u2028\u2029",
		"invalid":     "bad \xff\xfe byte, cut \xe2\x82",
		"replacement": "\ufffd",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkStringRoundTrip(t, s)
		})
	}
}

func checkStringRoundTrip(t *testing.T, s string) {
	t.Helper()
	b := appendString(nil, s)
	for _, c := range b {
		require.Less(t, c, byte(0x7f), "the body must be ASCII: %q", b)
		require.GreaterOrEqual(t, c, byte(0x20), "no raw control characters: %q", b)
	}
	var got, want string
	require.NoError(t, json.Unmarshal(b, &got), "%q", b)
	std, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(std, &want))
	require.Equal(t, want, got)
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x7f", "é🙂", "\xff", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkStringRoundTrip(t, s)
	})
}

// recordedHit is what a recorded search hit says about its thread.
type recordedHit struct {
	Tags        []string  `json:"_tags"`
	Author      string    `json:"author"`
	Children    []int64   `json:"children"`
	CreatedAt   time.Time `json:"created_at"`
	NumComments int       `json:"num_comments"`
	ObjectID    string    `json:"objectID"`
	Points      int       `json:"points"`
	StoryText   string    `json:"story_text"`
	Title       string    `json:"title"`
	UpdatedAt   time.Time `json:"updated_at"`
	URL         string    `json:"url"`
}

// threadOfHit rebuilds a thread that the fake must list as h was listed:
// top-level comments with h's ids, deleted ones or extra replies so that
// num_comments comes out right, and the extra tags.
func threadOfHit(t *testing.T, h recordedHit) *Thread {
	id, err := strconv.ParseInt(h.ObjectID, 10, 64)
	require.NoError(t, err)
	th := &Thread{
		ID: id, Type: "story", Title: h.Title, URL: h.URL, Author: h.Author, Text: h.StoryText,
		CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt, Points: h.Points,
	}
	require.Equal(t, []string{"story", "author_" + h.Author, "story_" + h.ObjectID}, h.Tags[:3])
	for _, tag := range h.Tags[3:] {
		if tag != derivedTag(th) {
			th.Tags = append(th.Tags, tag)
		}
	}
	deleted := max(0, len(h.Children)-h.NumComments)
	for i, cid := range h.Children {
		n := &Node{ID: cid, CreatedAt: h.CreatedAt.Add(time.Minute)}
		if i >= deleted {
			n.Author, n.Text = "someone", "a comment"
		}
		th.Children = append(th.Children, n)
	}
	for k := range h.NumComments - (len(h.Children) - deleted) {
		require.NotEmpty(t, th.Children, "hit %s", h.ObjectID)
		p := th.Children[len(th.Children)-1]
		p.Children = append(p.Children, &Node{ID: 1e12 + int64(k), Author: "someone", Text: "a reply", CreatedAt: p.CreatedAt})
	}
	return th
}

// Every one of the 150 recorded hits, rebuilt as a thread, is listed by the
// fake byte for byte as the API listed it (once the recording, which its
// recorder pretty-printed, is compacted).
func TestHitsMatchRecordedListing(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/search_by_date-tags_story-created_at_i-hpp150.json")
	require.NoError(t, err)
	var rec struct {
		Hits []recordedHit `json:"hits"`
	}
	require.NoError(t, json.Unmarshal(data, &rec))
	require.Len(t, rec.Hits, 150)
	d := NewDataset()
	for _, h := range rec.Hits {
		d.Put(threadOfHit(t, h))
	}
	p, err := parseSearchParams(&url.URL{RawQuery: "tags=story&hitsPerPage=150"})
	require.NoError(t, err)
	var got, want map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(d.appendSearch(nil, &p), &got))
	require.NoError(t, json.Unmarshal(reencode(t, data), &want))
	gotHits, wantHits := splitArray(t, got["hits"]), splitArray(t, want["hits"])
	require.Len(t, gotHits, len(wantHits))
	for i := range wantHits {
		require.Equal(t, string(wantHits[i]), string(gotHits[i]), "hit %d", i)
	}
}

func splitArray(t *testing.T, raw json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

// A loaded thread is served verbatim; once changed it is serialized, and the
// serialization of the unchanged tree is the recording, compacted.
func TestItemSerializationMatchesRecording(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/items/items-40500071.json")
	require.NoError(t, err)
	th, err := parseItem(data)
	require.NoError(t, err)
	require.Equal(t, string(reencode(t, data)), string(appendThreadItem(nil, th)))

	// A comment's subtree has the same bytes as inside the thread.
	var root struct {
		Children []json.RawMessage `json:"children"`
	}
	require.NoError(t, json.Unmarshal(reencode(t, data), &root))
	c := th.Children[2]
	require.Equal(t, int64(40514542), c.ID)
	require.Equal(t, string(root.Children[2]), string(appendCommentItem(nil, c, th.ID, th.ID)))
}

func FuzzParseItem(f *testing.F) {
	data, err := os.ReadFile("testdata/items/items-40500071.json")
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(`{"id":1,"children":[{"id":2,"children":[{"id":3}]}],"created_at_i":5,"type":"job"}`))
	f.Add([]byte(`{"id":1,"children":null,"created_at":"2024-01-02T03:04:05.678+02:00","updated_at":"2024-01-03T00:00:00Z"}`))
	f.Add([]byte(`{"id":7,"author":null,"text":"\ud83d\ude42 \u00e9","children":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		th, err := parseItem(data)
		if err != nil {
			return
		}
		// Serializing is stable: what the fake writes, it reads back to the
		// same bytes.
		once := appendThreadItem(nil, th)
		th2, err := parseItem(once)
		require.NoError(t, err, "%s", once)
		require.Equal(t, string(once), string(appendThreadItem(nil, th2)))
	})
}

func FuzzSearchParams(f *testing.F) {
	for _, q := range []string{
		"tags=story&hitsPerPage=5&page=1",
		"tags=(story,job),author_x&numericFilters=created_at_i%3C100,points%3E%3D2",
		"numericFilters=created_at_i:10%20TO%2020&hitsPerPage=0",
		"page=99999999999999&hitsPerPage=1000",
		"tags=story&hitsPerPage=7&page=2&numericFilters=created_at_i%3C%3D1783560000",
		"tags=story,(job,story)&hitsPerPage=3&numericFilters=created_at_i%3E1783560000,created_at_i%3C1783567000",
	} {
		f.Add(q)
	}
	d := Generate(GenerateOptions{Threads: 300, CommentsPerThread: 1, Seed: 3, TextBytes: 20})
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseSearchParams(&url.URL{RawQuery: raw})
		if err != nil {
			return
		}
		body := d.appendSearch(nil, &p)
		require.True(t, json.Valid(body), "%s", body)
		// The shortcut for queries that select whole ranges gives what the
		// scan gives (a hidden count forces the scan; none is hidden).
		d.mu.Lock()
		d.hidden++
		d.mu.Unlock()
		scanned := d.appendSearch(nil, &p)
		d.mu.Lock()
		d.hidden--
		d.mu.Unlock()
		require.Equal(t, string(scanned), string(body))
		var r struct {
			Hits    []json.RawMessage `json:"hits"`
			NbPages int               `json:"nbPages"`
		}
		require.NoError(t, json.Unmarshal(body, &r))
		require.LessOrEqual(t, len(r.Hits), p.hitsPerPage)
	})
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   string
		want [][]string
		err  string
	}{
		"empty":   {in: "", want: nil},
		"one":     {in: "story", want: [][]string{{"story"}}},
		"and":     {in: "story,author_pg", want: [][]string{{"story"}, {"author_pg"}}},
		"or":      {in: "(story,job)", want: [][]string{{"story", "job"}}},
		"mixed":   {in: "story,(author_a,author_b),front_page", want: [][]string{{"story"}, {"author_a", "author_b"}, {"front_page"}}},
		"open":    {in: "(story", err: "unbalanced"},
		"after":   {in: "(story)x", err: "comma"},
		"inside":  {in: "st(ory", err: "misplaced"},
		"spaces":  {in: " story , job ", want: [][]string{{"story"}, {"job"}}},
		"trailer": {in: "story,", want: [][]string{{"story"}}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseTags(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(tt.want, got))
		})
	}
}

func TestCreatedBounds(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in     string
		lo, hi int64
	}{
		"lt":      {"created_at_i<100", minInt, 99},
		"le":      {"created_at_i<=100", minInt, 100},
		"gt":      {"created_at_i>100", 101, maxInt},
		"ge":      {"created_at_i>=100", 100, maxInt},
		"eq":      {"created_at_i=100", 100, 100},
		"range":   {"created_at_i:100 TO 200", 100, 200},
		"both":    {"created_at_i>100,created_at_i<=200", 101, 200},
		"float":   {"created_at_i<100.5", minInt, 100},
		"other":   {"points>3", minInt, maxInt},
		"ne":      {"created_at_i!=5", minInt, maxInt},
		"spaces":  {"created_at_i >= 7", 7, maxInt},
		"empty":   {"created_at_i>5,created_at_i<5", 6, 4},
		"many":    {"created_at_i<=300,created_at_i<=200", minInt, 200},
		"lowered": {"created_at_i>=0,created_at_i>=-5", 0, maxInt},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fs, err := parseNumericFilters(tt.in)
			require.NoError(t, err)
			lo, hi := createdBounds(fs)
			require.Equal(t, tt.lo, lo)
			require.Equal(t, tt.hi, hi)
		})
	}
	for _, bad := range []string{"updated_at>1", "created_at_i~3", "created_at_i<x", "<3", "created_at_i:1 TO", "created_at_i<NaN"} {
		_, err := parseNumericFilters(bad)
		require.Error(t, err, bad)
	}
}

const (
	minInt = -1 << 63
	maxInt = 1<<63 - 1
)

func TestHighlightValue(t *testing.T) {
	t.Parallel()
	require.Equal(t, `I'm at a/b &amp; &quot;c&quot; <p>`, highlightValue(`I&#x27;m at a&#x2F;b &amp; &quot;c&quot; <p>`))
	require.True(t, slices.Equal([]string{"x"}, strings.Fields(" x ")))
}
