package hnfake

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

const (
	defaultHitsPerPage = 20
	maxHitsPerPage     = 1000
	// paginationLimit is Algolia's paginationLimitedTo: hits past the first
	// 1,000 of a query cannot be paged to, whatever hitsPerPage is.
	paginationLimit = 1000
)

// searchParams are the parsed search_by_date parameters.
type searchParams struct {
	hitsPerPage int
	page        int
	tags        [][]string // AND of ORs
	filters     []numericFilter
	query       string
	rawQuery    string
}

// numericFilter is one condition of numericFilters: attr op value, or
// attr:lo TO hi (op "range").
type numericFilter struct {
	attr   string
	op     string
	value  float64
	value2 float64
}

func parseSearchParams(u *url.URL) (searchParams, error) {
	q := u.Query()
	p := searchParams{hitsPerPage: defaultHitsPerPage, query: q.Get("query"), rawQuery: u.RawQuery}
	if v := q.Get("hitsPerPage"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, fmt.Errorf("hitsPerPage must be an integer between 0 and %d, got %q", maxHitsPerPage, v)
		}
		p.hitsPerPage = min(n, maxHitsPerPage)
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, fmt.Errorf("page must be a non-negative integer, got %q", v)
		}
		p.page = n
	}
	tags, err := parseTags(q.Get("tags"))
	if err != nil {
		return p, err
	}
	p.tags = tags
	for _, v := range q["numericFilters"] {
		fs, err := parseNumericFilters(v)
		if err != nil {
			return p, err
		}
		p.filters = append(p.filters, fs...)
	}
	return p, nil
}

// parseTags parses Algolia's tags syntax: a comma-separated AND list whose
// elements are a tag or a parenthesised, comma-separated OR group:
// "story,(author_pg,author_dang)".
func parseTags(s string) ([][]string, error) {
	var out [][]string
	for s != "" {
		var term string
		if s[0] == '(' {
			end := strings.IndexByte(s, ')')
			if end < 0 {
				return nil, fmt.Errorf("tags: unbalanced parenthesis in %q", s)
			}
			term, s = s[1:end], s[end+1:]
			if s != "" && s[0] != ',' {
				return nil, fmt.Errorf("tags: expected a comma after ')' in %q", s)
			}
			var group []string
			for t := range strings.SplitSeq(term, ",") {
				if t = strings.TrimSpace(t); t != "" {
					group = append(group, t)
				}
			}
			if len(group) > 0 {
				out = append(out, group)
			}
		} else {
			term, s, _ = strings.Cut(s, ",")
			if strings.ContainsAny(term, "()") {
				return nil, fmt.Errorf("tags: misplaced parenthesis in %q", term)
			}
			if term = strings.TrimSpace(term); term != "" {
				out = append(out, []string{term})
			}
			continue
		}
		s = strings.TrimPrefix(s, ",")
	}
	return out, nil
}

var filterAttrs = map[string]bool{"created_at_i": true, "points": true, "num_comments": true}

// parseNumericFilters parses a comma-separated AND list of conditions on
// created_at_i, points or num_comments: "created_at_i>=1700000000,points>5",
// or a range "created_at_i:1700000000 TO 1700086400" (bounds included).
func parseNumericFilters(s string) ([]numericFilter, error) {
	var out []numericFilter
	for cond := range strings.SplitSeq(s, ",") {
		cond = strings.TrimSpace(cond)
		if cond == "" {
			continue
		}
		f, err := parseNumericFilter(cond)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func parseNumericFilter(cond string) (numericFilter, error) {
	i := strings.IndexAny(cond, "<>=!:")
	if i <= 0 {
		return numericFilter{}, fmt.Errorf("numericFilters: cannot parse %q", cond)
	}
	f := numericFilter{attr: strings.TrimSpace(cond[:i])}
	if !filterAttrs[f.attr] {
		return f, fmt.Errorf("numericFilters: cannot filter on %q (created_at_i, points and num_comments can be)", f.attr)
	}
	rest := cond[i:]
	if rest[0] == ':' {
		lo, hi, ok := strings.Cut(rest[1:], " TO ")
		a, err1 := strconv.ParseFloat(strings.TrimSpace(lo), 64)
		b, err2 := strconv.ParseFloat(strings.TrimSpace(hi), 64)
		if !ok || err1 != nil || err2 != nil {
			return f, fmt.Errorf("numericFilters: cannot parse the range %q", cond)
		}
		f.op, f.value, f.value2 = "range", a, b
		return f, nil
	}
	for _, op := range []string{"<=", ">=", "!=", "<", ">", "="} {
		if strings.HasPrefix(rest, op) {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest[len(op):]), 64)
			if err != nil || math.IsNaN(v) {
				return f, fmt.Errorf("numericFilters: cannot parse the number in %q", cond)
			}
			f.op, f.value = op, v
			return f, nil
		}
	}
	return f, fmt.Errorf("numericFilters: unknown operator in %q", cond)
}

func (f numericFilter) match(v float64) bool {
	switch f.op {
	case "<":
		return v < f.value
	case "<=":
		return v <= f.value
	case ">":
		return v > f.value
	case ">=":
		return v >= f.value
	case "=":
		return v == f.value
	case "!=":
		return v != f.value
	default: // range
		return v >= f.value && v <= f.value2
	}
}

// createdBounds narrows the created_at_i conditions to an inclusive range of
// whole seconds, so that the listing can be searched instead of scanned.
func createdBounds(fs []numericFilter) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	for _, f := range fs {
		if f.attr != "created_at_i" {
			continue
		}
		switch f.op {
		case "<":
			hi = min(hi, int64(math.Ceil(f.value))-1)
		case "<=":
			hi = min(hi, int64(math.Floor(f.value)))
		case ">":
			lo = max(lo, int64(math.Floor(f.value))+1)
		case ">=":
			lo = max(lo, int64(math.Ceil(f.value)))
		case "=":
			lo, hi = max(lo, int64(math.Ceil(f.value))), min(hi, int64(math.Floor(f.value)))
		case "range":
			lo, hi = max(lo, int64(math.Ceil(f.value))), min(hi, int64(math.Floor(f.value2)))
		}
	}
	return lo, hi
}

func (e *entry) hasTag(tag string) bool {
	t := e.t
	switch {
	case tag == t.Type:
		return true
	case strings.HasPrefix(tag, "author_"):
		return t.Author != "" && tag[len("author_"):] == t.Author
	case strings.HasPrefix(tag, "story_"):
		return tag[len("story_"):] == strconv.FormatInt(t.ID, 10)
	case tag == derivedTag(t):
		return true
	}
	for _, x := range t.Tags {
		if x == tag {
			return true
		}
	}
	return false
}

func (e *entry) matches(p *searchParams) bool {
	if e.hidden {
		return false
	}
	for _, group := range p.tags {
		ok := false
		for _, tag := range group {
			if e.hasTag(tag) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, f := range p.filters {
		var v float64
		switch f.attr {
		case "created_at_i":
			v = float64(e.sec)
		case "points":
			v = float64(e.t.Points)
		default:
			v = float64(e.live)
		}
		if !f.match(v) {
			return false
		}
	}
	return true
}

// appendSearch appends the search_by_date body for p: the hits sorted by
// created_at_i then objectID, descending; nbHits counting every match;
// only the first 1,000 matches reachable by paging.
func (d *Dataset) appendSearch(b []byte, p *searchParams) []byte {
	b = append(b, `{"exhaustive":{"nbHits":true,"typo":true},"exhaustiveNbHits":true,"exhaustiveTypo":true,"hits":[`...)
	first := p.page * p.hitsPerPage
	if p.page > 0 && first/p.page != p.hitsPerPage { // overflow
		first = math.MaxInt
	}
	end := min(first+p.hitsPerPage, paginationLimit)
	if first > paginationLimit || first < 0 {
		end = first // nothing reachable
	}
	lo, hi := createdBounds(p.filters)
	nbHits := 0
	d.mu.RLock()
	switch {
	case lo > hi:
	case d.allMatchLocked(p):
		// Every thread in the created_at_i range matches: count by binary
		// search and touch only the page, so that paging through a large
		// dataset by windows costs each page its size, not the dataset's.
		start := sort.Search(len(d.order), func(i int) bool { return d.order[i].sec <= hi })
		stop := sort.Search(len(d.order), func(i int) bool { return d.order[i].sec < lo })
		nbHits = stop - start
		for i := first; i < min(end, nbHits); i++ {
			if i > first {
				b = append(b, ',')
			}
			b = appendHit(b, d.order[start+i])
		}
	default:
		start := sort.Search(len(d.order), func(i int) bool { return d.order[i].sec <= hi })
		for _, e := range d.order[start:] {
			if e.sec < lo {
				break
			}
			if !e.matches(p) {
				continue
			}
			if nbHits >= first && nbHits < end {
				if nbHits > first {
					b = append(b, ',')
				}
				b = appendHit(b, e)
			}
			nbHits++
		}
	}
	d.mu.RUnlock()
	nbPages := 0
	if p.hitsPerPage > 0 {
		nbPages = min(ceilDiv(nbHits, p.hitsPerPage), ceilDiv(paginationLimit, p.hitsPerPage))
	}
	params := "advancedSyntax=true&analyticsTags=backend"
	if p.rawQuery != "" {
		params = p.rawQuery + "&" + params
	}
	b = append(b, `],"hitsPerPage":`...)
	b = strconv.AppendInt(b, int64(p.hitsPerPage), 10)
	b = append(b, `,"nbHits":`...)
	b = strconv.AppendInt(b, int64(nbHits), 10)
	b = append(b, `,"nbPages":`...)
	b = strconv.AppendInt(b, int64(nbPages), 10)
	b = append(b, `,"page":`...)
	b = strconv.AppendInt(b, int64(p.page), 10)
	b = append(b, `,"params":`...)
	b = appendString(b, params)
	// Timings are constant so that equal datasets give equal bodies.
	b = append(b, `,"processingTimeMS":1,"processingTimingsMS":{"_request":{"roundTrip":1},"afterFetch":{"format":{"highlighting":0,"total":0}},"fetch":{"total":1},"total":1},"query":`...)
	b = appendString(b, p.query)
	return append(b, `,"serverTimeMS":1}`+"\n"...)
}

// allMatchLocked reports whether p selects every thread of a created_at_i
// range: no thread is hidden, every tag group holds a type that all threads
// have, and the only numeric conditions are created_at_i bounds.
func (d *Dataset) allMatchLocked(p *searchParams) bool {
	if d.hidden > 0 {
		return false
	}
	for _, f := range p.filters {
		if f.attr != "created_at_i" || f.op == "!=" {
			return false
		}
	}
	for _, group := range p.tags {
		if !slices.ContainsFunc(group, func(tag string) bool { return d.types[tag] == len(d.order) }) {
			return false
		}
	}
	return true
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
