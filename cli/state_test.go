package cli_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/tidemarktest"
)

// sqliteTables returns the names of a SQLite file's tables.
func sqliteTables(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`)
	require.NoError(t, err)
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	return names
}

// TestStateApart: --state keeps Tidemark's state in a store of its own,
// the targets staying in --db; every command finds it there.
func TestStateApart(t *testing.T) {
	t.Parallel()
	for name, newState := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") },
		"postgres": func(t *testing.T) string { return pgtest.Database(t) },
		"redis": func(t *testing.T) string {
			base, prefix := redistest.Prefix(t)
			return base + "?prefix=" + prefix
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "the quick brown fox")
			src.Set("b", "a lazy dog")
			app, _ := notesApp(src)
			db, state := filepath.Join(t.TempDir(), "notes.db"), newState(t)

			r := run(t, app, cli.Env{}, "show", "--db", db, "--state", state)
			require.Equal(t, cli.ExitFatal, r.code, "nothing yet")
			r = run(t, app, cli.Env{}, "update", "--db", db, "--state", state)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			tables := sqliteTables(t, db)
			require.Contains(t, tables, "notes")
			for _, n := range tables {
				require.False(t, strings.HasPrefix(n, "tidemark_"), "no state in --db: %v", tables)
			}
			if name == "sqlite" {
				require.Contains(t, sqliteTables(t, state), "tidemark_rows")
			}

			r = run(t, app, cli.Env{}, "show", "row", "a", "--db", db, "--state", state)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "text: the quick brown fox")
			r = run(t, app, cli.Env{}, "search", "fox", "--db", db, "--state", state)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			r = run(t, app, cli.Env{}, "update", "--db", db, "--state", state)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "2 unchanged", "the state was found again")

			// Without --state, --db has no index.
			r = run(t, app, cli.Env{}, "show", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "no notes index at "+db)
			r = run(t, app, cli.Env{}, "update", "--db", db, "--state", "mysql://x")
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "--state: a mysql:// URL is not supported")
			r = run(t, app, cli.Env{}, "update", "--db", "redis://127.0.0.1:6379/0")
			require.Equal(t, cli.ExitFatal, r.code, "the tables are not in Redis")
			require.Contains(t, r.stderr, "--db: ")
		})
	}
}
