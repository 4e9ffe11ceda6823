package hnindex_test

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// sharedBackends are the state stores several hnindex processes share:
// PostgreSQL, and Redis (with the tables in PostgreSQL).
var sharedBackends = []string{"postgres", "redis"}

// worker is one hnindex process of a shared update.
type worker struct {
	cmd *exec.Cmd
	out *syncBuffer
}

// startWorkers starts n hnindex update processes at once.
func (w *world) startWorkers(n int, args ...string) []worker {
	w.t.Helper()
	out := make([]worker, n)
	for i := range n {
		cmd, buf := w.start(append([]string{"update", "--rate", "10000"}, args...)...)
		out[i] = worker{cmd, buf}
	}
	return out
}

// wait waits for every worker, which must exit 0, and returns the rows
// they processed each and the deletions all told.
func (w *world) waitWorkers(ws []worker) (rows []int, deleted int) {
	w.t.Helper()
	line := regexp.MustCompile(`source threads: \d+ listed, \d+ fetched, (\d+) added, (\d+) updated, (\d+) reprocessed, (\d+) deleted`)
	for i, wk := range ws {
		err := wk.cmd.Wait()
		require.NoError(w.t, err, "worker %d:\n%s", i, wk.out.String())
		m := line.FindStringSubmatch(wk.out.String())
		if m == nil {
			// A worker that found no work left says nothing of the source.
			require.Contains(w.t, wk.out.String(), "done in", "worker %d", i)
			rows = append(rows, 0)
			continue
		}
		n := 0
		for _, s := range m[1:4] {
			v, _ := strconv.Atoi(s)
			n += v
		}
		d, _ := strconv.Atoi(m[4])
		rows = append(rows, n+d)
		deleted += d
	}
	return rows, deleted
}

func TestWorkersShareAnUpdate(t *testing.T) {
	t.Parallel()
	forEachOf(t, sharedBackends, func(t *testing.T, backend string) {
		const threads = 240
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: threads, CommentsPerThread: 8, Seed: 31})
		w := newWorld(t, backend, ds)
		w.fake.SetFaults(hnfake.Faults{Latency: 10 * time.Millisecond, Items: true})
		ws := w.startWorkers(4, "--concurrency", "4")
		rows, deleted := w.waitWorkers(ws)
		c := w.fake.Requests()
		require.Equal(t, int64(threads), c.Items, "each thread fetched once, however many workers")
		for id, n := range c.ItemsByID {
			require.Equal(t, int64(1), n, "thread %d", id)
		}
		sum, helped := 0, 0
		for _, n := range rows {
			sum += n
			if n > 0 {
				helped++
			}
		}
		require.Equal(t, threads, sum, "rows per worker %v", rows)
		require.GreaterOrEqual(t, helped, 2, "the workers share the pass: rows per worker %v", rows)
		require.Zero(t, deleted)
		w.requireRows()
		shared := c.Listing
		t.Logf("rows per worker %v, %d listing requests", rows, shared)

		// One worker alone lists as many pages: the listing is not
		// multiplied by the workers.
		solo := w.mustUpdate()
		require.Zero(t, solo.Items)
		require.Equal(t, solo.Listing, shared, "listing requests of 4 workers and of one")

		// Changes and deletions: the changed threads fetched once, each
		// gone one deleted once.
		all := ds.Threads()
		for _, th := range all[:12] {
			ds.Edit(th.ID, func(th *hnfake.Thread) { th.Title += ", edited" })
		}
		for _, th := range all[200:] {
			ds.Delete(th.ID)
		}
		w.fake.ResetCounts()
		rows, deleted = w.waitWorkers(w.startWorkers(4, "--concurrency", "4"))
		c = w.fake.Requests()
		require.Equal(t, int64(12), c.Items, "the edited threads only")
		require.Equal(t, 40, deleted, "each gone thread deleted once, by one worker")
		t.Logf("rows per worker %v", rows)
		w.requireRows()
	})
}

func TestWorkerKilledMidPass(t *testing.T) {
	t.Parallel()
	forEachOf(t, sharedBackends, func(t *testing.T, backend string) {
		const threads = 300
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: threads, CommentsPerThread: 8, Seed: 37})
		w := newWorld(t, backend, ds)
		w.fake.SetFaults(hnfake.Faults{Latency: 25 * time.Millisecond, Items: true})
		ws := w.startWorkers(3, "--concurrency", "2", "--lease-ttl", "2s")
		// The lister, killed mid-pass: its claims and its lease expire,
		// another worker lists again and finishes the pass.
		var victim int
		require.Eventually(t, func() bool {
			for i, wk := range ws {
				if strings.Contains(wk.out.String(), "listing the source for the workers") {
					victim = i
					return w.fake.Requests().Items >= threads/3
				}
			}
			return false
		}, 60*time.Second, time.Millisecond)
		require.NoError(t, ws[victim].cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, ws[victim].cmd.Wait())
		killedAt := w.fake.Requests().Items
		rest := append(ws[:victim:victim], ws[victim+1:]...)
		start := time.Now()
		rows, _ := w.waitWorkers(rest)
		t.Logf("the lister killed after %d item requests; the others finished in %s: rows %v", killedAt, time.Since(start).Round(time.Millisecond), rows)
		w.requireRows()
		c := w.fake.Requests()
		for id, n := range c.ItemsByID {
			require.LessOrEqual(t, n, int64(2), "thread %d fetched %d times", id, n)
		}
		// What the killed worker held (its claims, at most eight times its
		// source's 8 rows in flight) is fetched again; nothing else is.
		require.LessOrEqual(t, c.Items, int64(threads+8*8), "item requests")
		require.Zero(t, w.mustUpdate().Items, "nothing is left for the next update")
	})
}

func TestOneShotJoinsALivePass(t *testing.T) {
	t.Parallel()
	forEachOf(t, sharedBackends, func(t *testing.T, backend string) {
		const threads = 200
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: threads, CommentsPerThread: 4, Seed: 41})
		w := newWorld(t, backend, ds)
		w.fake.SetFaults(hnfake.Faults{Latency: 20 * time.Millisecond, Items: true})
		live, liveOut := w.start("update", "--live", "--refresh", "1h", "--rate", "10000", "--concurrency", "2")
		require.Eventually(t, func() bool { return w.fake.Requests().Items >= 20 }, 60*time.Second, time.Millisecond, liveOut.String())
		// A one-shot update joins the live worker's pass, helps, and exits
		// 0 once the pass is done.
		rows, _ := w.waitWorkers(w.startWorkers(1, "--concurrency", "4"))
		require.Positive(t, rows[0], "the one-shot update helped")
		w.requireRows()
		c := w.fake.Requests()
		require.Equal(t, int64(threads), c.Items)
		require.NoError(t, live.Process.Signal(syscall.SIGTERM))
		require.NoError(t, live.Wait(), liveOut.String())
		require.Equal(t, w.mustUpdate().Listing, c.Listing, "one worker listed the pass")
	})
}
