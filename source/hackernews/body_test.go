package hackernews_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// gzipMembers returns the gzip members of first and then of n copies of
// rest, one after the other: a stream that gunzips to first and n rests.
// A member of 1 MiB of one byte is about 1 KB.
func gzipMembers(t testing.TB, first []byte, rest []byte, n int) []byte {
	t.Helper()
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		z, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		require.NoError(t, err)
		_, err = z.Write(b)
		require.NoError(t, err)
		require.NoError(t, z.Close())
		return buf.Bytes()
	}
	out := member(first)
	r := member(rest)
	for range n {
		out = append(out, r...)
	}
	return out
}

// gzipServer serves body with Content-Encoding: gzip, counting requests.
func gzipServer(body []byte, requests *int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		*requests++
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// A gzip-encoded response is gunzipped: gzip is asked for.
func TestGetGzipped(t *testing.T) {
	t.Parallel()

	item := readTestdata(t, recordedItem)
	var acceptEncoding string
	src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acceptEncoding = r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Encoding", "gzip")
		z := gzip.NewWriter(w)
		z.Write(item)
		z.Close()
	}), hackernews.Options{})

	f, err := get(t, src, "40500071")
	require.NoError(t, err)
	require.True(t, f.Exists)
	require.Len(t, f.Value.Comments, 12)
	require.Equal(t, "gzip", acceptEncoding)
	require.Equal(t, int64(len(item)), src.Stats().Bytes, "the bytes read once gunzipped")
}

// A body larger than MaxBodyBytes, as sent or once gunzipped, fails its
// request at once, without retries; nor does the rest of it get read into
// memory. The test is not parallel: it measures the memory allocated while
// it runs.
func TestBodyTooLarge(t *testing.T) {
	const limit = 8 << 20
	mib := func(b byte) []byte { return bytes.Repeat([]byte{b}, 1<<20) }
	for name, tt := range map[string]struct {
		gzipped bool
		body    []byte
		limit   int64 // 0 for the default
		want    string
	}{
		// 261 KB that gunzip to 256 MiB of one JSON string, which the
		// parser would hold whole: the bomb of issue 10.
		"gzip bomb, one long string": {
			gzipped: true,
			body:    gzipMembers(t, append([]byte(`{"id":1,"text":"`), mib('a')...), mib('a'), 255),
			limit:   limit,
			want:    "hackernews: GET items/1: response body larger than 8388608 bytes (MaxBodyBytes) once gunzipped",
		},
		"gzip bomb, default limit": {
			gzipped: true,
			body:    gzipMembers(t, []byte(`{"id":1,"text":`), mib(' '), 255),
			want:    "hackernews: GET items/1: response body larger than 16777216 bytes (MaxBodyBytes) once gunzipped",
		},
		// Empty members gunzip to nothing, however many are sent.
		"gzip of nothing, too long as sent": {
			gzipped: true,
			body:    gzipMembers(t, []byte(`{"id":1,"text":`), nil, 500_000),
			limit:   limit,
			want:    "hackernews: GET items/1: response body larger than 8388608 bytes (MaxBodyBytes) as sent",
		},
		"plain": {
			body:  append([]byte(`{"id":1,"text":"`), bytes.Repeat(mib('a'), 9)...),
			limit: limit,
			want:  "hackernews: GET items/1: response body larger than 8388608 bytes (MaxBodyBytes) as sent",
		},
	} {
		t.Run(name, func(t *testing.T) {
			requests := 0
			var h http.Handler = gzipServer(tt.body, &requests)
			if !tt.gzipped {
				h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					requests++
					w.Write(tt.body)
				})
			}
			src := newSource(t, h, hackernews.Options{MaxBodyBytes: tt.limit, MaxElapsed: time.Minute})

			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := get(t, src, "1")
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)

			require.EqualError(t, err, tt.want)
			require.ErrorIs(t, err, hackernews.ErrBodyTooLarge)
			require.False(t, tidemark.IsRetryable(err))
			require.Equal(t, 1, requests, "not retried")
			require.Less(t, elapsed, 20*time.Second, "a backstop: the 30s Timeout would be met without the limit")
			allocated := after.TotalAlloc - before.TotalAlloc
			bound := uint64(64 << 20)
			if tt.limit == 0 {
				bound = 16 << 20 // blanks: nothing is kept
			}
			require.Less(t, allocated, bound, "allocated %d MiB", allocated>>20)
			t.Logf("%d KB sent; failed in %s, %.1f MiB allocated, heap in use %.1f MiB after",
				len(tt.body)>>10, elapsed.Round(time.Millisecond), float64(allocated)/(1<<20), float64(after.HeapInuse)/(1<<20))
		})
	}
}

// A body of exactly MaxBodyBytes is read.
func TestBodyAtTheLimit(t *testing.T) {
	t.Parallel()

	item := readTestdata(t, recordedItem)
	for name, limit := range map[string]int64{"at the limit": int64(len(item)), "one byte short": int64(len(item)) - 1} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newItemServer(t, nil)
			src := newSource(t, s, hackernews.Options{MaxBodyBytes: limit})
			f, err := get(t, src, "40500071")
			if limit < int64(len(item)) {
				require.ErrorIs(t, err, hackernews.ErrBodyTooLarge)
				return
			}
			require.NoError(t, err)
			require.Len(t, f.Value.Comments, 12)
		})
	}
}

// An encoding that was not asked for fails the request, without retries.
func TestUnsupportedContentEncoding(t *testing.T) {
	t.Parallel()

	requests := 0
	src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests++
		w.Header().Set("Content-Encoding", "br")
		w.Write([]byte("\x1b\x00"))
	}), hackernews.Options{})

	_, err := get(t, src, "1")
	require.EqualError(t, err, `hackernews: GET items/1: unsupported Content-Encoding "br" (gzip was asked for)`)
	require.Equal(t, 1, requests)
}

func TestMaxBodyBytesMustNotBeNegative(t *testing.T) {
	t.Parallel()

	_, err := hackernews.New(hackernews.Options{MaxBodyBytes: -1})
	require.EqualError(t, err, "hackernews: MaxBodyBytes must not be negative, got -1")
	require.False(t, strings.Contains(err.Error(), "\n"))
}
