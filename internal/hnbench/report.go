package hnbench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes the report as JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteTable prints the report for people: a line per scenario and
// baseline, then the headline ratios.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "hnbench: %d threads × %d comments = %d target rows; median of %d runs; %s\n\n",
		r.Config.Threads, r.Config.Comments, r.Config.Rows, r.Config.Runs, r.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tscenario\tmedian\trows\trows/s\tlisting req\titem req\tmin req\tpeak RSS\tratio\tto\t")
	for _, x := range r.Results {
		if x.Latency != nil {
			continue // in the insight table below
		}
		ratio, to := "", ""
		if x.Ratio > 0 {
			ratio, to = fmt.Sprintf("%.2f×", x.Ratio), x.Baseline
		}
		rate := ""
		if x.RowsPerSec > 0 {
			rate = fmt.Sprintf("%.0f", x.RowsPerSec)
		}
		rss := ""
		if x.PeakRSS > 0 {
			rss = fmt.Sprintf("%.0f MB", float64(x.PeakRSS)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", x.Backend, x.Scenario,
			time.Duration(x.Median*float64(time.Second)).Round(time.Millisecond), x.Rows, rate,
			x.ListingRequests, x.ItemRequests, x.MinRequests, rss, ratio, to)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeInsight(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, h := range r.Headlines() {
		fmt.Fprintln(w, h)
	}
	for _, x := range r.Results {
		if x.Note != "" {
			fmt.Fprintf(w, "%s, %s: %s\n", x.Backend, x.Scenario, x.Note)
		}
	}
	return nil
}

// Headlines are the figures DESIGN.md sets goals for, per backend.
func (r *Report) Headlines() []string {
	var out []string
	for _, backend := range []string{"postgres", "sqlite"} {
		get := func(prefix string) *Result {
			for i := range r.Results {
				if r.Results[i].Backend == backend && strings.HasPrefix(r.Results[i].Scenario, prefix) {
					return &r.Results[i]
				}
			}
			return nil
		}
		initial, noChange, churn := get("initial sync"), get("update, nothing changed"), get("update, 1%")
		if initial == nil {
			continue
		}
		var peak int64
		for _, x := range r.Results {
			if x.Backend == backend && !strings.HasPrefix(x.Scenario, "write limit") && !strings.HasPrefix(x.Scenario, "naive") && x.Latency == nil {
				peak = max(peak, x.PeakRSS)
			}
		}
		out = append(out, fmt.Sprintf("%s: initial load ÷ %s = %.2f× (goal ≤ 1×)", backend, strings.TrimPrefix(initial.Baseline, "write limit: "), initial.Ratio))
		if noChange != nil {
			out = append(out, fmt.Sprintf("%s: no-change update ÷ listing fetch = %.2f× (goal ≤ 1.5×); requests %d ÷ minimum %d = %.2f×",
				backend, noChange.Ratio, noChange.ListingRequests+noChange.ItemRequests, noChange.MinRequests, reqRatio(noChange)))
		}
		if churn != nil {
			out = append(out, fmt.Sprintf("%s: 1%%-churn update requests %d ÷ minimum %d = %.2f×", backend,
				churn.ListingRequests+churn.ItemRequests, churn.MinRequests, reqRatio(churn)))
		}
		out = append(out, fmt.Sprintf("%s: initial sync requests %d ÷ minimum %d = %.2f×; peak RSS of hnindex %.0f MB", backend,
			initial.ListingRequests+initial.ItemRequests, initial.MinRequests, reqRatio(initial), float64(peak)/(1<<20)))
		row, lineage, search, scrape := get(insightScenario("row", 1)), get(insightScenario("lineage", 1)), get(insightScenario("search", 1)), get("insight: /metrics")
		if row != nil && lineage != nil {
			out = append(out, fmt.Sprintf("%s: at %d rows, p99 of a row %.1f ms, of a lineage %.1f ms (goal ≤ 20 ms)", backend,
				r.Config.Rows, row.Latency.P99, lineage.Latency.P99))
		}
		if search != nil {
			out = append(out, fmt.Sprintf("%s: a two-word search p50 %.1f ms, p99 %.1f ms", backend, search.Latency.P50, search.Latency.P99))
		}
		if scrape != nil {
			if scrape.Latency.Pending {
				out = append(out, fmt.Sprintf("%s: /metrics scrape: pending (it answers 404)", backend))
			} else {
				out = append(out, fmt.Sprintf("%s: /metrics scrape median %.1f ms, %s", backend, scrape.Latency.P50, byteSize(scrape.Latency.MeanBytes)))
			}
		}
	}
	return out
}

// writeInsight prints the insight scenario's latencies, a line per
// endpoint and variant.
func (r *Report) writeInsight(w io.Writer) error {
	if !slices.ContainsFunc(r.Results, func(x Result) bool { return x.Latency != nil }) {
		return nil
	}
	fmt.Fprintf(w, "\ninsight: hnindex server at %d rows, over random keys; latencies in ms\n\n", r.Config.Rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tendpoint\tclients\trequests\tp50\tp90\tp99\tmax\treq/s\tbody\terrors\tserver RSS\t")
	for _, x := range r.Results {
		l := x.Latency
		if l == nil {
			continue
		}
		if l.Pending {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\t\t\t\t\t\t\t\tpending (404)\t\n", x.Backend, l.Endpoint, l.Concurrency)
			continue
		}
		errs := strconv.Itoa(l.Errors)
		if l.Errors > 0 {
			errs += fmt.Sprintf(" %v", l.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%s\t%.0f MB\t\n", x.Backend, l.Endpoint, l.Concurrency,
			l.Requests, l.P50, l.P90, l.P99, l.Max, l.PerSecond, byteSize(l.MeanBytes), errs, float64(x.PeakRSS)/(1<<20))
	}
	return tw.Flush()
}

// byteSize is n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func reqRatio(x *Result) float64 {
	if x.MinRequests == 0 {
		return 0
	}
	return float64(x.ListingRequests+x.ItemRequests) / float64(x.MinRequests)
}
