package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	pgsource "github.com/tidemark/tidemark/source/postgres"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// notesTable creates, in the test's schema, a table whose name and columns
// need quoting, with rows (id, body, region).
func notesTable(t *testing.T, pool *pgxpool.Pool, rows ...[3]string) {
	t.Helper()
	_, err := pool.Exec(t.Context(), `CREATE TABLE "My ""Notes""" ("ID" integer PRIMARY KEY, "Body" text NOT NULL,
		"Updated At" timestamptz NOT NULL DEFAULT clock_timestamp(), "region" text NOT NULL)`)
	require.NoError(t, err)
	for _, r := range rows {
		_, err := pool.Exec(t.Context(), `INSERT INTO "My ""Notes""" ("ID", "Body", "region") VALUES ($1, $2, $3)`, r[0], r[1], r[2])
		require.NoError(t, err)
	}
}

func listKeys(t *testing.T, s *pgsource.Source) []tidemark.Listed[string] {
	t.Helper()
	var out []tidemark.Listed[string]
	for l, err := range s.List(t.Context()) {
		require.NoError(t, err)
		out = append(out, l)
	}
	return out
}

// TestListAndGet: quoted identifiers, the filter, the ordinal column in
// µs, composite keys as JSON arrays, and keys that are gone.
func TestListAndGet(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Pool(t)
	notesTable(t, pool, [3]string{"2", "two", "eu"}, [3]string{"1", "one", "eu"}, [3]string{"3", "three", "us"})
	ctx := t.Context()
	s, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: `My "Notes"`, Key: []string{"ID"},
		Ordinal: "Updated At", Columns: []string{"Body"}, Where: `"region" = 'eu'`})
	require.NoError(t, err)
	got := listKeys(t, s)
	require.Len(t, got, 2)
	require.Equal(t, "1", got[0].Key)
	require.Equal(t, "2", got[1].Key)
	var updated time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT "Updated At" FROM "My ""Notes""" WHERE "ID" = 1`).Scan(&updated))
	require.Equal(t, tidemark.Ordinal(updated.UnixMicro()), got[0].Ordinal)
	require.Nil(t, got[0].Fingerprint, "an ordinal column: no fingerprint in the listing")

	f, err := s.Get(ctx, "2")
	require.NoError(t, err)
	require.True(t, f.Exists)
	require.Equal(t, pgsource.Row{"Body": "two"}, f.Value)
	require.NotEmpty(t, f.Fingerprint)
	for _, gone := range []string{"3", "99", "abc", "", `["1"]`} {
		f, err := s.Get(ctx, gone)
		require.NoError(t, err, gone)
		require.False(t, f.Exists, "%q is no row", gone)
	}

	// Composite keys.
	_, err = pool.Exec(ctx, `CREATE TABLE pairs (a text, b integer, v text, PRIMARY KEY (a, b))`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO pairs VALUES ('x', 1, 'x1'), ('x', 2, 'x2'), ('y"', 1, 'y1')`)
	require.NoError(t, err)
	p, err := pgsource.New(ctx, pool, pgsource.Options{Schema: schema, Table: "pairs", Key: []string{"a", "b"}})
	require.NoError(t, err)
	var keys []string
	for _, l := range listKeys(t, p) {
		keys = append(keys, l.Key)
		require.NotEmpty(t, l.Fingerprint, "no ordinal column: the listing carries fingerprints")
	}
	require.Equal(t, []string{`["x", "1"]`, `["x", "2"]`, `["y\"", "1"]`}, keys)
	f, err = p.Get(ctx, `["y\"", "1"]`)
	require.NoError(t, err)
	require.Equal(t, pgsource.Row{"a": `y"`, "b": int32(1), "v": "y1"}, f.Value)
	for _, gone := range []string{`["x"]`, `["x", "3"]`, `x`, `["x", null]`} {
		f, err := p.Get(ctx, gone)
		require.NoError(t, err, gone)
		require.False(t, f.Exists, gone)
	}

	for name, o := range map[string]pgsource.Options{
		"no such table":  {Schema: schema, Table: "nosuch", Key: []string{"ID"}},
		"no such column": {Schema: schema, Table: `My "Notes"`, Key: []string{"id"}},
		"bad ordinal":    {Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}, Ordinal: "Body"},
		"bad filter":     {Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}, Where: "nosuch = 1"},
		"no key":         {Schema: schema, Table: `My "Notes"`},
	} {
		_, err := pgsource.New(ctx, pool, o)
		require.Error(t, err, name)
	}
}

// world is a flow copying a table's bodies into an in-memory table.
type world struct {
	t     *testing.T
	pool  *pgxpool.Pool
	src   *pgsource.Source
	db    *tidemarktest.DB
	state string
}

func newWorld(t *testing.T, ordinal string) *world {
	t.Helper()
	pool, schema := pgtest.Pool(t)
	notesTable(t, pool, [3]string{"1", "one", "eu"}, [3]string{"2", "two", "eu"}, [3]string{"3", "three", "eu"})
	s, err := pgsource.New(t.Context(), pool, pgsource.Options{Schema: schema, Table: `My "Notes"`, Key: []string{"ID"}, Ordinal: ordinal})
	require.NoError(t, err)
	return &world{t: t, pool: pool, src: s, db: tidemarktest.NewDB(), state: filepath.Join(t.TempDir(), "state.db")}
}

func (w *world) open(opts tidemark.Options) *tidemark.Engine {
	w.t.Helper()
	f := tidemark.NewFlow("Copy")
	bodies := tidemarktest.Table[string](f, w.db, "bodies")
	tidemark.ForEach(tidemark.AddSource(f, "notes", w.src), func(_ context.Context, r *tidemark.Row, key string, row pgsource.Row) error {
		bodies.Declare(r, target.Key(key), row["Body"].(string))
		return nil
	})
	opts.StateStore = w.state
	e, err := tidemark.Open(w.t.Context(), f, opts)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { e.Close() })
	return e
}

func (w *world) bodies() map[string]string {
	out := make(map[string]string)
	for k, v := range w.db.Rows("bodies") {
		out[string(k)] = v.(string)
	}
	return out
}

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	_, err := w.pool.Exec(w.t.Context(), sql, args...)
	require.NoError(w.t, err)
}

var yes = func(context.Context, tidemarktype.Deletions) (bool, error) { return true, nil }

// TestIncremental, with and without an ordinal column: a second update
// reads nothing; an UPDATE is read and written; a DELETE deletes. Without
// an ordinal, the listing's fingerprints spare the unchanged rows.
func TestIncremental(t *testing.T) {
	t.Parallel()
	for _, ordinal := range []string{"Updated At", ""} {
		t.Run(fmt.Sprintf("ordinal %q", ordinal), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, ordinal)
			e := w.open(tidemark.Options{})
			ctx := t.Context()
			st, err := e.Update(ctx, tidemark.UpdateOptions{})
			require.NoError(t, err)
			require.EqualValues(t, 3, st.Sources["notes"].Added)
			st, err = e.Update(ctx, tidemark.UpdateOptions{})
			require.NoError(t, err)
			require.Zero(t, st.Sources["notes"].Fetched)

			w.exec(`UPDATE "My ""Notes""" SET "Body" = 'TWO', "Updated At" = clock_timestamp() WHERE "ID" = 2`)
			w.exec(`DELETE FROM "My ""Notes""" WHERE "ID" = 3`)
			st, err = e.Update(ctx, tidemark.UpdateOptions{Confirm: yes})
			require.NoError(t, err)
			require.EqualValues(t, 1, st.Sources["notes"].Fetched, "the updated row alone")
			require.EqualValues(t, 1, st.Sources["notes"].Updated)
			require.EqualValues(t, 1, st.Sources["notes"].Deleted)
			require.Equal(t, map[string]string{"1": "one", "2": "TWO"}, w.bodies())
		})
	}
}

var errCrash = errors.New("simulated crash")

// TestInterruptedUpdateConverges: an update that stops before its commit,
// then a clean one: the target is the table.
func TestInterruptedUpdateConverges(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "Updated At")
	ctx := t.Context()
	_, err := w.open(tidemark.Options{}).Update(ctx, tidemark.UpdateOptions{})
	require.NoError(t, err)
	w.exec(`UPDATE "My ""Notes""" SET "Body" = "Body" || '!', "Updated At" = clock_timestamp()`)
	w.exec(`INSERT INTO "My ""Notes""" ("ID", "Body", "region") VALUES (4, 'four', 'eu')`)
	crashing := w.open(tidemark.Options{Batch: tidemark.BatchOptions{MaxRows: 1}, Faults: tidemark.FaultHooks{BeforeCommit: func(context.Context) error { return errCrash }}})
	_, err = crashing.Update(ctx, tidemark.UpdateOptions{})
	require.ErrorIs(t, err, errCrash)
	st, err := w.open(tidemark.Options{}).Update(ctx, tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Zero(t, st.Failed())
	require.Equal(t, map[string]string{"1": "one!", "2": "two!", "3": "three!", "4": "four"}, w.bodies())
}

// TestLive: with live mode running (its periodic listing an hour away),
// each of 20 UPDATEs reaches the target through LISTEN/NOTIFY within 1s,
// the median logged; a DELETE too; Drop removes the trigger.
func TestLive(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "Updated At")
	e := w.open(tidemark.Options{})
	ctx := t.Context()
	stop := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	first := make(chan struct{})
	go func() {
		done <- e.Live(ctx, tidemark.LiveOptions{Refresh: time.Hour, Stop: stop, OnPass: func(tidemark.Pass) { once.Do(func() { close(first) }) }})
	}()
	<-first
	triggers := func() int {
		var n int
		require.NoError(t, w.pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = '"My ""Notes"""'::regclass AND NOT tgisinternal`).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return triggers() == 1 }, 5*time.Second, 5*time.Millisecond, "the watch installs its trigger")
	time.Sleep(100 * time.Millisecond) // LISTEN runs
	var lat []time.Duration
	for i := range 20 {
		want := fmt.Sprintf("edit %d", i)
		start := time.Now()
		w.exec(`UPDATE "My ""Notes""" SET "Body" = $1, "Updated At" = clock_timestamp() WHERE "ID" = 1`, want)
		require.Eventually(t, func() bool { return w.bodies()["1"] == want }, 5*time.Second, time.Millisecond, "edit %d", i)
		lat = append(lat, time.Since(start))
	}
	w.exec(`DELETE FROM "My ""Notes""" WHERE "ID" = 2`)
	require.Eventually(t, func() bool { _, ok := w.bodies()["2"]; return !ok }, 5*time.Second, time.Millisecond, "the delete")
	close(stop)
	require.NoError(t, <-done)
	slices.Sort(lat)
	t.Logf("UPDATE → target: median %s, min %s, max %s, over %d updates", ((lat[9] + lat[10]) / 2).Round(time.Millisecond),
		lat[0].Round(time.Millisecond), lat[19].Round(time.Millisecond), len(lat))
	require.Less(t, lat[19], time.Second)

	_, err := e.Drop(ctx)
	require.NoError(t, err)
	require.Zero(t, triggers(), "Drop removed the trigger")
}
