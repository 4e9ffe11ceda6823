package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

type note struct {
	ID   string `tidemark:"id,pk"`
	Text string `tidemark:"text"`
}

type hit struct {
	ID    string  `json:"id"`
	Text  string  `json:"text"`
	Score float64 `json:"score"`
}

// notesApp is a small application: notes from a memory source into a
// table with full-text search.
func notesApp(src *tidemarktest.Source[string, string]) (cli.App, *string) {
	suffix := new(string)
	return cli.App{
		Name:      "notes",
		DefaultDB: "notes.db",
		Env:       map[string]string{"db": "NOTES_DB", "suffix": "NOTES_SUFFIX"},
		Flags:     func(fs *pflag.FlagSet) { fs.StringVar(suffix, "suffix", "", "appended to every note") },
		Options: func(o *tidemark.Options) {
			o.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 2}
		},
		Flow: func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error) {
			f := tidemark.NewFlow("Notes")
			notes := sqltable.Declare[note](f, db, "notes")
			sqltable.FullText(notes, "text", sqltable.FullTextOptions{})
			tidemark.ForEach(tidemark.AddSource(f, "notes", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
				if v == "fail" {
					return fmt.Errorf("note %s cannot be processed", k)
				}
				notes.Declare(r, note{ID: k, Text: v + *suffix})
				return nil
			})
			f.QueryHandler("search", func(ctx context.Context, q tidemark.Query) (any, error) {
				page, err := notes.SearchPage(ctx, q.Text, table.SearchOptions{Limit: q.Limit, Offset: q.Offset})
				if err != nil {
					return nil, err
				}
				out := []hit{}
				var about []tidemark.QueryItem
				for _, h := range page.Hits {
					out = append(out, hit{ID: h.Row.ID, Text: h.Row.Text, Score: h.Score})
					about = append(about, tidemark.QueryItem{Snippet: h.Snippet, Target: "notes", Key: h.Row.ID})
				}
				return tidemark.QueryPage{Items: out, Total: page.Total, About: about}, nil
			})
			return f, nil
		},
	}, suffix
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, app cli.App, env cli.Env, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env.Stdout, env.Stderr = &out, &errb
	code := cli.Run(t.Context(), app, args, env)
	return result{code, out.String(), errb.String()}
}

func dbs(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "notes.db") },
		"postgres": func(t *testing.T) string { return pgtest.Database(t) },
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "the quick brown fox")
			src.Set("b", "a lazy dog")
			src.Set("c", "fail")
			app, _ := notesApp(src)
			env := cli.Env{Getenv: func(k string) string {
				if k == "NOTES_DB" {
					return db
				}
				return ""
			}}

			// setup without --yes off a terminal refuses, changing nothing.
			r := run(t, app, env, "setup")
			require.Equal(t, cli.ExitFatal, r.code, r.stderr)
			require.Contains(t, r.stdout, "needs 2 setup changes")
			require.Contains(t, r.stdout, "create ")
			require.Contains(t, r.stderr, "pass --yes")
			r = run(t, app, env, "ls")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "not set up")

			r = run(t, app, env, "setup", "--yes")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "applied 2 setup changes")
			r = run(t, app, env, "setup")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "nothing to change")

			// The first update: one row fails, exit code 2.
			r = run(t, app, env, "update")
			require.Equal(t, cli.ExitRowsFailed, r.code, r.stderr)
			require.Contains(t, r.stdout, "source notes: 3 listed, 3 fetched, 2 added, 0 updated, 0 reprocessed, 0 deleted, 0 unchanged, 1 failed")
			require.Contains(t, r.stderr, `failed: notes c: processing: note c cannot be processed`)
			require.Contains(t, r.stderr, "1 rows failed; they are retried on the next run")

			r = run(t, app, env, "show")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "notes: 2 rows, 1 failing")
			require.Contains(t, r.stdout, "failing c (1 times")
			require.Regexp(t, `column id +\S+, primary key, not null\n`, r.stdout, "the schema is shown, for people")
			require.NotContains(t, r.stdout, `"kind"`)
			require.Contains(t, r.stdout, "notes (")
			require.Contains(t, r.stdout, "2 rows\n", "the table's rows are counted")
			require.Regexp(t, `last update .*: 3 listed, 3 fetched, 2 added, 0 updated, 0 deleted, 0 unchanged, 1 failed`, r.stdout)

			src.Set("c", "a fox again")
			r = run(t, app, env, "update", "--log-format", "json")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "1 fetched, 1 added")

			r = run(t, app, env, "search", "--json", "fox")
			require.Equal(t, 0, r.code, r.stderr)
			var hits []hit
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &hits))
			require.Len(t, hits, 2)
			require.GreaterOrEqual(t, hits[0].Score, hits[1].Score, "best first")

			r = run(t, app, env, "evaluate", "a")
			require.Equal(t, 0, r.code, r.stderr)
			var ev struct {
				Key      string
				Exists   bool
				Declared []struct {
					Target string
					Value  note
				}
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &ev))
			require.Equal(t, "a", ev.Key, "the key as the source gives it")
			require.Equal(t, note{ID: "a", Text: "the quick brown fox"}, ev.Declared[0].Value)

			// A flag of the app changes every row; --preview writes nothing.
			r = run(t, app, env, "update", "--preview", "--suffix", "!")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "preview: nothing was written")
			r = run(t, app, env, "update", "--full-reprocess", "--suffix", "!")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "upserted", r.stdout)
			require.Contains(t, r.stdout, ": 3 upserted, 0 deleted")

			r = run(t, app, env, "update", "--reexport", "--full-reprocess")
			require.Equal(t, cli.ExitFatal, r.code)
			require.Contains(t, r.stderr, "cannot be used together")

			r = run(t, app, env, "drop")
			require.Equal(t, cli.ExitFatal, r.code)
			r = run(t, app, env, "drop", "--yes")
			require.Equal(t, 0, r.code, r.stderr)
			require.Contains(t, r.stdout, "dropped flow Notes")
			r = run(t, app, env, "search", "fox")
			require.Equal(t, cli.ExitFatal, r.code, "the table is gone")
		})
	}
}

func TestStopExitsZero(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for i := range 200 {
		src.Set(fmt.Sprintf("n%03d", i), "note")
	}
	stop := make(chan struct{})
	src.OnGet(func(k string) {
		if k == "n010" {
			close(stop)
		}
	})
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	r := run(t, app, cli.Env{Stop: stop}, "update", "--db", db)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "stopped: what was processed is committed; the rest is left for the next run")
	src.OnGet(nil)
	r = run(t, app, cli.Env{}, "update", "--db", db)
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stdout, "200 fetched", "the rows committed before the stop are not fetched again")
}

func TestLive(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	stop := make(chan struct{})
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(t.Context(), app, []string{"update", "--db", db, "--live", "--refresh", "20ms"}, cli.Env{Stdout: &out, Stderr: &errb, Stop: stop})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "pass 1 ") }, 10*time.Second, 5*time.Millisecond)
	src.Set("b", "beta")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "1 added") }, 10*time.Second, 5*time.Millisecond, out.String())
	close(stop)
	require.Equal(t, 0, <-done, errb.String())
	require.Contains(t, out.String(), "stopped\n")
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	app, _ := notesApp(tidemarktest.NewSource[string, string]())
	db := filepath.Join(t.TempDir(), "n.db")
	for args, want := range map[string]string{
		"update --log-format xml": "--log-format must be text or json",
		"update --refresh 1m":     "--refresh needs --live",
		"search --limit 0 x":      "--limit must be between 1 and 1000, got 0",
		"update --nope":           "unknown flag: --nope",
		"evaluate --limit -1":     "--limit must not be negative",
		"ls --pg-writers 0":       "--pg-writers must be at least 1",
	} {
		r := run(t, app, cli.Env{}, append(strings.Fields(args), "--db", db)...)
		require.Equal(t, cli.ExitFatal, r.code, args)
		require.Contains(t, r.stderr, want, args)
	}
}

func TestInterruptedUpdateExitsZero(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for i := range 200 {
		src.Set(fmt.Sprintf("n%03d", i), "note")
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	src.OnGet(func(k string) {
		if k == "n010" {
			cancel(fmt.Errorf("%w by terminated", cli.ErrInterrupted))
		}
	})
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	var out, errb syncBuffer
	code := cli.Run(ctx, app, []string{"update", "--db", db}, cli.Env{Stdout: &out, Stderr: &errb})
	require.Equal(t, cli.ExitOK, code, errb.String())
	require.Contains(t, out.String(), "stopped: the rows in hand were abandoned")

	src.OnGet(nil)
	r := run(t, app, cli.Env{}, "update", "--db", db)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "200 listed")
}
