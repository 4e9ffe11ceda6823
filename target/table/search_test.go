package table

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestParseQueryKeepsEachTermOnce(t *testing.T) {
	t.Parallel()
	word := func(s string) Term { return Term{Text: s} }
	for name, tc := range map[string]struct {
		text string
		want [][]Term
	}{
		"repeated word":          {strings.Repeat("rust ", 2000), [][]Term{{word("rust")}}},
		"case differs":           {"Rust rust RUST go", [][]Term{{word("Rust"), word("go")}}},
		"repeated phrase":        {`"a b" "A B" a`, [][]Term{{{Text: "a b", Phrase: true}, word("a")}}},
		"word and phrase differ": {`rust "rust"`, [][]Term{{word("rust"), {Text: "rust", Phrase: true}}}},
		"negation differs":       {"rust -go go", [][]Term{{word("rust"), {Text: "go", Negated: true}, word("go")}}},
		"repeated group":         {"rust go OR go rust OR rust OR Rust", [][]Term{{word("rust"), word("go")}, {word("rust")}}},
		"negation first":         {"-go rust", [][]Term{{{Text: "go", Negated: true}, word("rust")}}},
	} {
		q, err := ParseQuery(tc.text)
		require.NoError(t, err, name)
		require.Equal(t, tc.want, q.Groups, name)
	}
}

func TestParseQueryBounds(t *testing.T) {
	t.Parallel()
	distinct := func(n int, sep string) string {
		ws := make([]string, n)
		for i := range ws {
			ws[i] = fmt.Sprintf("w%d", i)
		}
		return strings.Join(ws, sep)
	}
	for name, tc := range map[string]struct {
		text string
		err  string // "" for none
	}{
		"64 terms":             {distinct(64, " "), ""},
		"65 terms":             {distinct(65, " "), "table: the search query has 65 terms; at most 64 are allowed"},
		"8,000 OR terms":       {distinct(8000, " OR "), "table: the search query is 70,886 bytes long; at most 16,384 are allowed"},
		"65 OR terms":          {distinct(65, " OR "), "table: the search query has 65 terms; at most 64 are allowed"},
		"a phrase of 65 words": {`"` + distinct(65, " ") + `"`, "table: the search query has 65 terms; at most 64 are allowed"},
		"a word of 65 parts":   {distinct(65, "-"), "table: the search query has 65 terms; at most 64 are allowed"},
		"16 KiB":               {strings.Repeat("a", MaxQueryBytes), ""},
		"16 KiB and a byte":    {strings.Repeat("a", MaxQueryBytes+1), "table: the search query is 16,385 bytes long; at most 16,384 are allowed"},
		"2,000 times a word":   {strings.Repeat("rust ", 2000), ""},
	} {
		_, err := ParseQuery(tc.text)
		if tc.err == "" {
			require.NoError(t, err, name)
			continue
		}
		require.EqualError(t, err, tc.err, name)
		require.ErrorIs(t, err, ErrSearchTooLarge, name)
		tooLarge, ok := errors.AsType[*SearchTooLargeError](err)
		require.True(t, ok, name)
		require.Equal(t, tc.err, tooLarge.Error(), name)
	}
}

func TestParseQueryOnlyNegated(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"-go", "-go -rust", "rust OR -go"} {
		q, err := ParseQuery(text)
		if text == "rust OR -go" {
			require.NoError(t, err)
			require.Equal(t, [][]Term{{{Text: "rust"}}}, q.Groups, "a group with nothing to look for is left out")
			continue
		}
		require.ErrorIs(t, err, ErrEmptyQuery, text)
		require.EqualError(t, err, "table: the search query has no word to look for: a word with a leading - only excludes rows; add one to look for", text)
	}
	_, err := ParseQuery("!!!")
	require.Equal(t, ErrEmptyQuery, err, "nothing at all")
}

func TestPrepareSearchLimit(t *testing.T) {
	t.Parallel()
	_, limit, err := PrepareSearch("rust", 0)
	require.NoError(t, err)
	require.Equal(t, DefaultSearchLimit, limit)
	_, limit, err = PrepareSearch("rust", MaxSearchLimit)
	require.NoError(t, err)
	require.Equal(t, 1000, limit)
	_, _, err = PrepareSearch("rust", 5000)
	require.EqualError(t, err, "table: the search limit is 5,000; at most 1,000 hits are allowed")
	require.ErrorIs(t, err, ErrSearchTooLarge)
	_, _, err = PrepareSearch("rust", -1)
	require.EqualError(t, err, "table: search limit must not be negative, got -1")
}

func TestQueryRendering(t *testing.T) {
	t.Parallel()
	q, err := ParseQuery(`rust "incremental index" -python OR -"big data" sqlite`)
	require.NoError(t, err)
	require.Equal(t, `(("rust" AND "incremental index") NOT "python") OR (("sqlite") NOT "big data")`, q.FTS5())
	require.Equal(t, `"rust" "incremental index" -"python" OR -"big data" "sqlite"`, q.WebSearch())
}

func TestWithSearchTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := WithSearchTimeout(t.Context())
		defer cancel()
		deadline, ok := ctx.Deadline()
		require.True(t, ok)
		require.Equal(t, SearchTimeout, time.Until(deadline))
		<-ctx.Done()
		require.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
		err := SearchCanceled(ctx, "notes", errors.New("interrupted (9)"))
		require.EqualError(t, err, "searching table notes: the search took longer than 5s: context deadline exceeded")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	synctest.Test(t, func(t *testing.T) {
		parent, cancelParent := context.WithTimeout(t.Context(), time.Second)
		defer cancelParent()
		ctx, cancel := WithSearchTimeout(parent)
		defer cancel()
		deadline, _ := ctx.Deadline()
		require.Equal(t, time.Second, time.Until(deadline), "the caller's sooner deadline")
		<-ctx.Done()
		require.EqualError(t, SearchCanceled(ctx, "notes", errors.New("interrupted (9)")), "searching table notes: context deadline exceeded")
	})
	err := SearchCanceled(t.Context(), "notes", errors.New("disk I/O error"))
	require.EqualError(t, err, "searching table notes: disk I/O error", "a live context keeps the error")
}

func TestNotSetUpError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("searching table hn_messages: %w", &NotSetUpError{Table: "hn_messages"})
	require.ErrorIs(t, err, ErrNotSetUp)
	require.EqualError(t, err, "searching table hn_messages: table hn_messages is not set up; run setup")
	require.EqualError(t, &NotSetUpError{Table: "t", Missing: "its full-text index t_fts"}, "table t is not set up (its full-text index t_fts is missing); run setup")
}

// FuzzParseQuery checks that no text breaks the parser or its bounds.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{`rust -go`, `"a b" OR c`, `-"x`, "a\x00b", `OR OR -OR`, strings.Repeat("w ", 100), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		q, err := ParseQuery(text)
		if err != nil {
			require.True(t, errors.Is(err, ErrEmptyQuery) || errors.Is(err, ErrSearchTooLarge), err)
			return
		}
		require.LessOrEqual(t, len(text), MaxQueryBytes)
		n := 0
		for _, g := range q.Groups {
			require.True(t, hasPositive(g))
			for _, term := range g {
				require.True(t, utf8.ValidString(term.Text))
				require.NotContains(t, term.Text, `"`)
				n += words(term.Text)
			}
		}
		require.LessOrEqual(t, n, MaxQueryTerms)
		again, err := ParseQuery(q.WebSearch())
		require.NoError(t, err, "the rendering parses")
		require.Len(t, again.Groups, len(q.Groups))
	})
}
