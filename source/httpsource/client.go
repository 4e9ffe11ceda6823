package httpsource

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/internal/retry"
)

// Client sends GET requests politely: a rate limit per host, a bound on
// requests in flight, a timeout per attempt, retries of transient failures
// (429, 408, 5xx, connection errors, timeouts, truncated bodies) with
// jittered backoff that honours Retry-After, a deadline for all the
// attempts of a request, a bound on the body as sent and once gunzipped,
// redirects only to the same host unless allowed, and conditional requests.
// It is safe for concurrent use.
type Client struct {
	name      string
	userAgent string
	accept    string
	hc        *http.Client
	o         Options
	sem       chan struct{}
	policy    retry.Policy
	// redirectHosts are the hosts, lower case, a redirect may lead to
	// besides the first request's.
	redirectHosts map[string]bool

	mu       sync.Mutex
	hosts    map[string]*rate.Limiter
	requests map[string]*atomic.Int64
	// validators holds, by URL, what the last success of a conditional
	// request answered with, up to maxValidators URLs.
	validators map[string]validator

	retries, bytes, notModified atomic.Int64
	// answered is set once a server has answered a request (with any
	// status): from then on an unreachable host is a transient fault.
	answered atomic.Bool
}

// maxValidators bounds the URLs whose validators a Client keeps: past it,
// new URLs are asked for unconditionally.
const maxValidators = 1 << 20

// validator is what a response said to ask a URL with next time.
type validator struct {
	etag, lastModified string
}

// New returns a Client; o's zero fields take their defaults.
func New(o Options) (*Client, error) {
	o = o.WithDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Backoff from MaxElapsed/20 (250ms at most) doubling to MaxElapsed/4
	// (30s at most): about ten attempts whatever the budget.
	initial := min(max(o.MaxElapsed/20, time.Millisecond), 250*time.Millisecond)
	c := &Client{
		name:      o.Name,
		userAgent: o.UserAgent,
		accept:    o.Accept,
		o:         o,
		sem:       make(chan struct{}, o.Concurrency),
		policy: retry.Policy{
			Initial:    initial,
			Max:        min(max(o.MaxElapsed/4, initial), 30*time.Second),
			Multiplier: 2,
			MaxElapsed: o.MaxElapsed,
		},
		redirectHosts: make(map[string]bool),
		hosts:         make(map[string]*rate.Limiter),
		requests:      make(map[string]*atomic.Int64),
		validators:    make(map[string]validator),
	}
	for _, h := range o.AllowRedirectHosts {
		c.redirectHosts[strings.ToLower(h)] = true
	}
	hc := *o.HTTPClient
	next := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := c.checkRedirect(req, via, next == nil); err != nil {
			return err
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	c.hc = &hc
	return c, nil
}

// Request is a GET request of Client.Get.
type Request struct {
	// URL is the URL asked for: http or https.
	URL string
	// Name names the request in errors and log records, such as
	// "items/42"; by default the URL without its user info and query.
	Name string
	// Endpoint counts the request in Stats.Requests under this name.
	Endpoint string
	// NotFoundOK makes a 404 Not Found return ErrNotFound, at once,
	// rather than an HTTPError.
	NotFoundOK bool
	// Conditional asks with the validators the URL's last success
	// answered with (its ETag as If-None-Match, its Last-Modified as
	// If-Modified-Since). A 304 Not Modified to a request that sent a
	// validator (from Conditional or Header) returns ErrNotModified
	// without reading the body; to one that sent none, it is an HTTPError.
	Conditional bool
	// Header holds more headers to send.
	Header http.Header

	// Method is the request's method, for Client.Do; Get sends GET. A
	// redirect that would change it (a 302 turns a POST into a GET) is
	// refused.
	Method string
	// Body, if not nil, is sent with each attempt (its Content-Type in
	// Header). A request with a body is retried as any other: send only
	// requests that are safe to repeat, as a query sent by POST (a SOAP
	// call, a search API) is.
	Body []byte
	// ReadError, if set, reads an answer that is not a success (not 2xx,
	// and not the 304 or 404 the fields above turn into ErrNotModified or
	// ErrNotFound): an API that tells its errors in the body, such as a
	// SOAP fault (HTTP 500) that means "busy" or "no such item". It
	// returns nil to leave the answer to the default (429, 408 and 5xx
	// retried, others an *HTTPError), ErrNotFound when the answer means
	// the item is gone, an error marked Permanent to fail at once, and
	// any other error to retry. Its Response's body is bounded by
	// Options.MaxBodyBytes.
	ReadError func(*Response) error
}

// Response is a successful (2xx) response, as Client.Get hands it to its
// read function.
type Response struct {
	StatusCode int
	Header     http.Header
	// Body is the body, gunzipped, bounded by Options.MaxBodyBytes.
	Body io.Reader
}

// ETag returns the response's entity tag, "" when it has none: a
// fingerprint of its content, as good as the server's.
func (r *Response) ETag() string { return r.Header.Get("ETag") }

// Stats counts what a Client asked.
type Stats struct {
	// Requests counts the requests sent (each attempt), by
	// Request.Endpoint.
	Requests map[string]int64
	// Retries counts the attempts that failed transiently and were retried.
	Retries int64
	// Bytes counts the response body bytes read.
	Bytes int64
	// NotModified counts the 304 answers to conditional requests.
	NotModified int64
}

// Stats returns the counts so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{Requests: make(map[string]int64, len(c.requests)), Retries: c.retries.Load(), Bytes: c.bytes.Load(), NotModified: c.notModified.Load()}
	for k, n := range c.requests {
		st.Requests[k] = n.Load()
	}
	return st
}

// validator returns the validators kept for url.
func (c *Client) validator(url string) (validator, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.validators[url]
	return v, ok
}

// Forget drops the validators kept for url: its next conditional request
// is asked unconditionally.
func (c *Client) Forget(url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.validators, url)
}

// maxRedirects is how many redirects in a row are followed, as
// http.Client does by default.
const maxRedirects = 10

// checkRedirect refuses a redirect to req from via (the requests so far,
// the first one first) that leads to a host other than the first request's
// and those allowed, to a scheme other than http and https, or from https
// to http; and, when limit, the eleventh redirect in a row.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request, limit bool) error {
	to, from := req.URL, via[len(via)-1].URL
	refuse := func(format string, args ...any) error {
		return &redirectError{name: c.name, msg: "to " + withoutSecrets(to) + ": " + fmt.Sprintf(format, args...)}
	}
	switch host := strings.ToLower(to.Host); {
	case req.Method != via[0].Method:
		// A 301, 302 or 303 turns a POST into a GET without its body: the
		// answer would not be the request's.
		return refuse("a %s redirected as a %s", via[0].Method, req.Method)
	case to.Scheme != "http" && to.Scheme != "https":
		return refuse("not an http or https URL")
	case from.Scheme == "https" && to.Scheme == "http":
		return refuse("from https to http")
	case host != strings.ToLower(via[0].URL.Host) && !c.redirectHosts[host]:
		return refuse("host %s is neither the API's (%s) nor in AllowRedirectHosts", to.Host, via[0].URL.Host)
	case limit && len(via) >= maxRedirects:
		return refuse("stopped after %d redirects", len(via))
	}
	return nil
}

// redirectError is a redirect refused; it matches ErrRedirect.
type redirectError struct{ name, msg string }

func (e *redirectError) Error() string        { return e.name + ": redirect refused: " + e.msg }
func (e *redirectError) Is(target error) bool { return target == ErrRedirect }

// limiter returns the rate limiter of host.
func (c *Client) limiter(host string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.hosts[host]
	if !ok {
		l = rate.NewLimiter(rate.Limit(c.o.RequestsPerSecond), c.o.Burst)
		c.hosts[host] = l
	}
	return l
}

// count adds an attempt to endpoint's count.
func (c *Client) count(endpoint string) {
	c.mu.Lock()
	n, ok := c.requests[endpoint]
	if !ok {
		n = new(atomic.Int64)
		c.requests[endpoint] = n
	}
	c.mu.Unlock()
	n.Add(1)
}

// Get sends GET req.URL, retrying transient failures, and calls read with
// a successful (2xx) response; read's error is retried as transient unless
// it is a context's or ErrBodyTooLarge, or is marked permanent with
// Permanent. A 404 returns ErrNotFound when req.NotFoundOK, a 304 to a
// conditional request ErrNotModified. The error returned after retries is
// never marked transient: the caller has had its retries.
func (c *Client) Get(ctx context.Context, req Request, read func(*Response) error) error {
	req.Method = http.MethodGet
	return c.Do(ctx, req, read)
}

// Do is Get with req.Method (GET when empty) and req.Body.
func (c *Client) Do(ctx context.Context, req Request, read func(*Response) error) error {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if req.Conditional && (req.Body != nil || method != http.MethodGet && method != http.MethodHead) {
		// Validators are kept by URL: requests of one URL with different
		// bodies would send each other's.
		return fmt.Errorf("%s: %s %q: a conditional request is a GET or HEAD without a body", c.name, method, req.URL)
	}
	u, err := url.Parse(req.URL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%s: %s %q: not an http or https URL", c.name, method, req.URL)
	}
	req.Method = method
	name := req.Name
	if name == "" {
		name = withoutSecrets(u)
	}
	start := time.Now()
	attempts := 0
	err = retry.DoNotify(ctx, c.policy, func(ctx context.Context) error {
		attempts++
		return c.attempt(ctx, req, read)
	}, func(r retry.Retrying) {
		c.retries.Add(1)
		c.o.Logger.InfoContext(ctx, c.name+": retrying", "request", name, "attempt", r.Attempt, "err", r.Err, "wait", r.Wait)
	})
	var (
		unreachableErr *UnreachableError
		permanent      *permanentError
	)
	switch {
	case err == nil || err == ErrNotFound || err == ErrNotModified:
		return err
	case errors.As(err, &unreachableErr):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %s %s: %w", c.name, method, name, context.Cause(ctx))
	case errors.As(err, &permanent):
		return fmt.Errorf("%s: %s %s: %w", c.name, method, name, permanent.err)
	case retry.Is(err):
		// Given up: report the last failure, no longer marked transient.
		cause := err
		if marked := (*retry.Error)(nil); errors.As(err, &marked) {
			cause = marked.Err
		}
		return fmt.Errorf("%s: %s %s: giving up after %d attempts in %s (MaxElapsed %s): %w",
			c.name, method, name, attempts, time.Since(start).Round(time.Millisecond), c.policy.MaxElapsed, cause)
	}
	return fmt.Errorf("%s: %s %s: %w", c.name, method, name, err)
}

// Permanent marks err, returned by a read function of Client.Get, as not
// worth retrying: a body the server will send again as it is (malformed,
// for one).
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// attempt makes one request of Get.
func (c *Client) attempt(ctx context.Context, r Request, read func(*Response) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-c.sem }()

	var sent io.Reader
	if r.Body != nil {
		sent = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, r.URL, sent)
	if err != nil {
		return &permanentError{err}
	}
	if err := c.limiter(req.URL.Host).Wait(ctx); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req = req.WithContext(actx)
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", c.userAgent)
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", c.accept)
	}
	// Asked for here rather than by the transport, which would then gunzip
	// out of reach of the limit on the bytes as sent.
	req.Header.Set("Accept-Encoding", "gzip")
	if r.Conditional {
		v, ok := c.validator(r.URL)
		if ok && v.etag != "" {
			req.Header.Set("If-None-Match", v.etag)
		}
		if ok && v.lastModified != "" {
			req.Header.Set("If-Modified-Since", v.lastModified)
		}
	}

	c.count(r.Endpoint)
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, actx, req.URL, err)
	}
	c.answered.Store(true)
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusNotModified && (req.Header.Get("If-None-Match") != "" || req.Header.Get("If-Modified-Since") != "") {
		c.notModified.Add(1)
		return ErrNotModified
	}
	decoded, err := responseBody(resp, c.o.MaxBodyBytes)
	if err != nil {
		if resp.StatusCode/100 == 2 {
			return err
		}
		decoded = strings.NewReader("") // an error's status says enough
	}
	body := &countingReader{r: decoded, n: &c.bytes}

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if err := read(&Response{StatusCode: code, Header: resp.Header, Body: body}); err != nil {
			var (
				tooLarge  *bodyTooLargeError
				permanent *permanentError
			)
			switch {
			case ctx.Err() != nil:
				return err
			case errors.As(err, &tooLarge):
				return tooLarge // whatever read made of it
			case errors.As(err, &permanent):
				return permanent
			}
			return retry.Mark(c.timedOut(actx, err))
		}
		if r.Conditional {
			c.remember(r.URL, resp.Header)
		}
		return nil
	case code == http.StatusNotFound && r.NotFoundOK:
		return ErrNotFound
	}
	if r.ReadError != nil {
		err := r.ReadError(&Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body})
		var (
			permanent *permanentError
			tooLarge  *bodyTooLargeError
		)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound):
			return ErrNotFound
		case errors.As(err, &tooLarge):
			return tooLarge // as large the next time
		case ctx.Err() != nil, errors.As(err, &permanent):
			return err
		default:
			return retry.MarkAfter(err, RetryAfter(resp.Header.Get("Retry-After"), time.Now()))
		}
	}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		wait := RetryAfter(resp.Header.Get("Retry-After"), time.Now())
		herr := &HTTPError{StatusCode: code, RetryAfter: wait, Body: snippet(body)}
		return retry.MarkAfter(herr, wait)
	default:
		return &HTTPError{StatusCode: code, Body: snippet(body)}
	}
}

// remember keeps the validators of a success of url for its next
// conditional request.
func (c *Client) remember(url string, h http.Header) {
	v := validator{etag: h.Get("ETag"), lastModified: h.Get("Last-Modified")}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, known := c.validators[url]
	switch {
	case v == validator{}:
		delete(c.validators, url)
	case known || len(c.validators) < maxValidators:
		c.validators[url] = v
	}
}

// transportError classifies an error of http.Client.Do for a request of
// u: transient unless the context ended, the server's certificate was
// refused, or the host was unreachable before a server ever answered.
func (c *Client) transportError(ctx, actx context.Context, u *url.URL, err error) error {
	var (
		certErr *tls.CertificateVerificationError
		uerr    *url.Error
	)
	switch {
	case ctx.Err() != nil:
		return err
	case errors.As(err, &certErr):
		return err
	case errors.Is(err, ErrRedirect) && errors.As(err, &uerr):
		return uerr.Err // without the Location header that uerr names
	case !c.answered.Load() && unreachable(err):
		if errors.As(err, &uerr) {
			// uerr names the method and the whole URL; the request's
			// URL is named without its query below.
			if last, perr := url.Parse(uerr.URL); perr == nil {
				u = last // where a redirect led
			}
			err = uerr.Err
		}
		return &UnreachableError{Name: c.name, URL: withoutSecrets(u), Err: err}
	}
	return retry.Mark(c.timedOut(actx, err))
}

// unreachable reports whether err says the host cannot be reached: its
// name does not resolve, it refuses connections, or it does not speak TLS
// to an https:// URL.
func unreachable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsNotFound || !(dnsErr.IsTemporary || dnsErr.IsTimeout)
	}
	var recErr tls.RecordHeaderError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &recErr) ||
		// net/http's words for a TLS handshake answered in plain HTTP: an
		// https:// URL for an http:// server, which no retry fixes.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// withoutSecrets returns u without its user info, query and fragment.
func withoutSecrets(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = nil, "", false, "", ""
	return v.String()
}

// timedOut names the attempt's timeout in err when it caused it.
func (c *Client) timedOut(actx context.Context, err error) error {
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("request timed out: %w", err)
	}
	return err
}

// RetryAfter parses a Retry-After header: seconds, or an HTTP date from
// which the wait is counted from now. It returns 0 when there is none, and
// at most 24 hours.
func RetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// snippet returns the start of an error response's body, on one line.
func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "\uFFFD")), " ")
	const max = 200
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// countingReader adds the bytes read through it to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
