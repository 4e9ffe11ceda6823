package tidemark_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// TestStateStoreConnectionDropsMidUpdate terminates every connection of
// the PostgreSQL state store in the middle of an update, as a failover or
// an administrator would: the update retries through it and ends with
// exactly the right rows.
func TestStateStoreConnectionDropsMidUpdate(t *testing.T) {
	t.Parallel()
	base, schema := pgtest.Schema(t)
	app := fmt.Sprintf("tmdrop%d", time.Now().UnixNano())
	opts := tidemark.Options{
		StateStore:  base + "&application_name=" + app,
		StateSchema: schema,
		Batch:       tidemark.BatchOptions{MaxRows: 10},
		Retry:       tidemark.RetryPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2, MaxElapsed: 30 * time.Second},
	}
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	admin, err := pgx.Connect(t.Context(), base)
	require.NoError(t, err)
	defer admin.Close(context.Background())

	src := tidemarktest.NewSource[int, string]()
	for i := range 100 {
		src.Set(i, fmt.Sprint("v", i))
	}
	// The connections are terminated four times: a pool that finds an idle
	// connection dead before handing it out (after a second idle, under a
	// loaded machine) replaces it silently, and the drop must be met at
	// least once.
	var (
		mu         sync.Mutex
		done       = make(map[int]bool)
		terminated int
	)
	src.OnGet(func(id int) {
		if id != 50 && id != 60 && id != 70 && id != 80 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if done[id] {
			return
		}
		done[id] = true
		var n int
		err := admin.QueryRow(context.Background(),
			`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
		require.NoError(t, err)
		terminated += n
	})
	db := tidemarktest.NewDB()
	run := func() *tidemarktype.UpdateStats {
		f := tidemark.NewFlow("DropConn")
		rows := tidemarktest.Table[string](f, db, "rows")
		tidemark.ForEach(tidemark.AddSource(f, "s", src, tidemark.MaxInFlight(2)), func(_ context.Context, r *tidemark.Row, id int, v string) error {
			rows.Declare(r, target.Key(fmt.Sprint(id)), v)
			return nil
		})
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		defer e.Close()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		return st
	}
	st := run()
	require.Positive(t, terminated, "the store's connections were terminated")
	require.Contains(t, logs.String(), "retrying after a transient fault", "the drop was met and retried")
	require.Contains(t, logs.String(), "57P01", "admin_shutdown, as pg_terminate_backend makes")
	require.Equal(t, int64(100), st.Sources["s"].Added)
	require.Zero(t, st.Failed())
	require.Len(t, db.Rows("rows"), 100)

	src.ResetCounts()
	st = run()
	require.Zero(t, src.Gets(), "everything was committed")
	require.Equal(t, int64(100), st.Sources["s"].Unchanged)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
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
