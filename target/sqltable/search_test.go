package sqltable_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

// databases opens a fresh database of each kind for a subtest.
var databases = map[string]func(t *testing.T) string{
	"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "app.db") },
	"postgres": func(t *testing.T) string { return pgtest.Database(t) },
}

// notesFlow is a flow of one table of notes, with a full-text index, from
// src.
type notesFlow struct {
	db    *sqltable.DB
	notes *sqltable.Table[note]
	e     *tidemark.Engine
}

func openNotes(t *testing.T, url string, src *tidemarktest.Source[string, string]) *notesFlow {
	t.Helper()
	db, err := sqltable.Open(t.Context(), "main", url, sqltable.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	f := tidemark.NewFlow("Notes")
	notes := sqltable.Declare[note](f, db, "notes")
	sqltable.FullText(notes, "text", sqltable.FullTextOptions{})
	tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
		notes.Declare(r, note{ID: k, Text: v})
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: db.URL()})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return &notesFlow{db: db, notes: notes, e: e}
}

func ids(t *testing.T, hits []table.Hit[note], err error) []string {
	t.Helper()
	require.NoError(t, err)
	out := []string{}
	for _, h := range hits {
		out = append(out, h.Row.ID)
	}
	slices.Sort(out)
	return out
}

// filledNotes returns the notes of noteTexts, set up and written at url.
func filledNotes(t *testing.T, url string) *notesFlow {
	t.Helper()
	src := tidemarktest.NewSource[string, string]()
	for k, v := range noteTexts {
		src.Set(k, v)
	}
	n := openNotes(t, url, src)
	_, err := n.e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	return n
}

var noteTexts = map[string]string{
	"a": "Rust and Go both compile to native code",
	"b": "Rust has no garbage collector",
	"c": "Go has goroutines",
	"d": "SQLite is an embedded database",
}

// TestSearchQueries runs the query syntax the README documents, negation
// first too, on both databases.
func TestSearchQueries(t *testing.T) {
	t.Parallel()
	for name, url := range databases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := filledNotes(t, url(t))
			for q, want := range map[string][]string{
				"rust":                        {"a", "b"},
				"rust -go":                    {"b"},
				"-go rust":                    {"b"},
				"-garbage rust -sqlite":       {"a"},
				`"garbage collector"`:         {"b"},
				`rust -"garbage collector"`:   {"a"},
				"goroutines OR embedded":      {"c", "d"},
				"-rust go OR sqlite":          {"c", "d"},
				strings.Repeat("rust ", 2000): {"a", "b"},
				strings.Repeat("Rust go ", 1000) + "OR " + strings.Repeat("go rust OR ", 500) + "embedded": {"a", "d"},
			} {
				hits, err := n.notes.Search(t.Context(), q, 10)
				require.Equal(t, want, ids(t, hits, err), q[:min(len(q), 40)])
			}
			for _, q := range []string{"-go", "-go -rust"} {
				_, err := n.notes.Search(t.Context(), q, 10)
				require.ErrorIs(t, err, table.ErrEmptyQuery, q)
				require.ErrorContains(t, err, "a word with a leading - only excludes rows", q)
			}
		})
	}
}

// TestSearchBounds checks that a search past a bound fails at once with a
// *table.SearchTooLargeError, whatever the database, and that a search
// ends with its context.
func TestSearchBounds(t *testing.T) {
	t.Parallel()
	var manyTerms, manyBytes []string
	for i := range 8000 {
		if i < table.MaxQueryTerms+1 {
			manyTerms = append(manyTerms, fmt.Sprintf("word%d", i))
		}
		manyBytes = append(manyBytes, fmt.Sprintf("word%d", i))
	}
	for name, url := range databases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := filledNotes(t, url(t))

			for q, want := range map[string]string{
				strings.Join(manyTerms, " OR "):      "table: the search query has 65 terms; at most 64 are allowed",
				strings.Join(manyTerms[:64], " OR "): "",
				strings.Join(manyBytes, " OR "):      "table: the search query is 94,886 bytes long; at most 16,384 are allowed",
			} {
				start := time.Now()
				_, err := n.notes.Search(t.Context(), q, 10)
				if want == "" {
					require.NoError(t, err)
				} else {
					require.EqualError(t, err, want)
					require.ErrorIs(t, err, table.ErrSearchTooLarge)
				}
				require.Less(t, time.Since(start), time.Second)
			}
			_, err := n.notes.Search(t.Context(), "rust", table.MaxSearchLimit+1)
			require.EqualError(t, err, "table: the search limit is 1,001; at most 1,000 hits are allowed")
			require.ErrorIs(t, err, table.ErrSearchTooLarge)

			ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
			defer cancel()
			_, err = n.notes.Search(ctx, "rust", 10)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorContains(t, err, "searching table notes: ")
			hits, err := n.notes.Search(t.Context(), "rust", 10)
			require.Equal(t, []string{"a", "b"}, ids(t, hits, err), "the database is fine after")
		})
	}
}

// TestSearchNotSetUp searches a table that was never set up, and one that
// was dropped.
func TestSearchNotSetUp(t *testing.T) {
	t.Parallel()
	for name, url := range databases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "Rust")
			n := openNotes(t, url(t), src)
			check := func(when string) {
				_, err := n.notes.Search(t.Context(), "rust", 10)
				require.ErrorIs(t, err, table.ErrNotSetUp, when)
				require.EqualError(t, err, "searching table notes: table notes is not set up; run setup", when)
				var notSetUp *table.NotSetUpError
				require.True(t, errors.As(err, &notSetUp), when)
				require.Equal(t, "notes", notSetUp.Table, when)
				for _, err := range n.notes.Rows(t.Context()) {
					require.ErrorIs(t, err, table.ErrNotSetUp, when)
					require.EqualError(t, err, "reading table notes: table notes is not set up; run setup", when)
				}
			}
			check("never set up")

			_, err := n.e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			hits, err := n.notes.Search(t.Context(), "rust", 10)
			require.Equal(t, []string{"a"}, ids(t, hits, err))

			_, err = n.e.Drop(t.Context())
			require.NoError(t, err)
			check("dropped")
		})
	}
}

// dated is a note with a time, for ties in rank.
type dated struct {
	ID      string     `tidemark:"id,pk"`
	Text    string     `tidemark:"text"`
	Created *time.Time `tidemark:"created"`
}

// TestSearchNewestFirst: hits of equal rank come newest first (NULLs
// last) with FullTextOptions.NewestFirst, then by primary key; a column
// the table lacks is a mistake of the flow.
func TestSearchNewestFirst(t *testing.T) {
	t.Parallel()
	for name, url := range databases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sqltable.Open(t.Context(), "main", url(t), sqltable.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { db.Close() })
			src := tidemarktest.NewSource[string, int]()
			// The same text in each: the same rank. Hours apart, out of
			// key order; "e" has no time.
			for k, h := range map[string]int{"a": 2, "b": 5, "c": 1, "d": 4, "e": -1} {
				src.Set(k, h)
			}
			f := tidemark.NewFlow("Dated")
			notes := sqltable.Declare[dated](f, db, "dated")
			sqltable.FullText(notes, "text", sqltable.FullTextOptions{NewestFirst: "created"})
			base := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
			tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k string, h int) error {
				d := dated{ID: k, Text: "the same words"}
				if h >= 0 {
					at := base.Add(time.Duration(h) * time.Hour)
					d.Created = &at
				}
				notes.Declare(r, d)
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: db.URL()})
			require.NoError(t, err)
			t.Cleanup(func() { e.Close() })
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)

			hits, err := notes.Search(t.Context(), "same words", 10)
			require.NoError(t, err)
			var got []string
			for _, h := range hits {
				got = append(got, h.Row.ID)
			}
			require.Equal(t, []string{"b", "d", "a", "c", "e"}, got)
			page, err := notes.SearchPage(t.Context(), "same words", table.SearchOptions{Limit: 2, Offset: 1})
			require.NoError(t, err)
			require.Equal(t, "d", page.Hits[0].Row.ID)
			require.Equal(t, "a", page.Hits[1].Row.ID)

			bad := tidemark.NewFlow("Bad")
			other := sqltable.Declare[dated](bad, db, "other")
			sqltable.FullText(other, "text", sqltable.FullTextOptions{NewestFirst: "nosuch"})
			tidemark.ForEach(tidemark.AddSource(bad, "notes", src), func(_ context.Context, r *tidemark.Row, k string, h int) error { return nil })
			_, err = tidemark.Open(t.Context(), bad, tidemark.Options{StateStore: db.URL()})
			require.ErrorContains(t, err, `table other has no column "nosuch" to order search ties by`)
		})
	}
}
