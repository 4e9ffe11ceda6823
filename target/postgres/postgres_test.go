package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/postgres"
	"github.com/tidemark/tidemark/target/tabletest"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// database is a test's database: its tables and state store share a
// fresh schema.
type database struct {
	db     *postgres.DB
	url    string
	schema string
}

func open(t *testing.T, opts postgres.Options) (tidemark.Options, *database) {
	t.Helper()
	url, schema := pgtest.Schema(t)
	opts.Schema = schema
	db, err := postgres.Connect(t.Context(), "main", url, opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return tidemark.Options{StateStore: url, StateSchema: schema}, &database{db: db, url: url, schema: schema}
}

func columns(t *testing.T, d *database, table string) []string {
	t.Helper()
	rows, err := d.db.Pool().Query(t.Context(), `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2`, d.schema, table)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	slices.Sort(names)
	return names
}

func backend(opts postgres.Options) tabletest.Backend {
	return tabletest.Backend{
		Open: func(t *testing.T) (tidemark.Options, any) {
			o, d := open(t, opts)
			return o, d
		},
		Columns: func(t *testing.T, db any, table string) []string { return columns(t, db.(*database), table) },
		V1: func(f *tidemark.Flow, db any, name string, fullText bool) tabletest.Table[tabletest.RowV1] {
			t := postgres.DeclareTable[tabletest.RowV1](f, db.(*database).db, name)
			if fullText {
				postgres.FullText(t, "body", "english")
			}
			return t
		},
		V2: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowV2] {
			return postgres.DeclareTable[tabletest.RowV2](f, db.(*database).db, name)
		},
		V3: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowV3] {
			return postgres.DeclareTable[tabletest.RowV3](f, db.(*database).db, name)
		},
		PK: func(f *tidemark.Flow, db any, name string) tabletest.Table[tabletest.RowPK] {
			return postgres.DeclareTable[tabletest.RowPK](f, db.(*database).db, name)
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	tabletest.Exercise(t, backend(postgres.Options{}))
}

func TestConformanceWithParallelWriters(t *testing.T) {
	t.Parallel()
	tabletest.Exercise(t, backend(postgres.Options{Writers: 4}))
}

// TestConnectionKilledMidBatch terminates the target's connection while it
// copies a batch in: the update retries and ends with exactly the rows of
// the source.
func TestConnectionKilledMidBatch(t *testing.T) {
	t.Parallel()
	url, schema := pgtest.Schema(t)
	app := fmt.Sprintf("tmkill%d", time.Now().UnixNano())
	db, err := postgres.Connect(t.Context(), "main", url+"&application_name="+app, postgres.Options{Schema: schema})
	require.NoError(t, err)
	defer db.Close()
	admin, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	defer admin.Close(context.Background())

	src := tidemarktest.NewSource[string, string]()
	const n = 30000
	for i := range n {
		src.Set(fmt.Sprintf("k%06d", i), strings.Repeat("lorem ipsum dolor sit amet ", 8)+fmt.Sprint(i))
	}
	type row struct {
		ID   string `tidemark:"id,pk"`
		Text string `tidemark:"text"`
	}
	var logs strings.Builder
	var logsMu sync.Mutex
	opts := tidemark.Options{
		StateStore: url, StateSchema: schema,
		Batch:  tidemark.BatchOptions{MaxRows: n, MaxActions: n},
		Retry:  tidemark.RetryPolicy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, MaxElapsed: time.Minute},
		Logger: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { logsMu.Lock(); defer logsMu.Unlock(); return logs.Write(p) }), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}

	// Kill the first COPY of the target seen running.
	killed := make(chan int, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			var pids []int32
			rows, err := admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query ILIKE 'copy%'`, app)
			if err == nil {
				pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
			}
			if err == nil && len(pids) > 0 {
				var n int
				_ = admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(p)) FROM unnest($1::int[]) AS p`, pids).Scan(&n)
				killed <- n
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	f := tidemark.NewFlow("Kill")
	tbl := postgres.DeclareTable[row](f, db, "items")
	postgres.FullText(tbl, "text", "english")
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, id, v string) error {
		tbl.Declare(r, row{ID: id, Text: v})
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	defer e.Close()
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Zero(t, st.Failed())

	select {
	case got := <-killed:
		require.Positive(t, got, "a copy was terminated")
	default:
		t.Fatal("no copy was seen running to terminate")
	}
	logsMu.Lock()
	// The server's 57P01 or, when the socket closes first, a closed
	// connection: either way the write is what was retried.
	require.Regexp(t, `retrying after a transient fault" op=write attempt=\d+ err="writing to table items: `, logs.String(), "the terminated write was retried")
	logsMu.Unlock()

	var count, wrong int
	require.NoError(t, admin.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE text NOT LIKE '%' || substr(id, 2)::int::text) FROM `+tbl.QualifiedName()).Scan(&count, &wrong))
	require.Equal(t, n, count)
	require.Zero(t, wrong)
	hits, err := tbl.Search(t.Context(), "lorem", 3)
	require.NoError(t, err)
	require.Len(t, hits, 3)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type textRow struct {
	ID string `tidemark:"id,pk"`
	V  string `tidemark:"v"`
}

type intRow struct {
	ID string `tidemark:"id,pk"`
	V  int    `tidemark:"v"`
}

type floatRow struct {
	ID string  `tidemark:"id,pk"`
	V  float64 `tidemark:"v"`
}

// run runs one update of a flow with one table of rows of type T, made
// from the source's values by row.
func run[T any](t *testing.T, opts tidemark.Options, db *postgres.DB, src *tidemarktest.Source[string, string], row func(id, v string) T, attach func(*postgres.Table[T])) *postgres.Table[T] {
	t.Helper()
	f := tidemark.NewFlow("PG")
	tbl := postgres.DeclareTable[T](f, db, "items")
	if attach != nil {
		attach(tbl)
	}
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, id, v string) error {
		tbl.Declare(r, row(id, v))
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	defer e.Close()
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Zero(t, st.Failed(), "%v", st.Failures)
	return tbl
}

func allRows[T any](t *testing.T, tbl *postgres.Table[T]) []T {
	t.Helper()
	var out []T
	for r, err := range tbl.Rows(t.Context()) {
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func TestColumnTypeChanges(t *testing.T) {
	t.Parallel()
	opts, d := open(t, postgres.Options{})
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "1")
	src.Set("b", "22")

	// text → bigint converts the data in place.
	run(t, opts, d.db, src, func(id, v string) textRow { return textRow{ID: id, V: v} }, nil)
	tbl := run(t, opts, d.db, src, func(id, v string) intRow {
		var n int
		fmt.Sscan(v, &n)
		return intRow{ID: id, V: n}
	}, nil)
	require.Equal(t, []intRow{{"a", 1}, {"b", 22}}, allRows(t, tbl))

	// bigint → double precision too.
	f := run(t, opts, d.db, src, func(id, v string) floatRow { var x float64; fmt.Sscan(v, &x); return floatRow{ID: id, V: x + 0.5} }, nil)
	require.Equal(t, []floatRow{{"a", 1.5}, {"b", 22.5}}, allRows(t, f))

	// Data that does not convert (text "x" into bigint): the column is
	// replaced, and every row written again.
	src.Set("a", "x")
	run(t, opts, d.db, src, func(id, v string) textRow { return textRow{ID: id, V: v} }, nil)
	tbl = run(t, opts, d.db, src, func(id, v string) intRow { return intRow{ID: id, V: len(v)} }, nil)
	require.Equal(t, []intRow{{"a", 1}, {"b", 2}}, allRows(t, tbl))
	require.Equal(t, []string{"id", "v"}, columns(t, d, "items"))
}

func TestSQLCommands(t *testing.T) {
	t.Parallel()
	opts, d := open(t, postgres.Options{})
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	row := func(id, v string) textRow { return textRow{ID: id, V: v} }
	indexes := func() []string {
		rows, err := d.db.Pool().Query(t.Context(), `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'items' ORDER BY 1`, d.schema)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	viewExists := func() bool {
		var ok bool
		require.NoError(t, d.db.Pool().QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, d.schema+".items_upper").Scan(&ok))
		return ok
	}
	index := func(col string) func(*postgres.Table[textRow]) {
		return func(tbl *postgres.Table[textRow]) {
			postgres.SQLCommand(tbl, "by_v", `CREATE INDEX IF NOT EXISTS items_by_`+col+` ON {{table}} (`+col+`)`, `DROP INDEX IF EXISTS {{schema}}.items_by_`+col)
			postgres.SQLCommand(tbl, "view", `CREATE OR REPLACE VIEW {{schema}}.items_upper AS SELECT id, upper(v) AS v FROM {{table}}`, `DROP VIEW IF EXISTS {{schema}}.items_upper`)
		}
	}
	run(t, opts, d.db, src, row, index("v"))
	require.Equal(t, []string{"items_by_v", "items_pkey"}, indexes())
	require.True(t, viewExists())
	var upper string
	require.NoError(t, d.db.Pool().QueryRow(t.Context(), `SELECT v FROM `+d.schema+`.items_upper`).Scan(&upper))
	require.Equal(t, "ALPHA", upper)

	// Changed: the old command's teardown runs, then the new setup.
	run(t, opts, d.db, src, row, index("id"))
	require.Equal(t, []string{"items_by_id", "items_pkey"}, indexes())

	// No longer declared: torn down.
	run(t, opts, d.db, src, row, nil)
	require.Equal(t, []string{"items_pkey"}, indexes())
	require.False(t, viewExists())
}

func TestNewRefusesACachingPool(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = postgres.New("main", pool, postgres.Options{})
	require.ErrorContains(t, err, "caches statements")

	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeDescribeExec
	ok, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	defer ok.Close()
	db, err := postgres.New("main", ok, postgres.Options{})
	require.NoError(t, err)
	db.Close()
	require.NoError(t, ok.Ping(t.Context()), "a pool of your own stays open")

	_, err = postgres.New("main", ok, postgres.Options{Writers: 100})
	require.ErrorContains(t, err, "Writers must be between 1 and 64, got 100")
}

func TestTableNames(t *testing.T) {
	t.Parallel()
	opts, d := open(t, postgres.Options{})
	f := tidemark.NewFlow("NotesIndex")
	byDefault := postgres.DeclareTable[tabletest.RowV1](f, d.db, "")
	require.Equal(t, "notes_index__row_v1", byDefault.Name())
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
		byDefault.Declare(r, tabletest.RowV1{ID: k, Body: v})
		return nil
	})
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	defer e.Close()
	_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	var n int
	require.NoError(t, d.db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+byDefault.QualifiedName()).Scan(&n))
	require.Equal(t, 1, n)

	// PostgreSQL would truncate names past 63 bytes: they are refused.
	g := tidemark.NewFlow("NotesIndex")
	postgres.DeclareTable[tabletest.RowV1](g, d.db, strings.Repeat("t", 64))
	postgres.DeclareTable[struct {
		ID string `tidemark:"an_identifier_that_is_much_too_long_for_postgresql_to_keep_whole,pk"`
	}](g, d.db, "ok")
	_, err = tidemark.Open(t.Context(), g, opts)
	require.ErrorContains(t, err, `table name "tttt`)
	require.ErrorContains(t, err, `column name "an_identifier_that_is_much_too_long_for_postgresql_to_keep_whole" is longer than 63 bytes`)
}

// message is a row of TestAFailedRowWritesNothing: a thread and its
// comments, as hnindex writes them.
type message struct {
	ID     string `tidemark:"id,pk"`
	Thread string `tidemark:"thread"`
	Text   string `tidemark:"text"`
}

// TestAFailedRowWritesNothing: a source row whose write fails (one of its
// comments breaks a CHECK constraint of the table) leaves none of its new
// rows and all of its old ones, whatever the number of writers, while the
// other rows of the batch are written.
func TestAFailedRowWritesNothing(t *testing.T) {
	t.Parallel()
	for _, writers := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) {
			t.Parallel()
			opts, d := open(t, postgres.Options{Writers: writers})
			opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 2}
			src := tidemarktest.NewSource[string, []string]()
			var tbl *postgres.Table[message]
			update := func() *tidemarktype.UpdateStats {
				f := tidemark.NewFlow("AllOrNothing")
				tbl = postgres.DeclareTable[message](f, d.db, "messages")
				postgres.FullText(tbl, "text", "english")
				postgres.SQLCommand(tbl, "no_poison",
					`ALTER TABLE {{table}} ADD CONSTRAINT no_poison CHECK (text <> 'poison')`,
					`ALTER TABLE {{table}} DROP CONSTRAINT IF EXISTS no_poison`)
				tidemark.ForEach(tidemark.AddSource(f, "threads", src), func(_ context.Context, r *tidemark.Row, id string, comments []string) error {
					tbl.Declare(r, message{ID: id, Thread: id, Text: "thread " + id})
					for i, c := range comments {
						tbl.Declare(r, message{ID: fmt.Sprintf("%s/%d", id, i), Thread: id, Text: c})
					}
					return nil
				})
				e, err := tidemark.Open(t.Context(), f, opts)
				require.NoError(t, err)
				defer e.Close()
				st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
				require.NoError(t, err)
				return st
			}
			read := func() map[string]string {
				out := make(map[string]string)
				for m, err := range tbl.Rows(t.Context()) {
					require.NoError(t, err)
					out[m.ID] = m.Text
				}
				return out
			}
			for i := range 10 {
				src.Set(fmt.Sprintf("t%d", i), []string{"one", "two", "three"})
			}
			update()
			before := read()

			// Every thread changes; t3 gains, among new comments, one that
			// cannot be indexed.
			for i := range 10 {
				src.Set(fmt.Sprintf("t%d", i), []string{"one", "two changed", "three", "four", "five"})
			}
			src.Set("t3", []string{"one changed", "two changed", "three", "four", "poison", "six"})
			st := update()
			require.Equal(t, int64(1), st.Failed(), "%v", st.Failures)
			require.Contains(t, st.Failures[0].Message, `violates check constraint "no_poison"`)

			after := read()
			for id, text := range after {
				thread := strings.SplitN(id, "/", 2)[0]
				if thread == "t3" {
					continue
				}
				want, _ := src.Value(thread)
				if id != thread {
					var i int
					fmt.Sscanf(strings.TrimPrefix(id, thread+"/"), "%d", &i)
					require.Equal(t, want[i], text, id)
				}
			}
			require.Len(t, after, 1+3+9*6, "t3's 4 old rows and 6 rows for each other thread")
			for id, text := range before {
				if strings.HasPrefix(id, "t3") {
					require.Equal(t, text, after[id], "t3's row %s is as it was", id)
				}
			}
		})
	}
}

// TestFreshTableLoadedInSeveralBatches: a table empty at its first write is
// copied into batch after batch, and merged once a row exists.
func TestFreshTableLoadedInSeveralBatches(t *testing.T) {
	t.Parallel()
	for _, writers := range []int{1, 2} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) {
			t.Parallel()
			opts, d := open(t, postgres.Options{Writers: writers})
			opts.Batch = tidemark.BatchOptions{MaxRows: 7}
			src := tidemarktest.NewSource[string, string]()
			for i := range 50 {
				src.Set(fmt.Sprintf("k%02d", i), fmt.Sprint("v", i))
			}
			var tbl *postgres.Table[message]
			update := func() *tidemarktype.UpdateStats {
				f := tidemark.NewFlow("Fresh")
				tbl = postgres.DeclareTable[message](f, d.db, "messages")
				tidemark.ForEach(tidemark.AddSource(f, "s", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
					tbl.Declare(r, message{ID: k, Thread: k, Text: v})
					return nil
				})
				e, err := tidemark.Open(t.Context(), f, opts)
				require.NoError(t, err)
				defer e.Close()
				st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
				require.NoError(t, err)
				require.Zero(t, st.Failed(), "%v", st.Failures)
				return st
			}
			update()
			count := func() int {
				n := 0
				for _, err := range tbl.Rows(t.Context()) {
					require.NoError(t, err)
					n++
				}
				return n
			}
			require.Equal(t, 50, count())
			for i := range 60 {
				src.Set(fmt.Sprintf("k%02d", i), fmt.Sprint("w", i))
			}
			update()
			require.Equal(t, 60, count())
			for m, err := range tbl.Rows(t.Context()) {
				require.NoError(t, err)
				require.Equal(t, "w", m.Text[:1], m.ID)
			}
		})
	}
}
