package httpsource

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRetryAfter: any Retry-After header parses to a wait between 0 and
// 24 hours.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "-3", "120", "99999999999", "Thu, 09 Jul 2026 03:51:14 GMT", "Thursday, 09-Jul-26 03:50:44 GMT", "soon", "\x00"} {
		f.Add(s)
	}
	now := time.Date(2026, 7, 9, 3, 50, 14, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string) {
		if d := RetryAfter(h, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("RetryAfter(%q) = %s", h, d)
		}
	})
}

// FuzzResponseBody: whatever a server sends as a gzip-encoded body, reading
// it never yields more than the limit, and fails rather than panics.
func FuzzResponseBody(f *testing.F) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(bytes.Repeat([]byte("a"), 5000))
	w.Close()
	f.Add(gz.Bytes(), int64(100))
	f.Add([]byte{}, int64(10))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), int64(1000))
	f.Fuzz(func(t *testing.T, b []byte, limit int64) {
		limit = max(0, limit%(1<<20))
		resp := &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}, Body: io.NopCloser(bytes.NewReader(b))}
		r, err := responseBody(resp, limit)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(r)
		if int64(len(out)) > limit {
			t.Fatalf("read %d bytes past the limit of %d", len(out), limit)
		}
	})
}

// FuzzLinkNext: any Link header yields no next page or a URL, never a
// panic.
func FuzzLinkNext(f *testing.F) {
	for _, s := range []string{`</p?page=2>; rel="next"`, `<a>; rel="prev", <b>; rel="next last"`, `<>; rel=next`, `<%zz>; rel="next"`, `;;,,<`} {
		f.Add(s)
	}
	cur, _ := url.Parse("https://api.example.com/items?page=1")
	f.Fuzz(func(t *testing.T, h string) {
		next, err := LinkNext().Next(cur, &Response{Header: http.Header{"Link": {h}}}, nil, 1)
		if err == nil && next != "" {
			if _, err := url.Parse(next); err != nil {
				t.Fatalf("%q gave %q, not a URL", h, next)
			}
		}
	})
}

// FuzzResolve: any document and JSON pointer resolve or not, never panic.
func FuzzResolve(f *testing.F) {
	f.Add(`{"a":[{"b~/":1}]}`, "/a/0/b~0~1")
	f.Add(`[1,2]`, "/01")
	f.Add(`null`, "")
	f.Fuzz(func(t *testing.T, doc, ptr string) {
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		resolve(v, ptr)
	})
}
