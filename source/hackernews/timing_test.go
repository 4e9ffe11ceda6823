package hackernews_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// The tests here check waits exactly, on synctest's fake clock: the
// handler is called in memory, without a network, inside the bubble.

// handlerTransport is an http.RoundTripper that serves requests with a
// handler, in memory.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// clockedItem serves the recorded item after failing the first fail
// requests with fault, noting the (fake) time of each request.
type clockedItem struct {
	body  []byte
	fail  int
	fault func(w http.ResponseWriter)
	times []time.Time
}

func (c *clockedItem) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.times = append(c.times, time.Now())
	if len(c.times) <= c.fail {
		c.fault(w)
		return
	}
	w.Write(c.body)
}

func inMemorySource(t *testing.T, h http.Handler, opts hackernews.Options) *hackernews.Source {
	t.Helper()
	opts.BaseURL = "http://hn.test/api/v1"
	opts.HTTPClient = &http.Client{Transport: handlerTransport{h}}
	src, err := hackernews.New(opts)
	require.NoError(t, err)
	return src
}

func TestRetryAfterWait(t *testing.T) {
	t.Parallel()

	body := readTestdata(t, recordedItem)
	for name, header := range map[string]func(now time.Time) string{
		"seconds":   func(time.Time) string { return "3" },
		"HTTP date": func(now time.Time) string { return now.Add(3 * time.Second).UTC().Format(http.TimeFormat) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := &clockedItem{body: body, fail: 1, fault: func(w http.ResponseWriter) {
					w.Header().Set("Retry-After", header(time.Now()))
					w.WriteHeader(http.StatusTooManyRequests)
				}}
				src := inMemorySource(t, h, hackernews.Options{})

				f, err := src.Get(t.Context(), "40500071")
				require.NoError(t, err)
				require.True(t, f.Exists)
				require.Len(t, h.times, 2)
				require.Equal(t, 3*time.Second, h.times[1].Sub(h.times[0]), "the wait asked for, longer than the backoff")
			})
		})
	}
}

// TestRateLimitExact gets sequentially from a source limited to 2 requests
// a second with bursts of 4: the first 4 go at once, then one every 500ms.
func TestRateLimitExact(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		h := &clockedItem{body: readTestdata(t, recordedItem)}
		src := inMemorySource(t, h, hackernews.Options{}) // the defaults: 2/s, bursts of 4
		start := time.Now()
		for range 10 {
			_, err := src.Get(t.Context(), "40500071")
			require.NoError(t, err)
		}
		var offsets []time.Duration
		for _, at := range h.times {
			offsets = append(offsets, at.Sub(start))
		}
		ms := time.Millisecond
		require.Equal(t, []time.Duration{0, 0, 0, 0, 500 * ms, 1000 * ms, 1500 * ms, 2000 * ms, 2500 * ms, 3000 * ms}, offsets)
	})
}

// TestGiveUpDefaultBudget fails every request: with the default MaxElapsed
// the source retries for up to two minutes, backing off, then gives up.
func TestGiveUpDefaultBudget(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		h := &clockedItem{fail: 1 << 30, fault: func(w http.ResponseWriter) {
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}}
		src := inMemorySource(t, h, hackernews.Options{})
		start := time.Now()

		_, err := src.Get(t.Context(), "40500071")
		require.ErrorContains(t, err, "(MaxElapsed 2m0s): HTTP 503: try later")
		require.False(t, tidemark.IsRetryable(err))
		require.LessOrEqual(t, time.Since(start), 2*time.Minute)
		// Backoff from 250ms doubling to 30s, each wait drawn from its upper
		// half: 10 attempts when every draw is the longest, 14 the shortest.
		require.GreaterOrEqual(t, len(h.times), 10)
		require.LessOrEqual(t, len(h.times), 14)
		for i := 1; i < len(h.times); i++ {
			require.Greater(t, h.times[i].Sub(h.times[i-1]), time.Duration(0), "a wait between attempts")
		}
		require.Equal(t, int64(len(h.times)-1), src.Stats().Retries)
	})
}
