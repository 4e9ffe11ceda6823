package tidemark_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/internal/redistest"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// backends are the state stores every engine test runs against.
var backends = []string{"sqlite", "postgres", "redis"}

// stateStore returns a fresh state store location for backend.
func stateStore(t *testing.T, backend string) tidemark.Options {
	t.Helper()
	switch backend {
	case "sqlite":
		return tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")}
	case "postgres":
		url, schema := pgtest.Schema(t)
		return tidemark.Options{StateStore: url, StateSchema: schema}
	case "redis":
		url, prefix := redistest.Prefix(t)
		return tidemark.Options{StateStore: url, StateSchema: prefix}
	}
	t.Fatalf("unknown backend %q", backend)
	return tidemark.Options{}
}

// forEachBackend runs fn as a parallel subtest per backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	forEachOf(t, backends, fn)
}

// forEachOf runs fn as a parallel subtest per backend of these.
func forEachOf(t *testing.T, these []string, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range these {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// doc is a source row of the test flows.
type doc struct {
	Title string
	Tags  []string
}

// docRow and tagRow are what the test flows write.
type docRow struct {
	ID    int
	Title string
}

type tagRow struct {
	Tag string
}

// harness is a source, a target database and a state store that outlive
// the engines a test opens one after another, as a real app's would.
type harness struct {
	t      *testing.T
	src    *tidemarktest.Source[int, doc]
	db     *tidemarktest.DB
	opts   tidemark.Options
	logic  string
	schema string
	// process, if set, replaces the standard processing function; wrap,
	// if set, wraps the processing function.
	process tidemark.ProcessFunc[int, doc]
	wrap    func(tidemark.ProcessFunc[int, doc]) tidemark.ProcessFunc[int, doc]
	// done holds, after workers, the rows each worker processed.
	done []int64
	// joined, if set, is told by workers when worker i joined its pass.
	joined func(i int)
}

func newHarness(t *testing.T, backend string) *harness {
	t.Helper()
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2, MaxAttempts: 4}
	return &harness{t: t, src: tidemarktest.NewSource[int, doc](), db: tidemarktest.NewDB(), opts: opts, logic: "1"}
}

// fill sets n documents, with ids 0 … n-1, each tagged with its parity and
// its id modulo 5, so that tags are shared by many documents.
func (h *harness) fill(n int) {
	for i := range n {
		h.src.Set(i, doc{Title: fmt.Sprintf("doc %d", i), Tags: []string{fmt.Sprintf("mod5-%d", i%5), []string{"even", "odd"}[i%2]}})
	}
}

// standardProcess declares a docs row per document and a tags row per tag.
func standardProcess(docs *tidemark.Target[docRow], tags *tidemark.Target[tagRow]) tidemark.ProcessFunc[int, doc] {
	return func(_ context.Context, r *tidemark.Row, id int, d doc) error {
		docs.Declare(r, target.Key(fmt.Sprint(id)), docRow{ID: id, Title: d.Title})
		for _, tag := range d.Tags {
			tags.Declare(r, target.Key(tag), tagRow{Tag: tag})
		}
		return nil
	}
}

// open builds the flow and opens an engine on it.
func (h *harness) open() *tidemark.Engine {
	h.t.Helper()
	return h.openWith(h.src)
}

// openWith is open with the flow reading source instead of h.src (which
// source may wrap).
func (h *harness) openWith(source tidemark.Source[int, doc]) *tidemark.Engine {
	h.t.Helper()
	return h.openOpts(source, h.opts)
}

// openOpts is openWith with the engine's options opts.
func (h *harness) openOpts(source tidemark.Source[int, doc], opts tidemark.Options) *tidemark.Engine {
	h.t.Helper()
	f := tidemark.NewFlow("Docs", tidemark.LogicVersion(h.logic))
	docs := tidemarktest.Table[docRow](f, h.db, "docs", tidemarktest.Schema(h.schema))
	tags := tidemarktest.Table[tagRow](f, h.db, "tags")
	src := tidemark.AddSource(f, "docs", source, tidemark.MaxInFlight(4))
	process := h.process
	if process == nil {
		process = standardProcess(docs, tags)
	}
	if h.wrap != nil {
		process = h.wrap(process)
	}
	tidemark.ForEach(src, process)
	e, err := tidemark.Open(h.t.Context(), f, opts)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { e.Close() })
	return e
}

// update opens an engine, runs one update and closes it.
func (h *harness) update(opts tidemark.UpdateOptions) (*tidemarktype.UpdateStats, error) {
	h.t.Helper()
	e := h.open()
	defer e.Close()
	return e.Update(h.t.Context(), opts)
}

// mustUpdate runs an update that must succeed, with counters reset first.
func (h *harness) mustUpdate() *tidemarktype.UpdateStats {
	h.t.Helper()
	h.src.ResetCounts()
	h.db.ResetCounts()
	st, err := h.update(tidemark.UpdateOptions{})
	require.NoError(h.t, err)
	return st
}

// expectDocs checks that the docs and tags tables hold exactly what the
// source's current rows produce.
func (h *harness) expectDocs() {
	h.t.Helper()
	wantDocs := make(map[target.Key]any)
	wantTags := make(map[target.Key]any)
	for _, id := range h.src.Keys() {
		d, _ := h.src.Value(id)
		wantDocs[target.Key(fmt.Sprint(id))] = docRow{ID: id, Title: d.Title}
		for _, tag := range d.Tags {
			wantTags[target.Key(tag)] = tagRow{Tag: tag}
		}
	}
	require.Equal(h.t, wantDocs, orEmpty(h.db.Rows("docs")), "docs table")
	require.Equal(h.t, wantTags, orEmpty(h.db.Rows("tags")), "tags table")
}

func orEmpty(m map[target.Key]any) map[target.Key]any {
	if m == nil {
		return map[target.Key]any{}
	}
	return m
}

// sortedKeys returns the sorted keys of a map, for messages.
func sortedKeys[V any](m map[target.Key]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, string(k))
	}
	slices.Sort(out)
	return out
}
