package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/target/tabletest"
)

func loadFlow(db *sqlite.DB, gen tabletest.Threads) *tidemark.Flow {
	f := tidemark.NewFlow("Load")
	messages := sqlite.DeclareTable[tabletest.Message](f, db, "messages")
	sqlite.FullText(messages, "text")
	tidemark.ForEach(tidemark.AddSource(f, "threads", tidemark.Source[int, tabletest.Thread](gen)),
		func(_ context.Context, r *tidemark.Row, _ int, t tabletest.Thread) error {
			for _, m := range t.Messages {
				messages.Declare(r, m)
			}
			return nil
		})
	return f
}

// BenchmarkInitialLoad loads 200,000 messages (4,000 threads of 50) into
// an empty SQLite table with a full-text index, through Tidemark (state
// store in the same file), and, in the same run, with a plain bulk insert
// of the same rows in one transaction into the same table definition
// (created by Tidemark's setup, with its FTS5 triggers). It reports both
// rates and their ratio.
func BenchmarkInitialLoad(b *testing.B) {
	gen := tabletest.Threads{N: 4000, PerThread: 50, Seed: 1}
	const rows = 4000 * 50
	ctx := context.Background()
	var tidemarkTimes, bulkTimes []time.Duration
	for b.Loop() {
		path := filepath.Join(b.TempDir(), "t.db")
		db, err := sqlite.Open(ctx, "main", path)
		if err != nil {
			b.Fatal(err)
		}
		e, err := tidemark.Open(ctx, loadFlow(db, gen), tidemark.Options{StateStore: path})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		st, err := e.Update(ctx, tidemark.UpdateOptions{})
		elapsed := time.Since(start)
		if err != nil || st.Failed() > 0 {
			b.Fatalf("update: %v, %d failed", err, st.Failed())
		}
		tidemarkTimes = append(tidemarkTimes, elapsed)
		var n int
		if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil || n != int(rows) {
			b.Fatalf("tidemark wrote %d rows, want %d (%v)", n, int(rows), err)
		}
		e.Close()
		db.Close()

		// The baseline: the same table, made by Tidemark's setup, filled by
		// one transaction of plain INSERTs.
		path = filepath.Join(b.TempDir(), "b.db")
		db, err = sqlite.Open(ctx, "main", path)
		if err != nil {
			b.Fatal(err)
		}
		e, err = tidemark.Open(ctx, loadFlow(db, gen), tidemark.Options{StateStore: path})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		e.Close()
		start = time.Now()
		tx, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO messages (id, thread_id, parent_id, author, text, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		for m := range gen.Rows() {
			if _, err := stmt.ExecContext(ctx, m.ID, m.ThreadID, m.ParentID, m.Author, m.Text, m.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000000Z")); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		bulkTimes = append(bulkTimes, time.Since(start))
		db.Close()
	}
	mt, mb := median(tidemarkTimes), median(bulkTimes)
	b.ReportMetric(rows/mt.Seconds(), "tidemark-rows/s")
	b.ReportMetric(rows/mb.Seconds(), "bulk-insert-rows/s")
	b.ReportMetric(mt.Seconds()/mb.Seconds(), "x-bulk-time")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
