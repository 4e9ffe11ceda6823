package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	pgsource "github.com/tidemark/tidemark/source/postgres"
)

// TestBreakCompositeKeyNullListedButGone: a composite key with a NULL
// part (a view over a LEFT JOIN, a UNIQUE of nullable columns) is listed
// as ["x", null], but Get takes that key for one that cannot be: the row
// is never indexed, or is deleted once a part becomes NULL.
func TestBreakCompositeKeyNullListedButGone(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `CREATE TABLE links (a text NOT NULL, b text, v text, UNIQUE (a, b));
		INSERT INTO links VALUES ('x', '1', 'x1'), ('x', NULL, 'x-none')`)
	require.NoError(t, err)
	s, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "links", Key: []string{"a", "b"}})
	require.NoError(t, err)
	for _, l := range listKeys(t, s) {
		f, err := s.Get(ctx, l.Key)
		require.NoError(t, err)
		require.True(t, f.Exists, "List yields %s, Get says it is gone", l.Key)
	}
}

// TestBreakDollarQuoteInIdentifier: identifiers are said to be quoted
// "whatever their characters", but the trigger's body is dollar-quoted
// with $tidemark$: a key column whose name holds it ends the body early,
// and Watch (so live mode) fails for good on that table.
func TestBreakDollarQuoteInIdentifier(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `CREATE TABLE odd ("k$tidemark$" integer PRIMARY KEY, v text)`)
	require.NoError(t, err)
	s, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "odd", Key: []string{"k$tidemark$"}})
	require.NoError(t, err)
	require.Len(t, listKeys(t, s), 0, "List and Get quote it")
	require.NoError(t, s.Install(ctx))
}

// TestBreakDropSourceRemovesOthersTrigger: the trigger, its function and
// the channel are named after the table alone. Two sources over one table
// (two flows: one per region, or another key) share them: Engine.Drop of
// one flow removes the trigger of the other, whose live mode then hears of
// no change — silently, its Watch still running.
func TestBreakDropSourceRemovesOthersTrigger(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	notesTable(t, pool, [3]string{"1", "one", "eu"}, [3]string{"2", "two", "us"})
	ctx := t.Context()
	eu, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}, Where: `"region" = 'eu'`})
	require.NoError(t, err)
	us, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}, Where: `"region" = 'us'`})
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := make(chan tidemark.Change[string], 16)
	done := make(chan error, 2)
	go func() { done <- eu.Watch(wctx, func(tidemark.Change[string]) error { return nil }) }()
	time.Sleep(300 * time.Millisecond) // installed and listening (one at a time: see TestBreakConcurrentInstall)
	go func() {
		done <- us.Watch(wctx, func(c tidemark.Change[string]) error { changes <- c; return nil })
	}()
	time.Sleep(300 * time.Millisecond)

	require.NoError(t, eu.DropSource(ctx)) // Engine.Drop of the eu flow
	_, err = pool.Exec(ctx, `UPDATE "My ""Notes""" SET "Body" = 'TWO' WHERE "ID" = 2`)
	require.NoError(t, err)
	select {
	case c := <-changes:
		require.Equal(t, "2", c.Key)
	case err := <-done:
		t.Fatalf("a watch ended: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("the us source's watch heard nothing of its row's UPDATE once the eu flow was dropped")
	}
}

// TestBreakGetDataErrorIsGone: Get takes any error of SQLSTATE class 22
// (data exception) for "a key not of the column's type", and says the row
// is gone. A filter that fails on one row's data (a cast in Where, a
// division by zero) makes the listing fail —
// but Get, called for that row by live mode or a listing that read it
// before, reports it gone and its targets are deleted.
func TestBreakGetDataErrorIsGone(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `CREATE TABLE products (id integer PRIMARY KEY, attrs jsonb NOT NULL, qty integer NOT NULL);
		INSERT INTO products VALUES (1, '{"price": "12.50"}', 5), (2, '{"price": "n/a"}', 5), (3, '{"price": "1"}', 0)`)
	require.NoError(t, err)
	byPrice, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "products", Key: []string{"id"}, Where: `(attrs->>'price')::numeric > 0`})
	require.NoError(t, err)
	byRatio, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "products", Key: []string{"id"}, Where: `100 / qty < 1000`})
	require.NoError(t, err)

	for _, tt := range []struct {
		name string
		s    *pgsource.Source
		key  string
	}{{"filter fails on row 2", byPrice, "2"}, {"division by zero on row 3", byRatio, "3"}} {
		var lerr error
		for _, err := range tt.s.List(ctx) {
			if err != nil {
				lerr = err
			}
		}
		t.Logf("%s: the listing fails: %v", tt.name, lerr)
		f, err := tt.s.Get(ctx, tt.key)
		if err == nil && !f.Exists {
			t.Errorf("%s: Get(%s) says the row is gone; it is there, and the listing fails on it", tt.name, tt.key)
		}
	}
}

// TestBreakConcurrentInstall: two Watches of the table starting at once
// (two flows, or two replicas of one, entering live mode together) race
// on CREATE OR REPLACE FUNCTION of the same name: one fails with a unique
// violation of pg_proc.
func TestBreakConcurrentInstall(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	notesTable(t, pool)
	ctx := t.Context()
	s, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}})
	require.NoError(t, err)
	for round := range 10 {
		require.NoError(t, s.DropSource(ctx))
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- s.Install(ctx) }()
		}
		for range 2 {
			require.NoError(t, <-errs, "round %d", round)
		}
	}
}

// TestBreakWatchOnView: the package is "a source over a PostgreSQL table
// (or view)", but Watch installs an AFTER … FOR EACH ROW trigger, which a
// view cannot have: live mode's change stream fails, and is restarted to
// fail again, for as long as live mode runs.
func TestBreakWatchOnView(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	notesTable(t, pool, [3]string{"1", "one", "eu"})
	ctx := t.Context()
	_, err := pool.Exec(ctx, `CREATE VIEW eu_notes AS SELECT * FROM "My ""Notes""" WHERE region = 'eu'`)
	require.NoError(t, err)
	s, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "eu_notes", Key: []string{"ID"}})
	require.NoError(t, err)
	require.Len(t, listKeys(t, s), 1, "a view lists")
	require.NoError(t, s.Install(ctx), "live mode over the view")
}
