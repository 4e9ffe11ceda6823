package httpsource

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"
)

// The defaults of Options.
const (
	DefaultName              = "httpsource"
	DefaultUserAgent         = "tidemark"
	DefaultRequestsPerSecond = 10
	DefaultBurst             = 4
	DefaultConcurrency       = 8
	DefaultTimeout           = 30 * time.Second
	DefaultMaxElapsed        = 2 * time.Minute
	DefaultMaxBodyBytes      = 16 << 20
)

// Options configure a Client. A zero field takes its default; New rejects
// a field out of range.
type Options struct {
	// Name starts the Client's error messages and names it in its log
	// records: the source's, such as "hackernews". DefaultName by default.
	Name string
	// UserAgent is sent with every request; DefaultUserAgent by default.
	UserAgent string
	// Accept is the Accept header of a request that gives none;
	// "application/json" by default.
	Accept string
	// RequestsPerSecond limits the requests to each host,
	// DefaultRequestsPerSecond by default; Burst requests may go at once
	// after a pause, DefaultBurst by default.
	RequestsPerSecond float64
	Burst             int
	// Concurrency bounds the requests in flight at once, DefaultConcurrency
	// by default.
	Concurrency int
	// Timeout bounds one attempt, body included: DefaultTimeout by default,
	// and at most MaxElapsed.
	Timeout time.Duration
	// MaxElapsed bounds the time spent retrying one request,
	// DefaultMaxElapsed by default: no attempt starts after it, and the
	// request fails with its last attempt's error.
	MaxElapsed time.Duration
	// MaxBodyBytes bounds a response body, both as sent and once gunzipped:
	// DefaultMaxBodyBytes (16 MiB) by default. A larger body fails its
	// request at once, without retries, with an error matching
	// ErrBodyTooLarge.
	MaxBodyBytes int64
	// AllowRedirectHosts lists the hosts, besides the request's own, that
	// a redirect may lead to. A host is compared, case-insensitively, as a
	// URL writes it: a name or address with its port when the URL has one,
	// so 127.0.0.1:8080 and 127.0.0.1:8081 are two hosts. A redirect
	// elsewhere, to a scheme other than http and https, or from https to
	// http fails its request at once, without retries, with an error
	// matching ErrRedirect.
	AllowRedirectHosts []string
	// HTTPClient makes the requests; by default a client of its own with a
	// transport of its own. The Client uses a copy of it whose
	// CheckRedirect applies AllowRedirectHosts before the client's own.
	HTTPClient *http.Client
	// Logger receives an info record of each retry (the request, the
	// attempt's number, its error and the wait before the next one); by
	// default nothing is logged.
	Logger *slog.Logger
}

// WithDefaults returns o with its zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Accept == "" {
		o.Accept = "application/json"
	}
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxElapsed == 0 {
		o.MaxElapsed = DefaultMaxElapsed
	}
	if o.MaxElapsed > 0 && o.Timeout > o.MaxElapsed {
		// One attempt must not outlast the time allowed for them all.
		o.Timeout = o.MaxElapsed
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(o.Concurrency, 2)
		o.HTTPClient = &http.Client{Transport: t}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks options that had their defaults applied.
func (o Options) Validate() error {
	switch {
	case math.IsNaN(o.RequestsPerSecond) || o.RequestsPerSecond <= 0:
		return fmt.Errorf("%s: RequestsPerSecond must be positive, got %g", o.Name, o.RequestsPerSecond)
	case o.Burst < 1:
		return fmt.Errorf("%s: Burst must be at least 1, got %d", o.Name, o.Burst)
	case o.Concurrency < 1:
		return fmt.Errorf("%s: Concurrency must be at least 1, got %d", o.Name, o.Concurrency)
	case o.Timeout < 0:
		return fmt.Errorf("%s: Timeout must not be negative, got %s", o.Name, o.Timeout)
	case o.MaxElapsed < 0:
		return fmt.Errorf("%s: MaxElapsed must not be negative, got %s", o.Name, o.MaxElapsed)
	case o.MaxBodyBytes < 0:
		return fmt.Errorf("%s: MaxBodyBytes must not be negative, got %d", o.Name, o.MaxBodyBytes)
	}
	return nil
}
