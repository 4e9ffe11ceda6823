package httpsource_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// products is a fake REST API on loopback: GET /products?page=N lists ids,
// two a page, with a Link header to the next page; GET /products/{id} is
// one product. Every answer has an ETag, and a matching If-None-Match
// gets a 304 with no body.
type products struct {
	mu    sync.Mutex
	items map[int]string // id → name
}

func (p *products) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var body []byte
	if id, ok := strings.CutPrefix(r.URL.Path, "/products/"); ok {
		n, _ := strconv.Atoi(id)
		name, found := p.items[n]
		if !found {
			http.NotFound(w, r)
			return
		}
		body, _ = json.Marshal(map[string]any{"id": n, "name": name, "description": strings.Repeat("A fine product. ", 20)})
	} else {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		var ids []map[string]int
		for id := 2*page + 1; id <= 2*page+2 && id <= len(p.items); id++ {
			ids = append(ids, map[string]int{"id": id})
		}
		if 2*page+2 < len(p.items) {
			w.Header().Set("Link", fmt.Sprintf(`</products?page=%d>; rel="next"`, page+1))
		}
		body, _ = json.Marshal(map[string]any{"data": ids})
	}
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256(body))[:18] + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(body)
}

// A REST API indexed with no Go code but the processing function: the
// listing's pages and the items are asked for conditionally, so an update
// that finds nothing changed costs 304s and no bodies, and one product
// renamed costs its body alone.
func ExampleNewJSONSource() {
	api := &products{items: map[int]string{1: "anvil", 2: "bucket", 3: "chisel", 4: "drill", 5: "easel"}}
	srv := httptest.NewServer(api)
	defer srv.Close()

	c, _ := httpsource.New(httpsource.Options{Name: "products", RequestsPerSecond: 1000})
	src, err := httpsource.NewJSONSource(c, httpsource.JSONOptions{
		ListURL: srv.URL + "/products?page=0", Items: "/data", Key: "/id",
		ItemURL: srv.URL + "/products/{key}", Pages: httpsource.LinkNext(),
	})
	if err != nil {
		panic(err)
	}
	db := tidemarktest.NewDB()
	f := tidemark.NewFlow("Products")
	names := tidemarktest.Table[string](f, db, "names")
	var processed atomic.Int64
	tidemark.ForEach(tidemark.AddSource(f, "products", src), func(ctx context.Context, r *tidemark.Row, key string, it httpsource.Item) error {
		var p struct{ Name string }
		if err := it.Decode(ctx, &p); err != nil {
			return err
		}
		processed.Add(1)
		names.Declare(r, target.Key(key), p.Name)
		return nil
	})
	dir, _ := os.MkdirTemp("", "products")
	defer os.RemoveAll(dir)
	e, err := tidemark.Open(context.Background(), f, tidemark.Options{StateStore: filepath.Join(dir, "state.db")})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	last := httpsource.Stats{Requests: map[string]int64{}}
	update := func(what string) {
		processed.Store(0)
		if _, err := e.Update(context.Background(), tidemark.UpdateOptions{}); err != nil {
			panic(err)
		}
		st := c.Stats()
		fmt.Printf("%s: %d page and %d item requests, %d answered 304, %d body bytes; %d processed, %d rows\n", what,
			st.Requests["list"]-last.Requests["list"], st.Requests["item"]-last.Requests["item"],
			st.NotModified-last.NotModified, st.Bytes-last.Bytes, processed.Load(), len(db.Rows("names")))
		last = st
	}
	update("first")
	update("nothing changed")
	api.mu.Lock()
	api.items[3] = "chisel set"
	api.mu.Unlock()
	update("one renamed")
	// Output:
	// first: 3 page and 5 item requests, 0 answered 304, 1877 body bytes; 5 processed, 5 rows
	// nothing changed: 3 page and 5 item requests, 8 answered 304, 0 body bytes; 0 processed, 5 rows
	// one renamed: 3 page and 5 item requests, 7 answered 304, 365 body bytes; 1 processed, 5 rows
}
