package httpsource_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/httpsource"
)

// TestBreakDoPostRedirectBecomesABodilessGet: a POST (a SOAP call, a
// search query) answered by a 302 to the same host is followed by net/http
// as a GET without the body; Do hands that GET's answer to read as the
// POST's. The query is silently lost: the answer is of another request.
// Expected: the POST reaches its new location as a POST with its body, or
// Do fails (a redirect refused); never a 2xx read of a bodiless GET.
func TestBreakDoPostRedirectBecomesABodilessGet(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		calls []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusFound)
			return
		}
		io.WriteString(w, "<answer to="+string(b)+"/>")
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	var got string
	err := c.Do(t.Context(), httpsource.Request{URL: srv.URL + "/old", Method: http.MethodPost, Body: []byte("<get id=1/>")}, body(&got))
	mu.Lock()
	defer mu.Unlock()
	if err == nil {
		require.Equal(t, []string{"POST /old <get id=1/>", "POST /new <get id=1/>"}, calls,
			"the POST's answer (%q) is that of a request without its body", got)
	}
}

// TestBreakDoConditionalPostMixesBodies: Conditional keeps validators by
// URL alone, but a POST endpoint (SOAP) answers many requests, told apart by
// their bodies, at one URL. The validator of one body's answer is sent with
// another's; a server whose ETags are versions (W/"v1" for every item at
// version 1) answers 304, and Do returns ErrNotModified for an item never
// read. Expected: a conditional request sends only its own answer's
// validators (or Conditional is refused with a body).
func TestBreakDoConditionalPostMixesBodies(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("If-None-Match") == `W/"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `W/"v1"`)
		io.WriteString(w, "<item "+string(b)+"/>")
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000, Timeout: 5 * time.Second})
	get := func(id string) (string, error) {
		var got string
		err := c.Do(t.Context(), httpsource.Request{URL: srv.URL + "/soap", Method: http.MethodPost, Body: []byte(id), Conditional: true}, body(&got))
		return got, err
	}
	// Fixed by refusing: validators are kept by URL, so a conditional
	// request is a GET without a body.
	_, err := get("id=1")
	require.ErrorContains(t, err, "a conditional request is a GET or HEAD without a body")
	require.Zero(t, hits.Load(), "nothing was sent")
}

// TestBreakReadErrorTooLargeBodyIsRetried: a 2xx body past MaxBodyBytes
// fails at once (ErrBodyTooLarge is not retried: it will be as large
// again), but an error answer's body past it, read by ReadError the
// natural way (io.ReadAll, return its error), is retried until the policy
// gives up: the same too-large fault fetched again and again.
func TestBreakReadErrorTooLargeBodyIsRetried(t *testing.T) {
	t.Parallel()
	var (
		mu sync.Mutex
		n  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<fault>"+string(make([]byte, 4096))+"</fault>")
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000, MaxBodyBytes: 1024, MaxElapsed: 2 * time.Second})
	readFault := func(r *httpsource.Response) error {
		_, err := io.ReadAll(r.Body)
		return err
	}
	err := c.Do(t.Context(), httpsource.Request{URL: srv.URL + "/svc", Method: http.MethodPost, Body: []byte("<q/>"), ReadError: readFault}, func(*httpsource.Response) error { return nil })
	require.ErrorIs(t, err, httpsource.ErrBodyTooLarge)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, n, "a too-large error body is asked for once, as a too-large success is")
}
