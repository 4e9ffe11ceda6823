package hackernews_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// redirector answers every request with a 302 to location(r), counting
// requests.
type redirector struct {
	location func(r *http.Request) string
	n        atomic.Int64
}

func (h *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n.Add(1)
	w.Header().Set("Location", h.location(r))
	w.WriteHeader(http.StatusFound)
}

// itemHost starts an itemServer on a host of its own.
func itemHost(t *testing.T) (*itemServer, *httptest.Server) {
	t.Helper()
	s := newItemServer(t, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

// hostOf returns the host:port of a test server.
func hostOf(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u.Host
}

// movedServer serves h at / and redirects /v1/… there.
func movedServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/"); ok {
			http.Redirect(w, r, "/"+rest, http.StatusMovedPermanently)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirects(t *testing.T) {
	t.Parallel()

	// The API moved to /v2 on the same host: followed.
	t.Run("same host", func(t *testing.T) {
		t.Parallel()
		s := newItemServer(t, nil)
		srv := movedServer(t, s)
		src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL + "/v1"})
		require.NoError(t, err)

		f, err := src.Get(t.Context(), "40500071")
		require.NoError(t, err)
		require.Len(t, f.Value.Comments, 12)
	})

	// Two servers on loopback are two hosts: the port is part of a host.
	t.Run("other host", func(t *testing.T) {
		t.Parallel()
		other, otherSrv := itemHost(t)
		r := &redirector{location: func(r *http.Request) string { return otherSrv.URL + r.URL.Path + "?token=secret" }}
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL, MaxElapsed: time.Minute})
		require.NoError(t, err)

		_, err = src.Get(t.Context(), "40500071")
		require.EqualError(t, err, "hackernews: GET items/40500071: hackernews: redirect refused: to "+otherSrv.URL+
			"/items/40500071: host "+hostOf(t, otherSrv)+" is neither the API's ("+hostOf(t, srv)+") nor in AllowRedirectHosts")
		require.ErrorIs(t, err, hackernews.ErrRedirect)
		require.False(t, tidemark.IsRetryable(err))
		require.Equal(t, int64(1), r.n.Load(), "not retried")
		require.Zero(t, other.requests(), "not followed")
	})

	t.Run("other host allowed", func(t *testing.T) {
		t.Parallel()
		other, otherSrv := itemHost(t)
		srv := httptest.NewServer(&redirector{location: func(r *http.Request) string { return otherSrv.URL + r.URL.Path }})
		t.Cleanup(srv.Close)
		src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL, AllowRedirectHosts: []string{hostOf(t, otherSrv)}})
		require.NoError(t, err)

		f, err := src.Get(t.Context(), "40500071")
		require.NoError(t, err)
		require.Len(t, f.Value.Comments, 12)
		require.Equal(t, 1, other.requests())
	})

	for name, tt := range map[string]struct {
		location func(srv *httptest.Server) string
		want     func(srv *httptest.Server) string
	}{
		"file": {
			location: func(*httptest.Server) string { return "file:///etc/passwd" },
			want: func(*httptest.Server) string {
				return "hackernews: GET items/1: hackernews: redirect refused: to file:///etc/passwd: not an http or https URL"
			},
		},
		"ftp": {
			location: func(*httptest.Server) string { return "ftp://user:pw@example.com/items/1" },
			want: func(*httptest.Server) string {
				return "hackernews: GET items/1: hackernews: redirect refused: to ftp://example.com/items/1: not an http or https URL"
			},
		},
		"a loop": {
			location: func(srv *httptest.Server) string { return srv.URL + "/items/1" },
			want: func(srv *httptest.Server) string {
				return "hackernews: GET items/1: hackernews: redirect refused: to " + srv.URL + "/items/1: stopped after 10 redirects"
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var srv *httptest.Server
			r := &redirector{location: func(*http.Request) string { return tt.location(srv) }}
			srv = httptest.NewServer(r)
			t.Cleanup(srv.Close)
			src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL, MaxElapsed: time.Minute})
			require.NoError(t, err)

			start := time.Now()
			_, err = src.Get(t.Context(), "1")
			require.Less(t, time.Since(start), 5*time.Second)
			require.EqualError(t, err, tt.want(srv))
			require.ErrorIs(t, err, hackernews.ErrRedirect)
			require.False(t, tidemark.IsRetryable(err))
			require.Zero(t, src.Stats().Retries)
		})
	}

	// From https to http is refused, even to an allowed host.
	t.Run("https to http", func(t *testing.T) {
		t.Parallel()
		plain, plainSrv := itemHost(t)
		srv := httptest.NewTLSServer(&redirector{location: func(r *http.Request) string { return plainSrv.URL + r.URL.Path }})
		t.Cleanup(srv.Close)
		src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL, HTTPClient: srv.Client(),
			AllowRedirectHosts: []string{hostOf(t, plainSrv)}})
		require.NoError(t, err)

		_, err = src.Get(t.Context(), "40500071")
		require.EqualError(t, err, "hackernews: GET items/40500071: hackernews: redirect refused: to "+plainSrv.URL+"/items/40500071: from https to http")
		require.Zero(t, plain.requests())
	})

	// The client given keeps its own CheckRedirect, which the source's
	// checks come before; the client itself is not changed.
	t.Run("own CheckRedirect", func(t *testing.T) {
		t.Parallel()
		s := newItemServer(t, nil)
		srv := movedServer(t, s)
		var asked atomic.Int64
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			asked.Add(1)
			return nil
		}}
		own := hc.CheckRedirect
		src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL + "/v1", HTTPClient: hc})
		require.NoError(t, err)

		_, err = src.Get(t.Context(), "40500071")
		require.NoError(t, err)
		require.Equal(t, int64(1), asked.Load())
		require.Equal(t, reflect.ValueOf(own).Pointer(), reflect.ValueOf(hc.CheckRedirect).Pointer(), "the client given is not changed")
	})
}
