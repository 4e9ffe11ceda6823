package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/tidemarktest"
)

// An update whose listing comes back empty deletes nothing without --yes,
// says so and exits 1; with --yes it deletes.
func TestEmptyListingNeedsYes(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "the quick brown fox")
			src.Set("b", "a lazy dog")
			app, _ := notesApp(src)
			r := run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			src.Delete("a")
			src.Delete("b")

			// A preview shows the rows kept, asks nothing, exits 0.
			r = run(t, app, cli.Env{}, "update", "--preview", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "source notes: 0 listed, 0 fetched; would add 0, update 0, reprocess 0, delete 0; 0 unchanged, 0 failed")
			require.Contains(t, r.stdout, "source notes: 2 rows the listing leaves out would be kept: deleting them needs a confirmation (--yes)")

			r = run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stdout, "source notes: 0 listed, 0 fetched, 0 added, 0 updated, 0 reprocessed, 0 deleted")
			require.Contains(t, r.stdout, "source notes: 2 rows the listing left out were not deleted: that needs a confirmation")
			require.Contains(t, r.stderr, "notes: source notes: 2 rows not deleted: its listing named no rows, while 2 rows are kept for it; deleting them needs a confirmation; pass --yes to delete them")
			r = run(t, app, cli.Env{}, "search", "--db", db, "--json", "fox")
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, `"id":"a"`, "nothing was deleted")

			// On a terminal the user is asked; no is the default.
			r = run(t, app, cli.Env{Terminal: true, Stdin: strings.NewReader("\n")}, "update", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stdout, "source notes: its listing named no rows, while 2 rows are kept for it.\nThe listing named 0 rows; 2 of the 2 rows kept would be deleted, with what they wrote.\nDelete them? [y/N] ")
			require.Contains(t, r.stderr, "answer yes, or pass --yes")

			r = run(t, app, cli.Env{Terminal: true, Stdin: strings.NewReader("yes\n")}, "update", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "2 deleted")

			src.Set("c", "a cat")
			r = run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			src.Delete("c")
			r = run(t, app, cli.Env{}, "update", "--db", db, "--yes")
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "1 deleted")
		})
	}
}

// Read-only commands on a path with no database exit 1, naming it, and
// create nothing.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app, _ := notesApp(tidemarktest.NewSource[string, string]())
	typo := filepath.Join(dir, "typo.db")
	for _, args := range [][]string{
		{"update", "--preview"}, {"search", "fox"}, {"show"}, {"show", "row", "a"}, {"show", "target", "notes", "a"}, {"ls"}, {"evaluate"}, {"server", "--addr", "127.0.0.1:0"}, {"drop", "--yes"},
	} {
		r := run(t, app, cli.Env{}, append(args, "--db", typo)...)
		require.Equal(t, cli.ExitFatal, r.code, "%v: %s", args, r.stdout)
		require.Equal(t, "notes: no database at "+typo+" (run `notes update` first)\n", r.stderr, "%v", args)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing created")
}

// --db values that are not a SQLite path or a PostgreSQL database are
// refused; passwords never show; SQLite paths are taken literally.
func TestDatabaseAddresses(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "the quick brown fox")
	app, _ := notesApp(src)

	r := run(t, app, cli.Env{}, "update", "--db", "mysql://root:s3cret@h/db")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Equal(t, "notes: --db: a mysql:// URL is not supported: give a SQLite file path or a postgres:// URL\n", r.stderr)

	// An unreachable PostgreSQL, named with an upper-case scheme or libpq
	// keywords: taken as PostgreSQL, its password hidden.
	for _, db := range []string{"POSTGRES://user:s3cret@127.0.0.1:1/db?connect_timeout=2", "host=127.0.0.1 port=1 user=u password=s3cret dbname=d connect_timeout=2"} {
		r = run(t, app, cli.Env{}, "update", "--db", db)
		require.Equal(t, cli.ExitFatal, r.code, db)
		require.NotContains(t, r.stdout+r.stderr, "s3cret", db)
		require.Contains(t, r.stderr, "127.0.0.1", db)
	}

	r = run(t, app, cli.Env{}, "update", "--db", "we?ird#na%me.db")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Contains(t, names, "we?ird#na%me.db")
	for _, n := range names {
		require.True(t, strings.HasPrefix(n, "we?ird#na%me.db"), "no file %q beside the database", n)
	}
	r = run(t, app, cli.Env{}, "search", "--db", "we?ird#na%me.db", "fox")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
}

// The libpq keyword form reaches a real PostgreSQL.
func TestDatabaseKeywords(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	m := regexp.MustCompile(`^postgres://([^@/]+)@([^:/]+):(\d+)/([^?]+)`).FindStringSubmatch(url)
	require.NotNil(t, m, url)
	kw := "host=" + m[2] + " port=" + m[3] + " user=" + m[1] + " dbname=" + m[4] + " sslmode=disable"
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "the quick brown fox")
	app, _ := notesApp(src)
	r := run(t, app, cli.Env{}, "update", "--db", kw)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	r = run(t, app, cli.Env{}, "search", "--db", url, "fox")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "fox")
}

func TestVersionAndLiveShorthand(t *testing.T) {
	t.Parallel()
	app, _ := notesApp(tidemarktest.NewSource[string, string]())
	r := run(t, app, cli.Env{}, "--version")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Regexp(t, `^notes \S+.* go1\.\d+`, r.stdout)

	stop := make(chan struct{})
	time.AfterFunc(time.Second, func() { close(stop) })
	r = run(t, app, cli.Env{Stop: stop}, "update", "-L", "--db", filepath.Join(t.TempDir(), "n.db"))
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "stopped", "-L is --live")
}

// A second update of a locked flow exits 1 naming the holder, with no
// summary; a second live update is refused at start.
func TestLockedFlow(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "the quick brown fox")
			inGet := make(chan struct{})
			release := make(chan struct{})
			src.OnGet(func(string) {
				close(inGet)
				<-release
			})
			app, _ := notesApp(src)
			first := make(chan result, 1)
			// --solo: on PostgreSQL, updates would share the work.
			go func() { first <- run(t, app, cli.Env{}, "update", "--solo", "--db", db) }()
			<-inGet
			host, _ := os.Hostname()
			want := "notes: another update of Notes is running (pid " + itoa(os.Getpid()) + " on host " + host + ")\n"
			r := run(t, app, cli.Env{}, "update", "--solo", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Equal(t, want, r.stderr)
			require.NotContains(t, r.stdout, "done")

			stop := make(chan struct{})
			timer := time.AfterFunc(10*time.Second, func() { close(stop) })
			defer timer.Stop()
			r = run(t, app, cli.Env{Stop: stop}, "update", "--solo", "--live", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code, r.stdout)
			require.Equal(t, want, r.stderr)
			r = run(t, app, cli.Env{Stop: stop}, "server", "--solo", "--live", "--addr", "127.0.0.1:0", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code, r.stdout)
			require.Equal(t, want, r.stderr, "the server does not serve on without its live updates")
			close(release)
			require.Equal(t, cli.ExitOK, (<-first).code)
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// show row and show target give a row's lineage both ways.
func TestShowLineage(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "the quick brown fox")
			src.Set("c", "fail")
			app, _ := notesApp(src)
			r := run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitRowsFailed, r.code, r.stderr)

			r = run(t, app, cli.Env{}, "ls", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Regexp(t, `target notes \(\w+\.table\): set up .*, 1 rows\n`, r.stdout, "ls counts the rows")
			require.Contains(t, r.stdout, "query search: notes search QUERY")

			r = run(t, app, cli.Env{}, "show", "--json", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			var view struct {
				Flow    string
				Sources []struct {
					Name       string
					Rows       int64
					Failing    int64
					LastUpdate struct {
						Stats struct {
							Listed int64 `json:"listed"`
							Added  int64 `json:"added"`
							Failed int64 `json:"failed"`
						} `json:"stats"`
					} `json:"last_update"`
					Failures []struct{ Key string }
				}
				Targets []struct {
					Name string
					Rows int64
				}
				Queries []string
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &view))
			require.Equal(t, "Notes", view.Flow)
			require.Len(t, view.Sources, 1)
			require.Equal(t, int64(1), view.Sources[0].Rows)
			require.Equal(t, int64(1), view.Sources[0].Failing)
			require.Equal(t, int64(2), view.Sources[0].LastUpdate.Stats.Listed)
			require.Equal(t, int64(1), view.Sources[0].LastUpdate.Stats.Added)
			require.Equal(t, int64(1), view.Sources[0].LastUpdate.Stats.Failed)
			require.NotContains(t, r.stdout, `"Listed"`, "snake_case keys, for machines")
			require.Equal(t, "notes", view.Targets[0].Name)
			require.Equal(t, int64(1), view.Targets[0].Rows)
			require.Equal(t, []string{"search"}, view.Queries)

			r = run(t, app, cli.Env{}, "show", "row", "a", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "source notes, row a\n")
			require.Regexp(t, `processed at +\d{4}-`, r.stdout)
			require.Contains(t, r.stdout, "1 target states\n    notes a\n      id: a\n      text: the quick brown fox\n")

			r = run(t, app, cli.Env{}, "show", "row", "a", "--json", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			var row struct {
				Key    string
				States []struct {
					Target  string
					Key     string
					Content map[string]any
				}
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &row))
			require.Equal(t, "a", row.Key)
			require.Len(t, row.States, 1)
			require.Equal(t, "notes", row.States[0].Target)
			require.Equal(t, map[string]any{"id": "a", "text": "the quick brown fox"}, row.States[0].Content)

			r = run(t, app, cli.Env{}, "show", "row", "c", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "last error     processing: note c cannot be processed")

			r = run(t, app, cli.Env{}, "show", "target", "notes", "a", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Equal(t, "target notes, row a\n  id: a\n  text: the quick brown fox\ndeclared by 1 source rows\n  source notes, row a   (notes show row a)\n", r.stdout)

			r = run(t, app, cli.Env{}, "show", "target", "notes", "a", "--json", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			var tr struct {
				Content   map[string]any
				Declarers []struct{ Source, Key string }
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &tr))
			require.Equal(t, "the quick brown fox", tr.Content["text"])
			require.Equal(t, []struct{ Source, Key string }{{"notes", "a"}}, tr.Declarers)

			r = run(t, app, cli.Env{}, "show", "target", "notes", "zzz", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "not found")
			r = run(t, app, cli.Env{}, "show", "target", "nosuch", "a", "--db", db)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, `no such target "nosuch": the flow's targets are notes`)
		})
	}
}

// evaluate prints keys as the source gives them, and exits with the
// rows-failed code when a row failed.
func TestEvaluateKeysAndFailures(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "n.db")
	src := tidemarktest.NewSource[string, string]()
	src.Set("40000001", "a fox")
	src.Set("c", "fail")
	app, _ := notesApp(src)
	r := run(t, app, cli.Env{}, "update", "--db", db)
	require.Equal(t, cli.ExitRowsFailed, r.code)
	r = run(t, app, cli.Env{}, "evaluate", "--db", db, "40000001")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `{"source":"notes","key":"40000001","exists":true,"declared":[{"target":"notes","key":"40000001","value":{"id":"40000001","text":"a fox"}}]}`)
	r = run(t, app, cli.Env{}, "evaluate", "--db", db, "c")
	require.Equal(t, cli.ExitRowsFailed, r.code)
	require.Contains(t, r.stderr, "failed: notes c: processing: note c cannot be processed")
}

// Queries: terms after -- reach the handler; an unknown query says what
// there is.
func TestQueryCommands(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "n.db")
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "rust and go")
	src.Set("b", "rust alone")
	app, _ := notesApp(src)
	require.Equal(t, cli.ExitOK, run(t, app, cli.Env{}, "update", "--db", db).code)
	r := run(t, app, cli.Env{}, "--db", db, "search", "--json", "--", "-go", "rust")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"id":"b"`)
	require.NotContains(t, r.stdout, `"id":"a"`, "-go excludes a")
	r = run(t, app, cli.Env{}, "--db", db, "serch", "rust")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Contains(t, r.stderr, `unknown command or query "serch"`)
	require.Contains(t, r.stderr, "the queries search")
	r = run(t, app, cli.Env{}, "search", "--db", db, "--limit", "1001", "rust")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Contains(t, r.stderr, "--limit must be between 1 and 1000, got 1001")
}

// A query's cost is bounded in the CLI too; after drop, search says the
// table is not set up.
func TestQueryBoundsAndDrop(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "rust and go")
			app, _ := notesApp(src)
			require.Equal(t, cli.ExitOK, run(t, app, cli.Env{}, "update", "--db", db).code)

			r := run(t, app, cli.Env{}, append([]string{"search", "--db", db, "--json"}, strings.Fields(strings.Repeat("rust ", 2000))...)...)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, `"id":"a"`)
			var words []string
			for i := range 65 {
				words = append(words, "w"+strings.Repeat("x", i))
			}
			r = run(t, app, cli.Env{}, append([]string{"search", "--db", db}, words...)...)
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "the search query has 65 terms; at most 64 are allowed")

			require.Equal(t, cli.ExitOK, run(t, app, cli.Env{}, "drop", "--yes", "--db", db).code)
			r = run(t, app, cli.Env{}, "search", "--db", db, "rust")
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "table notes is not set up")
			require.Contains(t, r.stderr, "`notes update` sets it up and fills it")
			require.NotContains(t, r.stderr, "SQL")
		})
	}
}

type bigNote struct {
	ID   int64     `tidemark:"id,pk"`
	At   time.Time `tidemark:"at,pk"`
	Text string    `tidemark:"text"`
}

// Lineage finds the row of a key exactly: an int64 past 2^53, a time in a
// composite key.
func TestShowOddKeys(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[int64, string]()
			src.Set(9007199254740993, "big")
			src.Set(9007199254740992, "neighbour")
			at := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))
			app := cli.App{Name: "big", DefaultDB: "big.db",
				Flow: func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error) {
					f := tidemark.NewFlow("Big")
					notes := sqltable.Declare[bigNote](f, db, "big")
					tidemark.ForEach(tidemark.AddSource(f, "big", src), func(_ context.Context, r *tidemark.Row, k int64, v string) error {
						notes.Declare(r, bigNote{ID: k, At: at, Text: v})
						return nil
					})
					return f, nil
				}}
			r := run(t, app, cli.Env{}, "update", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			r = run(t, app, cli.Env{}, "show", "row", "9007199254740993", "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "source big, row 9007199254740993\n")
			require.Contains(t, r.stdout, "      id: 9007199254740993\n")
			require.Contains(t, r.stdout, "      text: big\n")
			key := `[9007199254740993,"` + at.UTC().Format(time.RFC3339Nano) + `"]`
			r = run(t, app, cli.Env{}, "show", "target", "big", key, "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "text: big\n")
			require.Contains(t, r.stdout, "source big, row 9007199254740993 ")

			// The same key written otherwise: spaces, the time in its own
			// zone; and over the server's API, and its page.
			odd := `[ 9007199254740993, "` + at.Format(time.RFC3339Nano) + `" ]`
			r = run(t, app, cli.Env{}, "show", "target", "big", odd, "--db", db)
			require.Equal(t, cli.ExitOK, r.code, r.stderr)
			require.Contains(t, r.stdout, "source big, row 9007199254740993 ")
			s := startServer(t, app, cli.Env{}, "--db", db)
			resp, body := s.call(t, "GET", "/api/v1/targets/big/states/"+url.PathEscape(odd), false)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Contains(t, body, `"declarers":[{"source":"big","key":9007199254740993}]`)
			require.Contains(t, body, `"text":"big"`)
			resp, body = s.call(t, "GET", "/api/v1/targets/big/states/"+url.PathEscape(`[9007199254740993]`), false)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
			require.Contains(t, body, "is not a key of its primary key (id, at)")
			resp, body = s.call(t, "GET", "/api/v1/sources/big/rows/9007199254740993", false)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Contains(t, body, `"key":9007199254740993`)
			resp, body = s.call(t, "GET", "/api/v1/sources/big/rows/x12", false)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
			require.Contains(t, body, `"x12\" is not a key`)
			resp, body = s.call(t, "GET", "/sources/big/rows/9007199254740993", false)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Contains(t, body, `href="/targets/big/states/`+url.PathEscape(key)+`"`)
		})
	}
}

// Live mode: a first pass whose deletions are held ends it (exit 1); a
// question answered no in a later pass is not asked again at every pass.
func TestLiveHeldDeletions(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "n.db")
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "a fox")
	app, _ := notesApp(src)
	require.Equal(t, cli.ExitOK, run(t, app, cli.Env{}, "update", "--db", db).code)
	src.Delete("a")
	r := run(t, app, cli.Env{}, "update", "-L", "--refresh", "50ms", "--db", db)
	require.Equal(t, cli.ExitFatal, r.code, r.stdout)
	require.Contains(t, r.stderr, "notes: source notes: 1 rows not deleted: its listing named no rows")
	require.Contains(t, r.stderr, "; pass --yes to delete them\n")
	require.Equal(t, 1, strings.Count(r.stdout, "pass "), r.stdout)
	r = run(t, app, cli.Env{}, "server", "--live", "--addr", "127.0.0.1:0", "--db", db)
	require.Equal(t, cli.ExitFatal, r.code, "the server ends with its live updates")
	require.Contains(t, r.stderr, "1 rows not deleted")

	src.Set("a", "a fox")
	stop := make(chan struct{})
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(t.Context(), app, []string{"update", "-L", "--refresh", "50ms", "--db", db},
			cli.Env{Stdout: &out, Stderr: io.Discard, Terminal: true, Stdin: strings.NewReader("n\n"), Stop: stop})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "pass 1 ") }, 10*time.Second, 5*time.Millisecond)
	src.Delete("a")
	require.Eventually(t, func() bool { return strings.Count(out.String(), "pass ") > 5 }, 10*time.Second, 5*time.Millisecond)
	close(stop)
	require.Equal(t, cli.ExitOK, <-done, out.String())
	require.Equal(t, 1, strings.Count(out.String(), "Delete them? [y/N]"), out.String())
	r = run(t, app, cli.Env{}, "search", "--db", db, "fox")
	require.Contains(t, r.stdout, "fox", "kept")
}

// Read-only commands on a database with no index in it say so, and write
// nothing to it: no state tables, no schema.
func TestReadOnlyCommandsOnAnEmptyDatabase(t *testing.T) {
	t.Parallel()
	app, _ := notesApp(tidemarktest.NewSource[string, string]())
	empty := filepath.Join(t.TempDir(), "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	pg := pgtest.Database(t)
	for _, db := range []string{empty, pg} {
		for _, args := range [][]string{{"show"}, {"ls"}, {"evaluate"}, {"show", "row", "a"}, {"search", "fox"}} {
			r := run(t, app, cli.Env{}, append(args, "--db", db)...)
			require.Equal(t, cli.ExitFatal, r.code, "%v", args)
			want := "notes: no notes index at " + db + " (run `notes update` first)\n"
			switch {
			case db == empty:
				want = "notes: no database at " + db + " (run `notes update` first)\n"
			case args[0] == "search":
				want = "notes: table notes is not set up: `notes update` sets it up and fills it\n"
			}
			require.Equal(t, want, r.stderr, "%v", args)
		}
	}
	fi, err := os.Stat(empty)
	require.NoError(t, err)
	require.Zero(t, fi.Size(), "nothing written")
	var schemas int
	conn, err := pgx.Connect(t.Context(), pg)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_namespace WHERE nspname = 'tidemark'`).Scan(&schemas))
	require.Zero(t, schemas, "no schema created")

	missing := regexp.MustCompile(`/[^/?]+(\?|$)`).ReplaceAllString(pg, "/tidemark_no_such_db$1")
	r := run(t, app, cli.Env{}, "search", "--db", missing, "fox")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Equal(t, "notes: no database at "+missing+" (run `notes update` first)\n", r.stderr)
}
