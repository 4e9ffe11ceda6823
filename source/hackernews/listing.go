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
	hpp := s.opts.HitsPerPage
	// seen holds the ids listed, with their created_at_i (unknownTime when
	// the hit had none). Before each window, ids newer than the window's
	// bound are forgotten: they cannot come back.
	const unknownTime = math.MinInt64
	seen := make(map[int64]int64)
	yielded := 0
	bound, bounded := int64(0), false
	fail := func(err error) { yield(tidemark.Listed[string]{}, err) }

	for window := 0; ; window++ {
		oldest, haveOldest := int64(math.MaxInt64), false
		hits, fresh, nbHits := 0, 0, -1
		for page := 0; ; page++ {
			p, err := s.searchPage(ctx, page, bound, bounded)
			if err != nil {
				fail(err)
				return
			}
			if p.NbHits != nil {
				nbHits = *p.NbHits
			}
			for i, h := range p.Hits {
				hits++
				id, err := objectID(h.ObjectID)
				if err != nil {
					fail(fmt.Errorf("hackernews: listing: window %d, page %d, hit %d: %w", window, page, i, err))
					return
				}
				created, ok := unixSeconds(h.CreatedAtI)
				if ok && created <= oldest {
					oldest, haveOldest = created, true
				}
				if _, dup := seen[id]; dup {
					continue
				}
				if !ok {
					created = unknownTime
				}
				seen[id] = created
				fresh++
				if !yield(tidemark.Listed[string]{Key: strconv.FormatInt(id, 10), Ordinal: ordinal(h)}, nil) {
					return
				}
				if yielded++; yielded >= s.opts.MaxResults {
					return
				}
			}
			last := len(p.Hits) < hpp ||
				(p.NbPages != nil && page+1 >= *p.NbPages) ||
				(page+1)*hpp >= windowCap ||
				(nbHits >= 0 && hits >= nbHits)
			if last {
				break
			}
		}

		more := hits >= windowCap
		if nbHits >= 0 {
			more = nbHits > hits
		}
		switch {
		case !more:
			return
		case fresh == 0 && hits >= windowCap:
			// Every hit of a full window was listed: they all share the
			// bound's second, and a narrower window cannot be asked for.
			fail(fmt.Errorf("hackernews: listing: more than %d stories share created_at_i %d; cannot page past them", windowCap, oldest))
			return
		case fresh == 0:
			return // the data ran out before the count said
		case !haveOldest:
			fail(fmt.Errorf("%w: listing: hits without created_at_i; cannot page past %d hits", ErrMalformed, hits))
			return
		}
		bound, bounded = oldest, true
		maps.DeleteFunc(seen, func(_, created int64) bool { return created > bound })
		s.log.DebugContext(ctx, "hackernews: next listing window", "created_at_i_max", bound, "listed", yielded)
	}
}

// searchPage gets one page of a window: every hit when !bounded, else the
// hits created at or before bound.
func (s *Source) searchPage(ctx context.Context, page int, bound int64, bounded bool) (*searchPage, error) {
	q := url.Values{
		"tags":        {s.opts.Tag},
		"hitsPerPage": {strconv.Itoa(s.opts.HitsPerPage)},
		"page":        {strconv.Itoa(page)},
	}
	if bounded {
		q.Set("numericFilters", "created_at_i<="+strconv.FormatInt(bound, 10))
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
