package cli_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/tidemarktest"
)

// An update whose context is cancelled for a reason other than
// ErrInterrupted did not finish: it exits 1, not 0 ("done").
func TestAbandonedUpdateIsNotExitZero(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	for i := range 200 {
		src.Set(fmt.Sprintf("n%03d", i), "note")
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	var once sync.Once
	src.OnGet(func(k string) {
		if k == "n010" {
			once.Do(func() { cancel(errors.New("stopped by interrupt")) })
		}
	})
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	var r result
	{
		var out, errb syncBuffer
		r.code = cli.Run(ctx, app, []string{"update", "--db", db}, cli.Env{Stdout: &out, Stderr: &errb})
		r.stdout, r.stderr = out.String(), errb.String()
	}
	require.NotEqual(t, cli.ExitOK, r.code, "an abandoned update is not done; stdout:\n%s", r.stdout)
}

// A gracefully stopped update in which rows failed exits 2 and prints the
// failures, as a finished one does.
func TestStoppedUpdateWithFailedRowsExitsTwo(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	src.Set("a000", "fail")
	for i := range 200 {
		src.Set(fmt.Sprintf("n%03d", i), "note")
	}
	stop, aTaken := make(chan struct{}), make(chan struct{})
	var once, aOnce sync.Once
	src.OnGet(func(k string) {
		switch k {
		case "a000":
			aOnce.Do(func() { close(aTaken) })
		case "n100":
			// The stop comes once a000 is in hand: a worker took it (on a
			// loaded machine it may be taken after n100 is), so it is
			// finished, and fails, before the update stops.
			select {
			case <-aTaken:
			case <-time.After(10 * time.Second):
			}
			once.Do(func() { close(stop) })
		}
	})
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	r := run(t, app, cli.Env{Stop: stop}, "update", "--db", db)
	require.Contains(t, r.stdout, "stopped")
	require.Regexp(t, `[1-9]\d* failed`, r.stdout, "the row a000 failed before the stop")
	require.Equal(t, cli.ExitRowsFailed, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
}
