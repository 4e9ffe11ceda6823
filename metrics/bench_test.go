package metrics_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/tidemarktype"
)

// storeOps are the state store's operations, as tidemarktype.StoreOp
// names them.
var storeOps = []string{"flow_get", "flow_find", "flow_drop", "lock", "lock_check", "unlock", "source_ensure", "source_find",
	"source_status", "source_notes_get", "source_notes_save", "target_list", "target_stage", "target_commit", "lookup",
	"row_load", "row_scan", "row_count", "row_failures", "row_find", "row_get", "row_page", "owner_find", "owner_exists",
	"precommit", "commit"}

// BenchmarkScrape serves one scrape of the metrics of a flow of realistic
// size — 3 sources, 4 root targets, every state store operation seen, the
// failing rows read from a callback — after 100,000 rows' events.
func BenchmarkScrape(b *testing.B) {
	ctx := context.Background()
	sources := []string{"threads", "users", "tags"}
	targets := []string{"postgres:main/hn_messages", "postgres:main/hn_threads", "postgres:main/hn_users", "localfs:/var/hn/pages"}
	failing := map[string]int64{"threads": 12, "users": 0, "tags": 3}
	m := metrics.New(metrics.Options{Flow: "HackerNews", FailingRows: func(context.Context) (map[string]int64, error) { return failing, nil }})

	st := tidemarktype.UpdateStats{Sources: map[string]tidemarktype.SourceStats{}, Targets: map[string]tidemarktype.TargetStats{}}
	for _, s := range sources {
		st.Sources[s] = tidemarktype.SourceStats{}
	}
	for _, t := range targets {
		st.Targets[t] = tidemarktype.TargetStats{}
	}
	outcomes := []tidemarktype.Outcome{tidemarktype.OutcomeAdded, tidemarktype.OutcomeUpdated, tidemarktype.OutcomeUnchanged, tidemarktype.OutcomeDeleted, tidemarktype.OutcomeFailed}
	for pass := range 10 {
		m.PassStarted(ctx, tidemarktype.PassStart{Flow: "HackerNews"})
		for i := range 10_000 {
			src := sources[i%len(sources)]
			m.RowDone(ctx, tidemarktype.RowDone{Source: src, Key: fmt.Sprint(i), Outcome: outcomes[i%len(outcomes)]})
			m.Fetched(ctx, tidemarktype.Fetch{Source: src, Duration: time.Duration(i%500) * time.Millisecond, Exists: i%7 != 0})
			if i%1000 == 0 {
				bt := tidemarktype.Batch{Rows: 1000, Targets: map[string]tidemarktype.TargetStats{}, Duration: 40 * time.Millisecond}
				for _, t := range targets {
					bt.Targets[t] = tidemarktype.TargetStats{Upserts: 900, Deletes: 10}
				}
				m.BatchWritten(ctx, bt)
			}
			if i%100 == 0 {
				for j, op := range storeOps {
					m.StoreOp(ctx, tidemarktype.StoreOp{Op: op, Duration: time.Duration(j*i%5000) * time.Microsecond})
				}
			}
		}
		st.Started = time.Unix(int64(pass*60), 0)
		st.Finished = st.Started.Add(42 * time.Second)
		m.PassFinished(ctx, tidemarktype.PassEnd{Flow: "HackerNews", Stats: st})
	}

	h := m.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	var body string
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		body = w.Body.String()
	}
	series := 0
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, "#") {
			series++
		}
	}
	b.ReportMetric(float64(len(body)), "bytes/scrape")
	b.ReportMetric(float64(series), "series")
}

// BenchmarkRowDone is the cost the metrics add to each row an update
// finishes with.
func BenchmarkRowDone(b *testing.B) {
	ctx := context.Background()
	m := metrics.New(metrics.Options{Flow: "HackerNews"})
	r := tidemarktype.RowDone{Source: "threads", Key: "123", Outcome: tidemarktype.OutcomeUnchanged}
	b.ReportAllocs()
	for b.Loop() {
		m.RowDone(ctx, r)
	}
}
