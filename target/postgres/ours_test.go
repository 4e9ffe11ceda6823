package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/postgres"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

// userMessage is the row of the table the tests below declare.
type userMessage struct {
	ID   string `tidemark:"id,pk"`
	Text string `tidemark:"text"`
}

// ours is one test's world: a schema holding the tables and the state
// store, and a source of one message.
type ours struct {
	t    *testing.T
	d    *database
	opts tidemark.Options
	src  *tidemarktest.Source[string, string]
}

func newOurs(t *testing.T) *ours {
	opts, d := open(t, postgres.Options{})
	src := tidemarktest.NewSource[string, string]()
	src.Set("m1", "hello world")
	return &ours{t: t, d: d, opts: opts, src: src}
}

// engine opens the flow declaring the table hn_messages, with a full-text
// index of its text if fullText.
func (o *ours) engine(fullText bool, faults tidemark.FaultHooks) *tidemark.Engine {
	f := tidemark.NewFlow("HNIndex")
	tbl := postgres.DeclareTable[userMessage](f, o.d.db, "hn_messages")
	if fullText {
		postgres.FullText(tbl, "text", "english")
	}
	tidemark.ForEach(tidemark.AddSource(f, "messages", o.src), func(_ context.Context, r *tidemark.Row, k, v string) error {
		tbl.Declare(r, userMessage{ID: k, Text: v})
		return nil
	})
	opts := o.opts
	opts.Faults = faults
	e, err := tidemark.Open(o.t.Context(), f, opts)
	require.NoError(o.t, err)
	o.t.Cleanup(func() { e.Close() })
	return e
}

func (o *ours) exec(query string) {
	_, err := o.d.db.Pool().Exec(o.t.Context(), query)
	require.NoError(o.t, err)
}

// catalog returns every relation of schema but the state store's, and
// every column of them, with its type and whether it is generated.
func (o *ours) catalog(schema string) []string {
	rows, err := o.d.db.Pool().Query(o.t.Context(), `SELECT c.relname || ' ' || c.relkind::text || coalesce(' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attgenerated::text, '')
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relname NOT LIKE 'tidemark%'
		ORDER BY c.relname, a.attnum`, schema)
	require.NoError(o.t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(o.t, err)
	return out
}

// dump returns the rows of a query of two text columns.
func (o *ours) dump(query string) [][2]string {
	rows, err := o.d.db.Pool().Query(o.t.Context(), query)
	require.NoError(o.t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var v [2]string
		err := r.Scan(&v[0], &v[1])
		return v, err
	})
	require.NoError(o.t, err)
	return out
}

// requireRefused checks that err refuses what exists, for the table
// hn_messages of the test's schema.
func (o *ours) requireRefused(err error, kind, name, role string) {
	o.t.Helper()
	require.ErrorIs(o.t, err, table.ErrNotOurs)
	var notOurs *table.NotOursError
	require.ErrorAs(o.t, err, &notOurs)
	require.Equal(o.t, table.NotOursError{Kind: kind, Name: name, Table: o.d.schema + ".hn_messages", Role: role}, *notOurs)
}

// TestSetupRefusesTablesNotOurs: a relation of the name a flow declares,
// in the DB's schema, that Tidemark did not create is refused by the plan,
// the setup and the update, and left exactly as it was, with its rows.
func TestSetupRefusesTablesNotOurs(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		fullText bool
		make     []string
	}{
		"table": {
			make: []string{`CREATE TABLE hn_messages (id text PRIMARY KEY, mine text NOT NULL)`, `INSERT INTO hn_messages VALUES ('u1', 'the user''s row')`},
		},
		"table with a full-text index declared": {
			fullText: true,
			make:     []string{`CREATE TABLE hn_messages (id text PRIMARY KEY, mine text NOT NULL)`, `INSERT INTO hn_messages VALUES ('u1', 'the user''s row')`},
		},
		"table of the same columns": {
			make: []string{`CREATE TABLE hn_messages (id text PRIMARY KEY, text text NOT NULL, mine text)`, `INSERT INTO hn_messages VALUES ('u1', 'text', 'the user''s row')`},
		},
		"view": {
			make: []string{`CREATE VIEW hn_messages AS SELECT 'u1'::text AS id, 'the user''s row'::text AS mine`},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := newOurs(t)
			for _, q := range tc.make {
				o.exec(`SET search_path TO ` + o.d.schema + `; ` + q)
			}
			query := `SELECT id, mine FROM ` + o.d.schema + `.hn_messages ORDER BY id`
			before, rows := o.catalog(o.d.schema), o.dump(query)
			require.Equal(t, [][2]string{{"u1", "the user's row"}}, rows)

			want := "setting up postgres:main/" + o.d.schema + ".hn_messages: table " + o.d.schema + ".hn_messages already exists and was not created by Tidemark: drop or rename it, or declare another table name"
			e := o.engine(tc.fullText, tidemark.FaultHooks{})
			plan, err := e.Plan(t.Context())
			o.requireRefused(err, "table", o.d.schema+".hn_messages", "")
			require.EqualError(t, err, want)
			require.Nil(t, plan)

			_, err = e.Setup(t.Context())
			o.requireRefused(err, "table", o.d.schema+".hn_messages", "")
			require.EqualError(t, err, want)

			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			o.requireRefused(err, "table", o.d.schema+".hn_messages", "")
			require.EqualError(t, err, "setting up flow HNIndex: "+want)
			require.Zero(t, o.src.Lists(), "no source was listed")

			// Nothing was staged either: the next update is refused the same.
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			o.requireRefused(err, "table", o.d.schema+".hn_messages", "")

			require.Equal(t, before, o.catalog(o.d.schema))
			require.Equal(t, rows, o.dump(query))
			status, err := e.Status(t.Context(), 0)
			require.NoError(t, err)
			require.Empty(t, status.Targets)
		})
	}
}

// TestSetupIgnoresTablesOfOtherSchemas: a table of the declared name in
// another schema is not the DB's: the flow's table is created in its own
// schema, and the other left alone.
func TestSetupIgnoresTablesOfOtherSchemas(t *testing.T) {
	t.Parallel()
	o := newOurs(t)
	_, other := pgtest.Schema(t)
	o.exec(`CREATE TABLE ` + other + `.hn_messages (id text PRIMARY KEY, mine text NOT NULL)`)
	o.exec(`INSERT INTO ` + other + `.hn_messages VALUES ('u1', 'the user''s row')`)
	before := o.catalog(other)

	_, err := o.engine(true, tidemark.FaultHooks{}).Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, [][2]string{{"m1", "hello world"}}, o.dump(`SELECT id, text FROM `+o.d.schema+`.hn_messages`))
	require.Equal(t, before, o.catalog(other))
	require.Equal(t, [][2]string{{"u1", "the user's row"}}, o.dump(`SELECT id, mine FROM `+other+`.hn_messages`))
}

// TestSetupRefusesFullTextColumnNotOurs: a full-text index added to a
// table Tidemark created is refused where the table has a column of the
// index's name that Tidemark did not create; the table goes on as it was.
func TestSetupRefusesFullTextColumnNotOurs(t *testing.T) {
	t.Parallel()
	o := newOurs(t)
	_, err := o.engine(false, tidemark.FaultHooks{}).Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	o.exec(`ALTER TABLE ` + o.d.schema + `.hn_messages ADD COLUMN text_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED`)
	before := o.catalog(o.d.schema)

	e := o.engine(true, tidemark.FaultHooks{})
	col := o.d.schema + ".hn_messages.text_tsv"
	want := "setting up attachments: setting up postgres:main/" + o.d.schema + ".hn_messages#fulltext:index: column " + col + " already exists and was not created by Tidemark, and the full-text index of table " + o.d.schema + ".hn_messages would be kept there: drop or rename it, or declare another table name"
	_, err = e.Plan(t.Context())
	o.requireRefused(err, "column", col, "the full-text index")
	require.EqualError(t, err, want)
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	o.requireRefused(err, "column", col, "the full-text index")
	require.EqualError(t, err, "setting up flow HNIndex: "+want)

	require.Equal(t, before, o.catalog(o.d.schema))
	require.Equal(t, [][2]string{{"m1", "'hello':1 'world':2"}}, o.dump(`SELECT id, text_tsv::text FROM `+o.d.schema+`.hn_messages`))
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
			require.NotEmpty(t, o.catalog(o.d.schema), "the table was created")

			e := o.engine(true, tidemark.FaultHooks{})
			plan, err := e.Plan(t.Context())
			require.NoError(t, err)
			require.NotEmpty(t, plan)
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			require.Equal(t, [][2]string{{"m1", "'hello':1 'world':2"}}, o.dump(`SELECT id, text_tsv::text FROM `+o.d.schema+`.hn_messages`))
		})
	}
}
