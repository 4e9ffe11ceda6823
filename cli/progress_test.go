package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tidemark/tidemark/tidemarktype"
)

// openPTY returns the slave side of a new pseudo-terminal, whose output is
// drained, so that mpb sees a terminal and refreshes on its own as it does
// from a shell.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, master)
	t.Cleanup(func() { slave.Close(); master.Close() })
	return slave
}

// On a terminal, setting a bar hands a function to the bar's goroutine,
// which also renders it through a decorator that takes p.mu: progress.update
// must not hold p.mu while setting bars, or the two wait for each other for
// ever (and with them the engine's progress goroutine and Update).
func TestProgressUpdateDeadlocksWithRender(t *testing.T) {
	tty := openPTY(t)
	env := Env{Stdout: tty, Stderr: tty, Terminal: true}
	p := newProgress(env, slog.New(slog.DiscardHandler), []string{"a", "b"})
	st := &tidemarktype.UpdateStats{Sources: map[string]tidemarktype.SourceStats{"a": {Listed: 10, Added: 3}, "b": {Listed: 5}}}

	finished := make(chan struct{})
	go func() {
		defer close(finished)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			p.update(st) // the engine calls this every 200ms; here back to back
		}
	}()
	select {
	case <-finished:
		p.done()
	case <-time.After(10 * time.Second):
		t.Fatal("progress.update deadlocked with the bar's render (p.mu held across Bar.SetTotal; the decorator takes p.mu)")
	}
}
