package hackernews_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// closedPort returns a loopback address that refuses connections: a port
// that was free a moment ago.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Before the API has answered once, a host that refuses connections or
// whose name does not resolve fails the request at once, whatever the
// retry budget, naming the URL without its user info or query.
func TestUnreachableFailsFast(t *testing.T) {
	t.Parallel()

	addr := closedPort(t)
	for name, tt := range map[string]struct {
		base string
		call func(ctx context.Context, src *hackernews.Source) error
		want string
		is   error
	}{
		"refused, Get": {
			base: "http://" + addr + "/api/v1",
			call: func(ctx context.Context, src *hackernews.Source) error {
				_, err := src.Get(ctx, "123")
				return err
			},
			want: "hackernews: cannot reach http://" + addr + "/api/v1/items/123: dial tcp " + addr + ": connect: connection refused",
			is:   syscall.ECONNREFUSED,
		},
		"refused, List, with a password": {
			base: "http://user:secret@" + addr + "/api/v1",
			call: func(ctx context.Context, src *hackernews.Source) error {
				for _, err := range src.List(ctx) {
					return err
				}
				return nil
			},
			want: "hackernews: cannot reach http://" + addr + "/api/v1/search_by_date: dial tcp " + addr + ": connect: connection refused",
			is:   syscall.ECONNREFUSED,
		},
		"no such host": {
			base: "http://nosuchhost.invalid/api/v1",
			call: func(ctx context.Context, src *hackernews.Source) error {
				_, err := src.Get(ctx, "123")
				return err
			},
			want: "hackernews: cannot reach http://nosuchhost.invalid/api/v1/items/123: dial tcp: lookup nosuchhost.invalid",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := hackernews.New(hackernews.Options{BaseURL: tt.base, MaxElapsed: time.Hour})
			require.NoError(t, err)

			start := time.Now()
			err = tt.call(t.Context(), src)
			elapsed := time.Since(start)
			require.Less(t, elapsed, time.Second, "failed fast")
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "secret")
			var uerr *hackernews.UnreachableError
			require.ErrorAs(t, err, &uerr)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
			require.False(t, tidemark.IsRetryable(err))
			stats := src.Stats()
			require.Zero(t, stats.Retries, "not retried")
			require.Equal(t, int64(1), stats.Requests["items"]+stats.Requests["search_by_date"])
			t.Logf("failed in %s: %v", elapsed, err)
		})
	}
}

// Once the API has answered, a refused connection is a server going away
// for a while: it is retried.
func TestRefusedAfterAnAnswerIsRetried(t *testing.T) {
	t.Parallel()

	s := newItemServer(t, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	src, err := hackernews.New(hackernews.Options{BaseURL: srv.URL, RequestsPerSecond: 10_000, MaxElapsed: 300 * time.Millisecond})
	require.NoError(t, err)

	_, err = src.Get(t.Context(), "40500071")
	require.NoError(t, err)
	srv.Close()

	_, err = src.Get(t.Context(), "40500071")
	require.ErrorContains(t, err, "hackernews: GET items/40500071: giving up after ")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	var uerr *hackernews.UnreachableError
	require.False(t, errors.As(err, &uerr), "not an UnreachableError: %v", err)
	require.Positive(t, src.Stats().Retries)
}

// Each retry is logged at level INFO with the request, the attempt's
// number, its error and the wait before the next attempt.
func TestRetriesAreLogged(t *testing.T) {
	t.Parallel()

	s := newItemServer(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n <= 2 {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	var h recordHandler
	src := newSource(t, s, hackernews.Options{Logger: slog.New(&h), MaxElapsed: 5 * time.Second})

	_, err := src.Get(t.Context(), "40500071")
	require.NoError(t, err)
	recs := h.all()
	require.Len(t, recs, 2)
	for i, r := range recs {
		require.Equal(t, slog.LevelInfo, r.Level)
		require.Equal(t, "hackernews: retrying", r.Message)
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value
			return true
		})
		require.Equal(t, "items/40500071", attrs["request"].String())
		require.Equal(t, int64(i+1), attrs["attempt"].Int64())
		require.Equal(t, "HTTP 503: overloaded", attrs["err"].Any().(error).Error())
		require.Equal(t, slog.KindDuration, attrs["wait"].Kind())
		// The backoff starts at MaxElapsed/20 (250ms) and doubles; each
		// wait is drawn from [backoff/2, backoff].
		require.GreaterOrEqual(t, attrs["wait"].Duration(), 125*time.Millisecond<<i)
		require.LessOrEqual(t, attrs["wait"].Duration(), 250*time.Millisecond<<i)
	}
}

// recordHandler keeps the records logged through it.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}
