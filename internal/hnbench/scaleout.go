package hnbench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// ScaleOut configures the scale-out scenario: a dataset whose update is
// bound by fetch latency, synced by 1, 2, 4… hnindex workers at once on
// one state store.
type ScaleOut struct {
	// Backends are the state stores: "postgres" (state and tables in
	// PostgreSQL), "redis" (state in Redis, tables in PostgreSQL). None
	// skips the scenario.
	Backends []string
	// Workers are the numbers of workers to measure; the first is the
	// baseline of the others.
	Workers []int
	// Threads and Comments make the dataset; Latency is added to every
	// item request.
	Threads, Comments int
	Latency           time.Duration
	// Concurrency is each worker's --concurrency.
	Concurrency int
	// RedisURL is the Redis server, database included.
	RedisURL string
}

func (s *ScaleOut) validate() error {
	switch {
	case len(s.Backends) == 0:
		return nil
	case len(s.Workers) == 0:
		return fmt.Errorf("-scale-workers must name at least one number of workers")
	case s.Threads < 1:
		return fmt.Errorf("-scale-threads must be at least 1, got %d", s.Threads)
	case s.Concurrency < 1:
		return fmt.Errorf("-scale-concurrency must be at least 1, got %d", s.Concurrency)
	}
	for _, n := range s.Workers {
		if n < 1 {
			return fmt.Errorf("-scale-workers: %d workers", n)
		}
	}
	for _, b := range s.Backends {
		if b != "postgres" && b != "redis" {
			return fmt.Errorf("-scale-backends: unknown backend %q (postgres or redis)", b)
		}
	}
	return nil
}

// scaleOut runs the scale-out scenario on each of its backends, against a
// fake API of its own.
func (b *bench) scaleOut(ctx context.Context) error {
	so := b.cfg.ScaleOut
	ds := hnfake.Generate(hnfake.GenerateOptions{Threads: so.Threads, CommentsPerThread: so.Comments, Depth: 3, Seed: b.cfg.Seed + 1,
		Start: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)})
	fake := hnfake.NewServer(ds)
	fake.SetFaults(hnfake.Faults{Latency: so.Latency, Items: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the fake API: %w", err)
	}
	srv := &http.Server{Handler: fake.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	api := "http://" + ln.Addr().String() + "/api/v1"

	for _, backend := range so.Backends {
		var base string
		// 0, last, is one worker alone (--solo), not sharing: what sharing
		// costs.
		for _, n := range append(so.Workers, 0) {
			r := Result{Backend: backend, Scenario: scaleScenario(n), Rows: int64(ds.NumItems()), MinRequests: listingPages(ds.Len()) + int64(ds.Len()), Baseline: base}
			var load []float64
			for range b.cfg.Runs {
				x, c, perRow, err := b.scaleRun(ctx, backend, api, fake, ds, n)
				if err != nil {
					return fmt.Errorf("%s, %d workers: %w", backend, n, err)
				}
				r.record(x, c)
				load = append(load, perRow)
			}
			what := "PostgreSQL transactions (state store and tables)"
			if backend == "redis" {
				what = "state-store operations (Redis scripts)"
			}
			r.Note = fmt.Sprintf("%.2f %s per thread", median(load), what)
			if n == 0 {
				r.Baseline = scaleScenario(so.Workers[0])
			}
			b.add(r)
			if base == "" && n > 0 {
				base = r.Scenario
			}
		}
	}
	return nil
}

func scaleScenario(n int) string {
	switch n {
	case 0:
		return "scale-out, 1 worker alone (--solo)"
	case 1:
		return "scale-out, 1 worker"
	}
	return fmt.Sprintf("scale-out, %d workers", n)
}

// scaleRun syncs the dataset into fresh databases with n workers at once
// (0: one alone, with --solo), and returns the wall time from the first
// start to the last exit, the API's request counts, and the state-store
// load per thread.
func (b *bench) scaleRun(ctx context.Context, backend, api string, fake *hnfake.Server, ds *hnfake.Dataset, n int) (run, hnfake.Counts, float64, error) {
	so := b.cfg.ScaleOut
	db := newDatabase(b, "postgres")
	defer db.close(ctx)
	dbURL, err := db.fresh(ctx)
	if err != nil {
		return run{}, hnfake.Counts{}, 0, err
	}
	args := []string{"update", "--quiet", "--db", dbURL, "--hn-url", api, "--max-results", strconv.Itoa(ds.Len() + 10),
		"--rate", "1000000", "--concurrency", strconv.Itoa(so.Concurrency)}
	if n == 0 {
		args, n = append(args, "--solo"), 1
	}
	var (
		counter func(ctx context.Context) (int64, error)
		cleanup func()
	)
	switch backend {
	case "postgres":
		name := dbName(dbURL)
		counter = func(ctx context.Context) (int64, error) {
			return pgTransactions(ctx, b.cfg.PostgresURL, name)
		}
		cleanup = func() {}
	case "redis":
		prefix := fmt.Sprintf("hnbench_%d_%d", os.Getpid(), time.Now().UnixNano())
		state := so.RedisURL + "?prefix=" + prefix
		args = append(args, "--state", state)
		rdb, err := redisClient(so.RedisURL)
		if err != nil {
			return run{}, hnfake.Counts{}, 0, err
		}
		defer rdb.Close()
		counter = func(ctx context.Context) (int64, error) { return redisScripts(ctx, rdb) }
		cleanup = func() { dropPrefix(context.WithoutCancel(ctx), rdb, prefix) }
	}
	defer cleanup()

	before, err := counter(ctx)
	if err != nil {
		return run{}, hnfake.Counts{}, 0, err
	}
	fake.ResetCounts()
	start := time.Now()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*strings.Builder, n)
	for i := range n {
		cmd := exec.CommandContext(ctx, b.cfg.Binary, args...)
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			return run{}, hnfake.Counts{}, 0, err
		}
		cmds[i] = cmd
	}
	var firstErr error
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("worker %d: %w\n%s", i, err, outs[i].String())
		}
	}
	x := run{seconds: time.Since(start).Seconds()}
	if firstErr != nil {
		return x, hnfake.Counts{}, 0, firstErr
	}
	c := fake.Requests()
	after, err := counter(ctx)
	if err != nil {
		return x, c, 0, err
	}
	rows, err := db.count(ctx)
	if err != nil {
		return x, c, 0, err
	}
	if rows != int64(ds.NumItems()) {
		return x, c, 0, fmt.Errorf("%d workers wrote %d rows, want %d", n, rows, ds.NumItems())
	}
	if c.Items != int64(ds.Len()) {
		return x, c, 0, fmt.Errorf("%d workers made %d item requests for %d threads", n, c.Items, ds.Len())
	}
	return x, c, float64(after-before) / float64(ds.Len()), nil
}

// dbName is the database a postgres:// URL names.
func dbName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// pgTransactions returns the transactions committed and rolled back in
// database name so far. The statistics collector reports them with a
// delay, so it is asked to flush first.
func pgTransactions(ctx context.Context, server, name string) (int64, error) {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	// pg_stat_force_next_flush makes this session's counts visible; the
	// workers' sessions flushed theirs when they closed.
	_, _ = conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	_, _ = conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
	err = conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, name).Scan(&n)
	return n, err
}

func redisClient(raw string) (*goredis.Client, error) {
	opts, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	return goredis.NewClient(opts), nil
}

// redisScripts returns the scripts the server has run so far (EVALSHA
// calls): the state store's round trips, each one of its operations.
func redisScripts(ctx context.Context, rdb *goredis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO: %w", err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:calls=")
		if !ok {
			rest, ok = strings.CutPrefix(strings.TrimSpace(line), "cmdstat_eval:calls=")
		}
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("redis INFO commandstats: %w", err)
		}
		n += v
	}
	return n, nil
}

// dropPrefix deletes the keys of a state store's prefix.
func dropPrefix(ctx context.Context, rdb *goredis.Client, prefix string) {
	iter := rdb.Scan(ctx, 0, "{"+prefix+"}*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			rdb.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rdb.Unlink(ctx, keys...)
	}
}
