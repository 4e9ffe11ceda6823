package hackernews_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews"
)

const recordedItem = "testdata/items-40500071.json"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

func parse(t *testing.T, body string) hackernews.Thread {
	t.Helper()
	thread, exists, err := hackernews.ParseItem(strings.NewReader(body))
	require.NoError(t, err)
	require.True(t, exists)
	return thread
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseItemRecorded(t *testing.T) {
	t.Parallel()

	body := readTestdata(t, recordedItem)
	thread := parse(t, string(body))

	require.Equal(t, "40500071", thread.ID)
	require.Equal(t, "story", thread.Type)
	require.Equal(t, "Lorem Ipsum Dolor Sit Amet Consectetur Adipiscing Elit", thread.Title)
	require.Equal(t, "https://www.example.com/", thread.URL)
	require.Equal(t, "realslimginz", thread.Author)
	require.Empty(t, thread.Text, "text is null")
	require.Equal(t, at("2024-05-28T12:32:21Z"), thread.CreatedAt)

	// 13 nodes: the story and 12 comments, in document (pre-)order.
	want := []hackernews.Comment{
		{ID: "40513928", ParentID: "40500071", Author: "jonny_eh", CreatedAt: at("2024-05-29T16:41:07Z")},
		{ID: "40514343", ParentID: "40500071", Author: "jgalt212", CreatedAt: at("2024-05-29T17:11:19Z")},
		{ID: "40514467", ParentID: "40514343", Author: "Nuzzerino", CreatedAt: at("2024-05-29T17:22:51Z")},
		{ID: "40515109", ParentID: "40514343", Author: "simmerup", CreatedAt: at("2024-05-29T18:25:12Z")},
		{ID: "40514542", ParentID: "40500071", Author: "hooverd", CreatedAt: at("2024-05-29T17:30:12Z")},
		{ID: "40514681", ParentID: "40514542", Author: "et-al", CreatedAt: at("2024-05-29T17:46:46Z")},
		{ID: "40514897", ParentID: "40514681", Author: "scrame", CreatedAt: at("2024-05-29T18:06:12Z")},
		{ID: "40515138", ParentID: "40514681", Author: "SoftTalker", CreatedAt: at("2024-05-29T18:27:38Z")},
		{ID: "40514900", ParentID: "40500071", Author: "AdmiralAsshat", CreatedAt: at("2024-05-29T18:06:27Z")},
		{ID: "40515121", ParentID: "40500071", Author: "animanoir", CreatedAt: at("2024-05-29T18:26:36Z")},
		{ID: "40515350", ParentID: "40500071", Author: "tqi", CreatedAt: at("2024-05-29T18:46:28Z")},
		{ID: "40515559", ParentID: "40500071", Author: "subpar", CreatedAt: at("2024-05-29T19:01:49Z")},
	}
	require.Empty(t, cmp.Diff(want, thread.Comments, cmpopts.IgnoreFields(hackernews.Comment{}, "Text")))

	require.Equal(t, "This is easy, just eat boiled potatoes, meat and veg", thread.Comments[3].Text)
	require.Equal(t, "WHAT‽ I can&#x27;t taste my food over the music in here!", thread.Comments[4].Text, "raw HTML, UTF-8 kept")
	require.Equal(t,
		"wow, just found out about this via my this children's science podcast I listen to with my son: "+
			"https://tinkercast.com/podcasts/wow-in-the-world/drop-that-b...",
		hackernews.PlainText(thread.Comments[0].Text))
	require.Equal(t,
		"I don't think you're wrong.\n\nhttps://www.sfgate.com/food/article/bay-area-restaurants-sen...",
		hackernews.PlainText(thread.Comments[6].Text))

	// The same through a reader that gives one byte at a time.
	slow, exists, err := hackernews.ParseItem(iotest.OneByteReader(strings.NewReader(string(body))))
	require.NoError(t, err)
	require.True(t, exists)
	require.Empty(t, cmp.Diff(thread, slow))
}

// TestParseItemMatchesEncodingJSON checks the streaming parser against a
// straightforward recursive decoding of the recorded item.
func TestParseItemMatchesEncodingJSON(t *testing.T) {
	t.Parallel()

	type item struct {
		ID       int64  `json:"id"`
		ParentID *int64 `json:"parent_id"`
		Author   string `json:"author"`
		Text     string `json:"text"`
		Children []item `json:"children"`
	}
	body := readTestdata(t, recordedItem)
	var root item
	require.NoError(t, json.Unmarshal(body, &root))
	var want []hackernews.Comment
	stack := []item{root}
	for len(stack) > 0 { // pre-order
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.ID != root.ID {
			want = append(want, hackernews.Comment{ID: strconv.FormatInt(n.ID, 10), ParentID: strconv.FormatInt(*n.ParentID, 10), Author: n.Author, Text: n.Text})
		}
		for i := len(n.Children) - 1; i >= 0; i-- {
			stack = append(stack, n.Children[i])
		}
	}
	got := parse(t, string(body))
	require.Len(t, want, 12)
	require.Empty(t, cmp.Diff(want, got.Comments, cmpopts.IgnoreFields(hackernews.Comment{}, "CreatedAt")))
}

func TestParseItemDuplicates(t *testing.T) {
	t.Parallel()

	thread := parse(t, `{"id":1,"type":"story","children":[
		{"id":2,"text":"first 2"},
		{"id":3,"children":[{"id":2,"text":"second 2"},{"id":4,"text":"first 4"}]},
		{"id":1,"text":"the story's id again"},
		{"id":4,"text":"second 4"},
		{"text":"no id"},
		{"id":"abc","text":"not an id"},
		{"id":5,"type":"story","text":"not a comment, kept"},
		{"children":[{"id":6,"text":"first 6"}],"id":6,"text":"first 6, parent"},
		{"id":"7","parent_id":"3"}
	]}`)

	want := []hackernews.Comment{
		{ID: "2", ParentID: "1", Text: "first 2"},
		{ID: "3", ParentID: "1"},
		{ID: "4", ParentID: "3", Text: "first 4"},
		{ID: "5", ParentID: "1", Text: "not a comment, kept"},
		{ID: "6", ParentID: "1", Text: "first 6, parent"}, // its reply came first in the body, not in the tree
		{ID: "7", ParentID: "3"},
	}
	require.Empty(t, cmp.Diff(want, thread.Comments))
}

func TestParseItemNullsAndMissingFields(t *testing.T) {
	t.Parallel()

	thread := parse(t, `{"id":7,"type":null,"title":null,"url":null,"author":null,"text":null,
		"created_at":null,"created_at_i":null,"points":null,"options":[],"children":[
		{"id":8,"author":null,"text":null,"parent_id":null,"created_at":null,"children":null},
		{"id":9,"created_at_i":1717000867},
		{"id":10,"parent_id":9,"created_at":"not a time","created_at_i":1717000868},
		{"id":11,"title":5,"author":["x"],"text":{"a":[1,{"b":null}]},"children":{"id":12}},
		{"id":[13],"text":"a mistyped id is no id"},
		1, "two", null, [{"id":14}],
		{"id":15,"unknown":{"deep":[[[{"id":16}]]]},"children":[]}
	]}`)

	require.Empty(t, cmp.Diff(hackernews.Thread{
		ID: "7",
		Comments: []hackernews.Comment{
			{ID: "8", ParentID: "7"},
			{ID: "9", ParentID: "7", CreatedAt: time.Unix(1717000867, 0).UTC()},
			{ID: "10", ParentID: "9", CreatedAt: time.Unix(1717000868, 0).UTC()},
			{ID: "11", ParentID: "7"},
			{ID: "15", ParentID: "7"},
		},
	}, thread))

	// A story with only created_at_i, and fields in any order.
	thread = parse(t, `{"created_at_i":1716899541,"children":[],"id":40500071,"type":"job","title":"T"}`)
	require.Equal(t, hackernews.Thread{ID: "40500071", Type: "job", Title: "T", CreatedAt: time.Unix(1716899541, 0).UTC(), Comments: []hackernews.Comment{}}, thread)
}

// deepThread returns a thread whose comments each reply to the previous
// one, n deep, with keys in the API's sorted order (children before id)
// and no parent_id, so parents come from the tree's shape.
func deepThread(n int) string {
	var b strings.Builder
	b.WriteString(`{"author":"op","children":[`)
	for i := 2; i <= n+1; i++ {
		fmt.Fprintf(&b, `{"author":"a%d","children":[`, i)
	}
	for i := n + 1; i >= 2; i-- {
		fmt.Fprintf(&b, `],"id":%d,"text":"t%d","type":"comment"}`, i, i)
	}
	b.WriteString(`],"id":1,"title":"deep","type":"story"}`)
	return b.String()
}

func TestParseItemDeep(t *testing.T) {
	t.Parallel()

	const depth = 20_000
	body := deepThread(depth)
	var v any
	require.Error(t, json.Unmarshal([]byte(body), &v), "encoding/json refuses this depth; ParseItem must not")

	thread := parse(t, body)
	require.Equal(t, "1", thread.ID)
	require.Equal(t, "deep", thread.Title)
	require.Len(t, thread.Comments, depth)
	for i, c := range thread.Comments {
		id := i + 2
		require.Equal(t, strconv.Itoa(id), c.ID)
		require.Equal(t, strconv.Itoa(id-1), c.ParentID)
		require.Equal(t, "a"+c.ID, c.Author)
		require.Equal(t, "t"+c.ID, c.Text)
	}
}

func TestParseItemWide(t *testing.T) {
	t.Parallel()

	const n = 10_000
	var b strings.Builder
	b.WriteString(`{"id":1,"type":"story","children":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"parent_id":1,"author":"u%d","text":"comment &amp; %d","children":[]}`, i+2, i, i)
	}
	b.WriteString(`]}`)

	thread := parse(t, b.String())
	require.Len(t, thread.Comments, n)
	for i, c := range thread.Comments {
		require.Equal(t, hackernews.Comment{ID: strconv.Itoa(i + 2), ParentID: "1", Author: "u" + strconv.Itoa(i), Text: "comment &amp; " + strconv.Itoa(i)}, c)
	}
}

func TestParseItemGone(t *testing.T) {
	t.Parallel()

	for name, body := range map[string]string{
		"empty":        "",
		"whitespace":   " \n\t\r ",
		"null":         "null",
		"null, padded": "\n null \n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			thread, exists, err := hackernews.ParseItem(strings.NewReader(body))
			require.NoError(t, err)
			require.False(t, exists)
			require.Zero(t, thread.ID)
		})
	}
}

func TestParseItemMalformed(t *testing.T) {
	t.Parallel()

	for name, body := range map[string]string{
		"open object":          `{`,
		"unterminated":         `{"id":1`,
		"trailing comma":       `{"id":1,}`,
		"extra close":          `{"id":1}}`,
		"trailing data":        `{"id":1} x`,
		"two values":           `{"id":1}{"id":2}`,
		"null then data":       `null null`,
		"nullx":                `nullx`,
		"array":                `[{"id":1}]`,
		"string":               `"40500071"`,
		"number":               `40500071`,
		"bad children":         `{"id":1,"children":[}`,
		"unclosed children":    `{"id":1,"children":[{"id":2}`,
		"leading zero":         `{"id":01}`,
		"bare minus":           `{"id":-}`,
		"bad fraction":         `{"id":1.}`,
		"bad exponent":         `{"id":1e}`,
		"control in string":    "{\"id\":1,\"text\":\"a\x01b\"}",
		"bad escape":           `{"id":1,"text":"\q"}`,
		"short unicode escape": `{"id":1,"text":"\u12"}`,
		"single quotes":        `{'id':1}`,
		"bad literal":          `{"id":tru}`,
		"missing comma":        `{"id":1 "type":"story"}`,
		"missing colon":        `{"id" 1}`,
		"key not a string":     `{id:1}`,
		"no id":                `{"title":"x","children":[{"id":2}]}`,
		"id not a number":      `{"id":"abc"}`,
		"id zero":              `{"id":0}`,
		"id fraction":          `{"id":1.5}`,
		"id too big":           `{"id":99999999999999999999}`,
		"garbage":              "\xff\xfe",
		"NUL":                  "\x00",
		"deep and cut":         deepThread(30_000)[:200_000],
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, exists, err := hackernews.ParseItem(strings.NewReader(body))
			require.ErrorIs(t, err, hackernews.ErrMalformed)
			require.False(t, exists)
		})
	}
}

// TestParseItemTruncated cuts the recorded item after each of its bytes
// (but those of indentation): each cut but the empty one is malformed.
func TestParseItemTruncated(t *testing.T) {
	t.Parallel()

	body := strings.TrimSpace(string(readTestdata(t, recordedItem)))
	for n := 1; n < len(body); n++ {
		if body[n-1] == ' ' && body[n] == ' ' {
			continue
		}
		_, exists, err := hackernews.ParseItem(strings.NewReader(body[:n]))
		if !errors.Is(err, hackernews.ErrMalformed) || exists {
			t.Fatalf("cut at %d: exists %v, err %v; want ErrMalformed", n, exists, err)
		}
	}
	_, exists, err := hackernews.ParseItem(strings.NewReader(body[:0]))
	require.NoError(t, err)
	require.False(t, exists)
}

func TestParseItemReaderError(t *testing.T) {
	t.Parallel()

	errBoom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(`{"id":1,"children":[`), iotest.ErrReader(errBoom))
	_, exists, err := hackernews.ParseItem(r)
	require.ErrorIs(t, err, errBoom)
	require.NotErrorIs(t, err, hackernews.ErrMalformed, "a reader's failure is not bad JSON")
	require.False(t, exists)

	// A reader that returns data and an error together.
	body := readTestdata(t, recordedItem)
	thread, exists, err := hackernews.ParseItem(iotest.DataErrReader(strings.NewReader(string(body))))
	require.NoError(t, err)
	require.True(t, exists)
	require.Len(t, thread.Comments, 12)
}

func TestParseItemStrings(t *testing.T) {
	t.Parallel()

	thread := parse(t, `{"id":1,"title":"a\"b\\c\/d\b\f\n\r\t \u00e9 \ud83d\ude00 \ud800 x \udc00 \ud83dA","text":"caf\u00c3\u00a9 `+"\xff"+`"}`)
	require.Equal(t, "a\"b\\c/d\b\f\n\r\t é 😀 \uFFFD x \uFFFD \uFFFDA", thread.Title)
	require.Equal(t, "caf\u00c3\u00a9 \uFFFD", thread.Text, "invalid UTF-8 replaced")
}
