package hnbench_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/internal/hnbench"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
)

// TestHarnessSmall runs the whole harness at a tiny size, so that a change
// that breaks it fails here rather than in `make bench`; it checks the
// request counts, which do not depend on the machine.
func TestHarnessSmall(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, pkg := range map[string]string{"hnindex": "./cmd/hnindex", "hnbench": "./cmd/hnbench"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/tidemark/tidemark/"+strings.TrimPrefix(pkg, "./")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	report, err := hnbench.Run(t.Context(), hnbench.Config{
		Threads: 120, Comments: 5, Depth: 3, TextBytes: 100, Seed: 1, Runs: 1,
		Backends: []string{"sqlite", "postgres"}, PostgresURL: pgtest.URL(t),
		LivePasses: 2, Naive: true, InsightRequests: 30, InsightConcurrency: 2,
		Binary: filepath.Join(dir, "hnindex"), Self: filepath.Join(dir, "hnbench"), Dir: dir,
		ScaleOut: hnbench.ScaleOut{Backends: []string{"postgres", "redis"}, Workers: []int{1, 3}, Threads: 60, Comments: 2,
			Latency: 5 * time.Millisecond, Concurrency: 4, RedisURL: redistest.URL(t)},
	})
	require.NoError(t, err)
	get := func(backend, prefix string) hnbench.Result {
		for _, r := range report.Results {
			if r.Backend == backend && strings.HasPrefix(r.Scenario, prefix) {
				return r
			}
		}
		t.Fatalf("no %s result for %s", prefix, backend)
		return hnbench.Result{}
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		initial := get(backend, "initial sync")
		require.Equal(t, int64(720), initial.Rows)
		require.Equal(t, int64(121), initial.ListingRequests+initial.ItemRequests)
		require.Equal(t, initial.MinRequests, initial.ListingRequests+initial.ItemRequests)
		require.Positive(t, initial.Ratio)
		require.Positive(t, initial.PeakRSS)
		noChange := get(backend, "update, nothing changed")
		require.Zero(t, noChange.ItemRequests)
		require.Equal(t, int64(1), noChange.ListingRequests)
		churn := get(backend, "update, 1%")
		require.Equal(t, int64(2), churn.ItemRequests, "one thread edited, one added")
		require.Equal(t, int64(720), get(backend, "naive").Rows)
		require.Contains(t, get(backend, "live mode").Note, "RSS per pass")
		for _, endpoint := range []string{"row", "lineage", "search"} {
			for _, clients := range []string{"1 client", "2 clients"} {
				l := get(backend, "insight: "+endpoint+", "+clients).Latency
				require.NotNil(t, l)
				require.Equal(t, 30, l.Requests, "%s, %s", endpoint, clients)
				require.Zero(t, l.Errors, "%s, %s: %v", endpoint, clients, l.Status)
				require.Positive(t, l.P99)
				require.Positive(t, l.MeanBytes)
			}
		}
		require.NotNil(t, get(backend, "insight: /metrics scrape").Latency)
	}
	for _, backend := range []string{"postgres", "redis"} {
		solo := get(backend, "scale-out, 1 worker alone")
		require.Equal(t, "scale-out, 1 worker", solo.Baseline)
		for _, scenario := range []string{"scale-out, 1 worker", "scale-out, 3 workers", "scale-out, 1 worker alone"} {
			r := get(backend, scenario)
			require.Equal(t, int64(60), r.ItemRequests, "%s %s: each thread fetched once", backend, scenario)
			require.Equal(t, solo.ListingRequests, r.ListingRequests, "%s %s: one listing", backend, scenario)
			require.Equal(t, int64(180), r.Rows)
			require.Contains(t, r.Note, "per thread")
		}
		require.Positive(t, get(backend, "scale-out, 3 workers").Ratio)
	}
	var table strings.Builder
	require.NoError(t, report.WriteTable(&table))
	require.Contains(t, table.String(), "no-change update ÷ listing fetch")
	require.Contains(t, table.String(), "GET /api/v1/sources/threads/rows/{thread}")
	require.Contains(t, table.String(), "p99 of a row")
	require.NoError(t, report.WriteJSON(filepath.Join(dir, "bench.json")))
}
