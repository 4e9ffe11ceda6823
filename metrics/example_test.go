package metrics_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// Metrics observe an engine; their handler serves them for Prometheus to
// scrape. The failing rows are read from the engine's status when scraped.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tidemark-metrics-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "alpha")
	src.Set("b", "beta")
	src.Set("c", "") // an empty note cannot be processed
	db := tidemarktest.NewDB()
	flow := tidemark.NewFlow("Notes")
	notes := tidemarktest.Table[string](flow, db, "notes")
	tidemark.ForEach(tidemark.AddSource(flow, "notes", src), func(_ context.Context, r *tidemark.Row, key, text string) error {
		if text == "" {
			return fmt.Errorf("note %s is empty", key)
		}
		notes.Declare(r, target.Key(key), strings.ToUpper(text))
		return nil
	})

	// The metrics are the engine's observer, and read the engine's status:
	// the engine is opened after them, and before any scrape.
	var engine *tidemark.Engine
	m := metrics.New(metrics.Options{Flow: flow.Name(), FailingRows: func(ctx context.Context) (map[string]int64, error) {
		return metrics.FailingRowsOf(engine)(ctx)
	}})
	engine, err = tidemark.Open(ctx, flow, tidemark.Options{StateStore: filepath.Join(dir, "state.db"), Observer: m})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
		log.Fatal(err)
	}

	// Serve them as a program would at GET /metrics, and scrape.
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(w.Body.String()) {
		for _, name := range []string{"tidemark_rows_total", "tidemark_failing_rows", "tidemark_target_states_written_total", "tidemark_passes_total"} {
			if strings.HasPrefix(line, name+"{") && !strings.HasSuffix(line, " 0\n") {
				fmt.Print(line)
			}
		}
	}
	// Output:
	// tidemark_failing_rows{flow="Notes",source="notes"} 1
	// tidemark_passes_total{flow="Notes",result="ok"} 1
	// tidemark_rows_total{flow="Notes",outcome="added",source="notes"} 2
	// tidemark_rows_total{flow="Notes",outcome="failed",source="notes"} 1
	// tidemark_target_states_written_total{flow="Notes",op="upsert",target="memory/notes"} 2
}
