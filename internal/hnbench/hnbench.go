// Package hnbench is the benchmark harness of hnindex: it serves a
// generated HackerNews dataset from the fake API on loopback, runs the
// hnindex binary against it and a real database (SQLite and PostgreSQL),
// and measures each scenario — initial sync, an update with nothing
// changed, an update after 1% of threads changed, 1% vanished and 1% were
// added, and live mode under continuous small changes — next to baselines
// measured in the same run: the write limit (psql \copy, or one
// transaction of inserts on SQLite, of exactly the rows the sync wrote),
// the fetch floor (fetching and parsing only the listing), and the naive
// approach (re-fetching every thread and upserting row by row). The
// insight scenario then serves the synced database with hnindex server
// and times its row, lineage and search endpoints over random keys, and
// its /metrics scrape (p50, p90, p99 and max of each).
//
// Every figure is the median of Config.Runs runs (one for the naive
// baseline and live mode); peak RSS is the process's maximum resident set,
// from the kernel's rusage. cmd/hnbench is the command; `make bench` runs
// it at its default size.
package hnbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// Config sizes and points a benchmark run.
type Config struct {
	// Threads, Comments (per thread), Depth, TextBytes and Seed make the
	// dataset (see hnfake.GenerateOptions).
	Threads, Comments, Depth, TextBytes int
	Seed                                int64
	// Runs is how many times each timed scenario runs; the median is
	// reported.
	Runs int
	// Backends are the databases measured: "sqlite", "postgres".
	Backends []string
	// PostgresURL is a server the harness may create databases on.
	PostgresURL string
	// LivePasses is how many live passes to watch; 0 skips live mode.
	LivePasses int
	// Naive runs the naive baseline.
	Naive bool
	// InsightRequests is how many requests the insight scenario makes to
	// each endpoint of hnindex server, per variant (one client, then
	// InsightConcurrency clients at once); 0 skips it. InsightBudget, when
	// positive, bounds the time each variant is given: it stops sooner,
	// having made fewer requests.
	InsightRequests    int
	InsightConcurrency int
	InsightBudget      time.Duration
	// Binary is the hnindex binary; Self the harness's own (for the
	// listing-only floor). Dir holds databases and profiles.
	Binary, Self, Dir string
	// Profile, when set, writes CPU and heap profiles of the first
	// initial sync and no-change update per backend into Dir.
	Profile bool
	// ScaleOut is the scale-out scenario's; no backends skips it.
	ScaleOut ScaleOut
	Log      *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Threads < 1:
		return fmt.Errorf("-threads must be at least 1, got %d", c.Threads)
	case c.Comments < 0:
		return fmt.Errorf("-comments must not be negative, got %d", c.Comments)
	case c.Runs < 1:
		return fmt.Errorf("-runs must be at least 1, got %d", c.Runs)
	case c.InsightRequests < 0:
		return fmt.Errorf("-insight-requests must not be negative, got %d", c.InsightRequests)
	case c.InsightConcurrency < 0 || c.InsightConcurrency > 64:
		return fmt.Errorf("-insight-concurrency must be between 0 and 64, got %d", c.InsightConcurrency)
	case c.InsightBudget < 0:
		return fmt.Errorf("-insight-budget must not be negative, got %s", c.InsightBudget)
	case len(c.Backends) == 0 && len(c.ScaleOut.Backends) == 0:
		return errors.New("-backends must name sqlite, postgres or both")
	case c.Binary == "" || c.Self == "" || c.Dir == "":
		return errors.New("hnbench: Binary, Self and Dir are required")
	}
	for _, b := range c.Backends {
		if b != "sqlite" && b != "postgres" && b != "" {
			return fmt.Errorf("-backends: unknown backend %q (sqlite or postgres)", b)
		}
	}
	return c.ScaleOut.validate()
}

// Result is one measured scenario or baseline.
type Result struct {
	Backend  string `json:"backend"`
	Scenario string `json:"scenario"`
	// Seconds are the runs' wall times; Median their median.
	Seconds []float64 `json:"seconds"`
	Median  float64   `json:"median_seconds"`
	// Rows is the number of target rows the scenario wrote (or the
	// baseline loaded); RowsPerSec is Rows / Median.
	Rows       int64   `json:"rows"`
	RowsPerSec float64 `json:"rows_per_second,omitempty"`
	// ListingRequests and ItemRequests are the API requests of the last
	// run; MinRequests the fewest that could do the job.
	ListingRequests int64 `json:"listing_requests"`
	ItemRequests    int64 `json:"item_requests"`
	MinRequests     int64 `json:"min_requests"`
	// PeakRSS is the largest maximum resident set of the runs, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// Baseline names the result this one is compared with, and Ratio is
	// Median / that result's Median.
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	// Note says anything else measured (live mode's RSS per pass).
	Note string `json:"note,omitempty"`
	// Latency is set on the insight scenario's results: the latencies of
	// requests to one endpoint of hnindex server. Their PeakRSS is the
	// server's.
	Latency *Latency `json:"latency,omitempty"`
}

// Report is a whole run's results.
type Report struct {
	Started time.Time `json:"started"`
	Machine string    `json:"machine"`
	Config  struct {
		Threads, Comments, Depth, TextBytes, Runs int
		Seed                                      int64
		Rows                                      int
	} `json:"config"`
	Results []Result `json:"results"`
}

// bench is one run of the harness.
type bench struct {
	cfg    Config
	log    *slog.Logger
	ds     *hnfake.Dataset
	fake   *hnfake.Server
	url    string
	rows   int // target rows of the dataset: threads + comments
	report *Report
	// nextID numbers threads added by the churn scenario.
	nextID int64
}

// Run runs the benchmarks and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &bench{cfg: cfg, log: cfg.Log, report: &Report{Started: time.Now(), Machine: machine()}}
	b.log.Info("generating the dataset", "threads", cfg.Threads, "comments", cfg.Comments)
	b.ds = hnfake.Generate(hnfake.GenerateOptions{Threads: cfg.Threads, CommentsPerThread: cfg.Comments, Depth: cfg.Depth,
		TextBytes: cfg.TextBytes, Seed: cfg.Seed, Start: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)})
	b.rows = b.ds.NumItems()
	b.nextID = 900_000_000
	rc := &b.report.Config
	rc.Threads, rc.Comments, rc.Depth, rc.TextBytes, rc.Runs, rc.Seed, rc.Rows = cfg.Threads, cfg.Comments, cfg.Depth, cfg.TextBytes, cfg.Runs, cfg.Seed, b.rows

	b.fake = hnfake.NewServer(b.ds)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hnbench: listening for the fake API: %w", err)
	}
	srv := &http.Server{Handler: b.fake.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	b.url = "http://" + ln.Addr().String() + "/api/v1"

	for _, backend := range cfg.Backends {
		if backend == "" {
			continue
		}
		if err := b.backend(ctx, backend); err != nil {
			return b.report, fmt.Errorf("%s: %w", backend, err)
		}
	}
	if len(cfg.ScaleOut.Backends) > 0 {
		if err := b.scaleOut(ctx); err != nil {
			return b.report, fmt.Errorf("scale-out: %w", err)
		}
	}
	return b.report, nil
}

// machine describes where the run happened.
func machine() string {
	host, _ := os.Hostname()
	cpus := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := strings.Count(string(b), "\nprocessor")
		if strings.HasPrefix(string(b), "processor") {
			n++
		}
		model := ""
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				_, model, _ = strings.Cut(line, ":")
				break
			}
		}
		cpus = fmt.Sprintf("%d × %s", n, strings.TrimSpace(model))
	}
	return fmt.Sprintf("%s, %s", host, cpus)
}

// run is one measured process run.
type run struct {
	seconds float64
	rss     int64
	out     string
}

// hnindex runs the hnindex binary with args against the fake API and db,
// returning its wall time and peak RSS. A non-zero exit is an error.
func (b *bench) hnindex(ctx context.Context, db string, env []string, args ...string) (run, error) {
	return b.process(ctx, env, b.cfg.Binary, b.hnindexArgs(db, args...)...)
}

// hnindexArgs are args followed by the flags that point hnindex at db and
// the fake API, unthrottled.
func (b *bench) hnindexArgs(db string, args ...string) []string {
	return append(args, "--db", db, "--hn-url", b.url, "--max-results", strconv.Itoa(b.maxResults()),
		"--rate", "1000000", "--concurrency", "16")
}

// maxResults is what the listing is asked for: more threads than the
// dataset has, so that every listing runs to its end.
func (b *bench) maxResults() int { return b.ds.Len() + b.cfg.Threads/10 + 10 }

func (b *bench) process(ctx context.Context, env []string, bin string, args ...string) (run, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Start()
	var peak int64
	if err == nil {
		stop := watchPeakRSS(cmd.Process.Pid, &peak)
		err = cmd.Wait()
		stop()
	}
	r := run{seconds: time.Since(start).Seconds(), out: out.String(), rss: peak}
	if err != nil {
		return r, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return r, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// record tallies one run of a scenario: its time, the requests it made
// (those of the last run are kept) and its peak RSS.
func (r *Result) record(x run, c hnfake.Counts) {
	r.Seconds = append(r.Seconds, x.seconds)
	r.ListingRequests, r.ItemRequests = c.Listing, c.Items
	r.PeakRSS = max(r.PeakRSS, x.rss)
}

// add records a result, computing its median, rate and ratio.
func (b *bench) add(r Result) Result {
	r.Median = median(r.Seconds)
	if r.Rows > 0 && r.Median > 0 {
		r.RowsPerSec = float64(r.Rows) / r.Median
	}
	if r.Baseline != "" {
		for _, o := range b.report.Results {
			if o.Backend == r.Backend && o.Scenario == r.Baseline && o.Median > 0 {
				r.Ratio = r.Median / o.Median
			}
		}
	}
	b.report.Results = append(b.report.Results, r)
	b.log.Info("measured", "backend", r.Backend, "scenario", r.Scenario, "median", time.Duration(r.Median*float64(time.Second)).Round(time.Millisecond),
		"rows", r.Rows, "items", r.ItemRequests, "listing", r.ListingRequests, "peak_rss_mb", r.PeakRSS>>20, "ratio", r.Ratio)
	return r
}

// listingPages is the fewest listing requests for n threads.
func listingPages(n int) int64 { return int64((n + 999) / 1000) }

// watchPeakRSS polls a process's resident-set high-water mark (VmHWM) into
// peak until stop is called. The kernel's rusage maximum of a child is no
// good here: it counts the harness's own resident set, which the child
// shared until it called exec.
func watchPeakRSS(pid int, peak *int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v := procStatus(pid, "VmHWM:"); v > *peak {
				*peak = v
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// procStatus reads a size field of /proc/PID/status, in bytes; 0 if the
// process is gone.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
