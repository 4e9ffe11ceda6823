package tidemark_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// withApplicationName returns a PostgreSQL URL whose connections carry
// name, so that a test can find and end them.
func withApplicationName(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// endSessions ends the server sessions whose connections carry the
// application name app, as a server restart ends them.
func endSessions(t *testing.T, app string) {
	t.Helper()
	admin, err := pgx.Connect(t.Context(), pgtest.URL(t))
	require.NoError(t, err)
	defer admin.Close(context.Background())
	// With a timeout, pg_terminate_backend waits for each session to end
	// (and its locks with it), rather than only signalling it.
	_, err = admin.Exec(t.Context(), `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1`, app)
	require.NoError(t, err)
}

// TestUpdateStopsWhenItsLockIsLost: the update lock of a PostgreSQL state
// store is held by a session; when the server restarts under an update (here:
// every connection of the update ends, as a restart ends them), another
// update may take the lock. The first must notice before it writes again,
// and stop.
func TestUpdateStopsWhenItsLockIsLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "postgres")
	base := h.opts.StateStore
	app := fmt.Sprintf("tmlost%d", time.Now().UnixNano())
	h.opts.StateStore = withApplicationName(t, base, app)
	h.fill(50)
	h.mustUpdate()

	for i := range 50 {
		h.src.Set(i, doc{Title: fmt.Sprintf("changed %d", i)})
	}
	reached, resume := make(chan struct{}), make(chan struct{})
	first := true
	optsA := h.opts
	optsA.Batch = tidemark.BatchOptions{MaxRows: 10}
	optsA.Faults.BeforeCommit = func(ctx context.Context) error {
		if first {
			first = false
			close(reached)
			<-resume
		}
		return nil
	}
	h.opts = optsA
	a := h.open()
	h.opts.Faults = tidemark.FaultHooks{}
	done := make(chan error, 1)
	go func() {
		_, err := a.Update(t.Context(), tidemark.UpdateOptions{})
		done <- err
	}()
	<-reached

	// The server "restarts" for the first update: its sessions end, and
	// its lock with them.
	endSessions(t, app)

	// A second update takes the lock and runs.
	h.opts.StateStore = withApplicationName(t, base, app+"b")
	h.opts.Batch = tidemark.BatchOptions{}
	var (
		st  *tidemarktype.UpdateStats
		err error
	)
	require.Eventually(t, func() bool {
		st, err = h.update(tidemark.UpdateOptions{})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the lock is free once its session ended: %v", err)
	require.Zero(t, st.Failed())

	// The first update must not write on as if it still held the lock.
	close(resume)
	err = <-done
	require.ErrorIs(t, err, tidemark.ErrLockLost)
	h.expectDocs()
}

// Live mode checks its lock before every pass, not only before writes: a
// live run whose session ended while another update took the lock stops at
// its next pass, even if that pass would write nothing.
func TestLiveStopsWhenItsLockIsLostBetweenPasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "postgres")
	base := h.opts.StateStore
	app := fmt.Sprintf("tmlive%d", time.Now().UnixNano())
	h.opts.StateStore = withApplicationName(t, base, app)
	h.fill(5)
	live := h.open()
	defer live.Close()
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- live.Live(t.Context(), tidemark.LiveOptions{Refresh: 2 * time.Second,
			OnPass: func(p tidemark.Pass) {
				if p.N == 1 {
					close(first)
				}
			}})
	}()
	<-first

	endSessions(t, app)

	h.opts.StateStore = withApplicationName(t, base, app+"b")
	_, err := h.update(tidemark.UpdateOptions{})
	require.NoError(t, err, "the lock went with its session")
	select {
	case err := <-done:
		require.ErrorIs(t, err, tidemark.ErrLockLost)
	case <-time.After(15 * time.Second):
		t.Fatal("live mode ran on without its lock")
	}
}
