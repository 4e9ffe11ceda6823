package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktype"
)

// TestClientErrors: a client is told its own mistakes in words, and of
// the server's faults only that there was one, with an id to find it in
// the log; never the database's internals or --db's secrets.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	var logged bytes.Buffer
	const db = "postgres://app:hunter2hunter2@db.internal:5432/idx"
	s := &insight{r: &runner{app: App{Name: "hnindex"}, db: db, log: slog.New(slog.NewTextHandler(&logged, nil))}}
	req := httptest.NewRequest("GET", "/api/v1/query/search?q=x", nil)
	stack := fmt.Errorf("searching table hn_messages: %w", &pgconn.PgError{Severity: "ERROR", Code: "54001", Message: "stack depth limit exceeded",
		Hint: `Increase the configuration parameter "max_stack_depth"`})
	for _, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{stack, http.StatusInternalServerError, "the server failed to answer (error "},
		{fmt.Errorf("dial %s: connection refused", db), http.StatusInternalServerError, "the server failed to answer"},
		{&table.SearchTooLargeError{Bound: "terms", Size: 65, Max: 64}, http.StatusBadRequest, "the search query has 65 terms; at most 64 are allowed"},
		{table.ErrEmptyQuery, http.StatusBadRequest, "the search query has no word to look for"},
		{fmt.Errorf("x: %w", &table.NotSetUpError{Table: "hn_messages"}), http.StatusServiceUnavailable, "table hn_messages is not set up: `hnindex update` sets it up and fills it"},
		{fmt.Errorf("source threads, row \"9\": %w", tidemark.ErrNotFound), http.StatusNotFound, `source threads, row "9": not found`},
		{fmt.Errorf("source threads: %q %w: not valid UTF-8", "\xff", tidemark.ErrBadKey), http.StatusBadRequest, "is not a key"},
		{context.DeadlineExceeded, http.StatusGatewayTimeout, "the request took too long"},
		{errBusy, http.StatusServiceUnavailable, "the server is busy"},
	} {
		status, msg := s.clientError(req, tc.err)
		require.Equal(t, tc.status, status, tc.err.Error())
		require.Contains(t, msg, tc.msg, tc.err.Error())
		require.NotContains(t, msg, "stack depth")
		require.NotContains(t, msg, "hunter2")
		require.NotContains(t, msg, "db.internal")
	}
	require.Contains(t, logged.String(), "stack depth limit exceeded", "the log has the fault")
	require.NotContains(t, logged.String(), "hunter2", "but not the password")
}

// TestHighlight: a snippet's text is escaped and only the markers become
// marks, closed even when the snippet cut one off.
func TestHighlight(t *testing.T) {
	t.Parallel()
	require.Equal(t, `a &lt;script&gt;x&lt;/script&gt; <mark>fox</mark>`, string(highlight(`a <script>x</script> <b>fox</b>`)))
	require.Equal(t, `<mark>fox…</mark>`, string(highlight(`<b>fox…`)))
	require.Equal(t, `&amp;lt;b&amp;gt;`, string(highlight(`&lt;b&gt;`)))
}

// TestLocalPath: the login page sends a person back only to this server.
func TestLocalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/sources/a/rows?failed=true": "/sources/a/rows?failed=true",
		"":                            "/",
		"//evil.example/x":            "/",
		`/\evil.example`:              "/",
		"https://evil.example/":       "/",
		"javascript:alert(1)":         "/",
	} {
		require.Equal(t, want, localPath(in), in)
	}
}

// TestIsLoopback: only loopback addresses serve without a token.
func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:80": true, "[::1]:8080": true, "127.1.2.3:1": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "10.0.0.1:80": false, "example.com:80": false, "nonsense": false,
	} {
		require.Equal(t, want, isLoopback(addr), addr)
	}
}

// TestHealthReasons: /healthz's reasons, source by source.
func TestHealthReasons(t *testing.T) {
	t.Parallel()
	flow := tidemark.NewFlow("F")
	s := &insight{s: &session{flow: flow}, live: true, refresh: time.Minute}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ok := &tidemarktype.SourceUpdate{Started: now.Add(-time.Minute), Finished: now.Add(-time.Minute)}
	failed := &tidemarktype.SourceUpdate{Finished: now.Add(-time.Minute), Error: "listing threads: HTTP 503\nmore"}
	sources := []sourceView{{Name: "a", LastUpdate: ok}, {Name: "b", LastUpdate: failed}, {Name: "c"}}

	require.Equal(t, []string{
		"source b: its last update, at 2026-12-02T11:59:00Z, failed: listing threads: HTTP 503",
		"source c: never updated",
	}, s.reasons(sources, false, now.Add(-2*time.Minute), now), "a pass 2 minutes ago is on time at a 1-minute interval")
	require.Empty(t, s.reasons(sources[:1], false, now.Add(-150*time.Second), now))
	require.Equal(t, []string{"source a: a live pass is overdue: the last ended 2m31s ago, and it is listed every 1m0s"},
		s.reasons(sources[:1], false, now.Add(-151*time.Second), now))
	require.Empty(t, s.reasons(sources[:1], true, now.Add(-time.Minute), now), "a pass running that moves on is not overdue")
	require.Empty(t, s.reasons(sources[:1], true, now.Add(-9*time.Minute), now), "nor one whose row is retried for minutes")
	stopped := &tidemarktype.SourceUpdate{Finished: now.Add(-time.Minute), Error: "update stopped", Stopped: true}
	require.Empty(t, s.reasons([]sourceView{{Name: "d", LastUpdate: stopped}}, false, now, now), "an update stopped did not fail")
	require.Equal(t, []string{"source a: the running pass is stuck: no row of it was done for 1h0m0s, and it is listed every 1m0s"},
		s.reasons(sources[:1], true, now.Add(-time.Hour), now))
	s.live = false
	require.Empty(t, s.reasons(sources[:1], false, now.Add(-time.Hour), now), "without --live, no pass is due")
}

// TestLimiter: expensive requests past the bound wait for a turn, and give
// up when their request ends first.
func TestLimiter(t *testing.T) {
	t.Parallel()
	l := make(limiter, 2)
	require.True(t, l.acquire(t.Context()))
	require.True(t, l.acquire(t.Context()))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	require.False(t, l.acquire(ctx), "full")
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.release()
	}()
	require.True(t, l.acquire(t.Context()), "a turn given back is taken")
}

// TestHubKeepsTheRunningPass: the running pass keeps its start as counts
// come, ends in the passes remembered, and is told to listeners.
func TestHubKeepsTheRunningPass(t *testing.T) {
	t.Parallel()
	h := newHub(func(s string) string { return s })
	events, done, err := h.subscribe()
	require.NoError(t, err)
	defer done()
	started := time.Now().Add(-time.Second)
	h.PassStarted(t.Context(), tidemarktype.PassStart{Started: started})
	h.progress(&tidemarktype.UpdateStats{Sources: map[string]tidemarktype.SourceStats{"s": {Listed: 5}}})
	running, passes := h.recent()
	require.Empty(t, passes)
	require.NotNil(t, running)
	require.True(t, running.Started.Equal(started))
	require.GreaterOrEqual(t, running.DurationMS, int64(1000))
	require.Equal(t, int64(5), running.Sources["s"].Listed)
	h.RowDone(t.Context(), tidemarktype.RowDone{Source: "s", Key: `"k"`, Outcome: tidemarktype.OutcomeFailed, Message: "boom"})
	h.PassFinished(t.Context(), tidemarktype.PassEnd{Stats: tidemarktype.UpdateStats{Started: started, Finished: started.Add(2 * time.Second)}, Err: errors.New("listing failed")})
	running, passes = h.recent()
	require.Nil(t, running)
	require.Len(t, passes, 1)
	require.Equal(t, 1, passes[0].N)
	require.Equal(t, int64(2000), passes[0].DurationMS)
	require.Equal(t, "listing failed", passes[0].Error)
	var kinds []string
	for len(events) > 0 {
		kinds = append(kinds, (<-events).Type)
	}
	require.Equal(t, []string{"pass_started", "pass_progress", "row_failed", "pass_finished"}, kinds)
}

// TestDashboardShowsAFailingHook: the dashboard's targets say how their
// change hooks are doing, down to the failing change.
func TestDashboardShowsAFailingHook(t *testing.T) {
	t.Parallel()
	p, err := loadPages()
	require.NoError(t, err)
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	d := &pageData{App: "pricewatch", Flow: "Prices", Title: "Dashboard", View: &flowView{Flow: "Prices", Targets: []targetView{
		{Name: "prices", Kind: "sqlite.table", State: "set up", Hook: &tidemarktype.HookStatus{Attached: true, Pending: 3, Failing: 1, OldestAt: at,
			Failure: &tidemarktype.HookFailure{Key: "sku-7", Source: "prices", Row: `"sku-7"`, Attempts: 4, Error: "webhook: 503 Service Unavailable\nmore", NextAt: at.Add(time.Minute)}}},
		{Name: "quiet", Kind: "sqlite.table", State: "set up", Hook: &tidemarktype.HookStatus{Attached: true}},
		{Name: "plain", Kind: "sqlite.table", State: "set up"},
	}}}
	var b bytes.Buffer
	require.NoError(t, p["dashboard"].ExecuteTemplate(&b, "layout", d))
	html := b.String()
	require.Contains(t, html, "3 not delivered")
	require.Contains(t, html, "1 failing: sku-7 (4 attempts")
	require.Contains(t, html, "webhook: 503 Service Unavailable")
	require.NotContains(t, html, "more", "the error's first line only")
	require.Contains(t, html, "every change delivered")
}
