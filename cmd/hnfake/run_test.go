package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lineWriter hands what run prints to the test, line by line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.lines <- strings.TrimSuffix(line, "\n")
	}
}

func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out := &lineWriter{lines: make(chan string, 10)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-threads", "7", "-comments", "3", "-seed", "2", "-start", "2026-01-02T03:04:05Z"}, out)
	}()
	var banner string
	select {
	case banner = <-out.lines:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no banner")
	}
	m := regexp.MustCompile(`^hnfake: serving 7 threads \(28 items\) at (http://127\.0\.0\.1:\d+/api/v1)$`).FindStringSubmatch(banner)
	require.NotNil(t, m, banner)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(m[1] + "/search_by_date?tags=story")
	require.NoError(t, err)
	var l struct {
		NbHits int `json:"nbHits"`
		Hits   []struct {
			CreatedAt string `json:"created_at"`
		} `json:"hits"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, 7, l.NbHits)
	require.Equal(t, "2026-01-02T03:04:05Z", l.Hits[0].CreatedAt)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunData(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out := &lineWriter{lines: make(chan string, 10)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-data", "../../source/hackernews/hnfake/testdata/items"}, out)
	}()
	select {
	case banner := <-out.lines:
		require.Regexp(t, `^hnfake: serving 1 threads \(13 items\) at http://`, banner)
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	}
	cancel()
	require.NoError(t, <-done)
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	badDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(badDir, "c.json"), []byte(`{"id":3,"type":"comment"}`), 0o644))
	tests := map[string]struct {
		args  []string
		usage bool
		err   string
	}{
		"unknown flag":  {args: []string{"-nope"}, usage: true, err: "-nope"},
		"argument":      {args: []string{"extra"}, usage: true, err: "unexpected arguments"},
		"data and gen":  {args: []string{"-data", ".", "-threads", "3"}, usage: true, err: "-threads"},
		"negative":      {args: []string{"-threads", "-1"}, usage: true, err: "-threads must not be negative"},
		"depth":         {args: []string{"-depth", "0"}, usage: true, err: "-depth must be at least 1"},
		"rate":          {args: []string{"-rate-500", "2"}, usage: true, err: "Rate500"},
		"rates sum":     {args: []string{"-rate-500", "0.6", "-rate-429", "0.6"}, usage: true, err: "at most 1"},
		"endpoints":     {args: []string{"-fault-endpoints", "all"}, usage: true, err: "both, items or listing"},
		"start":         {args: []string{"-start", "yesterday"}, usage: true, err: "-start"},
		"now and start": {args: []string{"-now", "-start", "2026-01-02T03:04:05Z"}, usage: true, err: "-now and -start both anchor the generated dataset; give one"},
		"data and now":  {args: []string{"-data", ".", "-now"}, usage: true, err: "-now"},
		"bad data":      {args: []string{"-addr", "127.0.0.1:0", "-data", badDir}, err: "is a comment"},
		"missing data":  {args: []string{"-addr", "127.0.0.1:0", "-data", badDir + "/missing"}, err: "no such file"},
		"bad address":   {args: []string{"-addr", "nonsense"}, err: "listen tcp"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), tt.args, io.Discard)
			require.ErrorContains(t, err, tt.err)
			var u usageError
			require.Equal(t, tt.usage, errors.As(err, &u))
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-h"}, &out))
	for _, flag := range []string{"-addr", "-data", "-threads", "-comments", "-depth", "-seed", "-text-bytes", "-latency", "-rate-429", "-retry-after", "-rate-500", "-rate-truncated", "-rate-malformed"} {
		require.Contains(t, out.String(), flag+" ")
	}
	require.Contains(t, out.String(), "  -now\n")
	require.Contains(t, out.String(), "(default 2026-07-09T03:48:29Z)")
}

// TestHelpListsControlEndpoints: -h lists every control endpoint the
// server registers, one a line with its doc.
func TestHelpListsControlEndpoints(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-h"}, &out))
	_, listing, ok := strings.Cut(out.String(), "\nControl endpoints, beside the API at /api/v1:\n")
	require.True(t, ok, out.String())
	lines := strings.Split(strings.TrimSuffix(listing, "\n"), "\n")
	endpoints := hnfake.ControlEndpoints()
	require.Len(t, lines, len(endpoints), listing)
	for i, e := range endpoints {
		require.NotEmpty(t, e.Doc, "%s %s", e.Method, e.Path)
		require.Regexp(t, `^  `+regexp.QuoteMeta(e.Method+" "+e.Path+e.Query)+` {2,}`+regexp.QuoteMeta(e.Doc)+`$`, lines[i])
	}
}

// TestGeneratedDatasetIsFixed: without -now, the dataset, and what edits
// and added threads answer, do not depend on when hnfake runs.
func TestGeneratedDatasetIsFixed(t *testing.T) {
	t.Parallel()
	type answers struct {
		Listing, Edit, Add string
	}
	serve := func(args []string, now time.Time) answers {
		c, _, err := parseFlags(append([]string{"-threads", "5", "-comments", "2"}, args...), io.Discard, now)
		require.NoError(t, err)
		s, err := newServer(c)
		require.NoError(t, err)
		h := s.Handler()
		call := func(method, path string) string {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			return rec.Body.String()
		}
		id := strconv.FormatInt(s.Dataset().Threads()[0].ID, 10)
		return answers{
			Edit:    call("POST", "/_fake/edit?id="+id),
			Add:     call("POST", "/_fake/add?comments=1"),
			Listing: call("GET", "/api/v1/search_by_date?tags=story&hitsPerPage=100"),
		}
	}
	first := serve(nil, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	second := serve(nil, time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC))
	require.Equal(t, first, second)
	require.Contains(t, first.Edit, `"updated_at":"2026-07-09T04:37:17Z"`, "edited: a second after its last update (the fixed dataset's), not at the real time")
	require.Contains(t, first.Add, `"created_at":"2026-07-09T03:48:29Z"`, "added at the anchor")

	// -now anchors at the current time.
	now := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	c, _, err := parseFlags([]string{"-now"}, io.Discard, now)
	require.NoError(t, err)
	require.Equal(t, now, c.generate.Start)
	require.Nil(t, c.clock, "the real clock")
	c, _, err = parseFlags([]string{"-start", "2026-01-02T03:04:05Z"}, io.Discard, now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), c.clock())
}

func TestParseFlagsFaults(t *testing.T) {
	t.Parallel()
	c, help, err := parseFlags([]string{"-latency", "20ms", "-rate-429", "0.1", "-retry-after", "3s", "-rate-500", "0.2",
		"-rate-truncated", "0.05", "-rate-malformed", "0.05", "-fault-seed", "9", "-fault-endpoints", "items"}, io.Discard, time.Now())
	require.NoError(t, err)
	require.False(t, help)
	require.Equal(t, hnfake.Faults{Latency: 20 * time.Millisecond, Rate429: 0.1, RetryAfter: 3 * time.Second, Rate500: 0.2,
		RateTruncated: 0.05, RateMalformed: 0.05, Items: true, Seed: 9}, c.faults)
	require.Equal(t, "127.0.0.1:8081", c.addr)
	require.Equal(t, hnfake.GenerateOptions{Threads: 200, CommentsPerThread: 20, Depth: 6, Seed: 1, TextBytes: 300, Start: c.generate.Start}, c.generate)
}

// The control endpoints, driven over HTTP as a demo or a test outside Go
// would.
func TestMutationEndpoints(t *testing.T) {
	t.Parallel()
	c, _, err := parseFlags([]string{"-threads", "5", "-comments", "2", "-start", "2026-01-02T03:04:05Z"}, io.Discard, time.Now())
	require.NoError(t, err)
	s, err := newServer(c)
	require.NoError(t, err)
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	s.Dataset().SetClock(func() time.Time { return now })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	call := func(method, path, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]any
		if resp.StatusCode != http.StatusNoContent {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		}
		return resp.StatusCode, v
	}
	threads := s.Dataset().Threads()
	id := threads[0].ID
	idStr := func(id int64) string { return strconv.FormatInt(id, 10) }

	status, v := call("POST", "/_fake/edit?id="+idStr(id), "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, threads[0].Title+" (edited)", v["title"])
	require.Equal(t, "2026-02-01T00:00:00Z", v["updated_at"])
	status, item := call("GET", "/api/v1/items/"+idStr(id), "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, threads[0].Title+" (edited)", item["title"])

	status, _ = call("POST", "/_fake/hide?id="+idStr(threads[1].ID), "")
	require.Equal(t, http.StatusOK, status)
	status, v = call("POST", "/_fake/delete?id="+idStr(threads[2].ID), "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, v["deleted"])
	status, _ = call("GET", "/api/v1/items/"+idStr(threads[2].ID), "")
	require.Equal(t, http.StatusNotFound, status)
	status, _ = call("POST", "/_fake/delete?id="+idStr(threads[2].ID), "")
	require.Equal(t, http.StatusNotFound, status)
	status, _ = call("POST", "/_fake/edit?id=x", "")
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = call("GET", "/_fake/edit?id=1", "")
	require.Equal(t, http.StatusMethodNotAllowed, status)

	status, v = call("POST", "/_fake/add?comments=4&depth=2", "")
	require.Equal(t, http.StatusOK, status)
	newID := int64(v["id"].(float64))
	require.Equal(t, "2026-02-01T00:00:00Z", v["created_at"])
	status, _ = call("POST", "/_fake/add?comments=-1", "")
	require.Equal(t, http.StatusBadRequest, status)

	status, l := call("GET", "/api/v1/search_by_date?tags=story", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(4), l["nbHits"], "5 - hidden - deleted + added")
	hits := l["hits"].([]any)
	require.Equal(t, idStr(newID), hits[0].(map[string]any)["objectID"])
	require.Equal(t, float64(4), hits[0].(map[string]any)["num_comments"])

	status, v = call("POST", "/_fake/faults", `{"rate_500":1,"items":true,"retry_after":"2s"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "2s", v["retry_after"])
	status, _ = call("GET", "/api/v1/items/"+idStr(id), "")
	require.Equal(t, http.StatusInternalServerError, status)
	status, _ = call("GET", "/api/v1/search_by_date", "")
	require.Equal(t, http.StatusOK, status)
	status, v = call("GET", "/_fake/faults", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(1), v["rate_500"])
	status, _ = call("POST", "/_fake/faults", `{"rate_500":3}`)
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = call("POST", "/_fake/faults", `{"latency":"soon"}`)
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = call("POST", "/_fake/faults", `{}`)
	require.Equal(t, http.StatusOK, status)

	status, v = call("GET", "/_fake/stats", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(3), v["items"])
	require.Equal(t, float64(2), v["listing"])
	require.Equal(t, float64(1), v["faults"])
	require.Equal(t, float64(5), v["threads"], "the hidden thread is still one")
	status, _ = call("DELETE", "/_fake/stats", "")
	require.Equal(t, http.StatusNoContent, status)
	_, v = call("GET", "/_fake/stats", "")
	require.Equal(t, float64(0), v["items"])
}
