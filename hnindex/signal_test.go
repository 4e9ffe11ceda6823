package hnindex_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// openPTY returns the slave side of a new pseudo-terminal, its output
// copied into out.
func openPTY(t *testing.T, out *syncBuffer) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	go io.Copy(out, master)
	t.Cleanup(func() { slave.Close(); master.Close() })
	return slave
}

// Ctrl-C at the confirmation prompt of setup ends the process, changing
// nothing: commands other than update are interrupted by the first signal.
func TestCtrlCAtSetupPromptExits(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	tty := openPTY(t, &out)
	stdinR, stdinW, err := os.Pipe() // nobody answers the prompt
	require.NoError(t, err)
	defer stdinW.Close()
	cmd := exec.Command(binary, "setup", "--db", filepath.Join(t.TempDir(), "hn.db"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, tty, tty
	require.NoError(t, cmd.Start())
	stdinR.Close()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "[y/N]") }, 10*time.Second, 10*time.Millisecond, out.String())

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("hnindex setup still waits on its prompt after two SIGINTs:\n%s", out.String())
	}
}

// SIGTERM and SIGHUP stop a live update gracefully: it finishes, says
// "stopped" and exits 0.
func TestSignalsStopLiveUpdates(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			fake := httptest.NewServer(hnfake.NewServer(hnfake.Generate(hnfake.GenerateOptions{Threads: 5, CommentsPerThread: 3, Seed: 1})).Handler())
			t.Cleanup(fake.Close)
			var out syncBuffer
			cmd := exec.Command(binary, "update", "-L", "--refresh", "100ms", "--rate", "1000",
				"--db", filepath.Join(t.TempDir(), "hn.db"), "--hn-url", fake.URL+"/api/v1")
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			defer func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					cmd.Wait()
				}
			}()
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "pass 2 ") }, 20*time.Second, 10*time.Millisecond, out.String())
			require.NoError(t, cmd.Process.Signal(sig))
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				require.NoError(t, err, out.String())
			case <-time.After(10 * time.Second):
				t.Fatalf("still running after %s:\n%s", sig, out.String())
			}
			require.Contains(t, out.String(), "stopped")
		})
	}
}
