package hackernews_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews"
)

// A server that accepts and never answers: the retry deadline bounds the
// request, not the longer per-attempt timeout.
func TestRetryDeadlineBoundsASilentServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	src, err := hackernews.New(hackernews.Options{BaseURL: "http://" + ln.Addr().String() + "/api/v1", MaxElapsed: time.Second, RequestsPerSecond: 1000})
	require.NoError(t, err)
	start := time.Now()
	_, err = src.Get(t.Context(), "1")
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "bounded by MaxElapsed (1s), not Timeout (30s)")
}

// An https:// URL for a plain-HTTP server fails at once, naming the URL,
// rather than being retried for minutes.
func TestHTTPSToAPlainServerFailsFast(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	base := "https://" + strings.TrimPrefix(srv.URL, "http://") + "/api/v1"
	src, err := hackernews.New(hackernews.Options{BaseURL: base, RequestsPerSecond: 1000})
	require.NoError(t, err)
	start := time.Now()
	_, err = src.Get(t.Context(), "1")
	var ue *hackernews.UnreachableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, base+"/items/1", ue.URL)
	require.Less(t, time.Since(start), 5*time.Second)
}
