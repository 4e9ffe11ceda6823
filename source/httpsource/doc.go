// Package httpsource is a kit for writing Tidemark sources over HTTP APIs:
// a polite client that a source's List and Get call, so that a source is
// its API's URLs and its parsers, and little more.
//
// A Client sends GET requests with:
//   - a rate limit per host (Options.RequestsPerSecond, Burst) and a bound
//     on the requests in flight (Concurrency);
//   - a timeout per attempt (Timeout) and a deadline for all the attempts
//     of one request (MaxElapsed);
//   - retries, with jittered exponential backoff, of 429, 408 and 5xx
//     answers (honouring Retry-After), connection errors, timeouts and
//     bodies that fail to read (truncated), each retry logged; a read
//     function marks a body that no retry fixes with Permanent;
//   - a bound on the body, as sent and once gunzipped (MaxBodyBytes);
//   - redirects only to the request's host, unless AllowRedirectHosts
//     names another, never to another scheme or from https to http;
//   - a host that cannot be reached before any answer (a wrong URL, no
//     network) reported at once as an UnreachableError;
//   - conditional requests: with Request.Conditional, the ETag or
//     Last-Modified a URL last answered with is sent back (If-None-Match,
//     If-Modified-Since) and a 304 returns ErrNotModified without a body.
//     Response.ETag serves as a fingerprint of the content.
//
// Stats counts the requests by endpoint, the retries, the bytes read and
// the 304s. source/hackernews is built on it.
//
// JSONSource indexes a simple JSON REST API with no Go code but the
// processing function: a listing URL, JSON pointers to the items of a page
// and to each item's key and ordinal, an item URL template, and a Pager —
// LinkNext (the Link header), Cursor (a cursor in the body) or PageNumber.
// Its pages and items are asked for conditionally; an item's ETag is its
// fingerprint, so an unchanged item is neither sent nor processed again.
package httpsource
