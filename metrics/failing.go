package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// failingRows is the collector of tidemark_failing_rows: it asks its
// callback at each scrape, so that the gauge is the number failing now,
// not as of the last update. It counts the scrapes the callback failed in
// tidemark_scrape_errors_total, which it reports itself so that a scrape
// shows its own failure.
type failingRows struct {
	count   func(ctx context.Context) (map[string]int64, error)
	timeout time.Duration
	log     *slog.Logger

	rows, errs *prometheus.Desc
	failed     atomic.Int64
}

func newFailingRows(count func(ctx context.Context) (map[string]int64, error), timeout time.Duration, log *slog.Logger) *failingRows {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &failingRows{count: count, timeout: timeout, log: log,
		rows: prometheus.NewDesc("tidemark_failing_rows",
			"Source rows whose last update failed, now: they are retried on the next update.", []string{"source"}, nil),
		errs: prometheus.NewDesc("tidemark_scrape_errors_total",
			"Scrapes in which the failing rows could not be read; tidemark_failing_rows is missing from them.", nil, nil),
	}
}

// Describe sends the collector's two descriptors.
func (c *failingRows) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rows
	ch <- c.errs
}

// Collect asks for the failing rows, within the timeout (a scrape carries
// no context of its own), and sends a gauge per source; on failure none,
// and one more scrape error.
func (c *failingRows) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	n, err := c.call(ctx)
	if err != nil {
		c.failed.Add(1)
		c.log.WarnContext(ctx, "a scrape has no tidemark_failing_rows", "err", err)
	}
	for source, v := range n {
		ch <- prometheus.MustNewConstMetric(c.rows, prometheus.GaugeValue, float64(v), source)
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(c.failed.Load()))
}

// call calls the callback, turning a panic into an error: a broken
// callback must not take the other metrics with it.
func (c *failingRows) call(ctx context.Context) (n map[string]int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			n, err = nil, fmt.Errorf("metrics: Options.FailingRows panicked: %v", p)
		}
	}()
	n, err = c.count(ctx)
	if err != nil {
		return nil, err
	}
	return n, nil
}
