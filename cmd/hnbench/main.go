// Command hnbench is hnindex's benchmark harness (package internal/hnbench):
// it measures the whole pipeline against the fake HackerNews API on
// loopback and real databases, next to baselines measured in the same run,
// and prints a table and writes a JSON report.
//
//	hnbench [-threads 4000] [-comments 50] [-runs 3] [-backends sqlite,postgres] [-insight-requests 2000]
//	        [-scale-backends postgres,redis] [-scale-workers 1,2,4] [-json bench.json] [-profile]
//
// `make bench` runs it at its default size; BENCHMARKS.md has the latest
// figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/internal/hnbench"
	"github.com/tidemark/tidemark/source/hackernews"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "listing" {
		err = listing(ctx, os.Args[2:])
	} else {
		err = run(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hnbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hnbench", flag.ContinueOnError)
	var cfg hnbench.Config
	fs.IntVar(&cfg.Threads, "threads", 4000, "threads in the dataset")
	fs.IntVar(&cfg.Comments, "comments", 50, "comments per thread")
	fs.IntVar(&cfg.Depth, "depth", 6, "deepest comment nesting")
	fs.IntVar(&cfg.TextBytes, "text-bytes", 300, "mean comment length in bytes of HTML (log-normal spread)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "dataset seed")
	fs.IntVar(&cfg.Runs, "runs", 3, "runs per timed scenario (the median is reported)")
	fs.IntVar(&cfg.LivePasses, "live-passes", 10, "live-mode passes to watch (0 skips live mode)")
	fs.BoolVar(&cfg.Naive, "naive", true, "run the naive baseline (fetch everything, upsert row by row)")
	fs.IntVar(&cfg.InsightRequests, "insight-requests", 2000, "requests to each endpoint of hnindex server, per variant (0 skips the insight scenario)")
	fs.IntVar(&cfg.InsightConcurrency, "insight-concurrency", 8, "clients at once in the insight scenario's concurrent variant (0 or 1 skips it)")
	fs.DurationVar(&cfg.InsightBudget, "insight-budget", 5*time.Second, "the most time each insight variant is given (it makes fewer requests then; 0: no limit)")
	fs.BoolVar(&cfg.Profile, "profile", false, "write CPU and heap profiles of hnindex (initial sync, no-change update, the insight server) into -dir")
	backends := fs.String("backends", "sqlite,postgres", "databases to measure")
	fs.StringVar(&cfg.PostgresURL, "postgres", envOr("TIDEMARK_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "a PostgreSQL server the harness may create databases on")
	scaleBackends := fs.String("scale-backends", "postgres,redis", "state stores of the scale-out scenario (empty skips it)")
	scaleWorkers := fs.String("scale-workers", "1,2,4", "numbers of workers in the scale-out scenario; the first is the baseline")
	fs.IntVar(&cfg.ScaleOut.Threads, "scale-threads", 2000, "threads in the scale-out scenario's dataset")
	fs.IntVar(&cfg.ScaleOut.Comments, "scale-comments", 5, "comments per thread in the scale-out scenario's dataset")
	fs.DurationVar(&cfg.ScaleOut.Latency, "scale-latency", 50*time.Millisecond, "latency the fake API adds to each item request in the scale-out scenario")
	fs.IntVar(&cfg.ScaleOut.Concurrency, "scale-concurrency", 16, "each scale-out worker's --concurrency")
	fs.StringVar(&cfg.ScaleOut.RedisURL, "redis", envOr("TIDEMARK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), "the Redis server of the scale-out scenario")
	dir := fs.String("dir", "", "where databases and profiles go (default: a temporary directory, removed after)")
	jsonPath := fs.String("json", "bench.json", "where the JSON report goes")
	verbose := fs.Bool("v", false, "log each measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Backends = strings.Split(*backends, ",")
	if *scaleBackends != "" {
		cfg.ScaleOut.Backends = strings.Split(*scaleBackends, ",")
	}
	for _, s := range strings.Split(*scaleWorkers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-scale-workers: %w", err)
		}
		cfg.ScaleOut.Workers = append(cfg.ScaleOut.Workers, n)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	work, err := os.MkdirTemp("", "hnbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cfg.Dir = *dir
	if cfg.Dir == "" {
		cfg.Dir = work
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	if cfg.Self, err = os.Executable(); err != nil {
		return err
	}
	cfg.Binary = filepath.Join(work, "hnindex")
	build := exec.CommandContext(ctx, "go", "build", "-o", cfg.Binary, "github.com/tidemark/tidemark/cmd/hnindex")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building hnindex: %w", err)
	}
	start := time.Now()
	report, err := hnbench.Run(ctx, cfg)
	if report != nil {
		report.WriteTable(os.Stdout)
		if jerr := report.WriteJSON(*jsonPath); jerr != nil {
			return jerr
		}
		fmt.Printf("\nJSON report: %s; benchmarks took %s\n", *jsonPath, time.Since(start).Round(time.Second))
	}
	return err
}

// listing is the fetch floor: list the threads as hnindex does, fetching
// and parsing only the listing pages.
func listing(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hnbench listing", flag.ContinueOnError)
	url := fs.String("hn-url", "", "the API")
	maxResults := fs.Int("max-results", 500, "threads to list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := hackernews.New(hackernews.Options{BaseURL: *url, MaxResults: *maxResults, RequestsPerSecond: 1e6, Concurrency: 16})
	if err != nil {
		return err
	}
	n := 0
	for _, err := range src.List(ctx) {
		if err != nil {
			return err
		}
		n++
	}
	fmt.Println(n, "threads listed")
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
