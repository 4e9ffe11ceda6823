package hackernews

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/tidemark/tidemark"
)

// windowCap is how many hits of one query Algolia serves, whatever the
// page size (its paginationLimitedTo): the pages of a query stop there.
const windowCap = 1000

// searchPage is the part of a search_by_date response the listing reads.
// The hit fields are kept raw, to be judged one by one.
type searchPage struct {
	Hits    []searchHit `json:"hits"`
	NbHits  *int        `json:"nbHits"`
	NbPages *int        `json:"nbPages"`
}

type searchHit struct {
	ObjectID   json.RawMessage `json:"objectID"`
	CreatedAtI json.RawMessage `json:"created_at_i"`
	UpdatedAt  json.RawMessage `json:"updated_at"`
}

// list yields the keys of the newest stories, newest first, up to
// MaxResults; see the package documentation for the windows.
func (s *Source) list(ctx context.Context, yield func(tidemark.Listed[string], error) bool) {
	l := &lister{s: s, ctx: ctx, yield: yield, seen: make(map[int64]int64)}
	l.run()
}

// lister is one listing.
type lister struct {
	s     *Source
	ctx   context.Context
	yield func(tidemark.Listed[string], error) bool
	// seen holds the ids listed, with their created_at_i (unknownTime when
	// the hit had none): hits repeat when the data shifts between pages,
	// and a boundary second's query repeats those its window had. Ids
	// created in or after a window's bound cannot come back, and are
	// forgotten.
	seen    map[int64]int64
	yielded int
}

const unknownTime = math.MinInt64

// maxRestarts bounds the readings of a query again because stories left
// it between its pages.
const maxRestarts = 3

// tally counts the hits of a query: how many, how many were new, and the
// oldest creation second among them.
type tally struct {
	hits, fresh int
	oldest      int64
	haveOldest  bool
}

func (l *lister) fail(err error) { l.yield(tidemark.Listed[string]{}, err) }

// take yields the new hits of p, counting them in t; it reports whether
// to go on.
func (l *lister) take(p *searchPage, where string, t *tally) bool {
	for i, h := range p.Hits {
		t.hits++
		id, err := objectID(h.ObjectID)
		if err != nil {
			l.fail(fmt.Errorf("hackernews: listing: %s, hit %d: %w", where, i, err))
			return false
		}
		created, ok := unixSeconds(h.CreatedAtI)
		if ok && (!t.haveOldest || created < t.oldest) {
			t.oldest, t.haveOldest = created, true
		}
		if _, dup := l.seen[id]; dup {
			continue
		}
		if !ok {
			created = unknownTime
		}
		l.seen[id] = created
		t.fresh++
		if !l.yield(tidemark.Listed[string]{Key: strconv.FormatInt(id, 10), Ordinal: ordinal(h)}, nil) {
			return false
		}
		if l.yielded++; l.yielded >= l.s.opts.MaxResults {
			return false
		}
	}
	return true
}

// query pages through the hits of filter, up to the window cap, taking
// them; first, when set, is its first page, asked for already. It returns
// the query's tally and nbHits (-1 when the API did not say), and whether
// to go on.
func (l *lister) query(filter, name string, first *searchPage) (tally, int, bool) {
	hpp := l.s.opts.HitsPerPage
	var t tally
	nbHits, restarts := -1, 0
	for page := 0; ; page++ {
		p := first
		first = nil
		if p == nil {
			var err error
			if p, err = l.s.searchPage(l.ctx, page, filter); err != nil {
				l.fail(err)
				return t, nbHits, false
			}
		}
		if p.NbHits != nil {
			if nbHits >= 0 && *p.NbHits < nbHits && len(p.Hits) > 0 {
				// A story left the query since an earlier page: the
				// pages after it shifted up, and one may have moved onto
				// a page read already. The query is read again from its
				// first page; the ids seen are skipped.
				if restarts++; restarts > maxRestarts {
					l.fail(tidemark.Retryable(fmt.Errorf("hackernews: listing: %s: the stories changed under %d readings of it in a row", name, restarts)))
					return t, nbHits, false
				}
				nbHits, t.hits, page = -1, 0, -1
				continue
			}
			nbHits = *p.NbHits
		}
		if !l.take(p, fmt.Sprintf("%s, page %d", name, page), &t) {
			return t, nbHits, false
		}
		last := len(p.Hits) < hpp ||
			(p.NbPages != nil && page+1 >= *p.NbPages) ||
			(page+1)*hpp >= windowCap ||
			(nbHits >= 0 && t.hits >= nbHits)
		if last {
			return t, nbHits, true
		}
	}
}

// run reads the windows: the first holds every story, each next one those
// created before the oldest second of the one before. When a window ends
// inside a second, with more stories of that second than it could hold,
// those are asked for by a query of that second alone.
func (l *lister) run() {
	filter := ""
	var first *searchPage
	for n := 0; ; n++ {
		t, nbHits, ok := l.query(filter, fmt.Sprintf("window %d", n), first)
		if !ok {
			return
		}
		more := t.hits >= windowCap
		if nbHits >= 0 {
			more = nbHits > t.hits
		}
		switch {
		case !more:
			return
		case t.fresh == 0:
			return // the data ran out before the count said
		case !t.haveOldest:
			l.fail(fmt.Errorf("%w: listing: hits without created_at_i; cannot page past %d hits", ErrMalformed, t.hits))
			return
		}
		// The next window's first page, asked for now, counts the stories
		// created before the oldest second seen: when that leaves hits of
		// this window's query unread, they were created in that second.
		bound := t.oldest
		filter = "created_at_i<" + strconv.FormatInt(bound, 10)
		var err error
		if first, err = l.s.searchPage(l.ctx, 0, filter); err != nil {
			l.fail(err)
			return
		}
		if nbHits < 0 || first.NbHits == nil || nbHits-t.hits > *first.NbHits {
			if !l.second(bound) {
				return
			}
		}
		maps.DeleteFunc(l.seen, func(_, created int64) bool { return created >= bound })
		l.s.log.DebugContext(l.ctx, "hackernews: next listing window", "created_at_i_below", bound, "listed", l.yielded)
	}
}

// second takes the stories created in the second at; it reports whether
// to go on.
func (l *lister) second(at int64) bool {
	t, nbHits, ok := l.query("created_at_i="+strconv.FormatInt(at, 10), fmt.Sprintf("second %d", at), nil)
	if ok && (nbHits > t.hits || nbHits < 0 && t.hits >= windowCap) {
		// Algolia serves 1,000 hits of a query: past them, nothing
		// narrower than a second can be asked for.
		l.fail(fmt.Errorf("hackernews: listing: more than %d stories share created_at_i %d; cannot page past them", windowCap, at))
		return false
	}
	return ok
}

// searchPage gets one page of the hits that match filter (a numericFilters
// value; empty for every hit).
func (s *Source) searchPage(ctx context.Context, page int, filter string) (*searchPage, error) {
	q := url.Values{
		"hitsPerPage": {strconv.Itoa(s.opts.HitsPerPage)},
		"page":        {strconv.Itoa(page)},
	}
	if s.opts.Tag != AllTags {
		q.Set("tags", s.opts.Tag)
	}
	if filter != "" {
		q.Set("numericFilters", filter)
	}
	var p searchPage
	err := s.c.get(ctx, EndpointSearchByDate, EndpointSearchByDate, q, false, func(r io.Reader) error {
		p = searchPage{}
		if err := json.NewDecoder(r).Decode(&p); err != nil {
			var syntaxErr *json.SyntaxError
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &syntaxErr) || errors.As(err, &typeErr) {
				return fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			return fmt.Errorf("reading search results: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// objectID parses a hit's objectID: an item id as a JSON string (as
// Algolia sends it) or number.
func objectID(raw json.RawMessage) (int64, error) {
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, fmt.Errorf("%w: objectID %s: %w", ErrMalformed, raw, err)
		}
	}
	id, err := strconv.ParseInt(text, 10, 64)
	if err != nil || id <= 0 {
		if raw == nil {
			return 0, fmt.Errorf("%w: hit has no objectID", ErrMalformed)
		}
		return 0, fmt.Errorf("%w: objectID %s is not an item id", ErrMalformed, raw)
	}
	return id, nil
}

// unixSeconds parses created_at_i.
func unixSeconds(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// ordinal is a hit's updated_at in Unix microseconds; created_at_i when it
// has none; NoOrdinal when it has neither.
func ordinal(h searchHit) tidemark.Ordinal {
	var updated string
	if json.Unmarshal(h.UpdatedAt, &updated) == nil {
		if t, err := time.Parse(time.RFC3339Nano, updated); err == nil {
			return tidemark.Ordinal(t.UnixMicro())
		}
	}
	if created, ok := unixSeconds(h.CreatedAtI); ok {
		return tidemark.Ordinal(created * 1_000_000)
	}
	return tidemark.NoOrdinal
}
