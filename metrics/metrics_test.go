package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bundle is an engine observed by metrics, the metrics served over HTTP,
// and the source and target the engine's flow reads and writes.
type bundle struct {
	src    *tidemarktest.Source[int, string]
	db     *tidemarktest.DB
	engine *tidemark.Engine
	url    string
}

// stateStores are where the tests keep the engine's state: a SQLite file
// and a PostgreSQL schema.
var stateStores = map[string]func(t *testing.T) tidemark.Options{
	"sqlite": func(t *testing.T) tidemark.Options {
		return tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")}
	},
	"postgres": func(t *testing.T) tidemark.Options {
		url, schema := pgtest.Schema(t)
		return tidemark.Options{StateStore: url, StateSchema: schema}
	},
}

// setup opens an engine of the flow Docs on a fresh state store: each row
// of the source "docs" is written to the table memory/docs, but a row
// whose value is "fail" fails. Its metrics count the failing rows from
// the engine's status, and are served at b.url.
func setup(t *testing.T, opts tidemark.Options) *bundle {
	t.Helper()
	b := &bundle{src: tidemarktest.NewSource[int, string](), db: tidemarktest.NewDB()}
	f := tidemark.NewFlow("Docs")
	docs := tidemarktest.Table[string](f, b.db, "docs")
	tidemark.ForEach(tidemark.AddSource(f, "docs", b.src, tidemark.MaxInFlight(4)), func(_ context.Context, r *tidemark.Row, id int, v string) error {
		if v == "fail" {
			return fmt.Errorf("doc %d cannot be processed", id)
		}
		docs.Declare(r, target.Key(fmt.Sprint(id)), v)
		return nil
	})
	m := metrics.New(metrics.Options{Flow: f.Name(), FailingRows: func(ctx context.Context) (map[string]int64, error) {
		return metrics.FailingRowsOf(b.engine)(ctx) // the engine is opened below, before any scrape
	}})
	opts.Observer = m
	// Five rows a batch, and no batch written early: the batch counts are
	// exact.
	opts.Batch = tidemark.BatchOptions{MaxRows: 5, MaxDelay: time.Minute}
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 2}
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	b.engine = e
	t.Cleanup(func() { e.Close() })
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

func (b *bundle) update(t *testing.T) *tidemarktype.UpdateStats {
	t.Helper()
	st, err := b.engine.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	return st
}

// scrape gets url and parses the text format.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// series returns a family's series by their labels other than flow
// ("outcome=added,source=docs"), each with its value: a histogram's is its
// sample count. Every series must be of flow Docs.
func series(t testing.TB, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	out := make(map[string]float64)
	fam, ok := fams[name]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		var labels []string
		flow := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "flow" {
				flow = l.GetValue()
				continue
			}
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		require.Equal(t, "Docs", flow, "%s %v", name, labels)
		slices.Sort(labels)
		var v float64
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out[strings.Join(labels, ",")] = v
	}
	return out
}

// rows is the expected tidemark_rows_total of source docs.
func rows(added, updated, unchanged, deleted, failed float64) map[string]float64 {
	return map[string]float64{
		"outcome=added,source=docs": added, "outcome=updated,source=docs": updated, "outcome=reprocessed,source=docs": 0,
		"outcome=unchanged,source=docs": unchanged, "outcome=deleted,source=docs": deleted, "outcome=failed,source=docs": failed,
	}
}

// TestMetricsOfUpdates: the metrics scraped after real updates count what
// they did, exactly; the failing rows are those failing now.
func TestMetricsOfUpdates(t *testing.T) {
	t.Parallel()
	for name, stateStore := range stateStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, stateStore(t))
			fams := scrape(t, b.url)
			require.Empty(t, series(t, fams, "tidemark_rows_total"), "nothing before the first update")
			require.Equal(t, map[string]float64{"result=ok": 0, "result=failed": 0}, series(t, fams, "tidemark_passes_total"))
			require.Equal(t, map[string]float64{"source=docs": 0}, series(t, fams, "tidemark_failing_rows"))

			// Ten rows, one failing.
			for i := range 10 {
				b.src.Set(i, fmt.Sprintf("doc %d", i))
			}
			b.src.Set(7, "fail")
			started := time.Now()
			st := b.update(t)
			require.Equal(t, int64(1), st.Failed())
			fams = scrape(t, b.url)
			require.Equal(t, rows(9, 0, 0, 0, 1), series(t, fams, "tidemark_rows_total"))
			require.Equal(t, map[string]float64{"result=found,source=docs": 10, "result=missing,source=docs": 0, "result=error,source=docs": 0},
				series(t, fams, "tidemark_fetches_total"))
			require.Equal(t, map[string]float64{"source=docs": 10}, series(t, fams, "tidemark_fetch_duration_seconds"))
			require.Equal(t, map[string]float64{"op=upsert,target=memory/docs": 9, "op=delete,target=memory/docs": 0},
				series(t, fams, "tidemark_target_states_written_total"))
			require.Equal(t, map[string]float64{"target=memory/docs": 2}, series(t, fams, "tidemark_target_batches_total"), "ten rows, five a batch")
			require.Equal(t, map[string]float64{"": 2}, series(t, fams, "tidemark_batch_duration_seconds"))
			require.Equal(t, map[string]float64{"result=ok": 1, "result=failed": 0}, series(t, fams, "tidemark_passes_total"), "failed rows do not fail the update")
			require.Equal(t, map[string]float64{"": 1}, series(t, fams, "tidemark_pass_duration_seconds"))
			require.Equal(t, map[string]float64{"": 0}, series(t, fams, "tidemark_pass_running"))
			last := series(t, fams, "tidemark_last_pass_timestamp_seconds")["result=ok"]
			require.InDelta(t, float64(st.Finished.UnixNano())/1e9, last, 1e-3)
			require.GreaterOrEqual(t, last, float64(started.Unix()))
			require.Equal(t, map[string]float64{"source=docs": 1}, series(t, fams, "tidemark_failing_rows"))
			require.Equal(t, map[string]float64{"": 0}, series(t, fams, "tidemark_scrape_errors_total"))

			ops := series(t, fams, "tidemark_state_store_operation_duration_seconds")
			for _, op := range []string{"lock", "lock_check", "lookup", "precommit", "commit"} {
				require.Positive(t, ops["operation="+op], "%s in %v", op, ops)
			}
			require.Equal(t, float64(2), ops["operation=precommit"], "a precommit a batch")
			for op, n := range series(t, fams, "tidemark_state_store_errors_total") {
				require.Zero(t, n, op)
			}

			// One row changed, one deleted; the failing row fails again.
			b.src.Set(1, "changed")
			b.src.Delete(2)
			b.update(t)
			fams = scrape(t, b.url)
			require.Equal(t, rows(9, 1, 7, 1, 2), series(t, fams, "tidemark_rows_total"))
			require.Equal(t, map[string]float64{"op=upsert,target=memory/docs": 10, "op=delete,target=memory/docs": 1},
				series(t, fams, "tidemark_target_states_written_total"))
			require.Equal(t, map[string]float64{"result=found,source=docs": 12, "result=missing,source=docs": 0, "result=error,source=docs": 0},
				series(t, fams, "tidemark_fetches_total"), "the changed row and the failing one are fetched; the deleted one is not")
			require.Equal(t, map[string]float64{"source=docs": 1}, series(t, fams, "tidemark_failing_rows"))

			// The failing row is fixed (added: it was never written
			// before); a Get that fails counts as an error and fails its
			// row.
			b.src.Set(7, "fixed")
			b.src.Set(3, "changed")
			b.src.FailGet(func(k int) error {
				if k == 3 {
					return errors.New("refused")
				}
				return nil
			})
			b.update(t)
			fams = scrape(t, b.url)
			require.Equal(t, rows(10, 1, 14, 1, 3), series(t, fams, "tidemark_rows_total"))
			require.Equal(t, map[string]float64{"result=found,source=docs": 13, "result=missing,source=docs": 0, "result=error,source=docs": 1},
				series(t, fams, "tidemark_fetches_total"))
			require.Equal(t, map[string]float64{"source=docs": 1}, series(t, fams, "tidemark_failing_rows"), "7 fixed, 3 failing")
			b.src.FailGet(nil)
			b.update(t)
			require.Equal(t, map[string]float64{"source=docs": 0}, series(t, scrape(t, b.url), "tidemark_failing_rows"))

			// A listing that fails fails the update.
			b.src.FailListAfter(2, errors.New("API down"))
			_, err := b.engine.Update(t.Context(), tidemark.UpdateOptions{})
			require.ErrorIs(t, err, tidemark.ErrListingIncomplete)
			fams = scrape(t, b.url)
			require.Equal(t, map[string]float64{"result=ok": 4, "result=failed": 1}, series(t, fams, "tidemark_passes_total"))
			require.Contains(t, series(t, fams, "tidemark_last_pass_timestamp_seconds"), "result=failed")

			// A preview is not an update.
			b.src.FailListAfter(0, nil)
			_, err = b.engine.Update(t.Context(), tidemark.UpdateOptions{Preview: true})
			require.NoError(t, err)
			fams = scrape(t, b.url)
			require.Equal(t, map[string]float64{"result=ok": 4, "result=failed": 1}, series(t, fams, "tidemark_passes_total"))
			require.Equal(t, map[string]float64{"": 0}, series(t, fams, "tidemark_pass_running"))
		})
	}
}

// brokenCollector is a collector of a program's own whose metric cannot
// be gathered.
type brokenCollector struct{ desc *prometheus.Desc }

func (c brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("broken"))
}

// serve serves m for the test and returns its URL.
func serve(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestScrapes: what a scrape serves when the failing rows cannot be read,
// when a program's own metric breaks, and with the runtime's metrics.
func TestScrapes(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		failing func(ctx context.Context) (map[string]int64, error)
		// failingRows is the tidemark_failing_rows served, nil for none;
		// scrapeErrors the tidemark_scrape_errors_total after two scrapes.
		failingRows  map[string]float64
		scrapeErrors float64
	}{
		"counted": {
			failing:     func(context.Context) (map[string]int64, error) { return map[string]int64{"docs": 3, "tags": 0}, nil },
			failingRows: map[string]float64{"source=docs": 3, "source=tags": 0},
		},
		"an error": {
			failing:      func(context.Context) (map[string]int64, error) { return nil, errors.New("database down") },
			scrapeErrors: 2,
		},
		"a panic": {
			failing:      func(context.Context) (map[string]int64, error) { panic("bug") },
			scrapeErrors: 2,
		},
		"too slow": {
			failing: func(ctx context.Context) (map[string]int64, error) {
				<-ctx.Done()
				return map[string]int64{"docs": 1}, ctx.Err()
			},
			scrapeErrors: 2,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(metrics.Options{Flow: "Docs", FailingRows: tt.failing, FailingRowsTimeout: 20 * time.Millisecond})
			url := serve(t, m)
			scrape(t, url)
			fams := scrape(t, url)
			if tt.failingRows == nil {
				require.NotContains(t, fams, "tidemark_failing_rows")
			} else {
				require.Equal(t, tt.failingRows, series(t, fams, "tidemark_failing_rows"))
			}
			require.Equal(t, map[string]float64{"": tt.scrapeErrors}, series(t, fams, "tidemark_scrape_errors_total"))
			require.Contains(t, fams, "tidemark_passes_total", "the other metrics are served")
		})
	}

	t.Run("without FailingRows", func(t *testing.T) {
		t.Parallel()
		fams := scrape(t, serve(t, metrics.New(metrics.Options{Flow: "Docs"})))
		require.NotContains(t, fams, "tidemark_failing_rows")
		require.NotContains(t, fams, "tidemark_scrape_errors_total")
		require.NotContains(t, fams, "go_goroutines", "the runtime's metrics only when asked")
		for name := range fams {
			require.True(t, strings.HasPrefix(name, "tidemark_"), name)
		}
	})

	t.Run("runtime metrics", func(t *testing.T) {
		t.Parallel()
		fams := scrape(t, serve(t, metrics.New(metrics.Options{Flow: "Docs", RuntimeMetrics: true})))
		require.Contains(t, fams, "go_goroutines")
		require.Contains(t, fams, "process_start_time_seconds")
	})

	t.Run("a program's own metrics", func(t *testing.T) {
		t.Parallel()
		m := metrics.New(metrics.Options{Flow: "Docs"})
		own := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests."})
		own.Add(2)
		m.Registry().MustRegister(own, brokenCollector{prometheus.NewDesc("app_broken", "Broken.", nil, nil)})
		fams := scrape(t, serve(t, m))
		require.Equal(t, float64(2), fams["app_requests_total"].GetMetric()[0].GetCounter().GetValue())
		require.NotContains(t, fams, "app_broken", "a metric that cannot be gathered is left out")
		require.Contains(t, fams, "tidemark_passes_total", "the rest are served")
	})
}

func TestNewNeedsTheFlow(t *testing.T) {
	t.Parallel()
	require.PanicsWithError(t, "metrics: Options.Flow is required: the name of the flow observed", func() { metrics.New(metrics.Options{}) })
	require.PanicsWithError(t, "metrics: Options.FailingRowsTimeout must not be negative, got -1s", func() {
		metrics.New(metrics.Options{Flow: "Docs", FailingRowsTimeout: -time.Second})
	})
}
