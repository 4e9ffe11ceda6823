package httpsource

import (
	"errors"
	"strconv"
	"time"
)

// ErrNotFound is what Client.Get returns for a 404 Not Found when the
// Request says NotFoundOK: the item is gone, which is no failure.
var ErrNotFound = errors.New("httpsource: not found")

// ErrNotModified is what Client.Get returns for a 304 Not Modified to a
// conditional Request: what the URL answered last time, under the same
// validator, still holds. The body is neither read nor passed on.
var ErrNotModified = errors.New("httpsource: not modified")

// ErrBodyTooLarge is matched (with errors.Is) by the error of a response
// whose body, as sent or once gunzipped, is larger than
// Options.MaxBodyBytes. Such a request is not retried.
var ErrBodyTooLarge = errors.New("httpsource: response body too large")

// ErrRedirect is matched by the error of a redirect that is not followed:
// to a host other than the request's and those of
// Options.AllowRedirectHosts, to a scheme other than http and https, from
// https to http, or the eleventh in a row. Such a request is not retried.
var ErrRedirect = errors.New("httpsource: redirect refused")

// HTTPError is a response whose status is neither a success nor, for a
// request that allows it, 404 Not Found.
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
// — its name does not resolve, it refuses connections, or it does not
// speak TLS to an https:// URL — before the server has answered any
// request of the Client: a wrong URL or no network, which retrying does not
// fix, so it is returned at once. Once the server has answered, the same
// failures are retried like other connection errors (a server
// restarting).
type UnreachableError struct {
	// Name is the Client's (Options.Name), which starts the message.
	Name string
	// URL is the request's, without its user info and query.
	URL string
	// Err is the failure, such as "dial tcp: lookup hn.algolia.com: no
	// such host".
	Err error
}

// Error returns "{Name}: cannot reach {URL}: {Err}".
func (e *UnreachableError) Error() string {
	return e.Name + ": cannot reach " + e.URL + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *UnreachableError) Unwrap() error { return e.Err }
