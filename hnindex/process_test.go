package hnindex_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// binary is the hnindex command, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hnindex-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "hnindex")
	build := exec.Command("go", "build", "-o", binary, "github.com/tidemark/tidemark/cmd/hnindex")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hnindex:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs the hnindex binary against the world, in a process of its own.
func (w *world) start(args ...string) (*exec.Cmd, *syncBuffer) {
	w.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "TIDEMARK_DATABASE_URL="+w.db, "HN_API_URL="+w.url, "TIDEMARK_STATE_URL="+w.state)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(w.t, cmd.Start())
	w.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, out
}

// rememberedThreads reads, with `show`, how many threads the state store
// has committed.
func (w *world) rememberedThreads() int {
	w.t.Helper()
	r := w.run("show")
	require.Equal(w.t, 0, r.code, r.stderr)
	m := regexp.MustCompile(`threads: (\d+) rows, (\d+) failing`).FindStringSubmatch(r.stdout)
	require.NotNil(w.t, m, r.stdout)
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestKill9ThenRerun(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		const threads = 300
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: threads, CommentsPerThread: 20, Seed: 19})
		w := newWorld(t, backend, ds)
		// About 3 s of fetching; batches commit at least every second.
		w.fake.SetFaults(hnfake.Faults{Latency: 20 * time.Millisecond, Items: true})
		cmd, out := w.start("update", "--rate", "10000", "--concurrency", "2")
		require.Eventually(t, func() bool { return w.fake.Requests().Items >= 2*threads/3 }, 60*time.Second, time.Millisecond, out.String())
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, cmd.Wait(), "killed")
		w.fake.SetFaults(hnfake.Faults{})

		committed := w.rememberedThreads()
		t.Logf("killed with %d of %d threads committed", committed, threads)
		require.Positive(t, committed, "the process was killed after its first commits")
		require.Less(t, committed, threads, "the process was killed before the end")

		c := w.mustUpdate()
		require.Equal(t, int64(threads-committed), c.Items, "only the threads not committed are fetched again")
		for id, n := range c.ItemsByID {
			require.Equal(t, int64(1), n, "thread %d fetched once", id)
		}
		w.requireRows()
	})
}

func TestLiveModeAndSIGTERM(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		const refresh = 2 * time.Second
		ds := hnfake.Generate(hnfake.GenerateOptions{Threads: 20, CommentsPerThread: 5, Seed: 23})
		w := newWorld(t, backend, ds)
		cmd, out := w.start("update", "--live", "--refresh", refresh.String(), "--rate", "10000")
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "pass 1 ") }, 30*time.Second, 5*time.Millisecond, out.String())
		w.requireRows()

		// Changes on the server appear within two refresh intervals.
		threads := ds.Threads()
		changed := time.Now()
		ds.Edit(threads[2].ID, func(th *hnfake.Thread) { th.Title = "An edited title" })
		ds.Delete(threads[4].ID)
		ds.Put(&hnfake.Thread{ID: 99_000_001, Title: "A brand new thread", Author: "newcomer", CreatedAt: time.Now().UTC().Truncate(time.Second),
			Children: []*hnfake.Node{{ID: 99_000_002, Author: "first", Text: "First!"}}})
		require.Eventually(t, func() bool {
			rows := w.rows()
			_, added := rows["99000002"]
			_, deleted := rows[strconv.FormatInt(threads[4].ID, 10)]
			return added && !deleted && strings.HasPrefix(rows[strconv.FormatInt(threads[2].ID, 10)].Text, "An edited title")
		}, 2*refresh, 20*time.Millisecond, out.String())
		t.Logf("changes seen after %s (refresh %s)", time.Since(changed).Round(time.Millisecond), refresh)

		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, cmd.Wait(), "SIGTERM exits 0:\n%s", out.String())
		require.Contains(t, out.String(), "stopped")

		// The state is consistent: nothing to fetch, the rows exact.
		require.Zero(t, w.mustUpdate().Items)
		w.requireRows()
	})
}

// syncBuffer is an io.Writer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
