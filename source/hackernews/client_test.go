package hackernews_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// itemServer serves the recorded item at /items/40500071, after the
// faults that fault returns for each request (by its 1-based number)
// have been served; fault returns nil to serve the item.
type itemServer struct {
	body  []byte
	fault func(n int, w http.ResponseWriter, r *http.Request) bool
	n     atomic.Int64
}

func newItemServer(t *testing.T, fault func(n int, w http.ResponseWriter, r *http.Request) bool) *itemServer {
	return &itemServer{body: readTestdata(t, recordedItem), fault: fault}
}

func (s *itemServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.n.Add(1))
	if r.URL.Path != "/items/40500071" {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"status":404,"error":"Not Found"}`))
		return
	}
	if s.fault != nil && s.fault(n, w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(s.body)
}

func (s *itemServer) requests() int { return int(s.n.Load()) }

func get(t *testing.T, src *hackernews.Source, id string) (tidemark.Fetched[hackernews.Thread], error) {
	t.Helper()
	return src.Get(t.Context(), id)
}

func TestGet(t *testing.T) {
	t.Parallel()

	var ua, accept string
	s := newItemServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		ua, accept = r.UserAgent(), r.Header.Get("Accept")
		return false
	})
	src := newSource(t, s, hackernews.Options{})

	f, err := get(t, src, "40500071")
	require.NoError(t, err)
	require.True(t, f.Exists)
	require.Equal(t, "40500071", f.Value.ID)
	require.Len(t, f.Value.Comments, 12)
	require.Zero(t, f.Ordinal, "the listed ordinal stands")
	require.Equal(t, "tidemark-hnindex", ua)
	require.Equal(t, "application/json", accept)
	require.Equal(t, hackernews.ClientStats{
		Requests: map[string]int64{"items": 1, "search_by_date": 0},
		Bytes:    int64(len(s.body)),
	}, src.Stats())
	require.True(t, src.ProvidesOrdinal())
}

func TestGetGone(t *testing.T) {
	t.Parallel()

	for name, body := range map[string]string{
		"404":        "",
		"empty body": "",
		"null":       "null",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if name == "404" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte(body))
			}), hackernews.Options{})

			f, err := get(t, src, "123")
			require.NoError(t, err)
			require.False(t, f.Exists)
			require.Equal(t, int64(1), src.Stats().Requests["items"])
		})
	}
}

func TestGetInvalidID(t *testing.T) {
	t.Parallel()

	s := newItemServer(t, nil)
	src := newSource(t, s, hackernews.Options{})
	for _, id := range []string{"", "abc", "0", "-1", "012", "1/../2", "1 "} {
		_, err := get(t, src, id)
		require.ErrorContains(t, err, "is not an item id", "id %q", id)
	}
	require.Zero(t, s.requests())
}

func TestGetOtherItem(t *testing.T) {
	t.Parallel()

	s := newItemServer(t, nil)
	src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(s.body) // item 40500071, whatever was asked
	}), hackernews.Options{})

	_, err := get(t, src, "1")
	require.ErrorIs(t, err, hackernews.ErrMalformed)
	require.ErrorContains(t, err, "the response is item 40500071")
}

func TestGetRetries(t *testing.T) {
	t.Parallel()

	body := readTestdata(t, recordedItem)
	for name, tt := range map[string]struct {
		fault    func(n int, w http.ResponseWriter, r *http.Request) bool
		requests int
	}{
		"500s then success": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n <= 2 {
					http.Error(w, "oops", http.StatusInternalServerError)
					return true
				}
				return false
			},
			requests: 3,
		},
		"502, 503 and 504": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				codes := []int{502, 503, 504}
				if n <= len(codes) {
					w.WriteHeader(codes[n-1])
					return true
				}
				return false
			},
			requests: 4,
		},
		"408": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.WriteHeader(http.StatusRequestTimeout)
					return true
				}
				return false
			},
			requests: 2,
		},
		"429 without Retry-After": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.WriteHeader(http.StatusTooManyRequests)
					return true
				}
				return false
			},
			requests: 2,
		},
		"body cut short (Content-Length mismatch)": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Write(body[:len(body)/2])
					panic(http.ErrAbortHandler) // closes the connection mid-body
				}
				return false
			},
			requests: 2,
		},
		"truncated JSON": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.Write(body[:3000])
					return true
				}
				return false
			},
			requests: 2,
		},
		"connection dropped": {
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					panic(http.ErrAbortHandler)
				}
				return false
			},
			requests: 2,
		},
		"timeout": {
			fault: func(n int, w http.ResponseWriter, r *http.Request) bool {
				if n == 1 {
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
					return true
				}
				return false
			},
			requests: 2,
		},
		"timeout in the body": {
			fault: func(n int, w http.ResponseWriter, r *http.Request) bool {
				if n == 1 {
					w.Write([]byte(`{"id":40500071,"children":[`))
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
					return true
				}
				return false
			},
			requests: 2,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newItemServer(t, tt.fault)
			src := newSource(t, s, hackernews.Options{Timeout: 200 * time.Millisecond, MaxElapsed: 5 * time.Second})

			f, err := get(t, src, "40500071")
			require.NoError(t, err)
			require.True(t, f.Exists)
			require.Len(t, f.Value.Comments, 12)
			require.Equal(t, tt.requests, s.requests())
			require.Equal(t, int64(tt.requests-1), src.Stats().Retries)
		})
	}
}

func TestGetRetryAfter(t *testing.T) {
	t.Parallel()

	s := newItemServer(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	src := newSource(t, s, hackernews.Options{MaxElapsed: 5 * time.Second})

	start := time.Now()
	f, err := get(t, src, "40500071")
	require.NoError(t, err)
	require.True(t, f.Exists)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "waited as asked")
	require.Equal(t, 2, s.requests())
}

func TestGetGivesUp(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		fault func(n int, w http.ResponseWriter, r *http.Request) bool
		want  string
		is    error
	}{
		"503": {
			fault: func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				http.Error(w, `{"message":"overloaded"}`, http.StatusServiceUnavailable)
				return true
			},
			want: `HTTP 503: {"message":"overloaded"}`,
		},
		"Retry-After beyond the budget": {
			fault: func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				w.Header().Set("Retry-After", "3600")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			},
			want: "giving up after 1 attempts in",
		},
		"truncated JSON": {
			fault: func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				w.Write([]byte(`{"id":40500071,"children":[{"id":2`))
				return true
			},
			want: "unexpected end of input",
			is:   hackernews.ErrMalformed,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newItemServer(t, tt.fault)
			src := newSource(t, s, hackernews.Options{MaxElapsed: 300 * time.Millisecond})

			start := time.Now()
			_, err := get(t, src, "40500071")
			require.Less(t, time.Since(start), 5*time.Second)
			require.ErrorContains(t, err, "hackernews: GET items/40500071: giving up after ")
			require.ErrorContains(t, err, "(MaxElapsed 300ms): ")
			require.ErrorContains(t, err, tt.want)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
			require.False(t, tidemark.IsRetryable(err), "the engine records the row as failed")
			require.Equal(t, int64(s.requests()), src.Stats().Requests["items"])
			require.Equal(t, int64(s.requests()-1), src.Stats().Retries)
		})
	}

	t.Run("HTTPError", func(t *testing.T) {
		t.Parallel()
		s := newItemServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		})
		src := newSource(t, s, hackernews.Options{MaxElapsed: 300 * time.Millisecond})
		_, err := get(t, src, "40500071")
		var herr *hackernews.HTTPError
		require.ErrorAs(t, err, &herr)
		require.Equal(t, hackernews.HTTPError{StatusCode: 429, RetryAfter: time.Hour}, *herr)
		require.Regexp(t, `^hackernews: GET items/40500071: giving up after 1 attempts in \S+ \(MaxElapsed 300ms\): HTTP 429 \(Retry-After 1h0m0s\)$`, err.Error())
	})
}

func TestGetPermanentError(t *testing.T) {
	t.Parallel()

	for _, code := range []int{400, 401, 403, 410, 451} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			s := newItemServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				w.WriteHeader(code)
				fmt.Fprintf(w, "{\"message\":\"no\",\n\"status\":%d}\n%0600d", code, 0)
				return true
			})
			src := newSource(t, s, hackernews.Options{})

			_, err := get(t, src, "40500071")
			require.ErrorContains(t, err, fmt.Sprintf(`hackernews: GET items/40500071: HTTP %d: {"message":"no", "status":%d} 000`, code, code))
			require.ErrorContains(t, err, "0…", "the body is cut")
			var herr *hackernews.HTTPError
			require.ErrorAs(t, err, &herr)
			require.Equal(t, code, herr.StatusCode)
			require.False(t, tidemark.IsRetryable(err))
			require.Equal(t, 1, s.requests(), "not retried")
		})
	}
}

func TestGetCancelled(t *testing.T) {
	t.Parallel()

	started := make(chan struct{})
	s := newItemServer(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
		close(started)
		<-r.Context().Done()
		return true
	})
	src := newSource(t, s, hackernews.Options{})

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := src.Get(ctx, "40500071")
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, tidemark.IsRetryable(err))
	require.Equal(t, 1, s.requests())
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()

	var inFlight, most atomic.Int64
	s := newItemServer(t, func(_ int, _ http.ResponseWriter, _ *http.Request) bool {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		return false
	})
	src := newSource(t, s, hackernews.Options{Concurrency: 3})

	errs := make(chan error, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := src.Get(t.Context(), "40500071")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, most.Load(), int64(3))
	require.Equal(t, 20, s.requests())
}

// TestRateLimit hammers a source for a while and counts the requests: no
// more than the burst and the rate allow in the time taken. Only an upper
// bound is checked, which a slow machine cannot break.
func TestRateLimit(t *testing.T) {
	t.Parallel()

	const rps, burst = 20, 3
	s := newItemServer(t, nil)
	src := newSource(t, s, hackernews.Options{RequestsPerSecond: rps, Burst: burst, Concurrency: 8})

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		unexpected []error
	)
	for range 8 {
		wg.Go(func() {
			for {
				_, err := src.Get(ctx, "40500071")
				switch {
				case err == nil:
					continue
				case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "would exceed context deadline"):
				default:
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				}
				return
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.Empty(t, unexpected)

	allowed := burst + int(rps*elapsed.Seconds()) + 1
	require.LessOrEqual(t, s.requests(), allowed, "in %s", elapsed)
	require.GreaterOrEqual(t, s.requests(), burst, "requests went through")
}
