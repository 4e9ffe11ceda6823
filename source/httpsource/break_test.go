package httpsource_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// TestBreakLinkNextCommaInURL: a next link whose URL holds a comma
// (legal in a URL, common in a query: fields=id,name, sort=a,b) is cut at
// the comma by LinkNext, which then finds no next link: the listing ends
// after page 1 without error, and every row of the later pages is deleted.
func TestBreakLinkNextCommaInURL(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("page") {
		case "":
			w.Header().Set("Link", `</items?fields=id,name&page=2>; rel="next"`)
			fmt.Fprint(w, `[{"id":"1"}]`)
		case "2":
			fmt.Fprint(w, `[{"id":"2"}]`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	s, err := httpsource.NewJSONSource(newClient(t, httpsource.Options{RequestsPerSecond: 1000}),
		httpsource.JSONOptions{ListURL: srv.URL + "/items?fields=id,name", Key: "/id", ItemURL: srv.URL + "/items/{key}"})
	require.NoError(t, err)
	got, err := listJSON(t, s)
	require.NoError(t, err)
	require.Equal(t, []string{"1", "2"}, listedKeys(got), "a listing without error names every item")
}

func listedKeys(ls []tidemark.Listed[string]) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Key)
	}
	return out
}

// lmAPI serves a listing of one item with an ordinal, and the item with
// http.ServeContent: Last-Modified (second resolution, no ETag), and 304
// to an If-Modified-Since that is not older — as Go's file server does.
type lmAPI struct {
	mu      sync.Mutex
	version int
	name    string
	mod     time.Time
}

func (a *lmAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.URL.Path == "/items" {
		fmt.Fprintf(w, `[{"id":"1","v":%d}]`, a.version)
		return
	}
	body, _ := json.Marshal(map[string]string{"name": a.name})
	http.ServeContent(w, r, "item.json", a.mod, bytes.NewReader(body))
}

// TestBreakLastModifiedFingerprint: without an ETag, an item's
// Last-Modified is its fingerprint. Two versions written within one
// second have the same Last-Modified: the listing's ordinal says the item
// changed, the Get answers (304 or 200 with the new body alike) with the
// same fingerprint, and the engine keeps the old content for ever.
func TestBreakLastModifiedFingerprint(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 100e6, time.UTC)
	api := &lmAPI{version: 1, name: "anvil", mod: t0}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	src, err := httpsource.NewJSONSource(c, httpsource.JSONOptions{ListURL: srv.URL + "/items", Key: "/id", Ordinal: "/v", ItemURL: srv.URL + "/items/{key}"})
	require.NoError(t, err)

	db := tidemarktest.NewDB()
	f := tidemark.NewFlow("Items")
	names := tidemarktest.Table[string](f, db, "names")
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(ctx context.Context, r *tidemark.Row, key string, it httpsource.Item) error {
		var p struct{ Name string }
		if err := it.Decode(ctx, &p); err != nil {
			return err
		}
		names.Declare(r, target.Key(key), p.Name)
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, "anvil", db.Rows("names")["1"])

	api.mu.Lock()
	api.version, api.name, api.mod = 2, "anvil set", t0.Add(500*time.Millisecond)
	api.mu.Unlock()
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, "anvil set", db.Rows("names")["1"], "the listing said the item changed (ordinal 1 → 2)")
}

// TestBreakItemMarshalNullAfter304: an item answered 304 has no body, and
// Item.MarshalJSON then returns null. A processing function that writes
// the item itself (json.Marshal, or a target of Item values) writes null
// over every document when the rows are processed again without a change
// (a new logic version, a full reprocess): the reason Decode fetches the
// body is exactly this case.
func TestBreakItemMarshalNullAfter304(t *testing.T) {
	t.Parallel()
	api := &products{items: map[int]string{1: "anvil", 2: "bucket"}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	src, err := httpsource.NewJSONSource(c, httpsource.JSONOptions{ListURL: srv.URL + "/products?page=0", Items: "/data", Key: "/id", ItemURL: srv.URL + "/products/{key}"})
	require.NoError(t, err)
	db := tidemarktest.NewDB()
	f := tidemark.NewFlow("Docs")
	docs := tidemarktest.Table[string](f, db, "docs")
	tidemark.ForEach(tidemark.AddSource(f, "products", src), func(ctx context.Context, r *tidemark.Row, key string, it httpsource.Item) error {
		b, err := json.Marshal(it)
		if err != nil {
			return err
		}
		docs.Declare(r, target.Key(key), string(b))
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Contains(t, db.Rows("docs")["1"], "anvil")
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
	require.NoError(t, err)
	require.Contains(t, db.Rows("docs")["1"], "anvil", "reprocessed without a change, the document must stay")
}

// pagedAPI lists items two versions of a listing: v1 pages [a b] then
// [c]; v2 holds [a b c] in one page (page 2 empty). Each page has an ETag
// of its body and answers 304 to it.
type pagedAPI struct {
	mu      sync.Mutex
	version int
}

func (a *pagedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var body string
	switch page := r.URL.Query().Get("page"); {
	case a.version == 1 && page == "":
		w.Header().Set("Link", `</items?page=2>; rel="next"`)
		body = `[{"id":"a"},{"id":"b"}]`
	case a.version == 1 && page == "2":
		body = `[{"id":"c"}]`
	case page == "":
		body = `[{"id":"a"},{"id":"b"},{"id":"c"}]`
	default:
		body = `[]`
	}
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body+w.Header().Get("Link"))))
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	fmt.Fprint(w, body)
}

// TestBreakSharedClientStalePage: validators are kept by the Client,
// page bodies by the JSONSource. Two sources sharing a Client (the kit's
// intended use: one client per API) over the same listing: B's request
// moves the client's validator to the new page, and A's next request,
// sent with it, gets a 304 that A answers with the body it kept of the
// old page — whose Link leads to a page now empty. A's listing ends
// without error and without c, which is deleted from A's targets.
func TestBreakSharedClientStalePage(t *testing.T) {
	t.Parallel()
	api := &pagedAPI{version: 1}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	o := httpsource.JSONOptions{ListURL: srv.URL + "/items", Key: "/id", ItemURL: srv.URL + "/items/{key}"}
	a, err := httpsource.NewJSONSource(c, o)
	require.NoError(t, err)
	b, err := httpsource.NewJSONSource(c, o)
	require.NoError(t, err)

	got, err := listJSON(t, a)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, listedKeys(got))
	api.mu.Lock()
	api.version = 2
	api.mu.Unlock()
	got, err = listJSON(t, b)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, listedKeys(got))

	got, err = listJSON(t, a)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, listedKeys(got), "c is still there")
}

// TestBreakUnconditional304Loops: a server (a misconfigured cache) that
// answers 304 to a request sent without validators: the listing asks the
// page again, unconditionally, and again, for as long as its context
// lasts — no error of its own, no bound.
func TestBreakUnconditional304Loops(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNotModified)
	}))
	t.Cleanup(srv.Close)
	s, err := httpsource.NewJSONSource(newClient(t, httpsource.Options{RequestsPerSecond: 1e6, Burst: 1000}),
		httpsource.JSONOptions{ListURL: srv.URL + "/items", Key: "/id", ItemURL: srv.URL + "/items/{key}"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var lerr error
	for _, err := range s.List(ctx) {
		if err != nil {
			lerr = err
		}
	}
	t.Logf("%d requests, error %v", n.Load(), lerr)
	require.Error(t, lerr)
	require.NotErrorIs(t, lerr, context.DeadlineExceeded, "the listing should fail on its own, not spin until its context ends")
	require.Less(t, n.Load(), int64(10))
}

// TestBreakListingHeldInMemory: a source must never hold the whole
// listing in memory (source.go, docs/write-a-source.md), but a JSONSource
// keeps the body of every page it ever read, for its 304s, for as long as
// it lives: 400 pages of 50 kB leave 20 MB on the heap after the listing,
// and a million-item API its whole listing.
func TestBreakListingHeldInMemory(t *testing.T) {
	const pages, pad = 400, 50_000
	filler := strings.Repeat("x", pad)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p int
		fmt.Sscan(r.URL.Query().Get("p"), &p)
		if p >= pages {
			fmt.Fprint(w, `{"data":[]}`)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"p%d"`, p))
		fmt.Fprintf(w, `{"data":[{"id":"%d","pad":"%s"}]}`, p, filler)
	}))
	t.Cleanup(srv.Close)
	s, err := httpsource.NewJSONSource(newClient(t, httpsource.Options{RequestsPerSecond: 1e6, Burst: 1000}),
		httpsource.JSONOptions{ListURL: srv.URL + "/items", Items: "/data", Key: "/id", ItemURL: srv.URL + "/items/{key}", Pages: httpsource.PageNumber("p", 0)})
	require.NoError(t, err)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	got, err := listJSON(t, s)
	require.NoError(t, err)
	require.Len(t, got, pages)
	got = nil
	after := heap()
	runtime.KeepAlive(s)
	held := int64(after) - int64(before)
	t.Logf("heap held after the listing: %d kB (the pages' bodies: %d kB)", held/1000, pages*pad/1000)
	require.Less(t, held, int64(pages*pad/4), "the listing's pages are still on the heap")
}
