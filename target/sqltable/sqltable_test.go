package sqltable_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

type note struct {
	ID   string `tidemark:"id,pk"`
	Text string `tidemark:"text"`
}

// databaseURLs makes, per database, the URL of a fresh one for a test.
func databaseURLs() map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "app.db") },
		"postgres": func(t *testing.T) string { return pgtest.Database(t) },
	}
}

// TestOneAPIOnBothDatabases declares, fills and searches a table through
// sqltable on a SQLite file and on PostgreSQL, with the same code.
func TestOneAPIOnBothDatabases(t *testing.T) {
	t.Parallel()
	urls := databaseURLs()
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

type price struct {
	Region string    `tidemark:"region,pk"`
	Day    time.Time `tidemark:"day,pk"`
	N      int64     `tidemark:"n,pk"`
	Cents  int64     `tidemark:"cents"`
}

// TestLookupMany reads rows by composite keys of text, time and integer
// parts, in the order asked, across statements, on both databases.
func TestLookupMany(t *testing.T) {
	t.Parallel()
	urls := databaseURLs()
	day := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, err := sqltable.Open(t.Context(), "main", url(t), sqltable.Options{Writers: 2})
			require.NoError(t, err)
			defer db.Close()
			src := tidemarktest.NewSource[int, int]()
			for i := range 700 {
				src.Set(i, i*10)
			}
			f := tidemark.NewFlow("Prices")
			prices := sqltable.Declare[price](f, db, "prices")
			tidemark.ForEach(tidemark.AddSource(f, "prices", src), func(_ context.Context, r *tidemark.Row, k, v int) error {
				prices.Declare(r, price{Region: fmt.Sprintf("r'%d", k%3), Day: day.AddDate(0, 0, k%5), N: int64(k), Cents: int64(v)})
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: db.URL()})
			require.NoError(t, err)
			defer e.Close()
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			spec := *f.Targets()[0].Spec.(*table.Spec)

			key := func(k int) target.Key {
				b, err := json.Marshal([]any{fmt.Sprintf("r'%d", k%3), day.AddDate(0, 0, k%5).Format(time.RFC3339Nano), k})
				require.NoError(t, err)
				return target.Key(b)
			}
			var keys []target.Key
			for k := 699; k >= 0; k-- {
				keys = append(keys, key(k))
			}
			keys = append(keys, key(700), target.Key(`["r'1","2026-07-02T00:00:00Z",5]`)) // no such rows
			rows, err := db.LookupMany(t.Context(), spec, keys)
			require.NoError(t, err)
			require.Len(t, rows, 702)
			for i, k := 0, 699; k >= 0; i, k = i+1, k-1 {
				require.NotNil(t, rows[i], k)
				require.EqualValues(t, k, rows[i]["n"])
				require.EqualValues(t, k*10, rows[i]["cents"])
			}
			require.Nil(t, rows[700])
			require.Nil(t, rows[701])

			row, found, err := db.Lookup(t.Context(), spec, key(42))
			require.NoError(t, err)
			require.True(t, found)
			require.EqualValues(t, 420, row["cents"])
			_, err = db.LookupMany(t.Context(), spec, []target.Key{`["only one part"]`})
			require.ErrorContains(t, err, "is not a key of its primary key (region, day, n)")
		})
	}
}
