package hackernews

import (
	"context"
	"io"
	"net/url"

	"github.com/tidemark/tidemark/source/httpsource"
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

// client asks the API's endpoints through the HTTP source kit's client,
// which brings the rate limit, the bound on requests in flight, the
// timeouts and the retries.
type client struct {
	base string
	c    *httpsource.Client
}

func newClient(o Options) (*client, error) {
	c, err := httpsource.New(o.http())
	if err != nil {
		return nil, err
	}
	return &client{base: o.BaseURL, c: c}, nil
}

func (c *client) stats() ClientStats {
	st := c.c.Stats()
	return ClientStats{
		Requests: map[string]int64{
			EndpointSearchByDate: st.Requests[EndpointSearchByDate],
			EndpointItems:        st.Requests[EndpointItems],
		},
		Retries: st.Retries,
		Bytes:   st.Bytes,
	}
}

// get sends GET {base}/{path}?{query}, retrying transient failures, and
// calls read with the body of a successful (2xx) response; read's error is
// retried as transient unless it is a context's. A 404 returns httpsource.ErrNotFound
// when notFoundOK. The error returned after retries is never marked
// transient: the caller has had its retries.
func (c *client) get(ctx context.Context, endpoint, path string, query url.Values, notFoundOK bool, read func(io.Reader) error) error {
	rawURL := c.base + "/" + path
	name := path
	if len(query) > 0 {
		rawURL += "?" + query.Encode()
		name += "?" + query.Encode()
	}
	return c.c.Get(ctx, httpsource.Request{URL: rawURL, Name: name, Endpoint: endpoint, NotFoundOK: notFoundOK},
		func(r *httpsource.Response) error { return read(r.Body) })
}
