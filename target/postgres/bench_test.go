package postgres_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/postgres"
	"github.com/tidemark/tidemark/target/tabletest"
)

// loadFlow declares the benchmark's table, with its full-text index, in a
// flow over gen.
func loadFlow(db *postgres.DB, gen tabletest.Threads) (*tidemark.Flow, *postgres.Table[tabletest.Message]) {
	f := tidemark.NewFlow("Load")
	messages := postgres.DeclareTable[tabletest.Message](f, db, "messages")
	postgres.FullText(messages, "text", "english")
	tidemark.ForEach(tidemark.AddSource(f, "threads", tidemark.Source[int, tabletest.Thread](gen)),
		func(_ context.Context, r *tidemark.Row, _ int, t tabletest.Thread) error {
			for _, m := range t.Messages {
				messages.Declare(r, m)
			}
			return nil
		})
	return f, messages
}

// writeCSV writes the rows gen makes for psql's \copy.
func writeCSV(b *testing.B, gen tabletest.Threads) string {
	path := filepath.Join(b.TempDir(), "messages.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := csv.NewWriter(f)
	opt := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	for m := range gen.Rows() {
		if err := w.Write([]string{m.ID, m.ThreadID, opt(m.ParentID), opt(m.Author), m.Text, m.CreatedAt.Format(time.RFC3339Nano)}); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkInitialLoad loads 200,000 messages (4,000 threads of 50) into
// an empty PostgreSQL table with a full-text index, through Tidemark (state
// store in the same database) with one writer and with two, and, in the
// same run, with psql's \copy of the same rows into the same table
// definition. It reports the rates and the ratios of Tidemark's times to
// psql's.
func BenchmarkInitialLoad(b *testing.B) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		b.Skip("psql is not installed")
	}
	gen := tabletest.Threads{N: 4000, PerThread: 50, Seed: 1}
	const rows = 4000 * 50
	csvPath := writeCSV(b, gen)
	url := pgtest.URL(b)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	fresh := func(i int, what string) (string, func()) {
		schema := fmt.Sprintf("tmbench_%s_%d_%d", what, os.Getpid(), i)
		if _, err := admin.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE; CREATE SCHEMA `+schema); err != nil {
			b.Fatal(err)
		}
		return schema, func() { _, _ = admin.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) }
	}

	// Tidemark loads with one writer (one transaction per batch) and with
	// two parallel writers.
	writers := []int{1, 2}
	tidemarkTimes := make([][]time.Duration, len(writers))
	var copyTimes []time.Duration
	i := 0
	for b.Loop() {
		i++
		for wi, w := range writers {
			// Tidemark: one update into an empty table.
			schema, drop := fresh(i, fmt.Sprintf("t%d", w))
			db, err := postgres.Connect(ctx, "main", url, postgres.Options{Schema: schema, Writers: w})
			if err != nil {
				b.Fatal(err)
			}
			f, _ := loadFlow(db, gen)
			e, err := tidemark.Open(ctx, f, tidemark.Options{StateStore: url, StateSchema: schema})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			st, err := e.Update(ctx, tidemark.UpdateOptions{})
			elapsed := time.Since(start)
			if err != nil || st.Failed() > 0 || st.Targets["postgres:main/"+schema+".messages"].Upserts != rows {
				b.Fatalf("update: %v, %d failed, %+v", err, st.Failed(), st.Targets)
			}
			tidemarkTimes[wi] = append(tidemarkTimes[wi], elapsed)
			e.Close()
			db.Close()
			drop()
		}

		// psql \copy of the same rows into the same table, created empty by
		// Tidemark's setup (with the tsvector column and its GIN index).
		schema, drop := fresh(i, "c")
		db, err := postgres.Connect(ctx, "main", url, postgres.Options{Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		f, messages := loadFlow(db, gen)
		e, err := tidemark.Open(ctx, f, tidemark.Options{StateStore: url, StateSchema: schema})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		e.Close()
		db.Close()
		cmd := exec.CommandContext(ctx, psql, url, "-v", "ON_ERROR_STOP=1", "-c",
			fmt.Sprintf(`\copy %s (id, thread_id, parent_id, author, text, created_at) FROM '%s' WITH (FORMAT csv)`, messages.QualifiedName(), csvPath))
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("psql: %v: %s", err, out)
		}
		copyTimes = append(copyTimes, time.Since(start))
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+messages.QualifiedName()).Scan(&n); err != nil || n != rows {
			b.Fatalf("psql copied %d rows: %v", n, err)
		}
		drop()
	}
	mc := median(copyTimes)
	b.ReportMetric(rows/mc.Seconds(), "copy-rows/s")
	for wi, w := range writers {
		mt := median(tidemarkTimes[wi])
		b.ReportMetric(rows/mt.Seconds(), fmt.Sprintf("tidemark-%dw-rows/s", w))
		b.ReportMetric(mt.Seconds()/mc.Seconds(), fmt.Sprintf("x-copy-time-%dw", w))
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
