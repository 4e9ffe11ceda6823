package hackernews

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
)

// Source is the HackerNews source: it lists the newest threads of a tag
// with Algolia's search_by_date and gets each thread's comment tree with
// items/{id}. Keys are item ids in decimal. It is safe for concurrent use.
type Source struct {
	opts Options
	log  *slog.Logger
	c    *client
}

var (
	_ tidemark.Source[string, Thread] = (*Source)(nil)
	_ tidemark.OrdinalProvider        = (*Source)(nil)
	_ tidemark.OptionsDescriber       = (*Source)(nil)
)

// New returns a Source with opts, their zero fields set to the defaults; it
// fails when a field is out of range.
func New(opts Options) (*Source, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	c, err := newClient(o)
	if err != nil {
		return nil, err
	}
	return &Source{opts: o, log: o.Logger, c: c}, nil
}

// List yields the ids of the newest MaxResults threads with the tag,
// newest first, each once, with updated_at (in Unix microseconds) as
// ordinal. A request that still fails after its retries is yielded as the
// error, which ends the listing.
func (s *Source) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		s.list(ctx, yield)
	}
}

// Get fetches thread id with its comment tree. A thread that is gone (a
// 404, an empty body or null) is returned with Exists false. The error of
// a request that still fails after its retries, or that fails for good (a
// 4xx), is not marked retryable: the row is recorded as failed and retried
// on the next update.
func (s *Source) Get(ctx context.Context, id string) (tidemark.Fetched[Thread], error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != id {
		return tidemark.Fetched[Thread]{}, fmt.Errorf("hackernews: Get: %q is not an item id", id)
	}
	var (
		thread Thread
		exists bool
	)
	err = s.c.get(ctx, EndpointItems, EndpointItems+"/"+id, nil, true, func(r io.Reader) error {
		var err error
		thread, exists, err = ParseItem(r)
		return err
	})
	switch {
	case errors.Is(err, httpsource.ErrNotFound):
		return tidemark.Fetched[Thread]{}, nil
	case err != nil:
		return tidemark.Fetched[Thread]{}, err
	case !exists:
		return tidemark.Fetched[Thread]{}, nil
	case thread.ID != id:
		return tidemark.Fetched[Thread]{}, fmt.Errorf("hackernews: GET items/%s: %w: the response is item %s", id, ErrMalformed, thread.ID)
	}
	return tidemark.Fetched[Thread]{Exists: true, Value: thread}, nil
}

// ProvidesOrdinal reports true: listed ordinals are updated_at, which
// grows whenever a thread changes.
func (s *Source) ProvidesOrdinal() bool { return true }

// DescribeOptions implements tidemark.OptionsDescriber: it returns the
// options that decide which rows the source lists, so that a change of
// them can be told from a change of the data: "api", the API's URL
// (without user info or query, which may hold secrets), "tag", the
// listing's tag, and "max_results", how many threads are listed, in
// decimal. All are as New set them, defaults applied.
func (s *Source) DescribeOptions() map[string]string {
	api := s.opts.BaseURL
	if u, err := url.Parse(api); err == nil {
		u.User, u.RawQuery, u.Fragment = nil, "", ""
		api = u.String()
	}
	return map[string]string{
		"api":         api,
		"tag":         s.opts.Tag,
		"max_results": strconv.Itoa(s.opts.MaxResults),
	}
}

// Stats returns what the source asked of the API so far.
func (s *Source) Stats() ClientStats { return s.c.stats() }
