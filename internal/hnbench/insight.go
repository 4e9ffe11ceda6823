package hnbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Latency is what an insight scenario measured: requests to one endpoint
// of the inspection server (hnindex server), made by Concurrency
// keep-alive clients, each waiting for its answer before the next.
type Latency struct {
	// Endpoint is the method and path pattern asked, e.g.
	// "GET /api/v1/sources/threads/rows/{thread}".
	Endpoint    string `json:"endpoint"`
	Concurrency int    `json:"concurrency"`
	// Requests were made and timed; Errors of them did not answer 200
	// (or did not answer); Status counts the answers by status.
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Status   map[string]int `json:"status,omitempty"`
	// P50, P90, P99 and Max are the requests' latencies, in milliseconds,
	// from sending a request to reading the last byte of its answer
	// (nearest-rank percentiles).
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// PerSecond is Requests over the wall time they took.
	PerSecond float64 `json:"requests_per_second"`
	// MeanBytes is the answers' mean body size.
	MeanBytes int64 `json:"mean_body_bytes"`
	// Pending says the endpoint is not served yet (it answered 404), and
	// nothing was timed.
	Pending bool `json:"pending,omitempty"`
}

// Metrics scrapes: how many are timed (their median is reported) and how
// many requests warm each endpoint up first.
const (
	metricsScrapes = 50
	insightWarmUp  = 100
)

// searchTerms are words of the generated comments (hnfake's vocabulary)
// that a person might look for; a typical search is two of them.
var searchTerms = strings.Fields(`system data code model time people work company language build server memory
database query index update cache thread kernel network compiler browser program design problem result paper
team product users market money rust go python postgres sqlite linux apple google startup`)

// insight runs hnindex server on the synced database at db and times its
// row, lineage and search endpoints over random keys of the dataset, one
// client at a time and then InsightConcurrency at once, and its /metrics
// scrape.
func (b *bench) insight(ctx context.Context, backend, db string) ([]Result, error) {
	threads := b.ds.Threads()
	threadIDs := make([]int64, len(threads))
	messageIDs := make([]int64, 0, b.ds.NumItems())
	for i, t := range threads {
		threadIDs[i] = t.ID
		messageIDs = append(messageIDs, t.ID)
		stack := slices.Clone(t.Children)
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = append(stack[:len(stack)-1], n.Children...)
			messageIDs = append(messageIDs, n.ID)
		}
	}
	if len(threadIDs) == 0 {
		return nil, errors.New("the dataset has no threads")
	}

	var env []string
	if b.cfg.Profile {
		env = b.profileEnv(backend, "insight")
	}
	srv, err := b.startServer(ctx, db, env)
	if err != nil {
		return nil, err
	}
	defer srv.kill()

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: 2 * max(1, b.cfg.InsightConcurrency), MaxIdleConnsPerHost: 2 * max(1, b.cfg.InsightConcurrency)}}
	defer client.CloseIdleConnections()
	endpoints := []struct {
		name, pattern string
		path          func(r *rand.Rand) string
	}{
		{"row", "GET /api/v1/sources/threads/rows/{thread}", func(r *rand.Rand) string {
			return "/api/v1/sources/threads/rows/" + strconv.FormatInt(threadIDs[r.IntN(len(threadIDs))], 10)
		}},
		{"lineage", "GET /api/v1/targets/hn_messages/states/{message}", func(r *rand.Rand) string {
			return "/api/v1/targets/hn_messages/states/" + strconv.FormatInt(messageIDs[r.IntN(len(messageIDs))], 10)
		}},
		{"search", "GET /api/v1/query/search?q={two words}&limit=20", func(r *rand.Rand) string {
			q := searchTerms[r.IntN(len(searchTerms))] + " " + searchTerms[r.IntN(len(searchTerms))]
			return "/api/v1/query/search?limit=20&q=" + url.QueryEscape(q)
		}},
	}
	var out []Result
	for i, e := range endpoints {
		variants := []int{1}
		if b.cfg.InsightConcurrency > 1 {
			variants = append(variants, b.cfg.InsightConcurrency)
		}
		seed := uint64(b.cfg.Seed)*1000 + uint64(i)*10
		if _, err := b.load(ctx, client, srv.url, e.pattern, e.path, 1, min(insightWarmUp, b.cfg.InsightRequests), b.cfg.InsightBudget, seed); err != nil {
			return out, fmt.Errorf("warming %s up: %w", e.pattern, err)
		}
		for _, conc := range variants {
			seed++
			l, err := b.load(ctx, client, srv.url, e.pattern, e.path, conc, b.cfg.InsightRequests, b.cfg.InsightBudget, seed)
			if err != nil {
				return out, err
			}
			out = append(out, b.latencyResult(backend, insightScenario(e.name, conc), l))
		}
	}

	m, err := b.load(ctx, client, srv.url, "GET /metrics", func(*rand.Rand) string { return "/metrics" }, 1, metricsScrapes, b.cfg.InsightBudget, 0)
	switch {
	case errors.Is(err, errPending):
		m.Pending = true
	case err != nil:
		return out, err
	}
	metrics := b.latencyResult(backend, "insight: /metrics scrape", m)
	if m.Pending {
		metrics.Note = "pending: /metrics answers 404 (no metrics registry in this build)"
	}
	out = append(out, metrics)

	peak, err := srv.stop()
	if err != nil {
		return out, err
	}
	for i := range out {
		out[i].PeakRSS = peak
	}
	return out, nil
}

// insightScenario names an insight result.
func insightScenario(endpoint string, conc int) string {
	if conc == 1 {
		return "insight: " + endpoint + ", 1 client"
	}
	return fmt.Sprintf("insight: %s, %d clients", endpoint, conc)
}

// latencyResult makes a Result of a latency measurement: its wall time is
// how long the requests took.
func (b *bench) latencyResult(backend, scenario string, l Latency) Result {
	r := Result{Backend: backend, Scenario: scenario, Latency: &l}
	if l.PerSecond > 0 {
		r.Seconds = []float64{float64(l.Requests) / l.PerSecond}
	}
	return r
}

// errPending is load's error for an endpoint that answers 404.
var errPending = errors.New("the endpoint answers 404")

// load makes n requests to base+path(r), conc at a time, over keep-alive
// connections, stopping early when budget (if positive) has passed, and
// returns their latencies. More than half of them failing is an error; a
// first answer of 404 is errPending.
func (b *bench) load(ctx context.Context, client *http.Client, base, endpoint string, path func(*rand.Rand) string,
	conc, n int, budget time.Duration, seed uint64) (Latency, error) {
	l := Latency{Endpoint: endpoint, Concurrency: conc, Status: make(map[string]int)}
	if n < 1 {
		return l, nil
	}
	var deadline time.Time
	if budget > 0 {
		deadline = time.Now().Add(budget)
	}
	var (
		next      atomic.Int64
		mu        sync.Mutex
		durations = make([]time.Duration, 0, n)
		bytes     int64
		firstErr  error
	)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			var own []time.Duration
			var ownBytes int64
			status := make(map[string]int)
			for next.Add(1) <= int64(n) && ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				p := path(r)
				t0 := time.Now()
				code, size, err := get(ctx, client, base+p)
				own = append(own, time.Since(t0))
				ownBytes += size
				switch {
				case err != nil:
					status["error"]++
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("GET %s: %w", p, err)
					}
					mu.Unlock()
				default:
					status[strconv.Itoa(code)]++
				}
			}
			mu.Lock()
			durations = append(durations, own...)
			bytes += ownBytes
			for k, v := range status {
				l.Status[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return l, err
	}
	l.Requests = len(durations)
	l.Errors = l.Requests - l.Status["200"]
	if l.Requests > 0 && l.Status["404"] == l.Requests {
		return l, fmt.Errorf("%s: %w", endpoint, errPending)
	}
	if 2*l.Errors > l.Requests {
		return l, fmt.Errorf("%s: %d of %d requests failed (answers by status: %v; first error: %v)", endpoint, l.Errors, l.Requests, l.Status, firstErr)
	}
	if len(l.Status) == 1 && l.Errors == 0 {
		l.Status = nil // all 200: nothing to say
	}
	slices.Sort(durations)
	ms := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(durations)))) - 1
		return float64(durations[max(0, i)]) / float64(time.Millisecond)
	}
	l.P50, l.P90, l.P99, l.Max = ms(0.50), ms(0.90), ms(0.99), ms(1)
	l.PerSecond = float64(l.Requests) / elapsed.Seconds()
	l.MeanBytes = bytes / int64(l.Requests)
	return l, nil
}

// get asks for url and reads the whole answer, returning its status and
// body size.
func get(ctx context.Context, client *http.Client, url string) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

// server is a running hnindex server process.
type server struct {
	cmd *exec.Cmd
	// url is where it serves: http://ADDR.
	url       string
	peak      int64
	stopWatch func()
	// output is its stdout and stderr, read until it exits; done is
	// closed then.
	output *strings.Builder
	done   chan struct{}
}

var servingLine = regexp.MustCompile(`^serving flow \S+ at (http://\S+)`)

// startServer starts hnindex server on db at a loopback port of its
// choosing and waits for it to say where it serves.
func (b *bench) startServer(ctx context.Context, db string, env []string) (*server, error) {
	cmd := exec.CommandContext(ctx, b.cfg.Binary, b.hnindexArgs(db, "server", "--addr", "127.0.0.1:0")...)
	cmd.Env = append(cmd.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	s := &server{cmd: cmd, output: new(strings.Builder), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.stopWatch = watchPeakRSS(cmd.Process.Pid, &s.peak)
	found := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			s.output.WriteString(line + "\n")
		}
	}()
	select {
	case s.url = <-found:
		return s, nil
	case <-s.done:
		err = errors.New("it exited")
	case <-time.After(time.Minute):
		err = errors.New("it did not say where it serves within a minute")
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.kill()
	return nil, fmt.Errorf("hnindex server: %w\n%s", err, s.output)
}

// stop stops the server as Ctrl-C does and returns its peak RSS.
func (s *server) stop() (int64, error) {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	<-s.done
	err := s.cmd.Wait()
	s.stopWatch()
	s.stopWatch = nil
	if err != nil {
		return s.peak, fmt.Errorf("hnindex server: %w\n%s", err, s.output)
	}
	return s.peak, nil
}

// kill ends the server if stop did not.
func (s *server) kill() {
	if s.stopWatch == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd.Wait()
	s.stopWatch()
	s.stopWatch = nil
}
