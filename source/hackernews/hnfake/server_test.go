package hnfake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// kind is the JSON kind of a decoded value.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// shape describes a decoded search body: the kind of each top-level key, the
// kinds of each hit key over all hits, the key sets hits come in, and the
// keys inside _highlightResult entries.
type shape struct {
	Top       map[string]string
	HitKeys   map[string][]string
	KeySets   []string
	Highlight []string
	Timings   []string
}

func shapeOf(t *testing.T, body []byte) shape {
	var top map[string]any
	require.NoError(t, json.Unmarshal(body, &top))
	s := shape{Top: map[string]string{}, HitKeys: map[string][]string{}}
	for k, v := range top {
		s.Top[k] = kind(v)
	}
	kinds := map[string]map[string]bool{}
	sets := map[string]bool{}
	hl := map[string]bool{}
	for _, h := range top["hits"].([]any) {
		hit := h.(map[string]any)
		sets[strings.Join(slices.Sorted(maps.Keys(hit)), ",")] = true
		for k, v := range hit {
			if kinds[k] == nil {
				kinds[k] = map[string]bool{}
			}
			kinds[k][kind(v)] = true
			switch k {
			case "_tags", "children":
				for _, e := range v.([]any) {
					kinds[k+"[]"] = map[string]bool{kind(e): true}
				}
			case "_highlightResult":
				for name, e := range v.(map[string]any) {
					for field, x := range e.(map[string]any) {
						hl[name+"."+field+":"+kind(x)] = true
					}
				}
			}
		}
	}
	for k, ks := range kinds {
		s.HitKeys[k] = slices.Sorted(maps.Keys(ks))
	}
	s.KeySets = slices.Sorted(maps.Keys(sets))
	s.Highlight = slices.Sorted(maps.Keys(hl))
	s.Timings = slices.Sorted(maps.Keys(top["processingTimingsMS"].(map[string]any)))
	return s
}

// A generated listing has the recorded listing's structure: the same keys
// with the same JSON kinds, at the top, in hits and in highlights, and hits
// in the same six combinations of optional keys.
func TestListingHasRecordedShape(t *testing.T) {
	t.Parallel()
	recorded, err := os.ReadFile("testdata/search_by_date-tags_story-created_at_i-hpp150.json")
	require.NoError(t, err)

	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 300, CommentsPerThread: 1, Seed: 11, TextBytes: 80})
	for i, th := range d.Threads() {
		if i%3 == 0 { // some threads without comments, as in the recording
			d.Edit(th.ID, func(t *hnfake.Thread) { t.Children = nil })
		}
	}
	f := setup(t, d)
	r := f.get(t, "/search_by_date?tags=story&numericFilters=created_at_i%3E1&hitsPerPage=150&page=0")
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, cmp.Diff(shapeOf(t, recorded), shapeOf(t, r.body)))
}

// items/{id} of a loaded recording is the recorded file, byte for byte.
func TestItemOfRecordingIsVerbatim(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("testdata/items/items-40500071.json")
	require.NoError(t, err)
	d, err := hnfake.LoadDir("testdata/items")
	require.NoError(t, err)
	require.Equal(t, 1, d.Len())
	require.Equal(t, 13, d.NumItems())
	f := setup(t, d)

	r := f.get(t, "/items/40500071")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, string(want), string(r.body))

	// Its listing: updated_at is its newest comment's created_at.
	l := f.search(t, url.Values{"tags": {"story"}})
	require.Len(t, l.Hits, 1)
	h := l.Hits[0]
	require.Equal(t, "2024-05-29T19:01:49Z", h.UpdatedAt)
	require.Equal(t, 12, h.NumComments)
	require.Equal(t, []int64{40513928, 40514343, 40514542, 40514900, 40515121, 40515350, 40515559}, h.Children)
	require.Equal(t, []string{"story", "author_realslimginz", "story_40500071"}, h.Tags)

	// A comment's id answers its subtree.
	var c struct {
		ID       int64             `json:"id"`
		ParentID int64             `json:"parent_id"`
		StoryID  int64             `json:"story_id"`
		Type     string            `json:"type"`
		Children []json.RawMessage `json:"children"`
	}
	r = f.get(t, "/items/40514343")
	require.Equal(t, http.StatusOK, r.status)
	require.NoError(t, json.Unmarshal(r.body, &c))
	require.Equal(t, int64(40514343), c.ID)
	require.Equal(t, int64(40500071), c.ParentID)
	require.Equal(t, int64(40500071), c.StoryID)
	require.Equal(t, "comment", c.Type)
	require.Len(t, c.Children, 2)

	// Once edited, it is serialized: compact, with the change.
	require.True(t, d.Edit(40500071, func(t *hnfake.Thread) { t.Title = "Changed" }))
	r = f.get(t, "/items/40500071")
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, want))
	require.Equal(t, strings.Replace(compact.String(), `"title":"Lorem Ipsum Dolor Sit Amet Consectetur Adipiscing Elit"`, `"title":"Changed"`, 1), string(r.body))
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t, hnfake.Generate(hnfake.GenerateOptions{Threads: 2, Seed: 1}))
	for _, path := range []string{"/items/1", "/items/abc", "/items/", "/nope", "/../x"} {
		r := f.get(t, path)
		require.Equal(t, http.StatusNotFound, r.status, path)
		require.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"), path)
		require.JSONEq(t, `{"status":404,"error":"Not Found"}`, string(r.body), path)
	}
	r := f.get(t, "/items/1")
	require.Equal(t, `{"status":404,"error":"Not Found"}`, string(r.body))
}

func TestSearchParameterErrors(t *testing.T) {
	t.Parallel()
	f := setup(t, hnfake.Generate(hnfake.GenerateOptions{Threads: 3, Seed: 1}))
	for _, q := range []string{"hitsPerPage=x", "hitsPerPage=-1", "page=-1", "page=1.5", "tags=(story", "numericFilters=updated_at%3E1", "numericFilters=created_at_i~1"} {
		r := f.get(t, "/search_by_date?"+q)
		require.Equal(t, http.StatusBadRequest, r.status, q)
		var e struct {
			Status  int    `json:"status"`
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal(r.body, &e), q)
		require.Equal(t, 400, e.Status)
		require.NotEmpty(t, e.Message)
	}
	l := f.search(t, url.Values{"hitsPerPage": {"5000"}})
	require.Equal(t, 1000, l.HitsPerPage)
	require.Len(t, l.Hits, 3)
	l = f.search(t, url.Values{})
	require.Equal(t, 20, l.HitsPerPage)
}

// Only the first 1,000 hits of a query can be paged to; windows on
// created_at_i reach the rest.
func TestPaginationCap(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 2500, Seed: 5})
	f := setup(t, d)

	tests := map[string]struct {
		hpp, page        int
		hits, nbPages, p int
	}{
		"1000 page 0":  {hpp: 1000, page: 0, hits: 1000, nbPages: 1},
		"1000 page 1":  {hpp: 1000, page: 1, hits: 0, nbPages: 1},
		"1000 page 2":  {hpp: 1000, page: 2, hits: 0, nbPages: 1},
		"150 page 0":   {hpp: 150, page: 0, hits: 150, nbPages: 7},
		"150 page 6":   {hpp: 150, page: 6, hits: 100, nbPages: 7},
		"150 page 7":   {hpp: 150, page: 7, hits: 0, nbPages: 7},
		"20 page 49":   {hpp: 20, page: 49, hits: 20, nbPages: 50},
		"20 page 50":   {hpp: 20, page: 50, hits: 0, nbPages: 50},
		"0 hits":       {hpp: 0, page: 0, hits: 0, nbPages: 0},
		"huge page":    {hpp: 1000, page: 1 << 40, hits: 0, nbPages: 1},
		"1 page 999":   {hpp: 1, page: 999, hits: 1, nbPages: 1000},
		"1 page 1000":  {hpp: 1, page: 1000, hits: 0, nbPages: 1000},
		"333 page 3":   {hpp: 333, page: 3, hits: 1, nbPages: 4},
		"333 page 4":   {hpp: 333, page: 4, hits: 0, nbPages: 4},
		"999 page 1":   {hpp: 999, page: 1, hits: 1, nbPages: 2},
		"1000 default": {hpp: 1000, hits: 1000, nbPages: 1},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := f.search(t, url.Values{"tags": {"story"}, "hitsPerPage": {fmt.Sprint(tt.hpp)}, "page": {fmt.Sprint(tt.page)}})
			require.Len(t, l.Hits, tt.hits)
			require.Equal(t, tt.nbPages, l.NbPages)
			require.Equal(t, 2500, l.NbHits)
			require.Equal(t, tt.page, l.Page)
		})
	}

	// Walking windows created_at_i<=T of 1,000 reaches every thread, in order.
	// (T is the oldest hit's second: threads share seconds, so < would skip.)
	want := d.Threads()
	var got []int64
	seen := map[int64]bool{}
	params := url.Values{"tags": {"story"}, "hitsPerPage": {"1000"}}
	for range 10 {
		l := f.search(t, params)
		added := 0
		for i, id := range l.ids(t) {
			if i > 0 {
				prev, cur := l.Hits[i-1], l.Hits[i]
				require.True(t, prev.CreatedAtI > cur.CreatedAtI || prev.CreatedAtI == cur.CreatedAtI && l.ids(t)[i-1] > id, "hits are sorted")
			}
			if !seen[id] {
				seen[id] = true
				got = append(got, id)
				added++
			}
		}
		if added == 0 {
			break
		}
		params.Set("numericFilters", fmt.Sprintf("created_at_i<=%d", l.Hits[len(l.Hits)-1].CreatedAtI))
	}
	require.Len(t, got, 2500)
	for i, th := range want {
		require.Equal(t, th.ID, got[i])
	}
}

func TestNumericFilters(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 400, CommentsPerThread: 2, Seed: 8, TextBytes: 20})
	f := setup(t, d)
	threads := d.Threads()
	mid := threads[200].CreatedAt.Unix()
	count := func(pred func(*hnfake.Thread) bool) int {
		n := 0
		for _, th := range threads {
			if pred(th) {
				n++
			}
		}
		return n
	}
	tests := map[string]struct {
		filter string
		pred   func(*hnfake.Thread) bool
	}{
		"lt":    {fmt.Sprintf("created_at_i<%d", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() < mid }},
		"le":    {fmt.Sprintf("created_at_i<=%d", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() <= mid }},
		"gt":    {fmt.Sprintf("created_at_i>%d", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() > mid }},
		"ge":    {fmt.Sprintf("created_at_i>=%d", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() >= mid }},
		"eq":    {fmt.Sprintf("created_at_i=%d", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() == mid }},
		"range": {fmt.Sprintf("created_at_i:%d TO %d", mid-3600, mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() >= mid-3600 && th.CreatedAt.Unix() <= mid }},
		"and":   {fmt.Sprintf("created_at_i>%d,points>=5", mid), func(th *hnfake.Thread) bool { return th.CreatedAt.Unix() > mid && th.Points >= 5 }},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := f.search(t, url.Values{"numericFilters": {tt.filter}, "hitsPerPage": {"1000"}})
			want := count(tt.pred)
			require.Positive(t, want)
			require.Equal(t, want, l.NbHits)
			require.Len(t, l.Hits, want)
		})
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	d := hnfake.NewDataset()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d.Put(&hnfake.Thread{ID: 1, Title: "A story", URL: "https://example.com/", Author: "ann", CreatedAt: at})
	d.Put(&hnfake.Thread{ID: 2, Type: "job", Title: "Example is hiring", URL: "https://example.com/jobs", Author: "bob", CreatedAt: at.Add(time.Second)})
	d.Put(&hnfake.Thread{ID: 3, Title: "Ask HN: Why?", Text: "Because.", Author: "ann", CreatedAt: at.Add(2 * time.Second)})
	d.Put(&hnfake.Thread{ID: 4, Title: "Show HN: A thing", URL: "https://example.com/thing", Author: "cy", CreatedAt: at.Add(3 * time.Second), Tags: []string{"front_page"}})
	d.Put(&hnfake.Thread{ID: 5, Type: "poll", Title: "Poll: tabs?", Author: "dee", CreatedAt: at.Add(4 * time.Second)})
	f := setup(t, d)
	tests := map[string][]int64{
		"":                       {5, 4, 3, 2, 1},
		"story":                  {4, 3, 1},
		"job":                    {2},
		"poll":                   {5},
		"comment":                {},
		"(story,job)":            {4, 3, 2, 1},
		"story,author_ann":       {3, 1},
		"author_ann":             {3, 1},
		"story_2":                {2},
		"ask_hn":                 {3},
		"show_hn":                {4},
		"front_page":             {4},
		"story,(ask_hn,show_hn)": {4, 3},
	}
	for tags, want := range tests {
		t.Run(tags, func(t *testing.T) {
			t.Parallel()
			l := f.search(t, url.Values{"tags": {tags}})
			require.Equal(t, want, append([]int64{}, l.ids(t)...))
			require.Equal(t, len(want), l.NbHits)
		})
	}
	l := f.search(t, url.Values{"tags": {"job"}})
	require.Equal(t, []string{"job", "author_bob", "story_2"}, l.Hits[0].Tags)
}

// walkTokens reads a items body with json.Decoder tokens (json.Unmarshal
// refuses nesting over 10,000) and returns the ids in it and the deepest
// object nesting.
func walkTokens(t *testing.T, body []byte) (ids []int64, maxDepth int) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	depth := 0
	expectID := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ids, maxDepth
		}
		require.NoError(t, err)
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				depth++
				maxDepth = max(maxDepth, depth)
			case '}':
				depth--
			}
		case string:
			if expectID {
				t.Fatalf("id is a string: %q", v)
			}
			// Keys and values alternate in objects; "id" is only a key.
			expectID = v == "id"
			continue
		case json.Number:
			if expectID {
				id, err := v.Int64()
				require.NoError(t, err)
				ids = append(ids, id)
			}
		}
		expectID = false
	}
}

func TestDeepThread(t *testing.T) {
	t.Parallel()
	const depth = 20_000
	d := hnfake.NewDataset()
	d.AddDeepThread(7, depth)
	require.Equal(t, depth+1, d.NumItems())
	f := setup(t, d)

	r := f.get(t, "/items/7")
	require.Equal(t, http.StatusOK, r.status)
	ids, maxDepth := walkTokens(t, r.body)
	require.Equal(t, depth+1, maxDepth)
	require.Len(t, ids, depth+1)
	slices.Sort(ids)
	require.Equal(t, int64(7), ids[0])
	for i := 1; i <= depth; i++ {
		require.Equal(t, int64(7+i), ids[i])
	}
	l := f.search(t, url.Values{"tags": {"story"}})
	require.Equal(t, depth, l.Hits[0].NumComments)
	require.Equal(t, []int64{8}, l.Hits[0].Children)

	// A comment half-way down answers its own chain.
	r2 := f.get(t, "/items/10007")
	require.Equal(t, http.StatusOK, r2.status)
	require.True(t, bytes.HasPrefix(r2.body, []byte(`{"author":"replier","children":[{"author":"replier","children":[`)))
	require.Equal(t, depth-10_000+1, bytes.Count(r2.body, []byte(`"id":`)))
	require.True(t, bytes.HasSuffix(r2.body, []byte(`"id":10007,"options":[],"parent_id":10006,"points":null,"story_id":7,"text":"Reply at depth 10000, and I don&#x27;t stop.","title":null,"type":"comment","url":null}`)))

	// What the fake serves, LoadDir reads back, however deep.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/deep.json", r.body, 0o644))
	d2, err := hnfake.LoadDir(dir)
	require.NoError(t, err)
	require.Equal(t, depth+1, d2.NumItems())
}

func TestWideThread(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 1, CommentsPerThread: 10_000, Depth: 4, Seed: 2, TextBytes: 100})
	th := d.Threads()[0]
	f := setup(t, d)
	r := f.get(t, "/items/"+itoa(th.ID))
	require.Equal(t, http.StatusOK, r.status)
	type node struct {
		ID       int64   `json:"id"`
		ParentID *int64  `json:"parent_id"`
		Children []*node `json:"children"`
	}
	var root node
	require.NoError(t, json.Unmarshal(r.body, &root))
	n := 0
	stack := []*node{&root}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		for _, c := range x.Children {
			require.Equal(t, x.ID, *c.ParentID)
			stack = append(stack, c)
		}
	}
	require.Equal(t, 10_001, n)
	require.Nil(t, root.ParentID)
}

// Changes are visible to the next request.
func TestMutationsAreVisible(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 30, CommentsPerThread: 3, Seed: 4})
	f := setup(t, d)
	threads := d.Threads()
	edited, deleted, hidden := threads[3], threads[5], threads[7]
	hit := func(l listing, id int64) int {
		for i, h := range l.Hits {
			if h.ObjectID == itoa(id) {
				return i
			}
		}
		return -1
	}
	all := url.Values{"hitsPerPage": {"100"}}
	before := f.search(t, all)
	require.Equal(t, 30, before.NbHits)

	require.True(t, d.Edit(edited.ID, func(t *hnfake.Thread) { t.Title += " (edited)" }))
	require.True(t, d.Delete(deleted.ID))
	require.True(t, d.Hide(hidden.ID))
	require.False(t, d.Delete(deleted.ID))
	require.False(t, d.Edit(deleted.ID, func(*hnfake.Thread) { t.Fatal("called") }))
	require.False(t, d.Hide(123))

	after := f.search(t, all)
	require.Equal(t, 28, after.NbHits)
	require.Equal(t, -1, hit(after, deleted.ID))
	require.Equal(t, -1, hit(after, hidden.ID))
	h := after.Hits[hit(after, edited.ID)]
	require.Equal(t, edited.Title+" (edited)", h.Title)
	require.Greater(t, h.UpdatedAt, before.Hits[hit(before, edited.ID)].UpdatedAt)

	r := f.get(t, "/items/"+itoa(edited.ID))
	require.Contains(t, string(r.body), "(edited)")
	r = f.get(t, "/items/"+itoa(deleted.ID))
	require.Equal(t, http.StatusNotFound, r.status)
	r = f.get(t, "/items/"+itoa(deleted.Children[0].ID))
	require.Equal(t, http.StatusNotFound, r.status, "the comments go with the thread")
	r = f.get(t, "/items/"+itoa(hidden.ID))
	require.Equal(t, http.StatusOK, r.status)

	// Edit keeps a thread hidden; Put lists it again.
	d.Edit(hidden.ID, func(t *hnfake.Thread) { t.Points++ })
	require.Equal(t, -1, hit(f.search(t, all), hidden.ID))
	th, ok := d.Get(hidden.ID)
	require.True(t, ok)
	d.Put(th)
	require.NotEqual(t, -1, hit(f.search(t, all), hidden.ID))

	// A new thread is listed first, its comments are served.
	d.Put(&hnfake.Thread{ID: 1, Title: "New", URL: "https://example.com/new", Author: "me",
		CreatedAt: threads[0].CreatedAt.Add(time.Hour),
		Children:  []*hnfake.Node{{ID: 2, Author: "you", Text: "Hi"}}})
	l := f.search(t, all)
	require.Equal(t, "1", l.Hits[0].ObjectID)
	require.Equal(t, http.StatusOK, f.get(t, "/items/2").status)
}

func TestUpdatedAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := hnfake.NewDataset()
	d.SetClock(func() time.Time { return now })
	created := now.Add(-time.Hour)
	d.Put(&hnfake.Thread{ID: 10, Title: "T", CreatedAt: created,
		Children: []*hnfake.Node{{ID: 11, Author: "a", Text: "x", CreatedAt: created.Add(10 * time.Minute)}, {ID: 12, Author: "a", Text: "y"}}})
	th, _ := d.Get(10)
	require.Equal(t, created.Add(10*time.Minute), th.UpdatedAt, "a new thread: its newest created_at")
	require.Equal(t, created, th.Children[1].CreatedAt, "a comment without a time: the thread's")
	require.Equal(t, "story", th.Type)

	// Edits bump to now, or a second past the last value if that is later.
	d.Edit(10, func(*hnfake.Thread) {})
	th, _ = d.Get(10)
	require.Equal(t, now, th.UpdatedAt)
	d.Edit(10, func(*hnfake.Thread) {})
	th, _ = d.Get(10)
	require.Equal(t, now.Add(time.Second), th.UpdatedAt)
	// An explicit value is kept, even an older one.
	d.Edit(10, func(t *hnfake.Thread) { t.UpdatedAt = created })
	th, _ = d.Get(10)
	require.Equal(t, created, th.UpdatedAt)

	// Put of a replacement with the same UpdatedAt bumps it; another is kept.
	th.Title = "T2"
	d.Put(th)
	got, _ := d.Get(10)
	require.Equal(t, now, got.UpdatedAt)
	got.UpdatedAt = created.Add(time.Minute)
	d.Put(got)
	got, _ = d.Get(10)
	require.Equal(t, created.Add(time.Minute), got.UpdatedAt)

	// Get and Threads return copies.
	got.Children[0].Text = "changed"
	again, _ := d.Get(10)
	require.Equal(t, "x", again.Children[0].Text)
	d.Threads()[0].Children[0].Text = "changed"
	again, _ = d.Get(10)
	require.Equal(t, "x", again.Children[0].Text)
}

func TestPutPanicsOnBadThreads(t *testing.T) {
	t.Parallel()
	d := hnfake.NewDataset()
	require.Panics(t, func() { d.Put(nil) })
	require.Panics(t, func() { d.Put(&hnfake.Thread{ID: 0}) })
	shared := &hnfake.Node{ID: 5}
	require.Panics(t, func() { d.Put(&hnfake.Thread{ID: 1, Children: []*hnfake.Node{shared, shared}}) })
	cyc := &hnfake.Node{ID: 6}
	cyc.Children = []*hnfake.Node{cyc}
	require.Panics(t, func() { d.Put(&hnfake.Thread{ID: 1, Children: []*hnfake.Node{cyc}}) })
	require.Equal(t, 0, d.Len())
}

func TestCounts(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 5, Seed: 1})
	ids := []int64{}
	for _, th := range d.Threads() {
		ids = append(ids, th.ID)
	}
	f := setup(t, d)
	f.search(t, url.Values{})
	f.search(t, url.Values{"page": {"1"}})
	f.get(t, "/items/"+itoa(ids[0]))
	f.get(t, "/items/"+itoa(ids[0]))
	f.get(t, "/items/"+itoa(ids[1]))
	f.get(t, "/items/1")
	f.get(t, "/items/x")
	f.get(t, "/search_by_date?page=-1")
	f.get(t, "/nope")
	want := hnfake.Counts{Listing: 3, Items: 5, ItemsByID: map[int64]int64{ids[0]: 2, ids[1]: 1, 1: 1}}
	require.Empty(t, cmp.Diff(want, f.srv.Requests()))

	// The same counts as JSON, for tests outside Go.
	resp, err := f.client.Get(strings.TrimSuffix(f.base, "/api/v1") + "/_fake/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var stats struct {
		hnfake.Counts
		Threads    int `json:"threads"`
		ItemsTotal int `json:"items_total"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stats))
	require.Empty(t, cmp.Diff(want, stats.Counts))
	require.Equal(t, 5, stats.Threads)
	require.Equal(t, 5, stats.ItemsTotal)

	f.srv.ResetCounts()
	require.Empty(t, cmp.Diff(hnfake.Counts{ItemsByID: map[int64]int64{}}, f.srv.Requests()))
	require.Same(t, d, f.srv.Dataset())
}

// Requests and changes at once: every response is whole and consistent (run
// with -race).
func TestConcurrentRequestsAndChanges(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 120, CommentsPerThread: 5, Seed: 9, TextBytes: 40})
	f := setup(t, d)
	threads := d.Threads()
	errs := make(chan error, 64)
	check := func(path string, okStatus ...int) {
		resp, err := f.client.Get(f.base + path)
		if err != nil {
			errs <- err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			errs <- err
		case !slices.Contains(okStatus, resp.StatusCode):
			errs <- fmt.Errorf("%s: status %d", path, resp.StatusCode)
		case !json.Valid(body):
			errs <- fmt.Errorf("%s: invalid JSON", path)
		}
	}
	done := make(chan struct{})
	var readers, writers sync.WaitGroup
	for w := range 6 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if i%2 == 0 {
					check(fmt.Sprintf("/search_by_date?hitsPerPage=50&page=%d", i%3), http.StatusOK)
				} else {
					check("/items/"+itoa(threads[(i*7+w)%len(threads)].ID), http.StatusOK, http.StatusNotFound)
				}
			}
		})
	}
	for w := range 2 {
		writers.Go(func() {
			for i := range 150 {
				th := threads[(i*5+w)%len(threads)]
				switch i % 5 {
				case 0:
					d.Edit(th.ID, func(t *hnfake.Thread) { t.Title += "!" })
				case 1:
					d.Hide(th.ID)
				case 2:
					d.Put(th)
				case 3:
					d.Delete(th.ID)
				case 4:
					d.Threads()
					f.srv.Requests()
				}
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, f.srv.Requests().Listing)
}

func TestThreadsOrder(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 300, Seed: 3})
	threads := d.Threads()
	require.True(t, sort.SliceIsSorted(threads, func(i, j int) bool {
		a, b := threads[i], threads[j]
		return a.CreatedAt.Unix() > b.CreatedAt.Unix() || a.CreatedAt.Unix() == b.CreatedAt.Unix() && a.ID > b.ID
	}))
	ties := 0
	for i := 1; i < len(threads); i++ {
		if threads[i].CreatedAt.Equal(threads[i-1].CreatedAt) {
			ties++
		}
	}
	require.Positive(t, ties, "some threads share a second, to test window edges")
}
