package httpsource_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/httpsource"
)

// body reads a response's body into *out.
func body(out *string) func(*httpsource.Response) error {
	return func(r *httpsource.Response) error {
		b, err := io.ReadAll(r.Body)
		*out = string(b)
		return err
	}
}

func newClient(t *testing.T, o httpsource.Options) *httpsource.Client {
	t.Helper()
	c, err := httpsource.New(o)
	require.NoError(t, err)
	return c
}

// TestConditionalETag: a conditional request sends the ETag its URL last
// answered with; a 304 is ErrNotModified, the body neither sent nor read;
// a changed resource answers with its new body and ETag.
func TestConditionalETag(t *testing.T) {
	t.Parallel()
	var version atomic.Int32
	version.Store(1)
	var sentBytes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		etag := fmt.Sprintf(`"v%d"`, version.Load())
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		b := strings.Repeat("x", 1000) + etag
		sentBytes.Add(int64(len(b)))
		io.WriteString(w, b)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{})
	req := httpsource.Request{URL: srv.URL + "/thing", Endpoint: "thing", Conditional: true}

	var got string
	var etag string
	require.NoError(t, c.Get(t.Context(), req, func(r *httpsource.Response) error {
		etag = r.ETag()
		return body(&got)(r)
	}))
	require.Equal(t, `"v1"`, etag)
	require.True(t, strings.HasSuffix(got, `"v1"`))

	called := false
	err := c.Get(t.Context(), req, func(*httpsource.Response) error { called = true; return nil })
	require.ErrorIs(t, err, httpsource.ErrNotModified)
	require.False(t, called, "a 304 has no body to read")

	version.Store(2)
	require.NoError(t, c.Get(t.Context(), req, body(&got)))
	require.True(t, strings.HasSuffix(got, `"v2"`), "a changed resource is read again")
	require.ErrorIs(t, c.Get(t.Context(), req, body(&got)), httpsource.ErrNotModified)

	st := c.Stats()
	require.Equal(t, int64(4), st.Requests["thing"])
	require.Equal(t, int64(2), st.NotModified)
	require.Equal(t, int64(2*1004), sentBytes.Load(), "the bodies of the two 304s were not sent")
	require.Equal(t, int64(2*1004), st.Bytes)

	// Unconditional requests ignore validators; Forget drops them.
	require.NoError(t, c.Get(t.Context(), httpsource.Request{URL: req.URL}, body(&got)))
	c.Forget(req.URL)
	require.NoError(t, c.Get(t.Context(), req, body(&got)), "forgotten: asked unconditionally")
}

// TestConditionalLastModified: without an ETag, Last-Modified is sent back
// as If-Modified-Since.
func TestConditionalLastModified(t *testing.T) {
	t.Parallel()
	const stamp = "Wed, 02 Dec 2026 10:00:00 GMT"
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Header.Get("If-Modified-Since"))
		if r.Header.Get("If-Modified-Since") == stamp {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Last-Modified", stamp)
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{})
	req := httpsource.Request{URL: srv.URL, Conditional: true}
	var got string
	require.NoError(t, c.Get(t.Context(), req, body(&got)))
	require.Equal(t, "hello", got)
	require.ErrorIs(t, c.Get(t.Context(), req, body(&got)), httpsource.ErrNotModified)
	require.Equal(t, []string{"", stamp}, asked)
}

// TestGetOutcomes: a 404 with NotFoundOK, a permanent read error (not
// retried), a transient one (retried), a 503 with Retry-After, headers
// sent, and a URL that is not http.
func TestGetOutcomes(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/gone":
			http.NotFound(w, r)
		case "/busy":
			if hits.Load()%2 == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		case "/echo":
			io.WriteString(w, r.Header.Get("X-Key")+" "+r.Header.Get("User-Agent")+" "+r.Header.Get("Accept"))
		default:
			io.WriteString(w, "body")
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{Name: "kit", UserAgent: "ua/1", MaxElapsed: 2 * time.Second})
	ctx := t.Context()

	require.ErrorIs(t, c.Get(ctx, httpsource.Request{URL: srv.URL + "/gone", NotFoundOK: true}, body(new(string))), httpsource.ErrNotFound)
	err := c.Get(ctx, httpsource.Request{URL: srv.URL + "/gone"}, body(new(string)))
	var herr *httpsource.HTTPError
	require.ErrorAs(t, err, &herr)
	require.Equal(t, 404, herr.StatusCode)
	require.ErrorContains(t, err, "kit: GET "+srv.URL+"/gone: HTTP 404")

	before := hits.Load()
	bad := errors.New("malformed")
	err = c.Get(ctx, httpsource.Request{URL: srv.URL + "/x", Name: "x"}, func(*httpsource.Response) error { return httpsource.Permanent(bad) })
	require.ErrorIs(t, err, bad)
	require.EqualError(t, err, "kit: GET x: malformed")
	require.Equal(t, before+1, hits.Load(), "a permanent error is not retried")

	tries := 0
	require.NoError(t, c.Get(ctx, httpsource.Request{URL: srv.URL + "/x"}, func(*httpsource.Response) error {
		tries++
		if tries == 1 {
			return io.ErrUnexpectedEOF // a truncated body
		}
		return nil
	}))
	require.Equal(t, 2, tries, "a read error is retried")

	var got string
	hits.Store(0)
	require.NoError(t, c.Get(ctx, httpsource.Request{URL: srv.URL + "/busy"}, body(&got)))
	require.Equal(t, "ok", got)
	require.Equal(t, int32(2), hits.Load(), "the 503 was retried")

	require.NoError(t, c.Get(ctx, httpsource.Request{URL: srv.URL + "/echo", Header: http.Header{"X-Key": {"k"}}}, body(&got)))
	require.Equal(t, "k ua/1 application/json", got)

	require.EqualError(t, c.Get(ctx, httpsource.Request{URL: "file:///etc/passwd"}, body(&got)), `kit: GET "file:///etc/passwd": not an http or https URL`)
	require.Positive(t, c.Stats().Retries)
}

// TestOptionsValidate names the bad field with the Client's name.
func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	_, err := httpsource.New(httpsource.Options{Name: "kit", Concurrency: -1})
	require.EqualError(t, err, "kit: Concurrency must be at least 1, got -1")
	_, err = httpsource.New(httpsource.Options{MaxBodyBytes: -1})
	require.EqualError(t, err, "httpsource: MaxBodyBytes must not be negative, got -1")
}

// TestDoPostsABodyAndReadsErrors: Do sends a method and a body, again on
// each attempt; ReadError reads an error answer's body and says what it
// means: retry, gone, or fail at once.
func TestDoPostsABodyAndReadsErrors(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		calls []string
		busy  = 1
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Method+" "+string(b))
		switch {
		case string(b) == "<get id=1/>" && busy > 0:
			busy--
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "<fault>Server.Busy</fault>")
		case string(b) == "<get id=1/>":
			io.WriteString(w, "<part id=1/>")
		case string(b) == "<get id=2/>":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "<fault>Client.NoSuchPart</fault>")
		case string(b) == "<get id=3/>":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "<fault>Client.BadRequest</fault>")
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	readFault := func(r *httpsource.Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		switch s := string(b); {
		case strings.Contains(s, "Server.Busy"):
			return errors.New("busy") // retried
		case strings.Contains(s, "NoSuchPart"):
			return httpsource.ErrNotFound
		case strings.Contains(s, "<fault>"):
			return httpsource.Permanent(fmt.Errorf("fault: %s", s))
		}
		return nil
	}
	read := body
	call := func(body string) (string, error) {
		var got string
		err := c.Do(t.Context(), httpsource.Request{URL: srv.URL + "/svc", Method: http.MethodPost, Body: []byte(body),
			Header: http.Header{"Content-Type": {"text/xml"}}, ReadError: readFault}, read(&got))
		return got, err
	}
	got, err := call("<get id=1/>")
	require.NoError(t, err)
	require.Equal(t, "<part id=1/>", got)
	_, err = call("<get id=2/>")
	require.ErrorIs(t, err, httpsource.ErrNotFound)
	_, err = call("<get id=3/>")
	require.ErrorContains(t, err, "POST")
	require.ErrorContains(t, err, "fault: <fault>Client.BadRequest</fault>")
	_, err = call("<other/>")
	var herr *httpsource.HTTPError
	require.ErrorAs(t, err, &herr, "ReadError left it to the default")
	require.Equal(t, http.StatusBadRequest, herr.StatusCode)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"POST <get id=1/>", "POST <get id=1/>", // busy, retried with its body again
		"POST <get id=2/>", // gone: once
		"POST <get id=3/>", // permanent: once
		"POST <other/>",    // a 400: once
	}, calls)
}
