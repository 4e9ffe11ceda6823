package hackernews

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// UserAgent is sent with every request.
const UserAgent = "tidemark-hnindex"

// The endpoints, as ClientStats names them.
const (
	EndpointSearchByDate = "search_by_date"
	EndpointItems        = "items"
)

// ClientStats counts what a Source asked of the API.
type ClientStats struct {
	// Requests counts the requests sent (each attempt), by endpoint:
	// EndpointSearchByDate and EndpointItems.
	Requests map[string]int64
	// Retries counts the attempts that failed transiently and were retried.
	Retries int64
	// Bytes counts the response body bytes read.
	Bytes int64
}

// client sends GET requests to the API with a per-host rate limit, a bound
// on requests in flight, a timeout per attempt and retries.
type client struct {
	base    string
	hc      *http.Client
	log     *slog.Logger
	sem     chan struct{}
	timeout time.Duration
	policy  retry.Policy
	maxBody int64
	// redirectHosts are the hosts, lower case, a redirect may lead to
	// besides the first request's.
	redirectHosts map[string]bool

	rps   rate.Limit
	burst int
	mu    sync.Mutex
	hosts map[string]*rate.Limiter

	searches, items, retries, bytes atomic.Int64
	// answered is set once the API has answered a request (with any
	// status): from then on an unreachable host is a transient fault.
	answered atomic.Bool
}

func newClient(o Options) *client {
	// Backoff from MaxElapsed/20 (250ms at most) doubling to MaxElapsed/4
	// (30s at most): about ten attempts whatever the budget.
	initial := min(max(o.MaxElapsed/20, time.Millisecond), 250*time.Millisecond)
	c := &client{
		base:    o.BaseURL,
		log:     o.Logger,
		sem:     make(chan struct{}, o.Concurrency),
		timeout: o.Timeout,
		policy: retry.Policy{
			Initial:    initial,
			Max:        min(max(o.MaxElapsed/4, initial), 30*time.Second),
			Multiplier: 2,
			MaxElapsed: o.MaxElapsed,
		},
		maxBody:       o.MaxBodyBytes,
		redirectHosts: make(map[string]bool),
		rps:           rate.Limit(o.RequestsPerSecond),
		burst:         o.Burst,
		hosts:         make(map[string]*rate.Limiter),
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
	return c
}

// maxRedirects is how many redirects in a row are followed, as
// http.Client does by default.
const maxRedirects = 10

// checkRedirect refuses a redirect to req from via (the requests so far,
// the first one first) that leads to a host other than the first request's
// and those allowed, to a scheme other than http and https, or from https
// to http; and, when limit, the eleventh redirect in a row.
func (c *client) checkRedirect(req *http.Request, via []*http.Request, limit bool) error {
	to, from := req.URL, via[len(via)-1].URL
	switch host := strings.ToLower(to.Host); {
	case to.Scheme != "http" && to.Scheme != "https":
		return fmt.Errorf("%w: to %s: not an http or https URL", ErrRedirect, withoutSecrets(to))
	case from.Scheme == "https" && to.Scheme == "http":
		return fmt.Errorf("%w: to %s: from https to http", ErrRedirect, withoutSecrets(to))
	case host != strings.ToLower(via[0].URL.Host) && !c.redirectHosts[host]:
		return fmt.Errorf("%w: to %s: host %s is neither the API's (%s) nor in AllowRedirectHosts",
			ErrRedirect, withoutSecrets(to), to.Host, via[0].URL.Host)
	case limit && len(via) >= maxRedirects:
		return fmt.Errorf("%w: to %s: stopped after %d redirects", ErrRedirect, withoutSecrets(to), len(via))
	}
	return nil
}

func (c *client) stats() ClientStats {
	return ClientStats{
		Requests: map[string]int64{
			EndpointSearchByDate: c.searches.Load(),
			EndpointItems:        c.items.Load(),
		},
		Retries: c.retries.Load(),
		Bytes:   c.bytes.Load(),
	}
}

// limiter returns the rate limiter of host.
func (c *client) limiter(host string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.hosts[host]
	if !ok {
		l = rate.NewLimiter(c.rps, c.burst)
		c.hosts[host] = l
	}
	return l
}

// errNotFound is what get returns for a 404 when notFoundOK.
var errNotFound = errors.New("hackernews: not found")

// get sends GET {base}/{path}?{query}, retrying transient failures, and
// calls read with the body of a successful (2xx) response; read's error is
// retried as transient unless it is a context's. A 404 returns errNotFound
// when notFoundOK. The error returned after retries is never marked
// transient: the caller has had its retries.
func (c *client) get(ctx context.Context, endpoint, path string, query url.Values, notFoundOK bool, read func(io.Reader) error) error {
	rawURL := c.base + "/" + path
	name := path
	if len(query) > 0 {
		rawURL += "?" + query.Encode()
		name += "?" + query.Encode()
	}
	start := time.Now()
	attempts := 0
	err := retry.DoNotify(ctx, c.policy, func(ctx context.Context) error {
		attempts++
		return c.attempt(ctx, endpoint, rawURL, notFoundOK, read)
	}, func(r retry.Retrying) {
		c.retries.Add(1)
		c.log.InfoContext(ctx, "hackernews: retrying", "request", name, "attempt", r.Attempt, "err", r.Err, "wait", r.Wait)
	})
	var unreachableErr *UnreachableError
	switch {
	case err == nil || err == errNotFound:
		return err
	case errors.As(err, &unreachableErr):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("hackernews: GET %s: %w", name, context.Cause(ctx))
	case retry.Is(err):
		// Given up: report the last failure, no longer marked transient.
		cause := err
		if marked := (*retry.Error)(nil); errors.As(err, &marked) {
			cause = marked.Err
		}
		return fmt.Errorf("hackernews: GET %s: giving up after %d attempts in %s (MaxElapsed %s): %w",
			name, attempts, time.Since(start).Round(time.Millisecond), c.policy.MaxElapsed, cause)
	}
	return fmt.Errorf("hackernews: GET %s: %w", name, err)
}

// attempt makes one request of get.
func (c *client) attempt(ctx context.Context, endpoint, rawURL string, notFoundOK bool, read func(io.Reader) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-c.sem }()

	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return err // cannot happen with a validated BaseURL
	}
	if err := c.limiter(req.URL.Host).Wait(ctx); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req = req.WithContext(actx)
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Accept", "application/json")
	// Asked for here rather than by the transport, which would then gunzip
	// out of reach of the limit on the bytes as sent.
	req.Header.Set("Accept-Encoding", "gzip")

	switch endpoint {
	case EndpointSearchByDate:
		c.searches.Add(1)
	case EndpointItems:
		c.items.Add(1)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, actx, req.URL, err)
	}
	c.answered.Store(true)
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		resp.Body.Close()
	}()
	decoded, err := responseBody(resp, c.maxBody)
	if err != nil {
		if resp.StatusCode/100 == 2 {
			return err
		}
		decoded = strings.NewReader("") // an error's status says enough
	}
	body := &countingReader{r: decoded, n: &c.bytes}

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if err := read(body); err != nil {
			var tooLarge *bodyTooLargeError
			switch {
			case ctx.Err() != nil:
				return err
			case errors.As(err, &tooLarge):
				return tooLarge // whatever read made of it
			}
			return retry.Mark(c.timedOut(actx, err))
		}
		return nil
	case code == http.StatusNotFound && notFoundOK:
		return errNotFound
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		wait := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		herr := &HTTPError{StatusCode: code, RetryAfter: wait, Body: snippet(body)}
		return retry.MarkAfter(herr, wait)
	default:
		return &HTTPError{StatusCode: code, Body: snippet(body)}
	}
}

// transportError classifies an error of http.Client.Do for a request of
// u: transient unless the context ended, the server's certificate was
// refused, or the host was unreachable before the API ever answered.
func (c *client) transportError(ctx, actx context.Context, u *url.URL, err error) error {
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
		return &UnreachableError{URL: withoutSecrets(u), Err: err}
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
func (c *client) timedOut(actx context.Context, err error) error {
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("request timed out: %w", err)
	}
	return err
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date from
// which the wait is counted from now. It returns 0 when there is none.
func retryAfter(h string, now time.Time) time.Duration {
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
		return t.Sub(now)
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
