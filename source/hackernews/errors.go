package hackernews

import (
	"errors"
	"strconv"
	"time"
)

// ErrMalformed is matched (with errors.Is) by the error of a response body
// that is not what the API sends: bad or truncated JSON, an item without an
// id, a listing hit whose objectID is not an item id.
var ErrMalformed = errors.New("hackernews: malformed response")

// ErrBodyTooLarge is matched by the error of a response whose body, as
// sent or once gunzipped, is larger than Options.MaxBodyBytes. Such a
// request is not retried.
var ErrBodyTooLarge = errors.New("hackernews: response body too large")

// ErrRedirect is matched by the error of a redirect that is not followed:
// to a host other than BaseURL's and those of Options.AllowRedirectHosts,
// to a scheme other than http and https, from https to http, or the
// eleventh in a row. Such a request is not retried.
var ErrRedirect = errors.New("hackernews: redirect refused")

// HTTPError is a response whose status is neither a success nor, for an
// item, 404 Not Found.
type HTTPError struct {
	StatusCode int
	// RetryAfter is the wait the server asked for with Retry-After; 0 when
	// none.
	RetryAfter time.Duration
	// Body is the start of the response body, cleaned up for a message.
	Body string
}

// Error returns "HTTP 503", with the wait asked for and the body's start.
func (e *HTTPError) Error() string {
	msg := "HTTP " + strconv.Itoa(e.StatusCode)
	if e.RetryAfter > 0 {
		msg += " (Retry-After " + e.RetryAfter.String() + ")"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// UnreachableError is the error of a request whose host cannot be reached
// — its name does not resolve, or it refuses connections — before the API
// has answered any request of the Source: a wrong URL or no network, which
// retrying does not fix, so it is returned at once. Once the API has
// answered, the same failures are retried like other connection errors (a
// server restarting).
type UnreachableError struct {
	// URL is the request's, without its user info and query.
	URL string
	// Err is the failure, such as "dial tcp: lookup hn.algolia.com: no
	// such host".
	Err error
}

// Error returns "hackernews: cannot reach {URL}: {Err}".
func (e *UnreachableError) Error() string {
	return "hackernews: cannot reach " + e.URL + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *UnreachableError) Unwrap() error { return e.Err }
