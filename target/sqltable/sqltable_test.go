package sqltable_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/tidemarktest"
)

type note struct {
	ID   string `tidemark:"id,pk"`
	Text string `tidemark:"text"`
}

// TestOneAPIOnBothDatabases declares, fills and searches a table through
// sqltable on a SQLite file and on PostgreSQL, with the same code.
func TestOneAPIOnBothDatabases(t *testing.T) {
	t.Parallel()
	urls := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "app.db") },
		"postgres": func(t *testing.T) string { return pgtest.Database(t) },
	}
	for name, url := range urls {
		for _, lang := range []string{"", "simple"} {
			t.Run(name+"/"+lang, func(t *testing.T) {
				t.Parallel()
				u := url(t)
				require.Equal(t, name == "postgres", sqltable.IsPostgres(u))
				db, err := sqltable.Open(t.Context(), "main", u, sqltable.Options{Writers: 2})
				require.NoError(t, err)
				defer db.Close()
				require.Equal(t, u, db.URL())
				require.Equal(t, name == "postgres", db.Postgres() != nil)
				require.Equal(t, name == "sqlite", db.SQLite() != nil)

				src := tidemarktest.NewSource[string, string]()
				src.Set("a", "Running databases in production")
				src.Set("b", "A database runs")
				src.Set("c", "Nothing here")
				f := tidemark.NewFlow("Notes")
				notes := sqltable.Declare[note](f, db, "notes")
				sqltable.FullText(notes, "text", sqltable.FullTextOptions{Language: lang})
				tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
					notes.Declare(r, note{ID: k, Text: v})
					return nil
				})
				e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: db.URL()})
				require.NoError(t, err)
				defer e.Close()
				st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
				require.NoError(t, err)
				require.Equal(t, int64(3), st.Sources["notes"].Added)
				require.Equal(t, "notes", notes.Name())

				var ids []string
				for n, err := range notes.Rows(t.Context()) {
					require.NoError(t, err)
					ids = append(ids, n.ID)
				}
				require.Equal(t, []string{"a", "b", "c"}, ids)

				hits, err := notes.Search(t.Context(), "database", 10)
				require.NoError(t, err)
				var found []string
				for _, h := range hits {
					found = append(found, h.Row.ID)
				}
				if lang == "" {
					require.ElementsMatch(t, []string{"a", "b"}, found, "English stemming: databases, database")
				} else {
					require.Equal(t, []string{"b"}, found, "words as they are")
				}
			})
		}
	}
}

func TestOpenRefusesAnEmptyURL(t *testing.T) {
	t.Parallel()
	_, err := sqltable.Open(t.Context(), "main", "", sqltable.Options{})
	require.ErrorContains(t, err, "no database URL")
}
