package table

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Hit is one result of a full-text search: a row, its relevance score
// (higher is better; comparable within one search only) and a snippet of the
// matching text with the matches between HighlightStart and HighlightEnd.
type Hit[T any] struct {
	Row     T
	Score   float64
	Snippet string
}

// Highlight markers around the matches in a snippet, on every dialect.
const (
	HighlightStart = "<b>"
	HighlightEnd   = "</b>"
)

// ErrEmptyQuery is returned by a search whose query has no word to look for.
var ErrEmptyQuery = errors.New("table: the search query has no word to look for")

// ErrSearchTooLarge is wrapped by the error of a search past one of its
// bounds (see SearchTooLargeError): the caller asked too much, and should
// be told so (HTTP 400, exit status 1), not retry.
var ErrSearchTooLarge = errors.New("table: the search is too large")

// ErrNotSetUp is wrapped by the error of a read of a table, or of its
// full-text index, that the database does not have: it was never set up,
// or it was dropped (see NotSetUpError).
var ErrNotSetUp = errors.New("table: the table is not set up")

// The bounds of a search. They keep the worst query a user can type to a
// fraction of a second on either database, with room to spare for any
// query a person writes: a pasted paragraph is a few hundred bytes and a
// few dozen words.
const (
	// MaxQueryBytes bounds the length of a query's text, so that parsing
	// it is cheap. A word repeated is kept once, so 2,000 times "rust"
	// (10,000 bytes) is a query of one term.
	MaxQueryBytes = 16 << 10
	// MaxQueryTerms bounds the terms of a parsed query, after duplicates
	// are removed; each word of a phrase counts, since the databases match
	// a phrase word by word.
	MaxQueryTerms = 64
	// MaxSearchLimit bounds the number of hits a search returns.
	MaxSearchLimit = 1000
	// SearchTimeout is the time a search may take unless the caller's
	// context ends sooner; past it the database stops the query.
	SearchTimeout = 5 * time.Second
)

// SearchTooLargeError is the error of a search past one of its bounds. It
// wraps ErrSearchTooLarge.
type SearchTooLargeError struct {
	// Bound names what is too large: "bytes" (MaxQueryBytes), "terms"
	// (MaxQueryTerms), "limit" (MaxSearchLimit) or "offset"
	// (MaxSearchOffset).
	Bound string
	// Size is the search's, Max the bound's.
	Size, Max int
}

func (e *SearchTooLargeError) Error() string {
	switch e.Bound {
	case "bytes":
		return fmt.Sprintf("table: the search query is %s bytes long; at most %s are allowed", thousands(e.Size), thousands(e.Max))
	case "limit":
		return fmt.Sprintf("table: the search limit is %s; at most %s hits are allowed", thousands(e.Size), thousands(e.Max))
	case "offset":
		return fmt.Sprintf("table: the search skips %s hits; at most %s may be skipped", thousands(e.Size), thousands(e.Max))
	default:
		return fmt.Sprintf("table: the search query has %s %s; at most %s are allowed", thousands(e.Size), e.Bound, thousands(e.Max))
	}
}

// Unwrap returns ErrSearchTooLarge.
func (e *SearchTooLargeError) Unwrap() error { return ErrSearchTooLarge }

// NotSetUpError is the error of a read of a table the database does not
// have, or whose full-text index it does not have. It wraps ErrNotSetUp.
type NotSetUpError struct {
	// Table is the table's name.
	Table string
	// Missing says what is missing when it is not the table: "its
	// full-text index".
	Missing string
}

func (e *NotSetUpError) Error() string {
	if e.Missing != "" {
		return fmt.Sprintf("table %s is not set up (%s is missing); run setup", e.Table, e.Missing)
	}
	return fmt.Sprintf("table %s is not set up; run setup", e.Table)
}

// Unwrap returns ErrNotSetUp.
func (e *NotSetUpError) Unwrap() error { return ErrNotSetUp }

// thousands formats n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// Query is a parsed search query, in the syntax of web search engines (and
// of PostgreSQL's websearch_to_tsquery): words are all required, "quoted
// text" is a phrase, a leading - excludes a word or phrase, and OR between
// two terms accepts either. Anything else is text to look for.
type Query struct {
	// Groups are alternatives (joined by OR); a group's terms are all
	// required.
	Groups [][]Term
}

// Term is a word or a phrase of a query.
type Term struct {
	Text    string
	Phrase  bool
	Negated bool
}

// ParseQuery parses a user's search text. It never fails on syntax; it
// keeps each term and each group of terms once, returns ErrEmptyQuery when
// nothing is left to look for, and a *SearchTooLargeError when the text is
// longer than MaxQueryBytes or the query has more than MaxQueryTerms terms.
func ParseQuery(text string) (Query, error) {
	if len(text) > MaxQueryBytes {
		return Query{}, &SearchTooLargeError{Bound: "bytes", Size: len(text), Max: MaxQueryBytes}
	}
	var (
		q       Query
		group   []Term
		seen    = make(map[string]bool) // groups kept, by their terms
		inGrp   = make(map[Term]bool)   // terms of the group, folded
		nTerms  int
		negOnly bool // a term was given, but only to exclude
	)
	flush := func() {
		if hasPositive(group) {
			if k := groupKey(group); !seen[k] {
				seen[k] = true
				q.Groups = append(q.Groups, group)
				for _, t := range group {
					nTerms += words(t.Text)
				}
			}
		} else if len(group) > 0 {
			negOnly = true
		}
		group = nil
		clear(inGrp)
	}
	add := func(t Term) {
		k := Term{Text: strings.ToLower(t.Text), Phrase: t.Phrase, Negated: t.Negated}
		if !inGrp[k] {
			inGrp[k] = true
			group = append(group, t)
		}
	}
	// A NUL separates words; invalid bytes are no word.
	rs := []rune(strings.ReplaceAll(validUTF8(text), "\x00", " "))
	for i := 0; i < len(rs); {
		switch {
		case unicode.IsSpace(rs[i]):
			i++
			continue
		}
		negated := false
		if rs[i] == '-' && i+1 < len(rs) && !unicode.IsSpace(rs[i+1]) {
			negated = true
			i++
		}
		if rs[i] == '"' {
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				j++
			}
			phrase := strings.TrimSpace(string(rs[i+1 : min(j, len(rs))]))
			i = j + 1
			if hasWordChar(phrase) {
				add(Term{Text: phrase, Phrase: true, Negated: negated})
			}
			continue
		}
		j := i
		for j < len(rs) && !unicode.IsSpace(rs[j]) && rs[j] != '"' {
			j++
		}
		word := string(rs[i:j])
		i = j
		if word == "OR" && !negated {
			if len(group) > 0 {
				flush()
			}
			continue
		}
		if hasWordChar(word) {
			add(Term{Text: word, Negated: negated})
		}
	}
	flush()
	if len(q.Groups) == 0 {
		if negOnly {
			return Query{}, fmt.Errorf("%w: a word with a leading - only excludes rows; add one to look for", ErrEmptyQuery)
		}
		return Query{}, ErrEmptyQuery
	}
	if nTerms > MaxQueryTerms {
		return Query{}, &SearchTooLargeError{Bound: "terms", Size: nTerms, Max: MaxQueryTerms}
	}
	return q, nil
}

// groupKey identifies a group of terms whatever their order and case.
func groupKey(g []Term) string {
	keys := make([]string, len(g))
	for i, t := range g {
		keys[i] = fmt.Sprintf("%t%t%s", t.Phrase, t.Negated, strings.ToLower(t.Text))
	}
	slices.Sort(keys)
	return strings.Join(keys, "\x00")
}

// words counts the words of s, as the databases' tokenizers split it:
// runs of letters and digits.
func words(s string) int {
	n, in := 0, false
	for _, r := range s {
		w := unicode.IsLetter(r) || unicode.IsDigit(r)
		if w && !in {
			n++
		}
		in = w
	}
	return n
}

func hasPositive(terms []Term) bool {
	for _, t := range terms {
		if !t.Negated {
			return true
		}
	}
	return false
}

func hasWordChar(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0
}

// FTS5 renders the query in SQLite FTS5's syntax, each term a quoted
// string, so that no user text is read as an operator.
func (q Query) FTS5() string {
	var groups []string
	for _, g := range q.Groups {
		var pos, neg []string
		for _, t := range g {
			s := `"` + strings.ReplaceAll(t.Text, `"`, `""`) + `"`
			if t.Negated {
				neg = append(neg, s)
			} else {
				pos = append(pos, s)
			}
		}
		expr := strings.Join(pos, " AND ")
		for _, n := range neg {
			expr = "(" + expr + ") NOT " + n
		}
		groups = append(groups, "("+expr+")")
	}
	return strings.Join(groups, " OR ")
}

// WebSearch renders the query in the syntax of PostgreSQL's
// websearch_to_tsquery, each term quoted, so that it means what FTS5
// renders.
func (q Query) WebSearch() string {
	var b strings.Builder
	for i, g := range q.Groups {
		if i > 0 {
			b.WriteString(" OR ")
		}
		for j, t := range g {
			if j > 0 {
				b.WriteByte(' ')
			}
			if t.Negated {
				b.WriteByte('-')
			}
			// A term holds no quote: the parser ends it there.
			b.WriteString(`"` + t.Text + `"`)
		}
	}
	return b.String()
}

// SearchOptions page a search.
type SearchOptions struct {
	// Limit bounds the hits returned: DefaultSearchLimit when 0, at most
	// MaxSearchLimit.
	Limit int
	// Offset is the number of best hits skipped, at most MaxSearchOffset.
	Offset int
}

// SearchPage is a page of a search's hits, with the number of hits in all.
type SearchPage[T any] struct {
	Hits []Hit[T]
	// Total is the number of rows that match, counted up to
	// MaxSearchCount; TotalCapped says there are more.
	Total       int
	TotalCapped bool
}

// The bounds of a search's paging: skipping hits costs as much as returning
// them, and so does counting them.
const (
	MaxSearchOffset = 10_000
	MaxSearchCount  = 10_000
)

// PrepareSearchPage checks a paged search's arguments as PrepareSearch
// does, and its offset: past MaxSearchOffset it is a *SearchTooLargeError.
func PrepareSearchPage(query string, opts SearchOptions) (Query, SearchOptions, error) {
	if opts.Offset < 0 {
		return Query{}, opts, fmt.Errorf("table: search offset must not be negative, got %d", opts.Offset)
	}
	if opts.Offset > MaxSearchOffset {
		return Query{}, opts, &SearchTooLargeError{Bound: "offset", Size: opts.Offset, Max: MaxSearchOffset}
	}
	q, limit, err := PrepareSearch(query, opts.Limit)
	opts.Limit = limit
	return q, opts, err
}

// DefaultSearchLimit is the number of hits a search returns when asked for 0.
const DefaultSearchLimit = 20

// PrepareSearch checks a search's arguments: it parses the query and
// returns the limit to use. A limit past MaxSearchLimit is a
// *SearchTooLargeError, as ParseQuery's bounds are.
func PrepareSearch(query string, limit int) (Query, int, error) {
	if limit < 0 {
		return Query{}, 0, fmt.Errorf("table: search limit must not be negative, got %d", limit)
	}
	if limit > MaxSearchLimit {
		return Query{}, 0, &SearchTooLargeError{Bound: "limit", Size: limit, Max: MaxSearchLimit}
	}
	if limit == 0 {
		limit = DefaultSearchLimit
	}
	q, err := ParseQuery(query)
	return q, limit, err
}

// WithSearchTimeout returns ctx bounded by SearchTimeout, unless its own
// deadline is sooner, and the function that releases it. When the bound
// ends ctx, its cause (see SearchCanceled) says the search took too long
// and wraps context.DeadlineExceeded.
func WithSearchTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, SearchTimeout,
		fmt.Errorf("the search took longer than %s: %w", SearchTimeout, context.DeadlineExceeded))
}

// SearchCanceled returns the error of a search of table that failed with
// err: why ctx ended, if it did, since a database reports an interrupted
// query in words of its own; otherwise err. Either is wrapped as searching
// the table.
func SearchCanceled(ctx context.Context, table string, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("searching table %s: %w", table, err)
}
