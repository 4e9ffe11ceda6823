package hnfake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// A generated dataset served over HTTP; in a test, hnfake.Start does the
// httptest part and closes the server at the test's end.
func ExampleNewServer() {
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 1500, CommentsPerThread: 3, Seed: 1})
	srv := hnfake.NewServer(d)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/api/v1/search_by_date?tags=story&hitsPerPage=1000&page=1")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var page struct {
		Hits    []json.RawMessage `json:"hits"`
		NbHits  int               `json:"nbHits"`
		NbPages int               `json:"nbPages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		panic(err)
	}
	fmt.Println(page.NbHits, "threads,", page.NbPages, "page of 1000,", len(page.Hits), "hits on page 1")
	fmt.Println(srv.Requests().Listing, "listing request")
	// Output:
	// 1500 threads, 1 page of 1000, 0 hits on page 1
	// 1 listing request
}

// Changing a thread between two runs of a client: the next listing shows the
// new updated_at, the next items/{id} the new content.
func ExampleDataset_Edit() {
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 10, CommentsPerThread: 5, Seed: 1})
	newest := d.Threads()[0]
	d.Edit(newest.ID, func(t *hnfake.Thread) {
		t.Children = append(t.Children, &hnfake.Node{ID: 99_000_000, Author: "late", Text: "Late reply", CreatedAt: t.CreatedAt})
	})
	edited, _ := d.Get(newest.ID)
	fmt.Println(len(edited.Children)-len(newest.Children), "new comment;", edited.UpdatedAt.After(newest.UpdatedAt))
	fmt.Println(d.NumItems(), "items")
	// Output:
	// 1 new comment; true
	// 61 items
}
