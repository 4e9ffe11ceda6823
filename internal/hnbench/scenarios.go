package hnbench

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// backend runs every scenario and baseline against one database kind.
func (b *bench) backend(ctx context.Context, backend string) error {
	b.log.Info("benchmarking", "backend", backend)
	db := newDatabase(b, backend)
	defer db.close(ctx)

	// Initial sync, each run into an empty database.
	initial := Result{Backend: backend, Scenario: "initial sync", Rows: int64(b.rows), MinRequests: listingPages(b.ds.Len()) + int64(b.ds.Len())}
	for i := range b.cfg.Runs {
		url, err := db.fresh(ctx)
		if err != nil {
			return err
		}
		b.fake.ResetCounts()
		var env []string
		if b.cfg.Profile && i == 0 {
			env = b.profileEnv(backend, "initial")
		}
		r, err := b.hnindex(ctx, url, env, "update", "--quiet")
		if err != nil {
			return err
		}
		if n, err := db.count(ctx); err != nil || n != int64(b.rows) {
			return fmt.Errorf("the initial sync wrote %d rows, want %d (%v)", n, b.rows, err)
		}
		initial.record(r, b.fake.Requests())
	}

	// The write limit: the same rows, loaded by the plain tool.
	limit, err := db.writeLimit(ctx, b.cfg.Runs)
	if err != nil {
		return fmt.Errorf("the write limit baseline: %w", err)
	}
	b.add(limit)
	initial.Baseline = limit.Scenario
	b.add(initial)

	// The fetch floor: listing only, in a process of its own.
	floor := Result{Backend: backend, Scenario: "fetch floor (listing only)", MinRequests: listingPages(b.ds.Len())}
	for range b.cfg.Runs {
		b.fake.ResetCounts()
		r, err := b.process(ctx, nil, b.cfg.Self, "listing", "--hn-url", b.url, "--max-results", strconv.Itoa(b.maxResults()))
		if err != nil {
			return err
		}
		floor.record(r, b.fake.Requests())
	}
	b.add(floor)

	// Nothing changed.
	url := db.url
	noChange := Result{Backend: backend, Scenario: "update, nothing changed", MinRequests: listingPages(b.ds.Len()), Baseline: floor.Scenario}
	for i := range b.cfg.Runs {
		b.fake.ResetCounts()
		var env []string
		if b.cfg.Profile && i == 0 {
			env = b.profileEnv(backend, "nochange")
		}
		r, err := b.hnindex(ctx, url, env, "update", "--quiet")
		if err != nil {
			return err
		}
		noChange.record(r, b.fake.Requests())
	}
	b.add(noChange)

	// 1% changed, 1% deleted, 1% added.
	k := max(1, b.ds.Len()/100)
	churn := Result{Backend: backend, Scenario: "update, 1% changed + 1% deleted + 1% added", Baseline: floor.Scenario}
	for range b.cfg.Runs {
		written := b.churn(k)
		b.fake.ResetCounts()
		r, err := b.hnindex(ctx, url, nil, "update", "--quiet")
		if err != nil {
			return err
		}
		if n, err := db.count(ctx); err != nil || n != int64(b.ds.NumItems()) {
			return fmt.Errorf("after the churn the table has %d rows, want %d (%v)", n, b.ds.NumItems(), err)
		}
		churn.record(r, b.fake.Requests())
		churn.MinRequests = listingPages(b.ds.Len()) + int64(2*k)
		churn.Rows = written
	}
	b.add(churn)

	if b.cfg.InsightRequests > 0 {
		results, err := b.insight(ctx, backend, url)
		if err != nil {
			return fmt.Errorf("the insight server: %w", err)
		}
		for _, r := range results {
			b.add(r)
		}
	}

	if b.cfg.Naive {
		naive, err := db.naive(ctx)
		if err != nil {
			return fmt.Errorf("the naive baseline: %w", err)
		}
		naive.Baseline = noChange.Scenario
		n := b.add(naive)
		// Shown the other way round too: how much faster the incremental
		// update is than the naive run it replaces.
		b.report.Results[len(b.report.Results)-1].Note = fmt.Sprintf("an update with nothing changed takes 1/%.0f of this", n.Ratio)
	}

	if b.cfg.LivePasses > 0 {
		live, err := b.live(ctx, backend, url)
		if err != nil {
			return fmt.Errorf("live mode: %w", err)
		}
		b.add(live)
	}
	return nil
}

// profileEnv asks hnindex for CPU and heap profiles.
func (b *bench) profileEnv(backend, scenario string) []string {
	base := filepath.Join(b.cfg.Dir, backend+"-"+scenario)
	return []string{"TIDEMARK_CPUPROFILE=" + base + ".cpu.pprof", "TIDEMARK_MEMPROFILE=" + base + ".heap.pprof"}
}

// churn edits, deletes and adds k threads each, returning the target rows
// the next update must write (upserts and deletes).
func (b *bench) churn(k int) int64 {
	threads := b.ds.Threads()
	var rows int64
	count := func(t *hnfake.Thread) int64 {
		n := int64(1)
		stack := append([]*hnfake.Node(nil), t.Children...)
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = append(stack[:len(stack)-1], x.Children...)
			n++
		}
		return n
	}
	for i := range k {
		t := threads[(i*7)%len(threads)]
		b.ds.Edit(t.ID, func(t *hnfake.Thread) { t.Title += " (edited)" })
		rows++ // the thread's own row; its comments are unchanged
	}
	for i := range k {
		t := threads[len(threads)-1-(i*5)%(len(threads)/2+1)]
		if b.ds.Delete(t.ID) {
			rows += count(t)
		}
	}
	gen := hnfake.Generate(hnfake.GenerateOptions{Threads: k, CommentsPerThread: b.cfg.Comments, Depth: b.cfg.Depth, TextBytes: b.cfg.TextBytes,
		Seed: b.nextID, Start: time.Now().UTC().Truncate(time.Second)})
	for _, t := range gen.Threads() {
		// Fresh ids, so that they do not collide with the dataset's.
		renumber(t, &b.nextID)
		b.ds.Put(t)
		rows += count(t)
	}
	return rows
}

func renumber(t *hnfake.Thread, next *int64) {
	*next++
	t.ID = *next
	stack := append([]*hnfake.Node(nil), t.Children...)
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = append(stack[:len(stack)-1], x.Children...)
		*next++
		x.ID = *next
	}
}

var passLine = regexp.MustCompile(`^pass (\d+) `)

// live runs hnindex in live mode for LivePasses passes while threads
// change between passes, sampling the process's resident set after each.
func (b *bench) live(ctx context.Context, backend, url string) (Result, error) {
	refresh := 500 * time.Millisecond
	cmd := exec.CommandContext(ctx, b.cfg.Binary, b.hnindexArgs(url, "update", "--live", "--refresh", refresh.String())...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b.fake.ResetCounts()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	defer cmd.Process.Kill()
	var peak int64
	stopWatch := watchPeakRSS(cmd.Process.Pid, &peak)
	var rss []int64
	var passSeconds []float64
	last := time.Now()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if !passLine.MatchString(sc.Text()) {
			continue
		}
		passSeconds = append(passSeconds, time.Since(last).Seconds())
		last = time.Now()
		rss = append(rss, procStatus(cmd.Process.Pid, "VmRSS:"))
		if len(rss) >= b.cfg.LivePasses {
			break
		}
		b.churn(max(1, b.ds.Len()/1000)) // small changes before the next pass
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return Result{}, err
	}
	for sc.Scan() { // the rest, until the process closes its output
	}
	err = cmd.Wait()
	stopWatch()
	if err != nil {
		return Result{}, fmt.Errorf("hnindex --live: %w\n%s", err, stderr.String())
	}
	if len(rss) < b.cfg.LivePasses {
		return Result{}, fmt.Errorf("hnindex --live made %d passes, want %d\n%s", len(rss), b.cfg.LivePasses, stderr.String())
	}
	c := b.fake.Requests()
	mb := make([]string, len(rss))
	for i, r := range rss {
		mb[i] = strconv.FormatInt(r>>20, 10)
	}
	return Result{Backend: backend, Scenario: fmt.Sprintf("live mode, %d passes every %s under changes", len(rss), refresh),
		Seconds: []float64{time.Since(start).Seconds()}, ListingRequests: c.Listing, ItemRequests: c.Items, PeakRSS: peak,
		Note: "RSS per pass (MB): " + strings.Join(mb, " ")}, nil
}
