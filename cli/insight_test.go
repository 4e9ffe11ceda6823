package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/tidemarktest"
)

const testToken = "insight-test-token-0123456789"

// server is a running `server` command.
type server struct {
	base      string
	out, errb *syncBuffer
	stop      chan struct{}
	done      chan int
}

// startServer runs `server` with args and waits for its address.
func startServer(t *testing.T, app cli.App, env cli.Env, args ...string) *server {
	t.Helper()
	s := &server{out: &syncBuffer{}, errb: &syncBuffer{}, stop: make(chan struct{}), done: make(chan int, 1)}
	env.Stdout, env.Stderr, env.Stop = s.out, s.errb, s.stop
	go func() {
		s.done <- cli.Run(t.Context(), app, append([]string{"server", "--addr", "127.0.0.1:0"}, args...), env)
	}()
	addr := regexp.MustCompile(`at (http://\S+)`)
	require.Eventually(t, func() bool {
		select {
		case code := <-s.done:
			s.done <- code
			return true
		default:
		}
		return addr.MatchString(s.out.String())
	}, 20*time.Second, 5*time.Millisecond)
	m := addr.FindStringSubmatch(s.out.String())
	require.NotNil(t, m, "the server did not start: %s", s.errb.String())
	s.base = m[1]
	t.Cleanup(func() { s.close(t) })
	return s
}

// close stops the server, once, and returns its exit code.
func (s *server) close(t *testing.T) int {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not stop")
		return -1
	}
}

// call makes a request with the test token unless token is false.
func (s *server) call(t *testing.T, method, path string, token bool, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.base+path, nil)
	require.NoError(t, err)
	if token {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// notesWithFailure is the notes app with a row that fails, updated once.
func notesWithFailure(t *testing.T, db string) (cli.App, *tidemarktest.Source[string, string]) {
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "the quick brown fox")
	src.Set("b", "a lazy <dog>")
	src.Set("c", "fail")
	app, _ := notesApp(src)
	flow := app.Flow
	app.Flow = func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error) {
		f, err := flow(ctx, db)
		if err == nil {
			// A handler that returns no page: its total is not known.
			f.QueryHandler("plain", func(_ context.Context, q tidemark.Query) (any, error) {
				return []map[string]string{{"echo": q.Text}}, nil
			})
		}
		return f, err
	}
	r := run(t, app, cli.Env{}, "update", "--db", db)
	require.Equal(t, cli.ExitRowsFailed, r.code, r.stderr)
	return app, src
}

func TestInsightAPI(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			app, src := notesWithFailure(t, db)
			s := startServer(t, app, cli.Env{}, "--db", db, "--token", testToken)

			for _, tc := range []struct {
				path   string
				status int
				// want are JSON fragments (or text) the body must hold.
				want []string
			}{
				{"/api/v1/flow", 200, []string{`"flow":"Notes"`, `"name":"notes"`, `"rows":2`, `"failing":1`, `"state":"set up `, `"queries":["plain","search"]`, `"live":false`, `"primary_key":["id"]`}},
				{"/api/v1/sources/notes/rows", 200, []string{`"key":"a"`, `"key":"b"`, `"key":"c"`, `"states":1`, `"error":"processing: note c cannot be processed"`}},
				{"/api/v1/sources/notes/rows?failed=true", 200, []string{`{"source":"notes","rows":[{"key":"c"`}},
				{"/api/v1/sources/notes/rows?limit=1", 200, []string{`"rows":[{"key":"a"`, `"next":"\"a\""`}},
				{"/api/v1/sources/notes/rows?limit=1&after=%22a%22", 200, []string{`"rows":[{"key":"b"`}},
				{"/api/v1/sources/notes/rows?after=%22c%22", 200, []string{`"rows":[]`}},
				{"/api/v1/sources/notes/rows?limit=0", 400, []string{`"error":"limit must be a number between 1 and 1000, got \"0\""`}},
				{"/api/v1/sources/notes/rows?failed=maybe", 400, []string{`failed must be true or false`}},
				{"/api/v1/sources/notes/rows?after=%00", 400, []string{`is not a key`}},
				{"/api/v1/sources/nope/rows", 404, []string{`"error":"no such source \"nope\": the flow's sources are notes"`}},
				{"/api/v1/sources/notes/rows/a", 200, []string{`"key":"a"`, `"logic_current":true`, `"states":[{"target":"notes","key":"a","content":{"id":"a","text":"the quick brown fox"}}]`, `"error":null`}},
				{"/api/v1/sources/notes/rows/%22a%22", 200, []string{`"key":"a"`}},
				{"/api/v1/sources/notes/rows/c", 200, []string{`"error":"processing: note c cannot be processed"`, `"states":[]`}},
				{"/api/v1/sources/notes/rows/zzz", 404, []string{`"error":`, `zzz`}},
				{"/api/v1/sources/nope/rows/a", 404, []string{`no such source`}},
				{"/api/v1/targets/notes/states/a", 200, []string{`"target":"notes"`, `"content":{"id":"a","text":"the quick brown fox"}`, `"declarers":[{"source":"notes","key":"a"}]`}},
				{"/api/v1/targets/notes/states/zzz", 404, []string{`"error":`}},
				{"/api/v1/targets/nope/states/a", 404, []string{`no such target \"nope\"`}},
				{"/api/v1/query/search?q=fox", 200, []string{`"total":1`, `"results":[{`, `"id":"a"`, `"offset":0`, `"limit":20`}},
				{"/api/v1/query/search?q=fox", 200, []string{`brown <b>fox</b>"`, `"target":{"api":"/api/v1/targets/notes/states/a","key":"a","target":"notes"}`}},
				{"/api/v1/query/search?q=fox&limit=1&offset=1", 200, []string{`"total":1`, `"results":[]`}},
				{"/api/v1/query/plain?q=fox", 200, []string{`"total":null`, `"results":[{"echo":"fox"}]`}},
				{"/api/v1/query/search?q=", 400, []string{`"error":"the search query has no word to look for"`}},
				{"/api/v1/query/search?q=fox&offset=-1", 400, []string{`offset must be a number between 0 and 10000`}},
				{"/api/v1/query/search?q=fox&limit=abc", 400, []string{`limit must be a number`}},
				{"/api/v1/query/search?q=" + strings.Repeat("w+", 9000), 400, []string{`bytes long`}},
				{"/api/v1/query/nope?q=fox", 404, []string{`no query \"nope\"`}},
				{"/api/search?q=fox", 200, []string{`[{"id":"a","text":"the quick brown fox"`}},
				{"/api/v1/passes", 200, []string{`"running":null`, `"passes":[]`, `"last_updates":{"notes":{`, `"failed":1`}},
				{"/api/v1/nope", 404, []string{`"error":"no such API: GET /api/v1/nope`}},
				{"/healthz", 200, []string{"ok"}},
			} {
				resp, body := s.call(t, "GET", tc.path, true)
				require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.path, body)
				if tc.path != "/healthz" && tc.path != "/metrics" {
					require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), tc.path)
					require.True(t, json.Valid([]byte(body)), "%s: %s", tc.path, body)
				}
				for _, w := range tc.want {
					require.Contains(t, body, w, tc.path)
				}
			}

			// The metrics: the state store's reads of the server, the failing
			// row now, and (below) the pass it runs.
			resp, body := s.call(t, "GET", "/metrics", true)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
			require.Contains(t, body, `tidemark_failing_rows{flow="Notes",source="notes"} 1`)
			require.Contains(t, body, `tidemark_state_store_operation_duration_seconds_count{flow="Notes",operation="row_get"}`)

			// A pass asked for over HTTP runs in the background, and shows
			// in the passes.
			src.Set("d", "a new fox")
			resp, body = s.call(t, "POST", "/api/v1/update", true)
			require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
			require.Contains(t, body, `"status":"started"`)
			require.Eventually(t, func() bool {
				_, body := s.call(t, "GET", "/api/v1/passes", true)
				return strings.Contains(body, `"passes":[{"n":1`) && strings.Contains(body, `"added":1`)
			}, 20*time.Second, 20*time.Millisecond)
			_, body = s.call(t, "GET", "/api/v1/query/search?q=fox", true)
			require.Contains(t, body, `"total":2`)
			_, body = s.call(t, "GET", "/metrics", true)
			require.Contains(t, body, `tidemark_rows_total{flow="Notes",outcome="added",source="notes"} 1`)
			require.Contains(t, body, `tidemark_passes_total{flow="Notes",result="ok"} 1`)
			require.Equal(t, 0, s.close(t), s.errb.String())
		})
	}
}

func TestInsightSecurity(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/notes.db"
	app, _ := notesWithFailure(t, db)

	// Beyond loopback, a token is a must.
	for _, args := range [][]string{
		{"server", "--db", db, "--addr", "0.0.0.0:0"},
		{"server", "--db", db, "--addr", ":0"},
		{"server", "--db", db, "--addr", "[::]:0"},
	} {
		r := run(t, app, cli.Env{}, args...)
		require.Equal(t, cli.ExitFatal, r.code, args)
		require.Contains(t, r.stderr, "is not a loopback address: serving beyond this machine needs a token (--token or TIDEMARK_SERVER_TOKEN)", args)
	}
	r := run(t, app, cli.Env{}, "server", "--db", db, "--token", "short")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Contains(t, r.stderr, "--token must be at least 16 characters long")

	// The token from the environment, on every request.
	env := cli.Env{Getenv: func(k string) string {
		if k == "TIDEMARK_SERVER_TOKEN" {
			return testToken
		}
		return ""
	}}
	s := startServer(t, app, env, "--db", db)
	for _, path := range []string{"/api/v1/flow", "/api/v1/sources/notes/rows/a", "/healthz", "/metrics", "/api/search?q=fox"} {
		resp, body := s.call(t, "GET", path, false)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		require.Contains(t, body, "a token is needed", path)
		resp, _ = s.call(t, "GET", path, false, "Authorization", "Bearer wrong-token-0123456789")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
	}
	// Pages send a person to the login page, and back.
	resp, _ := s.call(t, "GET", "/sources/notes/rows?failed=true", false)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/login?next=%2Fsources%2Fnotes%2Frows%3Ffailed%3Dtrue", resp.Header.Get("Location"))
	resp, body := s.call(t, "GET", "/login", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `name="token"`)

	login := func(token, next string, hdr ...string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), "POST", s.base+"/login",
			strings.NewReader(url.Values{"token": {token}, "next": {next}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	require.Equal(t, http.StatusUnauthorized, login("wrong", "/").StatusCode)
	resp = login(testToken, "//evil.example/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"), "no redirect off the server")
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		cookie = c
	}
	require.NotNil(t, cookie)
	require.True(t, cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.NotContains(t, cookie.Value, testToken, "the cookie is not the token")
	resp, body = s.call(t, "GET", "/", false, "Cookie", cookie.Name+"="+cookie.Value)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, "Dashboard")

	// Every answer carries the security headers.
	for _, path := range []string{"/", "/api/v1/flow", "/login", "/static/style.css", "/nope"} {
		resp, _ := s.call(t, "GET", path, true)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'", path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
	}

	// Writes: a cross-origin request is refused, even with the cookie; a
	// form needs its own token too; the bearer token alone will do.
	resp, _ = s.call(t, "POST", "/api/v1/update", false, "Cookie", cookie.Name+"="+cookie.Value,
		"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, body = s.call(t, "POST", "/update", false, "Cookie", cookie.Name+"="+cookie.Value)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "the form is stale")
	resp, _ = s.call(t, "POST", "/api/v1/update", true)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, 0, s.close(t), s.errb.String())

	// On loopback without a token, everything reads, but nothing writes.
	s = startServer(t, app, cli.Env{}, "--db", db)
	resp, _ = s.call(t, "GET", "/api/v1/flow", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = s.call(t, "POST", "/api/v1/update", false)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "updates over HTTP need a token")
}

// TestInsightHidesSecrets: --db's password appears in no page, API answer
// or error, even when a listing fails with it in its message.
func TestInsightHidesSecrets(t *testing.T) {
	t.Parallel()
	const secret = "Sup3rSecretPassw0rd"
	db := strings.Replace(pgtest.Database(t), "postgres@", "postgres:"+secret+"@", 1)
	require.Contains(t, db, secret)
	app, src := notesWithFailure(t, db)
	src.FailListAfter(0, errors.New("listing failed at "+db))
	r := run(t, app, cli.Env{}, "update", "--db", db)
	require.Equal(t, cli.ExitFatal, r.code)

	s := startServer(t, app, cli.Env{}, "--db", db)
	for _, path := range []string{"/", "/api/v1/flow", "/api/v1/passes", "/healthz", "/api/v1/sources/notes/rows",
		"/api/v1/sources/notes/rows/c", "/sources/notes/rows/c", "/schema", "/api/v1/sources/notes/rows/%00", "/search?q=fox"} {
		_, body := s.call(t, "GET", path, false)
		require.NotContains(t, body, secret, path)
	}
	resp, body := s.call(t, "GET", "/healthz", false)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, body, "source notes: its last update, at ")
	require.Contains(t, body, "failed: ")
	require.Contains(t, body, "listing failed at postgres://postgres:redacted@")
}

// TestInsightIdleConnections: idle keep-alive connections past the bound
// are closed, not kept open by the hundred.
func TestInsightIdleConnections(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/notes.db"
	app, _ := notesWithFailure(t, db)
	s := startServer(t, app, cli.Env{}, "--db", db)
	host := strings.TrimPrefix(s.base, "http://")
	var conns []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", host)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conns = append(conns, c)
	}
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); errors.Is(err, io.EOF) {
			continue
		}
		open++
	}
	require.LessOrEqual(t, open, 64, "idle connections left open")
	require.Positive(t, open, "some keep-alive connections stay, for reuse")
}

// TestInsightLiveEvents: with --live, a change in the source is told on
// /api/v1/events, as a pass that starts and finishes with it.
func TestInsightLiveEvents(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/notes.db"
	app, src := notesWithFailure(t, db)
	s := startServer(t, app, cli.Env{}, "--db", db, "--live", "--refresh", "100ms")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/api/v1/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var kind string
	seen := map[string]bool{}
	changed := false
	for sc.Scan() {
		line := sc.Text()
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kind = k
			if changed {
				seen[kind] = true
			}
		}
		d, ok := strings.CutPrefix(line, "data: ")
		if ok && kind == "pass_progress" {
			require.NotContains(t, d, `"started":"0001-01-01`, "a running pass's start is known")
		}
		if !ok || kind != "pass_finished" {
			continue
		}
		require.True(t, json.Valid([]byte(d)), d)
		require.NotContains(t, d, `"started":"0001-01-01`, "a pass's start is known")
		if !changed {
			// A pass ended: the next one starts after the change.
			src.Set("e", "an eagle")
			changed = true
			continue
		}
		if strings.Contains(d, `"added":1`) {
			break
		}
	}
	require.NoError(t, sc.Err())
	require.True(t, seen["pass_started"], "events seen: %v", seen)
	require.True(t, seen["row_failed"], "the failing row is told each pass: %v", seen)

	// The stream outlives the request deadline the other answers have.
	resp2, body := s.call(t, "GET", "/healthz", false)
	require.Equal(t, http.StatusOK, resp2.StatusCode, body)
}

// TestInsightRowOfManyStates: a row that declared more table rows than a
// page reads shows the first ones' content and the others' keys.
func TestInsightRowOfManyStates(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, int]()
	src.Set("many", 520)
	app := cli.App{Name: "fan", DefaultDB: "fan.db", Flow: func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error) {
		f := tidemark.NewFlow("Fan")
		notes := sqltable.Declare[note](f, db, "parts")
		tidemark.ForEach(tidemark.AddSource(f, "rows", src), func(_ context.Context, r *tidemark.Row, k string, n int) error {
			for i := range n {
				notes.Declare(r, note{ID: fmt.Sprintf("%s-%03d", k, i), Text: fmt.Sprintf("part %d", i)})
			}
			return nil
		})
		return f, nil
	}}
	db := t.TempDir() + "/fan.db"
	require.Equal(t, 0, run(t, app, cli.Env{}, "update", "--db", db).code)
	s := startServer(t, app, cli.Env{}, "--db", db)
	resp, body := s.call(t, "GET", "/api/v1/sources/rows/rows/many", false)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var row struct {
		States []struct {
			Key            string
			Content        map[string]any
			ContentOmitted bool `json:"content_omitted"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &row))
	require.Len(t, row.States, 520)
	with := 0
	for _, st := range row.States {
		if st.Content != nil {
			with++
			require.Equal(t, st.Key, st.Content["id"], "each content is its own row's")
			require.False(t, st.ContentOmitted)
		} else {
			require.True(t, st.ContentOmitted, st.Key)
		}
	}
	require.Equal(t, 500, with)
	resp, body = s.call(t, "GET", "/sources/rows/rows/many", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "its content is on its own page")
	require.Contains(t, body, `href="/targets/parts/states/many-519"`)
}

// href returns the href of the first link of class in a page.
func href(t *testing.T, body, class string) string {
	t.Helper()
	m := regexp.MustCompile(`class="` + class + `" href="([^"]*)"`).FindStringSubmatch(body)
	require.NotNil(t, m, "no link of class %s in %s", class, body)
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// TestInsightPaging: the rows and search pages' links lead to the next
// and previous pages, keeping the filters; the last page has no next.
func TestInsightPaging(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for _, k := range []string{"a", "b", "c", "d"} {
		src.Set(k, "a fox named "+k)
	}
	app, _ := notesApp(src)
	db := t.TempDir() + "/notes.db"
	require.Equal(t, 0, run(t, app, cli.Env{}, "update", "--db", db).code)
	s := startServer(t, app, cli.Env{}, "--db", db)

	_, body := s.call(t, "GET", "/sources/notes/rows?limit=3", false)
	require.Contains(t, body, ">a</a>")
	require.Contains(t, body, ">c</a>")
	next := href(t, body, "next")
	require.Equal(t, "/sources/notes/rows?after=%22c%22&limit=3", next)
	_, body = s.call(t, "GET", next, false)
	require.Contains(t, body, ">d</a>")
	require.NotContains(t, body, ">a</a>")
	require.NotContains(t, body, `class="next"`, "the last page has no next")
	_, body = s.call(t, "GET", "/sources/notes/rows?limit=2&after=b", false)
	require.Contains(t, body, ">c</a>", "after takes a bare key, as the page shows it")
	require.Contains(t, body, ">d</a>")
	require.NotContains(t, body, `class="next"`, "4 rows by 2: no empty third page")
	resp, body := s.call(t, "GET", "/api/v1/sources/notes/rows?limit=2&after=b", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, body, `"next"`)

	_, body = s.call(t, "GET", "/search?q=fox&limit=3", false)
	require.Contains(t, body, "results 1 to 3 of 4")
	next = href(t, body, "next")
	require.Equal(t, "/search?limit=3&offset=3&q=fox", next)
	_, body = s.call(t, "GET", next, false)
	require.Contains(t, body, "results 4 to 4 of 4")
	require.NotContains(t, body, `class="next"`)
	prev := href(t, body, "prev")
	_, body = s.call(t, "GET", prev, false)
	require.Contains(t, body, "results 1 to 3 of 4")
}

// TestInsightBreaks: what a review found, each a request that once got the
// wrong answer.
func TestInsightBreaks(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/notes.db"
	app, _ := notesWithFailure(t, db)
	s := startServer(t, app, cli.Env{}, "--db", db)

	// DNS rebinding: a server without a token answers loopback names only.
	for host, want := range map[string]int{"rebind.attacker.example": 421, "127.0.0.1": 200, "localhost": 200, "[::1]": 200} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", s.base+"/api/v1/flow", nil)
		require.NoError(t, err)
		req.Host = host + ":8080"
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, host)
	}
	// A target key that is no text is refused, not looked up as another.
	resp, body := s.call(t, "GET", "/api/v1/targets/notes/states/%FF", false)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	resp, body = s.call(t, "GET", "/api/v1/targets/notes/states/a%00b", false)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	// The event stream's clients are bounded, well below the connections.
	var streams []*http.Response
	for range 64 {
		resp, err := http.Get(s.base + "/api/v1/events")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		streams = append(streams, resp)
	}
	resp, body = s.call(t, "GET", "/api/v1/events", false)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, body, "64 clients already listen to the events")
	resp, _ = s.call(t, "GET", "/healthz", false)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the others are served")
	for _, r := range streams {
		r.Body.Close()
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.base + "/api/v1/events")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "a client gone gives its place back")

	// The assets: files, no listing.
	resp, _ = s.call(t, "GET", "/static/", false)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, body = s.call(t, "GET", "/static/app.js", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "EventSource")
	require.Equal(t, 0, s.close(t), s.errb.String())

	// With a token: the form's token is not the session cookie, and the
	// session expires.
	s = startServer(t, app, cli.Env{}, "--db", db, "--token", testToken)
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.base+"/login", strings.NewReader(url.Values{"token": {testToken}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	cookie := resp.Cookies()[0]
	require.Positive(t, cookie.MaxAge)
	// Paths beyond the token's reach are the login page and the assets,
	// read only.
	resp, _ = s.call(t, "PUT", "/static/style.css", false)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = s.call(t, "GET", "/static/style.css", false)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, body = s.call(t, "GET", "/", false, "Cookie", cookie.Name+"="+cookie.Value)
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, csrf, body)
	require.NotEqual(t, cookie.Value, csrf[1])
	resp, _ = s.call(t, "GET", "/api/v1/flow", false, "Cookie", cookie.Name+"="+csrf[1])
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the form's token is no session")
	resp, _ = s.call(t, "GET", "/api/v1/flow", false, "Cookie", cookie.Name+"=1."+strings.SplitN(cookie.Value, ".", 2)[1])
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an expiry changed breaks the session")
	for _, next := range []string{"/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/%09/evil.example"} {
		req, err := http.NewRequestWithContext(t.Context(), "POST", s.base+"/login", strings.NewReader(url.Values{"token": {testToken}, "next": {next}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		require.True(t, loc == "/" || !strings.ContainsAny(loc, "\t\r\n") && !strings.HasPrefix(loc, "//"), "%q → %q", next, loc)
	}
}

// TestInsightDroppedTable: a table dropped by hand is shown as missing;
// the pages that read it still answer, with what the state store knows.
func TestInsightDroppedTable(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			app, _ := notesWithFailure(t, db)
			d, err := sqltable.Open(t.Context(), "main", db, sqltable.Options{})
			require.NoError(t, err)
			if d.Postgres() != nil {
				_, err = d.Postgres().Pool().Exec(t.Context(), "DROP TABLE notes")
			} else {
				_, err = d.SQLite().SQL().ExecContext(t.Context(), "DROP TABLE notes")
			}
			require.NoError(t, err)
			d.Close()

			s := startServer(t, app, cli.Env{}, "--db", db)
			for path, want := range map[string]struct {
				status int
				body   string
			}{
				"/":                              {200, "missing from the database"},
				"/api/v1/flow":                   {200, "missing from the database"},
				"/schema":                        {200, "missing from the database"},
				"/api/v1/sources/notes/rows/a":   {200, `"content":null,"table_missing":true`},
				"/sources/notes/rows/a":          {200, "the table is missing from the database"},
				"/api/v1/targets/notes/states/a": {200, `"table_missing":true,"declarers":[{"source":"notes","key":"a"}]`},
				"/targets/notes/states/a":        {200, "The table is missing from the database"},
				"/api/v1/query/search?q=fox":     {503, "table notes is not set up"},
				"/healthz":                       {200, "ok"},
			} {
				resp, body := s.call(t, "GET", path, false)
				require.Equal(t, want.status, resp.StatusCode, "%s: %s", path, body)
				require.Contains(t, body, want.body, path)
			}
			require.Equal(t, 0, s.close(t), s.errb.String())

			// What the page says to do rebuilds it.
			require.Equal(t, cli.ExitOK, run(t, app, cli.Env{}, "drop", "--yes", "--db", db).code)
			r := run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitRowsFailed, r.code, r.stderr)
			r = run(t, app, cli.Env{}, "search", "fox", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "fox")
		})
	}
}

// TestInsightSearchPastTheEnd: a page past the last says how many there
// are, and leads back to the last page.
func TestInsightSearchPastTheEnd(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for i := range 7 {
		src.Set(fmt.Sprintf("n%d", i), "a fox")
	}
	src.Set("null", "the text null is a key")
	app, _ := notesApp(src)
	db := t.TempDir() + "/notes.db"
	require.Equal(t, 0, run(t, app, cli.Env{}, "update", "--db", db).code)
	s := startServer(t, app, cli.Env{}, "--db", db)
	_, body := s.call(t, "GET", "/search?q=fox&limit=3&offset=30", false)
	require.Contains(t, body, "no results past the first 30 of 7")
	_, body = s.call(t, "GET", href(t, body, "prev"), false)
	require.Contains(t, body, "results 7 to 7 of 7")
	resp, body := s.call(t, "GET", "/api/v1/targets/notes/states/null", false)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, body, `"text":"the text null is a key"`)
}

// TestInsightStopsWithAClientThatDoesNotRead: an event listener that
// stops reading fills its connection; the server lets it go, and stops
// promptly and cleanly when told to.
func TestInsightStopsWithAClientThatDoesNotRead(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for i := range 100 {
		src.Set(fmt.Sprintf("%04d-%s", i, strings.Repeat("k", 1000)), "fail") // each pass's events carry 100 long failures
	}
	app, _ := notesApp(src)
	db := t.TempDir() + "/notes.db"
	require.Equal(t, cli.ExitRowsFailed, run(t, app, cli.Env{}, "update", "--db", db).code)
	s := startServer(t, app, cli.Env{}, "--db", db, "--live", "--refresh", "1ms")

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(s.base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	require.NoError(t, err)
	// Passes run, their events pile up unread.
	// A loaded machine (the whole suite at once) runs fewer passes a second.
	require.Eventually(t, func() bool { return strings.Count(s.out.String(), "\npass ") > 50 }, 90*time.Second, 10*time.Millisecond)
	time.Sleep(2 * time.Second)

	start := time.Now()
	code := s.close(t)
	require.Equal(t, 0, code, s.errb.String())
	require.Less(t, time.Since(start), 8*time.Second, "stopped promptly")
	require.Contains(t, s.out.String(), "stopped")
}
