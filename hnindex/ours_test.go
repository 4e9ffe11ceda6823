package hnindex_test

import (
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/target/sqltable"
)

// userTable is an hn_messages table made by the user in a world's
// database, outside Tidemark.
type userTable struct {
	t  *testing.T
	db *sqltable.DB
}

func newUserTable(t *testing.T, w *world) *userTable {
	db, err := sqltable.Open(t.Context(), "user", w.db, sqltable.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	u := &userTable{t: t, db: db}
	u.exec(`CREATE TABLE hn_messages (id TEXT PRIMARY KEY, mine TEXT NOT NULL)`)
	u.exec(`INSERT INTO hn_messages VALUES ('u1', 'the user''s row')`)
	return u
}

func (u *userTable) exec(q string) {
	var err error
	if s := u.db.SQLite(); s != nil {
		_, err = s.SQL().ExecContext(u.t.Context(), q)
	} else {
		_, err = u.db.Postgres().Pool().Exec(u.t.Context(), q)
	}
	require.NoError(u.t, err)
}

// strings returns the rows of a query of one text column.
func (u *userTable) strings(q string) []string {
	ctx := u.t.Context()
	if s := u.db.SQLite(); s != nil {
		rows, err := s.SQL().QueryContext(ctx, q)
		require.NoError(u.t, err)
		return collect(u.t, rows)
	}
	rows, err := u.db.Postgres().Pool().Query(ctx, q)
	require.NoError(u.t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(u.t, err)
	return out
}

func collect(t *testing.T, rows *sql.Rows) []string {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// state is the user's table: its columns and its rows.
func (u *userTable) state() []string {
	cols := `SELECT name || ' ' || type FROM pragma_table_info('hn_messages') ORDER BY cid`
	if u.db.SQLite() == nil {
		cols = `SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'hn_messages' ORDER BY ordinal_position`
	}
	return append(u.strings(cols), u.strings(`SELECT id || '=' || mine FROM hn_messages ORDER BY id`)...)
}

// TestUserTableRefused: hnindex's setup and update refuse a table
// hn_messages the user made, exit 1 saying so, and leave it as it was.
func TestUserTableRefused(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, dataset(t))
		u := newUserTable(t, w)
		before := u.state()
		require.Equal(t, "u1=the user's row", before[len(before)-1])

		name := "hn_messages"
		if backend == "postgres" {
			name = "public.hn_messages"
		}
		msg := "table " + name + " already exists and was not created by Tidemark: drop or rename it, or declare another table name"
		for _, args := range [][]string{{"setup", "--yes"}, {"update"}, {"update"}} {
			w.fake.ResetCounts()
			r := w.run(args...)
			require.Equal(t, 1, r.code, "%v\nstdout:\n%s\nstderr:\n%s", args, r.stdout, r.stderr)
			require.Contains(t, r.stderr, msg, args)
			require.NotContains(t, r.stdout, "applied", args)
			require.Zero(t, w.fake.Requests().Items, "%v: nothing fetched", args)
		}
		require.Equal(t, before, u.state())

		// Renamed out of the way, the table is the user's still, and
		// hnindex makes its own.
		u.exec(`ALTER TABLE hn_messages RENAME TO my_messages`)
		w.mustUpdate()
		w.requireRows()
		require.Equal(t, []string{"u1=the user's row"}, u.strings(`SELECT id || '=' || mine FROM my_messages`))
	})
}
