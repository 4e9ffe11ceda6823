package hnindex_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/hnindex"
)

// runHnindex runs hnindex with args on a fresh SQLite database, with the
// source's options as the flags say, and returns the exit code, stderr and
// the time taken.
func runHnindex(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--db", filepath.Join(t.TempDir(), "hn.db"))
	start := time.Now()
	code := cli.Run(t.Context(), hnindex.App(nil), args, cli.Env{Stdout: &out, Stderr: &errb})
	return code, errb.String(), time.Since(start)
}

func TestRetryDeadlineMustBePositive(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "-1s"} {
		code, stderr, _ := runHnindex(t, "update", "--hn-url", "http://127.0.0.1:1/api/v1", "--retry-deadline", v)
		require.Equal(t, cli.ExitFatal, code)
		require.Contains(t, stderr, "--retry-deadline must be positive, got ")
	}
}

// --retry-deadline bounds the retries, each of which is logged at level
// INFO with its wait.
func TestRetryDeadlineAndRetriesLogged(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)

	code, stderr, elapsed := runHnindex(t, "update", "--hn-url", srv.URL+"/api/v1", "--retry-deadline", "1s")
	require.Equal(t, cli.ExitFatal, code, stderr)
	require.Less(t, elapsed, 10*time.Second)
	require.Contains(t, stderr, "(MaxElapsed 1s): HTTP 503: overloaded")
	retries := regexp.MustCompile(`level=INFO msg="hackernews: retrying" request="search_by_date\?[^"]+" attempt=(\d+) err="HTTP 503: overloaded" wait=\S+`).FindAllStringSubmatch(stderr, -1)
	require.NotEmpty(t, retries, stderr)
	require.Equal(t, "1", retries[0][1])
	require.Equal(t, int(requests.Load())-1, len(retries), "every retry is logged")
}

// Without a reachable API, update fails at once, naming the URL, rather
// than after the retry deadline.
func TestUnreachableAPIFailsFast(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	code, stderr, elapsed := runHnindex(t, "update", "--hn-url", "http://"+addr+"/api/v1")
	require.Equal(t, cli.ExitFatal, code, stderr)
	require.Less(t, elapsed, 10*time.Second, "not the 2m retry deadline")
	require.Contains(t, stderr, "hackernews: cannot reach http://"+addr+"/api/v1/search_by_date: dial tcp "+addr+": connect: connection refused")
	require.NotContains(t, stderr, "retrying")
	t.Logf("failed in %s; stderr:\n%s", elapsed, stderr)
}
