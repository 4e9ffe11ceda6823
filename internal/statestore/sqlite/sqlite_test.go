package sqlite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/sqlitedb"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/statestoretest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	statestoretest.Exercise(t, func(t *testing.T) statestore.Store {
		s, err := Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
		require.NoError(t, err)
		return s
	})
}

func TestReopenKeepsSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	_, err = s.FlowGet(t.Context(), statestore.FlowGetParams{Flow: "f"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = Open(t.Context(), path)
	require.NoError(t, err)
	defer s.Close()
	var version int
	require.NoError(t, s.DB().QueryRow(`SELECT max(version) FROM tidemark_migrations`).Scan(&version))
	require.Equal(t, migrationCount(t), version)
	var mode string
	require.NoError(t, s.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode))
	require.Equal(t, "wal", mode)
}

func TestRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	_, err = s.DB().Exec(`INSERT INTO tidemark_migrations (version, name, applied_at) VALUES (99, 'future', 0)`)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = Open(t.Context(), path)
	require.ErrorContains(t, err, "newer than this Tidemark knows")
}

func TestFlowLockAcrossStores(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	a, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer a.Close()
	b, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer b.Close()

	held, err := a.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	_, err = b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked, "another store on the same file")
	held.Release()
	held, err = b.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	held.Release()
}

// migrationCount is the number of the package's migrations.
func migrationCount(t *testing.T) int {
	t.Helper()
	ms, err := statestore.LoadMigrations(migrationFS, "migrations")
	require.NoError(t, err)
	return len(ms)
}

// Two names of one database, a symbolic link and the file, lock one lock:
// the second update is refused.
func TestLockThroughALink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s1, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer s1.Close()
	require.NoError(t, os.Symlink("state.db", filepath.Join(dir, "alias.db")))
	s2, err := Open(t.Context(), filepath.Join(dir, "alias.db"))
	require.NoError(t, err)
	defer s2.Close()
	held, err := s1.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	defer held.Release()
	_, err = s2.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.ErrorIs(t, err, statestore.ErrLocked)
}

// TestOutboxMigratesAnOlderFile opens a file of the version before the
// outbox, holding a flow and its target, and commits a change to it.
func TestOutboxMigratesAnOlderFile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	ms, err := statestore.LoadMigrations(migrationFS, "migrations")
	require.NoError(t, err)
	db, err := sqlitedb.Open(ctx, path, 1)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE tidemark_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`)
	require.NoError(t, err)
	for _, m := range ms[:3] {
		_, err := db.Exec(m.SQL)
		require.NoError(t, err, m.Name)
		_, err = db.Exec(`INSERT INTO tidemark_migrations (version, name, applied_at) VALUES (?, ?, 0)`, m.Version, m.Name)
		require.NoError(t, err)
	}
	_, err = db.Exec(`INSERT INTO tidemark_flows (name, created_at) VALUES ('f', 0);
		INSERT INTO tidemark_sources (flow, name) VALUES ('f', 's');
		INSERT INTO tidemark_targets (flow, kind, key, committed, record, updated_at) VALUES ('f', 'table', 't', 1, 'v1', 0)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err := Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	var version int
	require.NoError(t, s.DB().QueryRow(`SELECT max(version) FROM tidemark_migrations`).Scan(&version))
	require.Equal(t, len(ms), version)
	statestoretest.OutboxAfterMigration(t, s)
}

// TestOutboxTakeUsesTheStateIndex checks that the oldest-change probe of
// OutboxTake is an index search, not a scan of the outbox.
func TestOutboxTakeUsesTheStateIndex(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer s.Close()
	rows, err := s.DB().Query(`EXPLAIN QUERY PLAN SELECT c.id FROM tidemark_outbox AS c
		WHERE c.target_id IN (SELECT value FROM json_each('[1]'))
			AND NOT EXISTS (SELECT 1 FROM tidemark_outbox AS e WHERE e.target_id = c.target_id AND e.key = c.key AND e.id < c.id)
		ORDER BY c.id LIMIT 10`)
	require.NoError(t, err)
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		plan = append(plan, detail)
	}
	require.NoError(t, rows.Err())
	require.Contains(t, strings.Join(plan, "\n"), "SEARCH e USING COVERING INDEX tidemark_outbox_state", plan)
}
