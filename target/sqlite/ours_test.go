package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

// message is the row of the table the tests below declare.
type message struct {
	ID   string `tidemark:"id,pk"`
	Text string `tidemark:"text"`
}

// ours is one test's world: a target database, and a state store in a
// file of its own, so that the target's schema can be compared whole.
type ours struct {
	t     *testing.T
	db    *sqlite.DB
	store string
	src   *tidemarktest.Source[string, string]
}

func newOurs(t *testing.T) *ours {
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), "main", filepath.Join(dir, "target.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	src := tidemarktest.NewSource[string, string]()
	src.Set("m1", "hello world")
	return &ours{t: t, db: db, store: filepath.Join(dir, "state.db"), src: src}
}

// engine opens the flow declaring the table hn_messages, with a full-text
// index if fullText.
func (o *ours) engine(fullText bool, faults tidemark.FaultHooks) *tidemark.Engine {
	f := tidemark.NewFlow("HNIndex")
	tbl := sqlite.DeclareTable[message](f, o.db, "hn_messages")
	if fullText {
		sqlite.FullText(tbl, "text")
	}
	tidemark.ForEach(tidemark.AddSource(f, "messages", o.src), func(_ context.Context, r *tidemark.Row, k, v string) error {
		tbl.Declare(r, message{ID: k, Text: v})
		return nil
	})
	e, err := tidemark.Open(o.t.Context(), f, tidemark.Options{StateStore: o.store, Faults: faults})
	require.NoError(o.t, err)
	o.t.Cleanup(func() { e.Close() })
	return e
}

func (o *ours) exec(query string) {
	_, err := o.db.SQL().ExecContext(o.t.Context(), query)
	require.NoError(o.t, err)
}

// schema returns every object of the database with its SQL.
func (o *ours) schema() [][2]string {
	return o.pairs(`SELECT name, coalesce(sql, '') FROM sqlite_master ORDER BY name`)
}

// dump returns the rows of a table of two text columns.
func (o *ours) dump(tbl, a, b string) [][2]string {
	return o.pairs(`SELECT ` + a + `, ` + b + ` FROM ` + tbl + ` ORDER BY 1`)
}

// pairs returns the rows of a query of two text columns.
func (o *ours) pairs(query string) [][2]string {
	rows, err := o.db.SQL().QueryContext(o.t.Context(), query)
	require.NoError(o.t, err)
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var r [2]string
		require.NoError(o.t, rows.Scan(&r[0], &r[1]))
		out = append(out, r)
	}
	require.NoError(o.t, rows.Err())
	return out
}

// requireRefused checks that err refuses the relation found, for the
// table hn_messages.
func requireRefused(t *testing.T, err error, found, role string) {
	t.Helper()
	require.ErrorIs(t, err, table.ErrNotOurs)
	var notOurs *table.NotOursError
	require.ErrorAs(t, err, &notOurs)
	require.Equal(t, table.NotOursError{Kind: "table", Name: found, Table: "hn_messages", Role: role}, *notOurs)
}

// TestSetupRefusesTablesNotOurs: a table, or full-text table, of the name
// a flow declares that Tidemark did not create is refused by the plan, the
// setup and the update, and left exactly as it was.
func TestSetupRefusesTablesNotOurs(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		fullText bool
		make     []string
		found    string
		role     string
		want     string
	}{
		"table": {
			make:  []string{`CREATE TABLE hn_messages (id TEXT PRIMARY KEY, mine TEXT)`, `INSERT INTO hn_messages VALUES ('u1', 'the user''s row')`},
			found: "hn_messages",
			want:  "table hn_messages already exists and was not created by Tidemark: drop or rename it, or declare another table name",
		},
		"table with a full-text index declared": {
			fullText: true,
			make:     []string{`CREATE TABLE hn_messages (id TEXT PRIMARY KEY, mine TEXT)`, `INSERT INTO hn_messages VALUES ('u1', 'the user''s row')`},
			found:    "hn_messages",
			want:     "table hn_messages already exists and was not created by Tidemark: drop or rename it, or declare another table name",
		},
		"full-text table": {
			fullText: true,
			make:     []string{`CREATE VIRTUAL TABLE hn_messages_fts USING fts5(mine)`, `INSERT INTO hn_messages_fts VALUES ('the user''s row')`},
			found:    "hn_messages_fts",
			role:     "the full-text index",
			want:     "table hn_messages_fts already exists and was not created by Tidemark, and the full-text index of table hn_messages would be kept there: drop or rename it, or declare another table name",
		},
		"full-text table, no index declared": {
			make:  []string{`CREATE TABLE hn_messages_fts (id TEXT PRIMARY KEY, mine TEXT)`, `INSERT INTO hn_messages_fts VALUES ('u1', 'the user''s row')`},
			found: "hn_messages_fts",
			role:  "the full-text index",
			want:  "table hn_messages_fts already exists and was not created by Tidemark, and the full-text index of table hn_messages would be kept there: drop or rename it, or declare another table name",
		},
		"view": {
			make:  []string{`CREATE VIEW HN_Messages AS SELECT 'u1' AS id, 'the user''s row' AS mine`},
			found: "hn_messages",
			want:  "table hn_messages already exists and was not created by Tidemark: drop or rename it, or declare another table name",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := newOurs(t)
			for _, q := range tc.make {
				o.exec(q)
			}
			userTable := tc.found
			if name == "view" {
				userTable = "HN_Messages"
			}
			before, rows := o.schema(), o.dump(userTable, "'-'", "mine")
			require.Len(t, rows, 1)

			e := o.engine(tc.fullText, tidemark.FaultHooks{})
			plan, err := e.Plan(t.Context())
			requireRefused(t, err, tc.found, tc.role)
			require.EqualError(t, err, "setting up sqlite:main/hn_messages: "+tc.want)
			require.Nil(t, plan)

			_, err = e.Setup(t.Context())
			requireRefused(t, err, tc.found, tc.role)
			require.EqualError(t, err, "setting up sqlite:main/hn_messages: "+tc.want)

			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			requireRefused(t, err, tc.found, tc.role)
			require.EqualError(t, err, "setting up flow HNIndex: setting up sqlite:main/hn_messages: "+tc.want)
			require.Zero(t, o.src.Lists(), "no source was listed")

			// Nothing was staged either: the next update is refused the same.
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			requireRefused(t, err, tc.found, tc.role)

			require.Equal(t, before, o.schema())
			require.Equal(t, rows, o.dump(userTable, "'-'", "mine"))
			status, err := e.Status(t.Context(), 0)
			require.NoError(t, err)
			require.Empty(t, status.Targets)
		})
	}
}

// TestSetupRefusesFullTextTableNotOurs: a full-text index added to a
// table Tidemark created is refused where a table of its name exists that
// Tidemark did not create; the table goes on as it was.
func TestSetupRefusesFullTextTableNotOurs(t *testing.T) {
	t.Parallel()
	o := newOurs(t)
	_, err := o.engine(false, tidemark.FaultHooks{}).Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	o.exec(`CREATE TABLE hn_messages_fts (id TEXT PRIMARY KEY, mine TEXT)`)
	o.exec(`INSERT INTO hn_messages_fts VALUES ('u1', 'the user''s row')`)
	before := o.schema()

	e := o.engine(true, tidemark.FaultHooks{})
	want := "setting up attachments: setting up sqlite:main/hn_messages#fulltext:index: table hn_messages_fts already exists and was not created by Tidemark, and the full-text index of table hn_messages would be kept there: drop or rename it, or declare another table name"
	_, err = e.Plan(t.Context())
	requireRefused(t, err, "hn_messages_fts", "the full-text index")
	require.EqualError(t, err, want)
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	requireRefused(t, err, "hn_messages_fts", "the full-text index")
	require.EqualError(t, err, "setting up flow HNIndex: "+want)

	require.Equal(t, before, o.schema())
	require.Equal(t, [][2]string{{"u1", "the user's row"}}, o.dump("hn_messages_fts", "id", "mine"))
	require.Equal(t, [][2]string{{"m1", "hello world"}}, o.dump("hn_messages", "id", "text"))
}

// TestSetupInterruptedCreateIsOurs: a table (or full-text index) created
// by a setup that stopped before recording it is staged as Tidemark's:
// the next update completes it rather than refusing it.
func TestSetupInterruptedCreateIsOurs(t *testing.T) {
	t.Parallel()
	for name, crashAt := range map[string]int{"table": 1, "full-text index": 2} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := newOurs(t)
			crash := errors.New("simulated crash")
			calls := 0
			_, err := o.engine(true, tidemark.FaultHooks{AfterSetupApply: func(context.Context) error {
				if calls++; calls == crashAt {
					return crash
				}
				return nil
			}}).Update(t.Context(), tidemark.UpdateOptions{})
			require.ErrorIs(t, err, crash)
			names := []string{"hn_messages"}
			if crashAt == 2 {
				names = append(names, "hn_messages_fts")
			}
			for _, n := range names {
				require.True(t, slices.ContainsFunc(o.schema(), func(r [2]string) bool { return r[0] == n }), "%s was created", n)
			}

			e := o.engine(true, tidemark.FaultHooks{})
			plan, err := e.Plan(t.Context())
			require.NoError(t, err)
			require.NotEmpty(t, plan)
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			require.Equal(t, [][2]string{{"m1", "hello world"}}, o.dump("hn_messages", "id", "text"))
			var n int
			require.NoError(t, o.db.SQL().QueryRowContext(t.Context(), `SELECT count(*) FROM hn_messages_fts WHERE hn_messages_fts MATCH 'hello'`).Scan(&n))
			require.Equal(t, 1, n)
		})
	}
}
