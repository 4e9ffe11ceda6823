package cli_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/tidemarktest"
)

// metricsAt matches the line update --live --metrics-addr prints.
var metricsAt = regexp.MustCompile(`metrics at (http://\S+)/metrics\n`)

// liveUpdate runs update --live with args until the returned stop is
// called, which returns its exit code; base is where its metrics are
// served.
func liveUpdate(t *testing.T, app cli.App, args ...string) (base string, out, errb *syncBuffer, stop func() int) {
	t.Helper()
	out, errb = &syncBuffer{}, &syncBuffer{}
	stopc := make(chan struct{})
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(t.Context(), app, append([]string{"update", "--live", "--refresh", "20ms"}, args...),
			cli.Env{Stdout: out, Stderr: errb, Stop: stopc})
	}()
	require.Eventually(t, func() bool { return metricsAt.MatchString(out.String()) }, 10*time.Second, 5*time.Millisecond, errb.String())
	return metricsAt.FindStringSubmatch(out.String())[1], out, errb, func() int {
		close(stopc)
		return <-done
	}
}

// metric returns the value of the series of name with exactly labels
// (flow="Notes" besides them) in a scrape of base, and whether it is
// there.
func metric(t *testing.T, base, name string, labels ...string) (float64, bool) {
	t.Helper()
	code, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code, body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	want := append([]string{"flow=Notes"}, labels...)
	for _, m := range fams[name].GetMetric() {
		if sameLabels(m.GetLabel(), want) {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func sameLabels(got []*dto.LabelPair, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+l.GetName()+"="+l.GetValue()+" ") {
			return false
		}
	}
	return true
}

// update --live --metrics-addr serves the engine's metrics and the health
// of its passes while live, and stops serving when live mode ends.
func TestLiveMetrics(t *testing.T) {
	t.Parallel()
	for name, newDB := range dbs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := tidemarktest.NewSource[string, string]()
			src.Set("a", "alpha")
			src.Set("b", "beta")
			src.Set("c", "fail")
			app, _ := notesApp(src)
			base, out, errb, stop := liveUpdate(t, app, "--db", newDB(t), "--metrics-addr", "127.0.0.1:0")
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "pass 1 ") }, 10*time.Second, 5*time.Millisecond, errb.String())

			added, ok := metric(t, base, "tidemark_rows_total", "source=notes", "outcome=added")
			require.True(t, ok)
			require.Equal(t, float64(2), added)
			failed, _ := metric(t, base, "tidemark_rows_total", "source=notes", "outcome=failed")
			require.GreaterOrEqual(t, failed, float64(1), "the failing row fails at every pass")
			failing, ok := metric(t, base, "tidemark_failing_rows", "source=notes")
			require.True(t, ok)
			require.Equal(t, float64(1), failing)
			passes, _ := metric(t, base, "tidemark_passes_total", "result=ok")
			require.GreaterOrEqual(t, passes, float64(1))
			code, body := get(t, base+"/metrics")
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, body, "go_goroutines ", "a live updater's own process is described")
			require.Contains(t, body, `tidemark_state_store_operation_duration_seconds_count{flow="Notes",operation="commit"}`)
			code, body = get(t, base+"/healthz")
			require.Equal(t, http.StatusOK, code, body)
			require.Equal(t, "ok\n", body, "failed rows do not fail a pass")

			// A pass whose listing fails makes the updater unhealthy, until
			// one succeeds again.
			src.FailListAfter(0, errors.New("the API is down"))
			require.Eventually(t, func() bool {
				code, body := get(t, base+"/healthz")
				return code == http.StatusServiceUnavailable && strings.Contains(body, "source notes: its last update, at ") && strings.Contains(body, "the API is down")
			}, 10*time.Second, 5*time.Millisecond)
			n, _ := metric(t, base, "tidemark_passes_total", "result=failed")
			require.Positive(t, n)
			src.FailListAfter(0, nil)
			src.Set("c", "fixed")
			require.Eventually(t, func() bool {
				code, _ := get(t, base+"/healthz")
				failing, _ := metric(t, base, "tidemark_failing_rows", "source=notes")
				return code == http.StatusOK && failing == 0
			}, 10*time.Second, 5*time.Millisecond)

			require.Equal(t, cli.ExitOK, stop(), errb.String())
			require.Contains(t, out.String(), "stopped\n")
			_, err := http.Get(base + "/metrics")
			require.Error(t, err, "no longer served once live mode ended")
		})
	}
}

// --metrics-addr needs --live, and an address it can listen on; one
// beyond this host is served, with a warning.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")

	r := run(t, app, cli.Env{}, "update", "--db", db, "--metrics-addr", "127.0.0.1:0")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Equal(t, "notes: --metrics-addr needs --live\n", r.stderr)

	r = run(t, app, cli.Env{}, "update", "--db", db, "--live", "--metrics-addr", "127.0.0.1:nope")
	require.Equal(t, cli.ExitFatal, r.code)
	require.Contains(t, r.stderr, "notes: --metrics-addr 127.0.0.1:nope: listen tcp")

	base, _, errb, stop := liveUpdate(t, app, "--db", db, "--metrics-addr", "0.0.0.0:0")
	require.Contains(t, errb.String(), "serving metrics beyond this host")
	code, _ := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, cli.ExitOK, stop(), errb.String())
}
