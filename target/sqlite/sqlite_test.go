package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/target/tabletest"
	"github.com/tidemark/tidemark/tidemarktest"
)

// backend keeps the state store and the tables in one file, as an app does
// by default.
func backend() tabletest.Backend {
	return tabletest.Backend{
		Open: func(t *testing.T) (tidemark.Options, any) {
			path := filepath.Join(t.TempDir(), "app.db")
			db, err := sqlite.Open(t.Context(), "main", path)
			require.NoError(t, err)
			t.Cleanup(func() { db.Close() })
			return tidemark.Options{StateStore: path}, db
		},
		Columns: func(t *testing.T, db any, table string) []string {
			rows, err := db.(*sqlite.DB).SQL().QueryContext(t.Context(), `SELECT name FROM pragma_table_info(?)`, table)
			require.NoError(t, err)
			defer rows.Close()
			var out []string
			for rows.Next() {
				var name string
				require.NoError(t, rows.Scan(&name))
				out = append(out, name)
			}
			require.NoError(t, rows.Err())
			slices.Sort(out)
			return out
		},
		V1: func(f *tidemark.Flow, db any, name string, fullText bool) tabletest.Table[tabletest.RowV1] {
			t := sqlite.DeclareTable[tabletest.RowV1](f, db.(*sqlite.DB), name)
			if fullText {
				sqlite.FullText(t, "body")
			}
			return t
		},
		V2: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowV2] {
			return sqlite.DeclareTable[tabletest.RowV2](f, db.(*sqlite.DB), name)
		},
		V3: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowV3] {
			return sqlite.DeclareTable[tabletest.RowV3](f, db.(*sqlite.DB), name)
		},
		PK: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowPK] {
			return sqlite.DeclareTable[tabletest.RowPK](f, db.(*sqlite.DB), name)
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	tabletest.Exercise(t, backend())
}

func TestTableNames(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := sqlite.Open(t.Context(), "main", path)
	require.NoError(t, err)
	defer db.Close()

	f := tidemark.NewFlow("NotesIndex")
	byDefault := sqlite.DeclareTable[tabletest.RowV1](f, db, "")
	named := sqlite.DeclareTable[tabletest.RowV1](f, db, "notes")
	require.Equal(t, "notes_index__row_v1", byDefault.Name())
	require.Equal(t, "notes", named.Name())
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
		byDefault.Declare(r, tabletest.RowV1{ID: k, Body: v})
		named.Declare(r, tabletest.RowV1{ID: k, Body: v})
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: path})
	require.NoError(t, err)
	defer e.Close()
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	for _, name := range []string{"notes_index__row_v1", "notes"} {
		var n int
		require.NoError(t, db.SQL().QueryRowContext(t.Context(), `SELECT count(*) FROM "`+name+`"`).Scan(&n))
		require.Equal(t, 1, n, name)
	}

	g := tidemark.NewFlow("NotesIndex")
	sqlite.DeclareTable[struct {
		ID string `tidemark:"id,pk"`
	}](g, db, "")
	_, err = tidemark.Open(t.Context(), g, tidemark.Options{StateStore: path})
	require.ErrorContains(t, err, "an unnamed type, needs a name")
}

func TestFullTextMistakes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.db")
	db, err := sqlite.Open(t.Context(), "main", path)
	require.NoError(t, err)
	defer db.Close()
	f := tidemark.NewFlow("Mistakes")
	tbl := sqlite.DeclareTable[struct {
		ID   string `tidemark:"id,pk"`
		N    int    `tidemark:"n"`
		Body string `tidemark:"body"`
	}](f, db, "rows")
	sqlite.FullText(tbl, "n")
	sqlite.FullText(tbl, "body")
	sqlite.FullText(tbl, "missing")
	_, err = tidemark.Open(t.Context(), f, tidemark.Options{StateStore: path})
	require.ErrorContains(t, err, `sqlite: column "n" of table rows holds`)
	require.ErrorContains(t, err, "sqlite: table rows has a full-text index already")
	require.ErrorContains(t, err, `sqlite: table rows has no column "missing" to index`)
}
