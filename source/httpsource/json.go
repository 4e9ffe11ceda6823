package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tidemark/tidemark"
)

// JSONOptions configure a JSONSource: where the listing is, where in it
// the items and in each item the key and the ordinal are, and the URL of
// one item.
type JSONOptions struct {
	// ListURL is the listing's first page.
	ListURL string
	// Items is the JSON pointer (RFC 6901) of a page's array of items:
	// "" when the page is the array, "/data" for {"data": [...]}.
	Items string
	// Key is the JSON pointer of an item's key in a listed item, such as
	// "/id": a string or a number.
	Key string
	// Ordinal, when set, is the JSON pointer of an item's ordinal in a
	// listed item: an integer, or an RFC 3339 time (taken in µs), that
	// grows whenever the item changes. Without it every item is asked for
	// on every update, conditionally.
	Ordinal string
	// ItemURL is the URL of one item, with "{key}" where its key goes
	// (escaped as a path segment): "https://api.example.com/items/{key}".
	ItemURL string
	// Pages says how to get the next page; LinkNext() by default.
	Pages Pager
}

// JSONSource is a tidemark.Source over a JSON REST API, configured rather
// than written: it pages through a listing, and gets each item from its own
// URL. Both are asked conditionally: a page or item that answered with an
// ETag or Last-Modified is asked with If-None-Match / If-Modified-Since
// next time, and a 304 costs no body. An item's ETag is its fingerprint,
// so an unchanged item is not processed again.
type JSONSource struct {
	c *Client
	o JSONOptions
	// pages holds the last success of each listing page, for its 304s:
	// its body, and its headers (a Link to the next page).
	mu    sync.Mutex
	pages map[string]keptPage
}

// keptPage is a listing page's last success.
type keptPage struct {
	body   []byte
	header http.Header
}

var _ tidemark.Source[string, Item] = (*JSONSource)(nil)

// NewJSONSource returns a JSONSource asking through c.
func NewJSONSource(c *Client, o JSONOptions) (*JSONSource, error) {
	for _, p := range []struct{ what, ptr string }{{"Items", o.Items}, {"Key", o.Key}, {"Ordinal", o.Ordinal}} {
		if err := checkPointer(p.what, p.ptr); err != nil {
			return nil, err
		}
	}
	switch {
	case o.Key == "":
		return nil, errors.New("httpsource: JSONOptions.Key is required")
	case !strings.Contains(o.ItemURL, "{key}"):
		return nil, fmt.Errorf("httpsource: JSONOptions.ItemURL %q has no {key}", o.ItemURL)
	}
	if _, err := url.Parse(o.ListURL); err != nil {
		return nil, fmt.Errorf("httpsource: JSONOptions.ListURL: %w", err)
	}
	if o.Pages == nil {
		o.Pages = LinkNext()
	}
	return &JSONSource{c: c, o: o, pages: make(map[string]keptPage)}, nil
}

// ProvidesOrdinal says whether the listing gives ordinals.
func (s *JSONSource) ProvidesOrdinal() bool { return s.o.Ordinal != "" }

// maxPages bounds a listing: a Pager that never ends is an error, not a
// loop.
const maxPages = 1_000_000

// List pages through the listing, yielding each item's key and ordinal.
func (s *JSONSource) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		next := s.o.ListURL
		seen := make(map[string]bool)
		for n := 0; next != ""; n++ {
			if n >= maxPages || seen[next] {
				yield(tidemark.Listed[string]{}, fmt.Errorf("httpsource: listing: page %s comes again: the pages loop", next))
				return
			}
			seen[next] = true
			page, resp, err := s.page(ctx, next)
			if err != nil {
				yield(tidemark.Listed[string]{}, err)
				return
			}
			raw, ok := resolve(page, s.o.Items)
			items, isArray := raw.([]any)
			if !ok || !isArray {
				yield(tidemark.Listed[string]{}, fmt.Errorf("httpsource: listing page %s: no array of items at %q", next, s.o.Items))
				return
			}
			for i, it := range items {
				l, err := s.listed(it)
				if err != nil {
					yield(tidemark.Listed[string]{}, fmt.Errorf("httpsource: listing page %s, item %d: %w", next, i, err))
					return
				}
				if !yield(l, nil) {
					return
				}
			}
			cur, _ := url.Parse(next)
			if next, err = s.o.Pages.Next(cur, resp, page, len(items)); err != nil {
				yield(tidemark.Listed[string]{}, err)
				return
			}
		}
	}
}

// listed reads an item of a page.
func (s *JSONSource) listed(it any) (tidemark.Listed[string], error) {
	k, ok := resolve(it, s.o.Key)
	key, isKey := scalarText(k)
	if !ok || !isKey {
		return tidemark.Listed[string]{}, fmt.Errorf("no key (a string or a number) at %q", s.o.Key)
	}
	l := tidemark.Listed[string]{Key: key, Ordinal: tidemark.NoOrdinal}
	if s.o.Ordinal == "" {
		return l, nil
	}
	v, ok := resolve(it, s.o.Ordinal)
	switch v := v.(type) {
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return l, fmt.Errorf("the ordinal %s at %q is not an integer", v, s.o.Ordinal)
		}
		l.Ordinal = tidemark.Ordinal(n)
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return l, fmt.Errorf("the ordinal %q at %q is neither an integer nor an RFC 3339 time", v, s.o.Ordinal)
		}
		l.Ordinal = tidemark.Ordinal(t.UnixMicro())
	case nil:
		if ok {
			return l, nil // null: unknown
		}
		return l, fmt.Errorf("no ordinal at %q", s.o.Ordinal)
	default:
		return l, fmt.Errorf("the ordinal at %q is %T", s.o.Ordinal, v)
	}
	return l, nil
}

// page gets a listing page, conditionally: a 304 reads the body kept from
// its last success.
func (s *JSONSource) page(ctx context.Context, u string) (any, *Response, error) {
	var (
		body []byte
		resp *Response
	)
	err := s.c.Get(ctx, Request{URL: u, Endpoint: "list", Conditional: true}, func(r *Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		body, resp = b, r
		return nil
	})
	switch {
	case errors.Is(err, ErrNotModified):
		s.mu.Lock()
		kept, ok := s.pages[u]
		s.mu.Unlock()
		if !ok {
			// Validators without the page (forgotten): ask in full.
			s.c.Forget(u)
			return s.page(ctx, u)
		}
		body, resp = kept.body, &Response{StatusCode: http.StatusNotModified, Header: kept.header, Body: bytes.NewReader(kept.body)}
	case err != nil:
		return nil, nil, err
	default:
		s.mu.Lock()
		s.pages[u] = keptPage{body: body, header: resp.Header.Clone()}
		s.mu.Unlock()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var page any
	if err := dec.Decode(&page); err != nil {
		return nil, nil, fmt.Errorf("httpsource: listing page %s: %w", u, err)
	}
	return page, resp, nil
}

// Item is a JSONSource row's value: an item's JSON.
type Item struct {
	// Raw is the item's body; nil when the server answered 304 (Not
	// Modified) and the body was not sent: Decode then asks for it.
	Raw json.RawMessage
	s   *JSONSource
	key string
}

// Decode decodes the item's JSON into v, asking for the body in full if
// the server did not send it (the row is processed again although its
// ETag did not move: a new logic version, a reexport).
func (it Item) Decode(ctx context.Context, v any) error {
	if it.Raw == nil && it.s != nil {
		u := it.s.itemURL(it.key)
		it.s.c.Forget(u)
		f, err := it.s.Get(ctx, it.key)
		if err != nil {
			return err
		}
		if !f.Exists {
			return fmt.Errorf("httpsource: item %s is gone", it.key)
		}
		it = f.Value
	}
	return json.Unmarshal(it.Raw, v)
}

// MarshalJSON returns the item's JSON, which the engine fingerprints when
// the server gives no ETag.
func (it Item) MarshalJSON() ([]byte, error) {
	if it.Raw == nil {
		return []byte("null"), nil
	}
	return it.Raw, nil
}

func (s *JSONSource) itemURL(key string) string {
	return strings.ReplaceAll(s.o.ItemURL, "{key}", url.PathEscape(key))
}

// Get asks for one item, conditionally; a 404 means it is gone. Its ETag
// (else Last-Modified) is its fingerprint; a 304 answers with the ETag
// sent, and no body.
func (s *JSONSource) Get(ctx context.Context, key string) (tidemark.Fetched[Item], error) {
	u := s.itemURL(key)
	var f tidemark.Fetched[Item]
	err := s.c.Get(ctx, Request{URL: u, Endpoint: "item", NotFoundOK: true, Conditional: true}, func(r *Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		if !json.Valid(b) {
			return Permanent(fmt.Errorf("item %s: the body is not JSON", key))
		}
		f = tidemark.Fetched[Item]{Exists: true, Value: Item{Raw: b, s: s, key: key}, Fingerprint: validatorOf(r.Header.Get("ETag"), r.Header.Get("Last-Modified"))}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return tidemark.Fetched[Item]{}, nil
	case errors.Is(err, ErrNotModified):
		v, _ := s.c.validator(u)
		return tidemark.Fetched[Item]{Exists: true, Value: Item{s: s, key: key}, Fingerprint: validatorOf(v.etag, v.lastModified)}, nil
	case err != nil:
		return tidemark.Fetched[Item]{}, err
	}
	return f, nil
}

// validatorOf is the fingerprint of a response's validators: nil without
// any (the engine then fingerprints the value).
func validatorOf(etag, lastModified string) []byte {
	switch {
	case etag != "":
		return []byte("etag:" + etag)
	case lastModified != "":
		return []byte("lm:" + lastModified)
	}
	return nil
}
