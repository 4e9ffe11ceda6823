package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestInitialSyncThenNoChange(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(50)

		st := h.mustUpdate()
		require.Equal(t, tidemarktype.SourceStats{Listed: 50, Fetched: 50, Added: 50, ListingComplete: true}, st.Sources["docs"])
		require.Equal(t, 50, h.src.Gets())
		require.Equal(t, tidemarktype.TargetStats{Upserts: 50}, st.Targets["memory/docs"])
		require.Equal(t, tidemarktype.TargetStats{Upserts: 7}, st.Targets["memory/tags"], "each shared tag is written once")
		h.expectDocs()
		require.Len(t, st.Setup, 2, "both tables created")

		// Nothing changed: no Get, no write.
		st = h.mustUpdate()
		require.Equal(t, tidemarktype.SourceStats{Listed: 50, Unchanged: 50, ListingComplete: true}, st.Sources["docs"])
		require.Zero(t, h.src.Gets())
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts())
		require.Empty(t, st.Setup)
		h.expectDocs()
	})
}

func TestChangedRowsAreFetchedExactly(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(40)
		h.mustUpdate()

		changed := []int{3, 7, 11, 20, 21, 22, 39}
		for _, id := range changed {
			d, _ := h.src.Value(id)
			d.Title += " (edited)"
			h.src.Set(id, d)
		}
		st := h.mustUpdate()
		require.Equal(t, len(changed), h.src.Gets())
		for _, id := range changed {
			require.Equal(t, 1, h.src.GetsOf()[id])
		}
		require.Equal(t, int64(len(changed)), st.Sources["docs"].Updated)
		require.Equal(t, int64(40-len(changed)), st.Sources["docs"].Unchanged)
		require.Equal(t, tidemarktype.TargetStats{Upserts: int64(len(changed))}, st.Targets["memory/docs"])
		require.Equal(t, tidemarktype.TargetStats{}, st.Targets["memory/tags"], "the tags did not change")
		h.expectDocs()
	})
}

func TestSameContentNewOrdinalWritesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(20)
		h.mustUpdate()

		for _, id := range []int{1, 2, 3, 4, 5} {
			require.True(t, h.src.Touch(id))
		}
		st := h.mustUpdate()
		require.Equal(t, 5, h.src.Gets(), "a new ordinal needs a Get")
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts(), "the same content writes nothing")
		require.Equal(t, int64(20), st.Sources["docs"].Unchanged)

		// The new ordinal was recorded: the next update fetches nothing.
		h.mustUpdate()
		require.Zero(t, h.src.Gets())
		h.expectDocs()
	})
}

func TestDeletedRowsAndSharedTargetStates(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.src.Set(1, doc{Title: "a", Tags: []string{"go", "db"}})
		h.src.Set(2, doc{Title: "b", Tags: []string{"go"}})
		h.src.Set(3, doc{Title: "c", Tags: []string{"rust"}})
		h.mustUpdate()
		h.expectDocs()

		// "go" is declared by 1 and 2: deleting 1 keeps it, drops "db".
		h.src.Delete(1)
		st := h.mustUpdate()
		require.Equal(t, int64(1), st.Sources["docs"].Deleted)
		require.Zero(t, h.src.Gets(), "a row gone from the listing is not fetched")
		require.Equal(t, tidemarktype.TargetStats{Deletes: 1}, st.Targets["memory/tags"])
		h.expectDocs()
		require.Contains(t, h.db.Rows("tags"), target.Key("go"))

		// Row 2 stops declaring "go" while row 3 starts: it stays.
		h.src.Set(2, doc{Title: "b", Tags: []string{"x"}})
		h.src.Set(3, doc{Title: "c", Tags: []string{"rust", "go"}})
		h.mustUpdate()
		h.expectDocs()

		h.src.Delete(3)
		h.mustUpdate()
		h.expectDocs()
		require.NotContains(t, h.db.Rows("tags"), target.Key("go"))
	})
}

func TestListingErrorDeletesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(30)
		h.mustUpdate()
		before := h.db.Rows("docs")

		for id := 20; id < 30; id++ {
			h.src.Delete(id)
		}
		d, _ := h.src.Value(2)
		d.Title = "edited"
		h.src.Set(2, d)
		h.src.FailListAfter(12, errors.New("HTTP 503 on page 2"))
		h.src.ResetCounts()
		h.db.ResetCounts()
		st, err := h.update(tidemark.UpdateOptions{})
		require.ErrorIs(t, err, tidemark.ErrListingIncomplete)
		require.ErrorContains(t, err, "HTTP 503 on page 2")
		var le *tidemark.ListingError
		require.ErrorAs(t, err, &le)
		require.Equal(t, "docs", le.Source)
		require.EqualError(t, le.Err, "HTTP 503 on page 2")
		src := st.Sources["docs"]
		require.False(t, src.ListingComplete)
		require.Equal(t, int64(12), src.Listed)
		require.Zero(t, src.Deleted)
		require.Zero(t, h.db.Counts().Deletes)
		rows := h.db.Rows("docs")
		require.Len(t, rows, len(before), "nothing deleted")
		require.Equal(t, docRow{ID: 2, Title: "edited"}, rows["2"], "rows listed before the failure were updated")

		h.src.FailListAfter(0, nil)
		st = h.mustUpdate()
		require.Equal(t, int64(10), st.Sources["docs"].Deleted)
		h.expectDocs()
	})
}

func TestFailingGetIsReportedAndTheRestCompletes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(20)
		h.mustUpdate()
		for _, id := range []int{4, 5, 6} {
			d, _ := h.src.Value(id)
			d.Title = "v2"
			h.src.Set(id, d)
		}
		h.src.Set(100, doc{Title: "new and broken"})
		var flaky atomic.Int32
		h.src.FailGet(func(id int) error {
			switch id {
			case 5, 100:
				return errors.New("HTTP 404 on item")
			case 6:
				if flaky.Add(1) <= 2 {
					return tidemark.Retryable(errors.New("connection reset"))
				}
			}
			return nil
		})

		st := h.mustUpdate()
		src := st.Sources["docs"]
		require.Equal(t, int64(2), src.Errors)
		require.Equal(t, int64(2), src.Updated, "rows 4 and 6 (after two retries)")
		require.Equal(t, 3, h.src.GetsOf()[6])
		require.Len(t, st.Failures, 2)
		keys := []string{st.Failures[0].Key, st.Failures[1].Key}
		require.ElementsMatch(t, []string{"5", "100"}, keys)
		require.Contains(t, st.Failures[0].Message, "HTTP 404 on item")
		rows := h.db.Rows("docs")
		require.Equal(t, docRow{ID: 4, Title: "v2"}, rows["4"])
		require.Equal(t, docRow{ID: 6, Title: "v2"}, rows["6"])
		require.Equal(t, docRow{ID: 5, Title: "doc 5"}, rows["5"], "the failed row keeps its old state")
		require.NotContains(t, rows, target.Key("100"))

		e := h.open()
		status, err := e.Status(t.Context(), 10)
		require.NoError(t, err)
		require.Len(t, status.Sources, 1)
		require.Equal(t, int64(20), status.Sources[0].Rows, "20 rows committed; row 100 never succeeded")
		require.Equal(t, int64(2), status.Sources[0].Failing)
		require.Len(t, status.Sources[0].Failures, 2)
		require.Contains(t, status.Sources[0].Failures[0].Message, "HTTP 404")
		failing, err := e.FailingRows(t.Context())
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"docs": 2}, failing, "the cheap count agrees")
		require.NoError(t, e.Close())

		// Failed rows are retried next time, and recover.
		h.src.FailGet(nil)
		st = h.mustUpdate()
		require.Equal(t, 2, h.src.Gets(), "only the two failed rows are fetched")
		require.Zero(t, st.Sources["docs"].Errors)
		h.expectDocs()
		e = h.open()
		status, err = e.Status(t.Context(), 10)
		require.NoError(t, err)
		require.Zero(t, status.Sources[0].Failing)
		require.NoError(t, e.Close())
	})
}

func TestLogicVersionReprocessesEveryRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(15)
		h.mustUpdate()

		h.logic = "2"
		st := h.mustUpdate()
		require.Equal(t, 15, h.src.Gets())
		require.Equal(t, int64(15), st.Sources["docs"].Reprocessed)
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts(), "the same output writes nothing")

		// A new logic that changes the output rewrites what changed.
		h.logic = "3"
		h.process = func(_ context.Context, r *tidemark.Row, id int, d doc) error {
			return nil // declares nothing: everything goes
		}
		st = h.mustUpdate()
		require.Equal(t, int64(15), st.Sources["docs"].Reprocessed)
		require.Empty(t, h.db.Rows("docs"))
		require.Empty(t, h.db.Rows("tags"))
	})
}

func TestProcessingErrorsFailTheRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(10)
		var docs *tidemark.Target[docRow]
		h.process = func(_ context.Context, r *tidemark.Row, id int, d doc) error {
			switch id {
			case 3:
				return errors.New("cannot parse")
			case 4:
				panic("boom")
			case 5:
				docs.Declare(r, "dup", docRow{ID: 5})
				docs.Declare(r, "dup", docRow{ID: 5})
			}
			return nil
		}
		// Reach the docs target through a flow built like the harness's.
		f := tidemark.NewFlow("Docs", tidemark.LogicVersion(h.logic))
		docs = tidemarktest.Table[docRow](f, h.db, "docs")
		tidemarktest.Table[tagRow](f, h.db, "tags")
		tidemark.ForEach(tidemark.AddSource(f, "docs", h.src), h.process)
		e, err := tidemark.Open(t.Context(), f, h.opts)
		require.NoError(t, err)
		defer e.Close()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(3), st.Sources["docs"].Errors)
		msgs := make(map[string]string)
		for _, re := range st.Failures {
			msgs[re.Key] = re.Message
		}
		require.Contains(t, msgs["3"], "cannot parse")
		require.Contains(t, msgs["4"], "panic: boom")
		require.Contains(t, msgs["5"], "twice")
		require.Equal(t, int64(7), st.Sources["docs"].Added)
	})
}

func TestModes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(12)
		h.mustUpdate()

		h.src.ResetCounts()
		h.db.ResetCounts()
		st, err := h.update(tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
		require.NoError(t, err)
		require.Equal(t, 12, h.src.Gets())
		require.Equal(t, int64(12), st.Sources["docs"].Reprocessed)
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts(), "full reprocess writes only what changed")

		h.src.ResetCounts()
		h.db.ResetCounts()
		st, err = h.update(tidemark.UpdateOptions{Mode: tidemark.ModeReexport})
		require.NoError(t, err)
		require.Equal(t, 12, h.src.Gets())
		require.Equal(t, 12+7, h.db.Counts().Upserts, "reexport writes every state")
		require.Equal(t, tidemarktype.TargetStats{Upserts: 12}, st.Targets["memory/docs"])

		// Preview computes, and writes neither the target nor the state.
		h.src.Delete(0)
		d, _ := h.src.Value(1)
		d.Title = "changed"
		h.src.Set(1, d)
		h.src.Set(99, doc{Title: "new"})
		h.db.ResetCounts()
		st, err = h.update(tidemark.UpdateOptions{Preview: true})
		require.NoError(t, err)
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts())
		require.Equal(t, tidemarktype.TargetStats{Upserts: 2, Deletes: 1}, st.Targets["memory/docs"])
		require.Equal(t, int64(1), st.Sources["docs"].Added)
		require.Equal(t, int64(1), st.Sources["docs"].Updated)
		require.Equal(t, int64(1), st.Sources["docs"].Deleted)

		st = h.mustUpdate()
		require.Equal(t, tidemarktype.TargetStats{Upserts: 2, Deletes: 1}, st.Targets["memory/docs"], "the preview changed nothing")
		h.expectDocs()
	})
}

func TestSetupInvalidation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(10)
		h.mustUpdate()

		// A lossy change (a column type, say) rewrites every row.
		h.schema = "v2"
		st := h.mustUpdate()
		require.Equal(t, 10, h.src.Gets())
		require.Equal(t, int64(10), st.Sources["docs"].Reprocessed)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 10}, st.Targets["memory/docs"])
		require.Equal(t, tidemarktype.TargetStats{}, st.Targets["memory/tags"], "the other table is untouched")
		require.Len(t, st.Setup, 1)
		require.Equal(t, "update", st.Setup[0].Change)
		require.Equal(t, target.InvalidateLossy, st.Setup[0].Invalidate)
		h.expectDocs()

		// Then nothing more to do.
		h.mustUpdate()
		require.Zero(t, h.src.Gets())
	})
}

func TestDestructiveSetupChange(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(10)
		f := func(keySchema string) *tidemark.Engine {
			f := tidemark.NewFlow("Docs")
			docs := tidemarktest.Table[docRow](f, h.db, "docs", tidemarktest.KeySchema(keySchema))
			tags := tidemarktest.Table[tagRow](f, h.db, "tags")
			tidemark.ForEach(tidemark.AddSource(f, "docs", h.src), standardProcess(docs, tags))
			e, err := tidemark.Open(t.Context(), f, h.opts)
			require.NoError(t, err)
			return e
		}
		e := f("id")
		_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		e.Close()

		h.src.ResetCounts()
		e = f("id,title")
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		e.Close()
		require.Equal(t, target.InvalidateDestructive, st.Setup[0].Invalidate)
		require.Equal(t, 10, h.src.Gets())
		require.Equal(t, tidemarktype.TargetStats{Upserts: 10}, st.Targets["memory/docs"])
		h.expectDocs()
	})
}

func TestAttachmentsAndRetiredTargets(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(3)
		build := func(indexes map[string]string, withTags bool) *tidemark.Engine {
			f := tidemark.NewFlow("Docs")
			docs := tidemarktest.Table[docRow](f, h.db, "docs")
			for name, field := range indexes {
				tidemarktest.Index(docs, name, field)
			}
			var tags *tidemark.Target[tagRow]
			if withTags {
				tags = tidemarktest.Table[tagRow](f, h.db, "tags")
			}
			tidemark.ForEach(tidemark.AddSource(f, "docs", h.src), func(_ context.Context, r *tidemark.Row, id int, d doc) error {
				docs.Declare(r, target.Key(fmt.Sprint(id)), docRow{ID: id, Title: d.Title})
				if tags != nil {
					for _, tag := range d.Tags {
						tags.Declare(r, target.Key(tag), tagRow{Tag: tag})
					}
				}
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, h.opts)
			require.NoError(t, err)
			t.Cleanup(func() { e.Close() })
			return e
		}
		e := build(map[string]string{"by_title": "Title"}, true)
		_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, map[target.Key]tidemarktest.IndexSpec{"by_title": {Field: "Title"}}, h.db.Indexes("docs"))

		e = build(map[string]string{"by_title": "Title", "by_id": "ID"}, true)
		plan, err := e.Plan(t.Context())
		require.NoError(t, err)
		require.Len(t, plan, 1)
		require.Equal(t, "create", plan[0].Change)
		require.Equal(t, "memory/docs#index:by_id", plan[0].Key)
		require.Len(t, h.db.Indexes("docs"), 1, "planning applies nothing")
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Len(t, h.db.Indexes("docs"), 2)

		// Dropping an index and the tags table: both are torn down, and the
		// rows stay.
		e = build(map[string]string{"by_id": "Title"}, false)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, map[target.Key]tidemarktest.IndexSpec{"by_id": {Field: "Title"}}, h.db.Indexes("docs"))
		require.Nil(t, h.db.Rows("tags"), "the tags table was dropped")
		require.Len(t, h.db.Rows("docs"), 3)
		changes := make(map[string]string)
		for _, c := range st.Setup {
			changes[c.Key] = c.Change
		}
		require.Equal(t, map[string]string{"memory/docs#index:by_id": "update", "memory/docs#index:by_title": "drop", "memory/tags": "drop"}, changes)

		status, err := e.Status(t.Context(), 0)
		require.NoError(t, err)
		require.Len(t, status.Targets, 2)

		// Drop tears everything down.
		dropped, err := e.Drop(t.Context())
		require.NoError(t, err)
		require.Len(t, dropped, 2, "the index, then its table")
		require.Equal(t, "memory/docs#index:by_id", dropped[0].Key)
		require.Empty(t, h.db.Tables())
		status, err = e.Status(t.Context(), 0)
		require.NoError(t, err)
		require.Empty(t, status.Targets)
		require.Zero(t, status.Sources[0].Rows)
	})
}

// graphConnector writes nodes and edges through one simple connector, so
// that one Mutate call sees both and orders them: nodes before edges on
// upsert, edges before nodes on delete. It checks after every step that no
// edge dangles.
type graphConnector struct {
	mu      sync.Mutex
	nodes   map[target.Key]bool
	edges   map[target.Key][2]target.Key
	mutates int
	mixed   int // Mutate calls that carried both nodes and edges
	err     error
}

type graphSpec struct{ Kind string }

// graphValue is a node (no ends) or an edge.
type graphValue struct {
	From, To target.Key
}

func newGraph() *graphConnector {
	return &graphConnector{nodes: make(map[target.Key]bool), edges: make(map[target.Key][2]target.Key)}
}

func (g *graphConnector) PersistentKey(s graphSpec) target.Key { return target.Key("graph/" + s.Kind) }
func (g *graphConnector) Describe(key target.Key) string       { return string(key) }
func (g *graphConnector) ApplySetupChange(context.Context, target.Key, *graphSpec, *graphSpec) error {
	return nil
}

func (g *graphConnector) Mutate(_ context.Context, batch []target.Mutation[graphSpec, graphValue]) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mutates++
	var nodes, edges []target.Change[graphValue]
	for _, m := range batch {
		if m.Spec.Kind == "node" {
			nodes = append(nodes, m.Changes...)
		} else {
			edges = append(edges, m.Changes...)
		}
	}
	if len(nodes) > 0 && len(edges) > 0 {
		g.mixed++
	}
	// Upsert nodes, then edges; delete edges, then nodes.
	for _, c := range nodes {
		if c.Value != nil {
			g.nodes[c.Key] = true
		}
	}
	for _, c := range edges {
		if c.Value != nil {
			g.edges[c.Key] = [2]target.Key{c.Value.From, c.Value.To}
		} else {
			delete(g.edges, c.Key)
		}
	}
	for _, c := range nodes {
		if c.Value == nil {
			delete(g.nodes, c.Key)
		}
	}
	for k, e := range g.edges {
		if !g.nodes[e[0]] || !g.nodes[e[1]] {
			g.err = fmt.Errorf("edge %s dangles", k)
		}
	}
	return nil
}

func TestConnectorSinkGetsBatchesAcrossRowsAndTargets(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		g := newGraph()
		src := tidemarktest.NewSource[int, []int]()
		// Row i is node i with edges to the nodes it lists.
		for i := range 30 {
			src.Set(i, []int{(i + 1) % 30, (i + 7) % 30})
		}
		opts := stateStore(t, backend)
		run := func() *tidemarktype.UpdateStats {
			f := tidemark.NewFlow("Graph")
			nodes := tidemark.Custom(f, g, graphSpec{Kind: "node"})
			edges := tidemark.Custom(f, g, graphSpec{Kind: "edge"})
			tidemark.ForEach(tidemark.AddSource(f, "nodes", src), func(_ context.Context, r *tidemark.Row, id int, to []int) error {
				self := target.Key(fmt.Sprint(id))
				nodes.Declare(r, self, graphValue{})
				for _, dst := range to {
					edges.Declare(r, target.Key(fmt.Sprintf("%d->%d", id, dst)), graphValue{From: self, To: target.Key(fmt.Sprint(dst))})
				}
				return nil
			})
			e, err := tidemark.Open(t.Context(), f, opts)
			require.NoError(t, err)
			defer e.Close()
			st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			return st
		}
		st := run()
		require.Equal(t, tidemarktype.TargetStats{Upserts: 30}, st.Targets["graph/node"])
		require.Equal(t, tidemarktype.TargetStats{Upserts: 60}, st.Targets["graph/edge"])
		g.mu.Lock()
		require.Equal(t, 1, g.mutates, "30 rows and two targets in one batch")
		require.Equal(t, 1, g.mixed)
		require.Len(t, g.nodes, 30)
		require.Len(t, g.edges, 60)
		require.NoError(t, g.err)
		g.mu.Unlock()

		// Delete every other node: edges into deleted nodes must go first.
		for i := 0; i < 30; i += 2 {
			src.Delete(i)
		}
		for i := 1; i < 30; i += 2 {
			src.Set(i, nil)
		}
		run()
		g.mu.Lock()
		defer g.mu.Unlock()
		require.NoError(t, g.err)
		require.Len(t, g.nodes, 15)
		require.Empty(t, g.edges)
		require.Equal(t, 2, g.mixed)
	})
}

// dupSource lists every key twice and records concurrent Gets of one key.
type dupSource struct {
	*tidemarktest.Source[int, doc]
	mu       sync.Mutex
	inFlight map[int]bool
	overlap  bool
}

func (d *dupSource) List(ctx context.Context) iter.Seq2[tidemark.Listed[int], error] {
	inner := d.Source.List(ctx)
	return func(yield func(tidemark.Listed[int], error) bool) {
		var all []tidemark.Listed[int]
		for l, err := range inner {
			if err != nil {
				yield(l, err)
				return
			}
			all = append(all, l)
		}
		for _, l := range append(all, all...) {
			if !yield(l, nil) {
				return
			}
		}
	}
}

func TestOneUpdatePerKeyAtOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		ds := &dupSource{Source: tidemarktest.NewSource[int, doc](), inFlight: make(map[int]bool)}
		for i := range 40 {
			ds.Set(i, doc{Title: fmt.Sprint(i)})
		}
		ds.OnGet(func(id int) {
			ds.mu.Lock()
			if ds.inFlight[id] {
				ds.overlap = true
			}
			ds.inFlight[id] = true
			ds.mu.Unlock()
		})
		db := tidemarktest.NewDB()
		f := tidemark.NewFlow("Dup")
		docs := tidemarktest.Table[docRow](f, db, "docs")
		tidemark.ForEach(tidemark.AddSource(f, "docs", tidemark.Source[int, doc](ds), tidemark.MaxInFlight(8)),
			func(_ context.Context, r *tidemark.Row, id int, d doc) error {
				docs.Declare(r, target.Key(fmt.Sprint(id)), docRow{ID: id, Title: d.Title})
				ds.mu.Lock()
				delete(ds.inFlight, id)
				ds.mu.Unlock()
				return nil
			})
		opts := stateStore(t, backend)
		opts.Batch = tidemark.BatchOptions{MaxRows: 3}
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		defer e.Close()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, int64(80), st.Sources["docs"].Listed)
		require.Equal(t, int64(40), st.Sources["docs"].Added)
		ds.mu.Lock()
		require.False(t, ds.overlap, "two Gets of one key overlapped")
		ds.mu.Unlock()
		for id, n := range ds.GetsOf() {
			require.LessOrEqual(t, n, 2, "key %d", id)
		}
		require.Len(t, db.Rows("docs"), 40)
	})
}

func TestConcurrentUpdatesOfOneFlowAreRefused(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(5)
		inGet := make(chan struct{})
		release := make(chan struct{})
		var once sync.Once
		h.src.OnGet(func(int) {
			once.Do(func() { close(inGet) })
			<-release
		})
		first := h.open()
		done := make(chan error, 1)
		go func() {
			_, err := first.Update(t.Context(), tidemark.UpdateOptions{})
			done <- err
		}()
		<-inGet

		second := h.open()
		_, err := second.Update(t.Context(), tidemark.UpdateOptions{})
		require.ErrorIs(t, err, tidemark.ErrFlowLocked)
		_, err = second.Setup(t.Context())
		require.ErrorIs(t, err, tidemark.ErrFlowLocked)
		// Reading needs no lock.
		_, err = second.Plan(t.Context())
		require.NoError(t, err)
		_, err = second.Status(t.Context(), 1)
		require.NoError(t, err)

		close(release)
		require.NoError(t, <-done)
		h.src.OnGet(nil)
		_, err = second.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err, "released when the first update ended")
		h.expectDocs()
	})
}

func TestUnusualKeysAndValues(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		src := tidemarktest.NewSource[string, string]()
		keys := []string{"nul\x00byte", "ünïcödé ✓", "", `quote" and \backslash`, "tab\tnewline\n", strings.Repeat("k", 5000)}
		for i, k := range keys {
			src.Set(k, fmt.Sprintf("value %d \x00 with NUL", i))
		}
		src.Set("bad \xff utf-8", "never stored")
		db := tidemarktest.NewDB()
		f := tidemark.NewFlow("Unusual")
		rows := tidemarktest.Table[string](f, db, "rows")
		tidemark.ForEach(tidemark.AddSource(f, "s", src), func(_ context.Context, r *tidemark.Row, key, v string) error {
			rows.Declare(r, target.Key(key), v+" / "+key)
			return nil
		})
		e, err := tidemark.Open(t.Context(), f, stateStore(t, backend))
		require.NoError(t, err)
		defer e.Close()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err, "an unusable key fails its row, not the listing")
		s := st.Sources["s"]
		require.Equal(t, int64(len(keys)), s.Added)
		require.Equal(t, int64(1), s.Errors)
		require.True(t, s.ListingComplete)
		require.Contains(t, st.Failures[0].Message, "does not survive its JSON encoding")
		got := db.Rows("rows")
		require.Len(t, got, len(keys))
		for i, k := range keys {
			require.Equal(t, fmt.Sprintf("value %d \x00 with NUL", i)+" / "+k, got[target.Key(k)])
		}

		// Unchanged on the next update; deleting one key deletes its row.
		src.ResetCounts()
		src.Delete("nul\x00byte")
		st, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Zero(t, src.Gets())
		require.Equal(t, int64(1), st.Sources["s"].Deleted)
		require.NotContains(t, db.Rows("rows"), target.Key("nul\x00byte"))
	})
}

func TestCancelledUpdateLeavesAConsistentState(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.fill(200)
		h.opts.Batch = tidemark.BatchOptions{MaxRows: 7}
		ctx, cancel := context.WithCancel(t.Context())
		var gets atomic.Int32
		h.src.OnGet(func(int) {
			if gets.Add(1) == 100 {
				cancel()
			}
		})
		e := h.open()
		_, err := e.Update(ctx, tidemark.UpdateOptions{})
		require.ErrorIs(t, err, context.Canceled)
		require.NoError(t, e.Close())

		h.src.OnGet(nil)
		st := h.mustUpdate()
		require.Less(t, h.src.Gets(), 200, "what was committed before the cancel is not fetched again")
		require.Equal(t, int64(200), st.Sources["docs"].Added+st.Sources["docs"].Unchanged)
		h.expectDocs()
	})
}

func TestSourceWithoutOrdinals(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.src.WithoutOrdinals()
		h.fill(10)
		h.mustUpdate()
		h.expectDocs()

		// With no ordinal, every row is fetched; unchanged content writes
		// nothing.
		st := h.mustUpdate()
		require.Equal(t, 10, h.src.Gets())
		require.Equal(t, int64(10), st.Sources["docs"].Unchanged)
		require.Equal(t, tidemarktest.Counts{}, h.db.Counts())

		d, _ := h.src.Value(3)
		d.Title = "changed"
		h.src.Set(3, d)
		st = h.mustUpdate()
		require.Equal(t, int64(1), st.Sources["docs"].Updated)
		require.Equal(t, tidemarktype.TargetStats{Upserts: 1}, st.Targets["memory/docs"])
		h.expectDocs()
	})
}
