package cli

import (
	"fmt"
	"github.com/stretchr/testify/require"
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
	p := newProgress(env, slog.New(slog.DiscardHandler), []string{"a", "b"}, false)
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

// The bar counts processed rows up to the rows listed and found gone, one
// more while the listing runs: it is full only once all are processed, not
// whenever the processing catches up with a listing still going.
func TestProgressTotal(t *testing.T) {
	t.Parallel()
	p := newProgress(Env{}, slog.New(slog.DiscardHandler), []string{"a"}, true)
	for _, c := range []struct {
		s            tidemarktype.SourceStats
		total, count int64
	}{
		{tidemarktype.SourceStats{Listed: 33, Added: 33}, 34, 33},
		{tidemarktype.SourceStats{Listed: 200, Added: 33}, 201, 33},
		{tidemarktype.SourceStats{Listed: 200, Added: 190, Unchanged: 10, ListingComplete: true}, 200, 200},
		{tidemarktype.SourceStats{Listed: 200, Added: 200, Deleted: 5, ListingComplete: true}, 205, 205},
	} {
		p.last = &tidemarktype.UpdateStats{Sources: map[string]tidemarktype.SourceStats{"a": c.s}}
		got := p.countsOf("a")
		require.Equal(t, c.total, got.total, "%+v", c.s)
		require.Equal(t, c.count, got.processed, "%+v", c.s)
		require.Contains(t, got.String(), "would write", "a preview writes nothing")
	}
}

// The bars end on an update's final counts on a terminal; off one, final
// does nothing (the summary says it).
func TestProgressFinal(t *testing.T) {
	st := &tidemarktype.UpdateStats{Sources: map[string]tidemarktype.SourceStats{"a": {Listed: 3, Added: 3, ListingComplete: true}}}
	off := newProgress(Env{}, slog.New(slog.DiscardHandler), []string{"a"}, false)
	off.final(st)
	require.Nil(t, off.last)

	tty := openPTY(t)
	on := newProgress(Env{Stdout: tty, Stderr: tty, Terminal: true}, slog.New(slog.DiscardHandler), []string{"a"}, false)
	on.final(st)
	c := on.countsOf("a")
	require.Equal(t, c.total, c.processed, "full")
	on.done()
}
