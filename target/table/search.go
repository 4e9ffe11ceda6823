package table

import (
	"errors"
	"fmt"
	"strings"
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
// returns ErrEmptyQuery when nothing is left to look for.
func ParseQuery(text string) (Query, error) {
	var (
		q     Query
		group []Term
	)
	flush := func() {
		if hasPositive(group) {
			q.Groups = append(q.Groups, group)
		}
		group = nil
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
				group = append(group, Term{Text: phrase, Phrase: true, Negated: negated})
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
			group = append(group, Term{Text: word, Negated: negated})
		}
	}
	flush()
	if len(q.Groups) == 0 {
		return Query{}, ErrEmptyQuery
	}
	return q, nil
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

// DefaultSearchLimit is the number of hits a search returns when asked for 0.
const DefaultSearchLimit = 20

// PrepareSearch checks a search's arguments: it parses the query and
// returns the limit to use.
func PrepareSearch(query string, limit int) (Query, int, error) {
	if limit < 0 {
		return Query{}, 0, fmt.Errorf("table: search limit must not be negative, got %d", limit)
	}
	if limit == 0 {
		limit = DefaultSearchLimit
	}
	q, err := ParseQuery(query)
	return q, limit, err
}
