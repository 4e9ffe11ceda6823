package sqlite_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/target/tabletest"
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
