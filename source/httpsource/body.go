package httpsource

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// responseBody returns what to read of resp's body: at most limit bytes as
// sent, gunzipped when the response is gzip-encoded, and at most limit
// bytes once gunzipped. Reading past a limit fails with ErrBodyTooLarge.
// An encoding other than gzip and identity is an error.
func responseBody(resp *http.Response, limit int64) (io.Reader, error) {
	sent := &capReader{r: resp.Body, limit: limit}
	switch enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return sent, nil
	case "gzip", "x-gzip":
		return &capReader{r: &gunzipReader{r: sent}, limit: limit, decoded: true}, nil
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q (gzip was asked for)", enc)
	}
}

// capReader reads r, failing with ErrBodyTooLarge past limit bytes.
type capReader struct {
	r       io.Reader
	limit   int64
	n       int64
	decoded bool // says "once gunzipped" in the error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.limit {
		return 0, c.tooLarge()
	}
	if left := c.limit + 1 - c.n; int64(len(p)) > left {
		p = p[:left] // one byte more than allowed, to see the limit passed
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n - int(c.n-c.limit), c.tooLarge()
	}
	return n, err
}

func (c *capReader) tooLarge() error {
	return &bodyTooLargeError{limit: c.limit, decoded: c.decoded}
}

// bodyTooLargeError is capReader's error; it matches ErrBodyTooLarge.
type bodyTooLargeError struct {
	limit   int64
	decoded bool
}

func (e *bodyTooLargeError) Error() string {
	how := "as sent"
	if e.decoded {
		how = "once gunzipped"
	}
	return fmt.Sprintf("response body larger than %d bytes (MaxBodyBytes) %s", e.limit, how)
}

func (e *bodyTooLargeError) Is(target error) bool { return target == ErrBodyTooLarge }

// gunzipReader gunzips r, which may hold several gzip members; an empty r
// reads as empty.
type gunzipReader struct {
	r   io.Reader
	z   *gzip.Reader
	err error
}

func (g *gunzipReader) Read(p []byte) (int, error) {
	if g.z == nil && g.err == nil {
		g.z, g.err = gzip.NewReader(g.r)
		if g.err != nil && g.err != io.EOF {
			g.err = fmt.Errorf("gunzipping the body: %w", g.err)
		}
	}
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.z.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gunzipping the body: %w", err)
	}
	return n, err
}
