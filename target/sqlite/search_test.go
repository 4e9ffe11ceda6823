package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/target/sqlite"
)

// TestQueriesEndWithTheirContext checks what Search's deadline relies on:
// the driver interrupts a running query when its context ends.
func TestQueriesEndWithTheirContext(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(t.Context(), "main", filepath.Join(t.TempDir(), "app.db"))
	require.NoError(t, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	var n int64
	err = db.SQL().QueryRowContext(ctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c`).Scan(&n)
	require.Error(t, err)
	require.Less(t, time.Since(start), 2*time.Second, "interrupted, not run to its end")
	require.NoError(t, db.SQL().QueryRowContext(t.Context(), `SELECT 1`).Scan(&n), "the database is fine after")
}
