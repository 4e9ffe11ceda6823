package hnindex_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/hnindex"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/source/hackernews"
	"github.com/tidemark/tidemark/source/hackernews/hnfake"
	"github.com/tidemark/tidemark/target/sqltable"
)

var backends = []string{"sqlite", "postgres"}

// world is a fake HackerNews API and a database, and the hnindex command
// line pointed at them.
type world struct {
	t    *testing.T
	fake *hnfake.Server
	url  string
	db   string
	// state is the state store's URL when it is not db's (Redis).
	state string
	// gone404 lists thread ids whose items the API answers 404 while the
	// listing still has them.
	mu      sync.Mutex
	gone404 map[string]bool
	// listings counts listing requests; from the failListingFrom-th on
	// (when set), they answer 500.
	listings, failListingFrom int
	// served404 counts the 404s answered for gone404.
	served404 int
	// maxElapsed bounds the source's retries of one request.
	maxElapsed time.Duration
}

func newWorld(t *testing.T, backend string, ds *hnfake.Dataset) *world {
	t.Helper()
	w := &world{t: t, fake: hnfake.NewServer(ds), gone404: make(map[string]bool), maxElapsed: 20 * time.Second}
	h := w.fake.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		gone := w.gone404[strings.TrimPrefix(r.URL.Path, "/api/v1/items/")]
		failing := false
		if strings.HasSuffix(r.URL.Path, "/search_by_date") {
			w.listings++
			failing = w.failListingFrom > 0 && w.listings >= w.failListingFrom
		}
		w.mu.Unlock()
		if gone {
			w.mu.Lock()
			w.served404++
			w.mu.Unlock()
			http.Error(rw, `{"error":"Not Found","status":404}`, http.StatusNotFound)
			return
		}
		if failing {
			http.Error(rw, `{"message":"internal error","status":500}`, http.StatusInternalServerError)
			return
		}
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(ts.Close)
	w.url = ts.URL + "/api/v1"
	switch backend {
	case "sqlite":
		w.db = filepath.Join(t.TempDir(), "hnindex.db")
	case "postgres":
		w.db = pgtest.Database(t)
	case "redis":
		// The tables in PostgreSQL, the state in Redis.
		w.db = pgtest.Database(t)
		base, prefix := redistest.Prefix(t)
		w.state = base + "?prefix=" + prefix
	}
	return w
}

func (w *world) app() cli.App {
	return hnindex.App(func(o *hackernews.Options) {
		o.RequestsPerSecond, o.Burst = 10000, 100
		o.MaxElapsed = w.maxElapsed
		o.Timeout = 10 * time.Second
	})
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs hnindex with args against the world.
func (w *world) run(args ...string) result {
	w.t.Helper()
	var out, errb bytes.Buffer
	env := cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		switch k {
		case "TIDEMARK_DATABASE_URL":
			return w.db
		case "HN_API_URL":
			return w.url
		case "TIDEMARK_STATE_URL":
			return w.state
		}
		return ""
	}}
	code := cli.Run(w.t.Context(), w.app(), args, env)
	return result{code, out.String(), errb.String()}
}

// mustUpdate runs an update that must succeed, with the request counts
// reset first, and returns the counts it caused.
func (w *world) mustUpdate(args ...string) hnfake.Counts {
	w.t.Helper()
	w.fake.ResetCounts()
	r := w.run(append([]string{"update", "--log-level", "warn"}, args...)...)
	require.Equal(w.t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	return w.fake.Requests()
}

// rows reads hn_messages.
func (w *world) rows() map[string]hnindex.Message {
	w.t.Helper()
	ctx := w.t.Context()
	db, err := sqltable.Open(ctx, "main", w.db, sqltable.Options{})
	require.NoError(w.t, err)
	defer db.Close()
	src, err := hackernews.New(hackernews.Options{BaseURL: w.url})
	require.NoError(w.t, err)
	f, err := hnindex.NewFlow(src, db)
	require.NoError(w.t, err)
	out := make(map[string]hnindex.Message)
	for m, err := range f.Rows(ctx) {
		require.NoError(w.t, err)
		out[m.ID] = m
	}
	return out
}

// want computes the rows the dataset should produce from the fake's own
// model of the threads, independently of the source's item parser. The
// HTML-to-text conversion is the source's PlainText (tested on its own in
// package hackernews); the deep and wide tests check the structure.
func want(ds *hnfake.Dataset) map[string]hnindex.Message {
	out := make(map[string]hnindex.Message)
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	at := func(t time.Time) *time.Time { u := t.UTC().Truncate(time.Second); return &u }
	for _, t := range ds.Threads() {
		id := strconv.FormatInt(t.ID, 10)
		text := t.Title
		if body := hackernews.PlainText(t.Text); body != "" {
			text += "\n\n" + body
		}
		out[id] = hnindex.Message{ID: id, ThreadID: id, ContentType: "thread", Author: str(t.Author), Text: text, URL: str(t.URL), CreatedAt: at(t.CreatedAt)}
		type frame struct {
			n      *hnfake.Node
			parent int64
		}
		stack := make([]frame, 0, len(t.Children))
		for i := len(t.Children) - 1; i >= 0; i-- {
			stack = append(stack, frame{t.Children[i], t.ID})
		}
		for len(stack) > 0 {
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			cid := strconv.FormatInt(f.n.ID, 10)
			parent := strconv.FormatInt(f.parent, 10)
			out[cid] = hnindex.Message{ID: cid, ThreadID: id, ParentID: &parent, ContentType: "comment", Author: str(f.n.Author),
				Text: hackernews.PlainText(f.n.Text), CreatedAt: at(f.n.CreatedAt)}
			for i := len(f.n.Children) - 1; i >= 0; i-- {
				stack = append(stack, frame{f.n.Children[i], f.n.ID})
			}
		}
	}
	return out
}

// requireRows checks that hn_messages holds exactly the dataset's rows.
func (w *world) requireRows() {
	w.t.Helper()
	got := w.rows()
	for _, m := range got {
		if m.CreatedAt != nil {
			u := m.CreatedAt.UTC().Truncate(time.Second)
			m.CreatedAt = &u
			got[m.ID] = m
		}
	}
	exp := want(w.fake.Dataset())
	if diff := cmp.Diff(exp, got); diff != "" {
		w.t.Fatalf("hn_messages differs from the dataset (-want +got), %d rows wanted, %d got:\n%.4000s", len(exp), len(got), diff)
	}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	forEachOf(t, backends, fn)
}

// forEachOf runs fn as a parallel subtest per backend of these.
func forEachOf(t *testing.T, these []string, fn func(t *testing.T, backend string)) {
	for _, b := range these {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// dataset is 40 generated threads and the recorded real one.
func dataset(t *testing.T) *hnfake.Dataset {
	t.Helper()
	ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 40, CommentsPerThread: 30, Depth: 5, Seed: 7})
	// The recorded real thread (see source/hackernews/hnfake/testdata/README.md).
	real, err := hnfake.LoadDir("../source/hackernews/hnfake/testdata/items")
	require.NoError(t, err)
	for _, th := range real.Threads() {
		ds.Put(th)
	}
	require.Equal(t, 41, ds.Len())
	return ds
}

func TestSyncEndToEnd(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := dataset(t)
		w := newWorld(t, backend, ds)

		// The first sync creates exactly the expected rows.
		c := w.mustUpdate()
		require.Equal(t, int64(1), c.Listing, "500 results fit one page")
		require.Equal(t, int64(41), c.Items, "every thread fetched once")
		w.requireRows()
		require.Len(t, w.rows(), ds.NumItems())

		// Nothing changed: only the listing.
		c = w.mustUpdate()
		require.Equal(t, int64(1), c.Listing)
		require.Zero(t, c.Items, "no item fetched when nothing changed")

		// k threads edited: exactly those fetched.
		threads := ds.Threads()
		edited := []int64{threads[3].ID, threads[17].ID, threads[29].ID}
		for i, id := range edited {
			require.True(t, ds.Edit(id, func(th *hnfake.Thread) {
				th.Title += fmt.Sprintf(" (edited %d)", i)
				th.Children = append(th.Children, &hnfake.Node{ID: 90_000_000 + int64(i), Author: "late", Text: "A <i>late</i> reply &amp; more"})
			}))
		}
		c = w.mustUpdate()
		require.Equal(t, int64(len(edited)), c.Items)
		for _, id := range edited {
			require.Equal(t, int64(1), c.ItemsByID[id])
		}
		w.requireRows()

		// A thread gone from the listing, one deleted, one answering 404
		// while still listed: all their rows are deleted.
		hidden, deleted, notFound := threads[5].ID, threads[6].ID, threads[7].ID
		require.True(t, ds.Hide(hidden))
		require.True(t, ds.Delete(deleted))
		w.mu.Lock()
		w.gone404[strconv.FormatInt(notFound, 10)] = true
		w.mu.Unlock()
		ds.Edit(notFound, func(*hnfake.Thread) {}) // a new updated_at makes it fetched
		c = w.mustUpdate()
		w.mu.Lock()
		require.Equal(t, 1, w.served404, "the edited thread was fetched and found gone")
		w.mu.Unlock()
		rows := w.rows()
		for _, id := range []int64{hidden, deleted, notFound} {
			for _, m := range rows {
				require.NotEqual(t, strconv.FormatInt(id, 10), m.ThreadID, "a row of thread %d is left", id)
			}
		}
		ds.Delete(hidden) // the fake still serves it; the dataset's rows are the listed ones
		ds.Delete(notFound)
		w.requireRows()

		// search --json: the documented shape, best first.
		r := w.run("search", "--json", "--limit", "5", "reply")
		require.Equal(t, 0, r.code, r.stderr)
		var raw []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &raw))
		require.NotEmpty(t, raw)
		keys := []string{"author", "content_type", "created_at", "id", "score", "text", "thread_id", "url"}
		for i, hit := range raw {
			got := make([]string, 0, len(hit))
			for k := range hit {
				got = append(got, k)
			}
			slices.Sort(got)
			require.Equal(t, keys, got)
			if i > 0 {
				require.GreaterOrEqual(t, raw[i-1]["score"].(float64), hit["score"].(float64), "best first")
			}
			require.Contains(t, strings.ToLower(hit["text"].(string)), "repl")
		}
		r = w.run("search", "reply")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, " 1. [")
		r = w.run("search", `"unbalanced quote AND (`)
		require.Equal(t, 0, r.code, "user text never breaks the SQL: %s", r.stderr)
	})
}

func TestDeepAndWideThreads(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 1, CommentsPerThread: 10_000, Depth: 8, Seed: 3})
		ds.AddDeepThread(1_000_000_000, 20_000)
		w := newWorld(t, backend, ds)
		c := w.mustUpdate()
		require.Equal(t, int64(2), c.Items)
		rows := w.rows()
		require.Len(t, rows, 1+10_000+1+20_000)
		w.requireRows()
		// The deep thread's comments form one chain, 20,000 long, down
		// from the thread.
		parent := make(map[string]string)
		for _, m := range rows {
			if m.ThreadID == "1000000000" && m.ContentType == "comment" {
				require.NotNil(t, m.ParentID)
				parent[m.ID] = *m.ParentID
			}
		}
		require.Len(t, parent, 20_000)
		children := make(map[string][]string)
		for id, p := range parent {
			children[p] = append(children[p], id)
		}
		depth, at := 0, "1000000000"
		for len(children[at]) == 1 && depth <= 20_000 {
			at = children[at][0]
			depth++
		}
		require.Equal(t, 20_000, depth, "one chain from the thread down")
	})
}

func TestFaultyAPIConverges(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 60, CommentsPerThread: 10, Seed: 11})
		w := newWorld(t, backend, ds)
		w.fake.SetFaults(hnfake.Faults{Rate500: 0.15, Rate429: 0.15, Items: true, Seed: 5})
		w.fake.ResetCounts()
		r := w.run("update", "--log-level", "error")
		require.Contains(t, []int{0, 2}, r.code, r.stderr)
		for range 5 {
			if r.code == 0 {
				break
			}
			r = w.run("update", "--log-level", "error") // rows that failed are retried
		}
		require.Equal(t, 0, r.code, r.stderr)
		require.Positive(t, w.fake.Requests().Faults, "faults were injected")
		w.fake.SetFaults(hnfake.Faults{})
		w.requireRows()
		require.Zero(t, w.mustUpdate().Items)
	})
}

func TestListingFailingMidwayDeletesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 2500, CommentsPerThread: 1, Depth: 1, Seed: 13})
		w := newWorld(t, backend, ds)
		w.maxElapsed = time.Second
		c := w.mustUpdate("--max-results", "2500")
		require.Equal(t, int64(2500), c.Items)
		before := w.rows()
		require.Len(t, before, 5000)

		// Threads vanish, and the listing's second page fails.
		for _, th := range ds.Threads()[:20] {
			ds.Hide(th.ID)
		}
		w.mu.Lock()
		w.listings, w.failListingFrom = 0, 2 // the second listing request on
		w.mu.Unlock()
		r := w.run("update", "--max-results", "2500", "--log-level", "error")
		require.Equal(t, cli.ExitFatal, r.code, r.stdout)
		require.Contains(t, r.stderr, "nothing was deleted")
		require.Equal(t, before, w.rows(), "a failed listing deletes nothing")

		w.mu.Lock()
		w.failListingFrom = 0
		w.mu.Unlock()
		c = w.mustUpdate("--max-results", "2500")
		require.Zero(t, c.Items)
		require.Len(t, w.rows(), 5000-40)
	})
}

// pageCount checks the listing's paging against the 1,000-hit cap.
func TestListingPagesBeyondTheCap(t *testing.T) {
	t.Parallel()
	ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 2300, CommentsPerThread: 0, Seed: 17})
	w := newWorld(t, "sqlite", ds)
	c := w.mustUpdate("--max-results", "2300")
	require.Equal(t, int64(2300), c.Items)
	require.LessOrEqual(t, c.Listing, int64(4), "⌈2300/1000⌉ pages, and at most one more to find the end")
	w.requireRows()
	c = w.mustUpdate("--max-results", "2300")
	require.Zero(t, c.Items)
}
