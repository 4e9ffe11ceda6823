package hackernews

import (
	"errors"

	"github.com/tidemark/tidemark/source/httpsource"
)

// ErrMalformed is matched (with errors.Is) by the error of a response body
// that is not what the API sends: bad or truncated JSON, an item without an
// id, a listing hit whose objectID is not an item id.
var ErrMalformed = errors.New("hackernews: malformed response")

// ErrBodyTooLarge is matched by the error of a response whose body, as
// sent or once gunzipped, is larger than Options.MaxBodyBytes. Such a
// request is not retried.
var ErrBodyTooLarge = httpsource.ErrBodyTooLarge

// ErrRedirect is matched by the error of a redirect that is not followed:
// to a host other than BaseURL's and those of Options.AllowRedirectHosts,
// to a scheme other than http and https, from https to http, or the
// eleventh in a row. Such a request is not retried.
var ErrRedirect = httpsource.ErrRedirect

// HTTPError is a response whose status is neither a success nor, for an
// item, 404 Not Found.
type HTTPError = httpsource.HTTPError

// UnreachableError is the error of a request whose host cannot be reached
// — its name does not resolve, or it refuses connections — before the API
// has answered any request of the Source: a wrong URL or no network, which
// retrying does not fix, so it is returned at once. Once the API has
// answered, the same failures are retried like other connection errors (a
// server restarting).
type UnreachableError = httpsource.UnreachableError
