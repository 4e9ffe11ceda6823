//go:build unix

package sqlite

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/statestore"
)

// lockFiles returns the names of the lock files beside the database at
// path: those named path+".*.lock". The directory is listed rather than
// globbed, since path may hold glob metacharacters.
func lockFiles(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), filepath.Base(path)+".") && strings.HasSuffix(e.Name(), ".lock") {
			out = append(out, e.Name())
		}
	}
	return out
}

func openFile(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestFlowLockLeavesNoFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openFile(t, path)
	held, err := s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "HackerNewsIndex"})
	require.NoError(t, err)
	require.Len(t, lockFiles(t, path), 1, "the lock file exists while the lock is held")
	held.Release()
	require.Empty(t, lockFiles(t, path), "released")
}

// TestLockPathIsLiteral: the lock file is named after the database path
// as given, whatever characters it holds.
func TestLockPathIsLiteral(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "a?b#c%20d[e].db")
	s := &Store{path: path}
	got := s.lockPath("Hacker News/Index")
	require.True(t, strings.HasPrefix(got, path+".Hacker_News_Index-"), got)
	require.True(t, strings.HasSuffix(got, ".lock"), got)

	release, err := lockFile(got, "f", statestore.ThisProcess(time.Now()))
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Base(got)}, lockFiles(t, path))
	release()
	require.Empty(t, lockFiles(t, path))
}

// TestFlowLockTakesOverALeftFile: a lock file left by a process killed
// while holding the lock is taken over, and removed by the release.
func TestFlowLockTakesOverALeftFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openFile(t, path)
	lock := s.lockPath("f")
	require.NoError(t, os.WriteFile(lock, []byte(`{"PID":999999999,"Host":"gone","Since":"2020-01-01T00:00:00Z"} and more`), 0o644))

	held, err := s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	_, err = s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	var locked *statestore.LockedError
	require.ErrorAs(t, err, &locked)
	require.Equal(t, os.Getpid(), locked.Holder.PID, "the record left is replaced")
	held.Release()
	require.Empty(t, lockFiles(t, path))
}

// TestFlowLockRace: lockers on separate stores of one file, taking and
// releasing the lock as fast as they can, never hold it together, though
// each release removes the file another may have opened.
func TestFlowLockRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	const (
		lockers    = 4
		iterations = 300
	)
	stores := make([]*Store, lockers)
	for i := range stores {
		stores[i] = openFile(t, path)
	}
	var (
		wg               sync.WaitGroup
		holding, maxSeen atomic.Int32
		taken            atomic.Int64
		errs             = make([]error, lockers)
	)
	for i, s := range stores {
		wg.Go(func() {
			for range iterations {
				l, err := s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
				if errors.Is(err, statestore.ErrLocked) {
					continue
				}
				if err != nil {
					errs[i] = err
					return
				}
				n := holding.Add(1)
				for {
					m := maxSeen.Load()
					if n <= m || maxSeen.CompareAndSwap(m, n) {
						break
					}
				}
				taken.Add(1)
				// Hold it for a few system calls, time for the others
				// to try.
				for range 3 {
					_, _ = os.Stat(path)
					runtime.Gosched()
				}
				holding.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int32(1), maxSeen.Load(), "one holder at a time")
	require.Positive(t, taken.Load())
	t.Logf("taken %d times of %d", taken.Load(), lockers*iterations)
	require.Empty(t, lockFiles(t, path))
}

// TestFlowLockHeldByAnotherProcess: the refusal names the other process;
// when it is killed, its lock file stays, and the next holder takes it
// over and removes it.
func TestFlowLockHeldByAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openFile(t, path)

	cmd := exec.Command(os.Args[0], "-test.run=^TestFlowLockHelperProcess$")
	cmd.Env = append(os.Environ(), "TIDEMARK_LOCK_HELPER_DB="+path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)

	_, err = s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	var locked *statestore.LockedError
	require.ErrorAs(t, err, &locked)
	host, err := os.Hostname()
	require.NoError(t, err)
	require.Equal(t, cmd.Process.Pid, locked.Holder.PID)
	require.Equal(t, host, locked.Holder.Host)
	require.ErrorContains(t, locked, fmt.Sprintf("flow f is locked by pid %d on host %s since ", cmd.Process.Pid, host))

	require.NoError(t, cmd.Process.Kill())
	require.Error(t, cmd.Wait(), "killed")
	require.Len(t, lockFiles(t, path), 1, "a killed holder leaves its file")
	held, err := s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err, "the lock went with the process")
	held.Release()
	require.Empty(t, lockFiles(t, path))
}

// TestFlowLockHelperProcess is the other process of
// TestFlowLockHeldByAnotherProcess: it takes the lock, says so, and holds
// it until killed.
func TestFlowLockHelperProcess(t *testing.T) {
	path := os.Getenv("TIDEMARK_LOCK_HELPER_DB")
	if path == "" {
		t.Skip("run by TestFlowLockHeldByAnotherProcess")
	}
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	_, err = s.FlowLock(t.Context(), statestore.FlowLockParams{Flow: "f"})
	require.NoError(t, err)
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
	t.Fatal("the helper must be killed holding the lock")
}
