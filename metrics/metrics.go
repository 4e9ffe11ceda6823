package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktype"
)

// DefaultFailingRowsTimeout bounds a call of Options.FailingRows unless
// Options.FailingRowsTimeout says otherwise.
const DefaultFailingRowsTimeout = 2 * time.Second

// Options configure a Metrics.
type Options struct {
	// Flow is the name of the flow whose engine the Metrics observe: the
	// value of the flow label of every metric. The engine's events do not
	// all name their flow (a row's, a fetch's, a batch's and a state store
	// call's do not, and the state store is called outside updates too),
	// so it is given here, once: one Metrics observes one flow. Required.
	Flow string
	// FailingRows, when set, is called at each scrape for the number of
	// rows failing now, by source name: tidemark_failing_rows. It is given
	// a context that ends after FailingRowsTimeout, and must return when
	// it ends. When it fails, the scrape has no tidemark_failing_rows and
	// tidemark_scrape_errors_total counts it. FailingRowsOf builds one
	// from an engine's status.
	FailingRows func(ctx context.Context) (map[string]int64, error)
	// FailingRowsTimeout bounds each call of FailingRows; default
	// DefaultFailingRowsTimeout.
	FailingRowsTimeout time.Duration
	// RuntimeMetrics adds the Go runtime's and the process's standard
	// metrics (go_…, process_…) to the registry.
	RuntimeMetrics bool
	// Logger receives the errors of scrapes (a failed FailingRows, a
	// metric that could not be gathered); default: none.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	switch {
	case o.Flow == "":
		return errors.New("metrics: Options.Flow is required: the name of the flow observed")
	case o.FailingRowsTimeout < 0:
		return fmt.Errorf("metrics: Options.FailingRowsTimeout must not be negative, got %s", o.FailingRowsTimeout)
	}
	return nil
}

// Metrics is an observer of every kind (Options.Observer of
// tidemark.Open) that keeps Prometheus metrics of what the engine does, in
// a registry of its own. Its methods are safe for concurrent use, as the
// engine calls them.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	rows          *prometheus.CounterVec
	fetchDuration *prometheus.HistogramVec
	fetches       *prometheus.CounterVec
	passDuration  prometheus.Histogram
	passes        *prometheus.CounterVec
	passRunning   prometheus.Gauge
	lastPass      *prometheus.GaugeVec
	statesWritten *prometheus.CounterVec
	batches       *prometheus.CounterVec
	batchDuration prometheus.Histogram
	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
}

// The Metrics observe every kind of event.
var (
	_ tidemark.PassObserver  = (*Metrics)(nil)
	_ tidemark.RowObserver   = (*Metrics)(nil)
	_ tidemark.FetchObserver = (*Metrics)(nil)
	_ tidemark.BatchObserver = (*Metrics)(nil)
	_ tidemark.StoreObserver = (*Metrics)(nil)
)

// Histogram buckets, in seconds: a fetch is an API call (retries included,
// for up to minutes), a pass takes from a moment to an hour, a batch is
// written in milliseconds to seconds, and a state store call takes from
// tens of microseconds to seconds.
var (
	fetchBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	passBuckets  = []float64{.01, .1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	batchBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	storeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
)

// The label values of results and operations.
var (
	outcomes     = []tidemarktype.Outcome{tidemarktype.OutcomeAdded, tidemarktype.OutcomeUpdated, tidemarktype.OutcomeReprocessed, tidemarktype.OutcomeUnchanged, tidemarktype.OutcomeDeleted, tidemarktype.OutcomeFailed}
	passResults  = []string{resultOK, resultFailed}
	writeOps     = []string{opUpsert, opDelete}
	fetchResults = []string{fetchFound, fetchMissing, fetchError}
)

const (
	resultOK     = "ok"
	resultFailed = "failed"
	opUpsert     = "upsert"
	opDelete     = "delete"
	fetchFound   = "found"
	fetchMissing = "missing"
	fetchError   = "error"
)

// New returns metrics of the flow opts.Flow names, in a new registry (not
// Prometheus's global one). It panics when the options are invalid (no
// Flow), as a program that builds them wrong cannot go on.
func New(opts Options) *Metrics {
	if err := opts.validate(); err != nil {
		panic(err)
	}
	if opts.FailingRowsTimeout == 0 {
		opts.FailingRowsTimeout = DefaultFailingRowsTimeout
	}
	reg := prometheus.NewRegistry()
	// Every metric is of one flow: its label is constant.
	r := prometheus.WrapRegistererWith(prometheus.Labels{"flow": opts.Flow}, reg)
	m := &Metrics{
		reg: reg,
		rows: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_rows_total",
			Help: "Source rows an update finished with, by outcome: added, updated, reprocessed, unchanged, deleted or failed."},
			[]string{"source", "outcome"})),
		fetchDuration: register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tidemark_fetch_duration_seconds",
			Help: "Time a Get of a source row took, retries included.", Buckets: fetchBuckets},
			[]string{"source"})),
		fetches: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_fetches_total",
			Help: "Gets of source rows, by result: found, missing (the row is gone) or error."},
			[]string{"source", "result"})),
		passDuration: register(r, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_pass_duration_seconds",
			Help: "Time an update (a pass over the sources) took.", Buckets: passBuckets})),
		passes: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_passes_total",
			Help: "Updates (passes over the sources) finished, by result: ok, or failed with an error."},
			[]string{"result"})),
		passRunning: register(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_pass_running",
			Help: "Updates running now."})),
		lastPass: register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_last_pass_timestamp_seconds",
			Help: "When the last update of each result finished, in seconds since the Unix epoch."},
			[]string{"result"})),
		statesWritten: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_target_states_written_total",
			Help: "Target states written, by root target and op: upsert or delete."},
			[]string{"target", "op"})),
		batches: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_target_batches_total",
			Help: "Batches committed that wrote to the target."},
			[]string{"target"})),
		batchDuration: register(r, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_batch_duration_seconds",
			Help: "Time a batch took from its precommit to its commit.", Buckets: batchBuckets})),
		storeDuration: register(r, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tidemark_state_store_operation_duration_seconds",
			Help: "Time a state store call took, by operation.", Buckets: storeBuckets},
			[]string{"operation"})),
		storeErrors: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_state_store_errors_total",
			Help: "State store calls that failed, by operation."},
			[]string{"operation"})),
	}
	for _, res := range passResults {
		m.passes.WithLabelValues(res)
	}
	if opts.FailingRows != nil {
		r.MustRegister(newFailingRows(opts.FailingRows, opts.FailingRowsTimeout, opts.Logger))
	}
	if opts.RuntimeMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	ho := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if opts.Logger != nil {
		ho.ErrorLog = errorLog{opts.Logger}
	}
	m.handler = promhttp.HandlerFor(reg, ho)
	return m
}

// register registers c with r and returns it.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	r.MustRegister(c)
	return c
}

// errorLog logs the handler's errors, as promhttp.Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("serving metrics", "err", fmt.Sprint(v...))
}

// Handler serves the metrics in Prometheus's text format, for GET
// /metrics. A metric that cannot be gathered is logged and left out; the
// rest are served.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry returns the registry the metrics are in, for a program to add
// its own (they are served by Handler too).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// PassStarted counts an update running. Previews are not counted.
func (m *Metrics) PassStarted(_ context.Context, p tidemarktype.PassStart) {
	if !p.Preview {
		m.passRunning.Inc()
	}
}

// PassFinished counts an update by its result and observes its duration:
// ok when it completed or was stopped (tidemark.ErrStopped), failed
// otherwise. Previews are not counted. Every source's and target's series
// exist from the first update on, at zero if nothing happened to them.
func (m *Metrics) PassFinished(_ context.Context, p tidemarktype.PassEnd) {
	if p.Preview {
		return
	}
	m.passRunning.Dec()
	res := resultOK
	if p.Err != nil && !errors.Is(p.Err, tidemark.ErrStopped) {
		res = resultFailed
	}
	m.passes.WithLabelValues(res).Inc()
	m.passDuration.Observe(p.Stats.Finished.Sub(p.Stats.Started).Seconds())
	m.lastPass.WithLabelValues(res).Set(float64(p.Stats.Finished.UnixNano()) / 1e9)
	for source := range p.Stats.Sources {
		for _, o := range outcomes {
			m.rows.WithLabelValues(source, string(o))
		}
		for _, r := range fetchResults {
			m.fetches.WithLabelValues(source, r)
		}
	}
	for target := range p.Stats.Targets {
		for _, op := range writeOps {
			m.statesWritten.WithLabelValues(target, op)
		}
		m.batches.WithLabelValues(target)
	}
}

// RowDone counts a row by its source and outcome. The row's key is not a
// label: there are too many.
func (m *Metrics) RowDone(_ context.Context, r tidemarktype.RowDone) {
	m.rows.WithLabelValues(r.Source, string(r.Outcome)).Inc()
}

// Fetched counts a Get by its result and observes its duration.
func (m *Metrics) Fetched(_ context.Context, f tidemarktype.Fetch) {
	res := fetchMissing
	switch {
	case f.Err != nil:
		res = fetchError
	case f.Exists:
		res = fetchFound
	}
	m.fetches.WithLabelValues(f.Source, res).Inc()
	m.fetchDuration.WithLabelValues(f.Source).Observe(f.Duration.Seconds())
}

// BatchWritten counts the target states a batch wrote, and the batch for
// each target it wrote to, and observes its duration.
func (m *Metrics) BatchWritten(_ context.Context, b tidemarktype.Batch) {
	for target, t := range b.Targets {
		m.statesWritten.WithLabelValues(target, opUpsert).Add(float64(t.Upserts))
		m.statesWritten.WithLabelValues(target, opDelete).Add(float64(t.Deletes))
		if t.Upserts+t.Deletes > 0 {
			m.batches.WithLabelValues(target).Inc()
		}
	}
	m.batchDuration.Observe(b.Duration.Seconds())
}

// StoreOp observes a state store call's duration by operation, and counts
// it if it failed.
func (m *Metrics) StoreOp(_ context.Context, op tidemarktype.StoreOp) {
	m.storeDuration.WithLabelValues(op.Op).Observe(op.Duration.Seconds())
	errs := m.storeErrors.WithLabelValues(op.Op) // the series exists at 0 from the first call
	if op.Err != nil {
		errs.Inc()
	}
}

// FailingRowsOf returns an Options.FailingRows that reads the rows failing
// now with e.FailingRows: an indexed count per source.
func FailingRowsOf(e *tidemark.Engine) func(ctx context.Context) (map[string]int64, error) {
	return func(ctx context.Context) (map[string]int64, error) {
		n, err := e.FailingRows(ctx)
		if err != nil {
			return nil, fmt.Errorf("metrics: reading the failing rows: %w", err)
		}
		return n, nil
	}
}
