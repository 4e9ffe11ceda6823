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
	kept  int // bytes in pages
}

// keptPage is a listing page's last success.
type keptPage struct {
	body   []byte
	header http.Header
}

// maxKeptPages bounds the bytes of the listing pages a JSONSource keeps
// for their 304s: past it, pages are asked for unconditionally.
const maxKeptPages = 2 << 20

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

// page gets a listing page, conditionally: with the validators of the
// page it kept (its own: a Client shared with another source answers
// for its pages), a 304 reads that page's body and headers again.
func (s *JSONSource) page(ctx context.Context, u string) (any, *Response, error) {
	s.mu.Lock()
	kept, ok := s.pages[u]
	s.mu.Unlock()
	h := http.Header{}
	if ok {
		if v := kept.header.Get("ETag"); v != "" {
			h.Set("If-None-Match", v)
		} else if v := kept.header.Get("Last-Modified"); v != "" {
			h.Set("If-Modified-Since", v)
		}
	}
	var (
		body []byte
		resp *Response
	)
	err := s.c.Get(ctx, Request{URL: u, Endpoint: "list", Header: h}, func(r *Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		body, resp = b, r
		return nil
	})
	switch {
	case errors.Is(err, ErrNotModified) && ok:
		body, resp = kept.body, &Response{StatusCode: http.StatusNotModified, Header: kept.header, Body: bytes.NewReader(kept.body)}
	case err != nil:
		return nil, nil, err
	default:
		s.keep(u, body, resp.Header)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var page any
	if err := dec.Decode(&page); err != nil {
		return nil, nil, fmt.Errorf("httpsource: listing page %s: %w", u, err)
	}
	return page, resp, nil
}

// keep keeps a page's body and headers for its next 304, within
// maxKeptPages.
func (s *JSONSource) keep(u string, body []byte, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.pages[u]; ok {
		s.kept -= len(old.body)
		delete(s.pages, u)
	}
	if h.Get("ETag") == "" && h.Get("Last-Modified") == "" || s.kept+len(body) > maxKeptPages {
		return
	}
	s.pages[u] = keptPage{body: body, header: h.Clone()}
	s.kept += len(body)
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

// MarshalJSON returns the item's JSON. An item the server answered 304
// for has no body: MarshalJSON fails then, rather than write null; Decode
// asks for the body.
func (it Item) MarshalJSON() ([]byte, error) {
	if it.Raw == nil {
		return nil, errors.New("httpsource: the item's body was not sent (304 Not Modified): read it with Item.Decode")
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
		f = tidemark.Fetched[Item]{Exists: true, Value: Item{Raw: b, s: s, key: key}, Fingerprint: etagPrint(r.Header.Get("ETag"))}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return tidemark.Fetched[Item]{}, nil
	case errors.Is(err, ErrNotModified):
		v, _ := s.c.validator(u)
		if v.etag == "" {
			// Not modified since a Last-Modified, of one-second grain:
			// no fingerprint to trust, so the body is asked for.
			s.c.Forget(u)
			return s.Get(ctx, key)
		}
		return tidemark.Fetched[Item]{Exists: true, Value: Item{s: s, key: key}, Fingerprint: etagPrint(v.etag)}, nil
	case err != nil:
		return tidemark.Fetched[Item]{}, err
	}
	return f, nil
}

// etagPrint is the fingerprint of an ETag: nil without one (the engine
// then fingerprints the body). Last-Modified is no fingerprint: two
// versions within a second share it.
func etagPrint(etag string) []byte {
	if etag == "" {
		return nil
	}
	return []byte("etag:" + etag)
}
