package hnfake_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// serveBench measures the handler alone (no network) answering path.
func serveBench(b *testing.B, d *hnfake.Dataset, path func(i int) string) {
	h := hnfake.NewServer(d).Handler()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path(i), nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
		b.SetBytes(int64(rec.Body.Len()))
		i++
	}
}

// A page of 1,000 hits from 100,000 threads, deep in the listing by a
// created_at_i window.
func BenchmarkListingPage(b *testing.B) {
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 100_000, Seed: 1, TextBytes: 100})
	threads := d.Threads()
	serveBench(b, d, func(i int) string {
		t := threads[(i*1000)%len(threads)]
		return fmt.Sprintf("/api/v1/search_by_date?tags=story&hitsPerPage=1000&numericFilters=created_at_i<=%d", t.CreatedAt.Unix())
	})
}

func BenchmarkItem(b *testing.B) {
	for _, n := range []int{20, 1000} {
		b.Run(fmt.Sprint(n, "comments"), func(b *testing.B) {
			d := hnfake.Generate(hnfake.GenerateOptions{Threads: 10, CommentsPerThread: n, Seed: 1})
			threads := d.Threads()
			serveBench(b, d, func(i int) string { return fmt.Sprint("/api/v1/items/", threads[i%len(threads)].ID) })
		})
	}
}
