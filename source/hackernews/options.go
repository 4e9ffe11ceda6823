package hackernews

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tidemark/tidemark/source/httpsource"
)

// Defaults of Options.
const (
	DefaultBaseURL = "https://hn.algolia.com/api/v1"
	DefaultTag     = "story"
	// AllTags, as Options.Tag, lists every kind of item: stories, polls,
	// jobs, comments… (no tags parameter at all).
	AllTags                  = "all"
	DefaultMaxResults        = 500
	DefaultRequestsPerSecond = 2
	DefaultBurst             = httpsource.DefaultBurst
	DefaultConcurrency       = httpsource.DefaultConcurrency
	DefaultTimeout           = httpsource.DefaultTimeout
	DefaultMaxElapsed        = httpsource.DefaultMaxElapsed
	// DefaultMaxBodyBytes is 16 MiB: the largest threads known are under
	// 1 MB, a listing page of 1,000 hits about 1.3 MB; parsing a hostile
	// body at the bound (one long string) takes a few times its size.
	DefaultMaxBodyBytes = httpsource.DefaultMaxBodyBytes

	// MaxHitsPerPage is the largest page Algolia serves.
	MaxHitsPerPage = 1000
	// maxMaxResults bounds Options.MaxResults.
	maxMaxResults = 1_000_000
)

// Options configure a Source. A zero field takes its default; New rejects
// a field out of range.
type Options struct {
	// BaseURL is the API's root, DefaultBaseURL by default; an http or
	// https URL.
	BaseURL string
	// Tag filters the listing (Algolia's tags parameter): "story" by
	// default; "ask_hn", "show_hn", "poll", "(story,poll)" ...; AllTags
	// ("all") lists every kind of item.
	Tag string
	// MaxResults is how many threads the listing yields, newest first: 500
	// by default, at most 1,000,000.
	MaxResults int
	// HitsPerPage is the size of a listing page: min(MaxResults, 1000) by
	// default, at most 1000.
	HitsPerPage int
	// RequestsPerSecond limits the requests to each host, 2 by default
	// (Algolia allows 10,000 an hour); Burst requests may go at once after
	// a pause, 4 by default.
	RequestsPerSecond float64
	Burst             int
	// Concurrency bounds the requests in flight at once, 8 by default.
	Concurrency int
	// Timeout bounds one request, body included: 30s by default.
	Timeout time.Duration
	// MaxElapsed bounds the time spent retrying one request, 2m by
	// default: no attempt starts after it, and the request fails with its
	// last attempt's error. Timeout is at most MaxElapsed.
	MaxElapsed time.Duration
	// MaxBodyBytes bounds a response body, both as sent and once gunzipped:
	// DefaultMaxBodyBytes (16 MiB) by default. A larger body fails its
	// request at once, without retries, with an error matching
	// ErrBodyTooLarge.
	MaxBodyBytes int64
	// AllowRedirectHosts lists the hosts, besides BaseURL's, that a
	// redirect may lead to. A host is compared, case-insensitively, as a
	// URL writes it: a name or address with its port when the URL has one,
	// so 127.0.0.1:8080 and 127.0.0.1:8081 are two hosts, and
	// "example.com" matches http://example.com/… and https://example.com/…
	// but not https://example.com:8443/…. A redirect elsewhere, to a
	// scheme other than http and https, or from https to http fails its
	// request at once, without retries, with an error matching ErrRedirect.
	AllowRedirectHosts []string
	// HTTPClient makes the requests; by default a client of its own with a
	// transport of its own. The Source uses a copy of it whose
	// CheckRedirect applies AllowRedirectHosts before the client's own.
	HTTPClient *http.Client
	// Logger receives an info record of each retry (the request, the
	// attempt's number, its error and the wait before the next one) and
	// debug records of listing windows; by default nothing is logged.
	Logger *slog.Logger
}

// withDefaults returns o with its zero fields set to their defaults: the
// HTTP client's are the kit's (httpsource.Options.WithDefaults) but for
// RequestsPerSecond.
func (o Options) withDefaults() Options {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	if o.MaxResults == 0 {
		o.MaxResults = DefaultMaxResults
	}
	if o.HitsPerPage == 0 && o.MaxResults > 0 {
		o.HitsPerPage = min(o.MaxResults, MaxHitsPerPage)
	}
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = DefaultRequestsPerSecond
	}
	h := o.http().WithDefaults()
	o.Burst, o.Concurrency, o.Timeout, o.MaxElapsed = h.Burst, h.Concurrency, h.Timeout, h.MaxElapsed
	o.MaxBodyBytes, o.HTTPClient, o.Logger = h.MaxBodyBytes, h.HTTPClient, h.Logger
	return o
}

// http returns the options of the Source's HTTP client.
func (o Options) http() httpsource.Options {
	return httpsource.Options{
		Name: "hackernews", UserAgent: UserAgent, Accept: "application/json",
		RequestsPerSecond: o.RequestsPerSecond, Burst: o.Burst, Concurrency: o.Concurrency,
		Timeout: o.Timeout, MaxElapsed: o.MaxElapsed, MaxBodyBytes: o.MaxBodyBytes,
		AllowRedirectHosts: o.AllowRedirectHosts, HTTPClient: o.HTTPClient, Logger: o.Logger,
	}
}

// validate checks options that had their defaults applied.
func (o Options) validate() error {
	u, err := url.Parse(o.BaseURL)
	switch {
	case err != nil:
		return fmt.Errorf("hackernews: BaseURL %q is not a URL: %w", o.BaseURL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("hackernews: BaseURL must be an http or https URL, got %q", o.BaseURL)
	case u.Host == "":
		return fmt.Errorf("hackernews: BaseURL must name a host, got %q", o.BaseURL)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("hackernews: BaseURL must have no query or fragment, got %q", o.BaseURL)
	case o.MaxResults < 1 || o.MaxResults > maxMaxResults:
		return fmt.Errorf("hackernews: MaxResults must be between 1 and %d, got %d", maxMaxResults, o.MaxResults)
	case o.HitsPerPage < 1 || o.HitsPerPage > MaxHitsPerPage:
		return fmt.Errorf("hackernews: HitsPerPage must be between 1 and %d, got %d", MaxHitsPerPage, o.HitsPerPage)
	}
	return o.http().Validate()
}
