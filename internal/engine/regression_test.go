package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/fingerprint"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/sqlite"
	"github.com/tidemark/tidemark/target"
)

// Regression tests for bugs found in a review of the engine, each a
// scenario that once went wrong.

// ---- harness ----------------------------------------------------------------

// rvSource: rows are "tk=val,tk2=val2" strings; each pair is a declaration
// of target key tk with value val into root 0.
type rvSource struct {
	mu        sync.Mutex
	rows      map[string]string
	ord       map[string]int64
	order     []string
	noOrdinal bool // ProvidesOrdinal() == false
	listFP    bool // list a cheap fingerprint (ETag)
	gets      atomic.Int32
	getGate   func(key string)
	listGate  func(key string)
}

func newRV() *rvSource { return &rvSource{rows: map[string]string{}, ord: map[string]int64{}} }

func (s *rvSource) set(key, val string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rows[key]; !ok {
		s.order = append(s.order, key)
	}
	s.rows[key] = val
	s.ord[key]++
}

func (s *rvSource) del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, key)
	s.order = slices.DeleteFunc(s.order, func(k string) bool { return k == key })
}

func etag(v string) []byte { fp, _ := fingerprint.Of(v); return fp[:] }

func (s *rvSource) List(ctx context.Context) iter.Seq2[Listed, error] {
	return func(yield func(Listed, error) bool) {
		s.mu.Lock()
		order := slices.Clone(s.order)
		s.mu.Unlock()
		for _, k := range order {
			if s.listGate != nil {
				s.listGate(k)
			}
			s.mu.Lock()
			l := Listed{Key: k, Ordinal: s.ord[k], HasOrdinal: !s.noOrdinal}
			if s.listFP {
				l.Fingerprint = etag(s.rows[k])
			}
			s.mu.Unlock()
			if !yield(l, nil) {
				return
			}
		}
	}
}

func (s *rvSource) Get(ctx context.Context, key string) (Fetched, error) {
	s.gets.Add(1)
	if s.getGate != nil {
		s.getGate(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.rows[key]
	f := Fetched{Exists: ok, Value: v, Ordinal: s.ord[key], HasOrdinal: !s.noOrdinal}
	if s.listFP && ok {
		f.Fingerprint = etag(v)
	}
	return f, nil
}

func (s *rvSource) Process(ctx context.Context, key string, value any) ([]Decl, error) {
	var out []Decl
	for _, p := range strings.Split(value.(string), ",") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		out = append(out, Decl{Root: 0, Key: target.Key(k), Value: v})
	}
	return out, nil
}

func (s *rvSource) ProvidesOrdinal() bool { return !s.noOrdinal }

// rvDB is the external system: a key/value table.
type rvDB struct {
	mu      sync.Mutex
	rows    map[target.Key]string
	fail    func(a rec) bool // permanent failure of an apply holding a
	deletes []target.Key
	onApply func(actions []rec)
}

func (d *rvDB) Apply(_ context.Context, actions []rec) error {
	d.mu.Lock()
	for _, a := range actions {
		if d.fail != nil && d.fail(a) {
			d.mu.Unlock()
			return errors.New("constraint violation")
		}
	}
	for _, a := range actions {
		if a.value == nil {
			delete(d.rows, a.key)
			d.deletes = append(d.deletes, a.key)
		} else {
			d.rows[a.key] = *a.value
		}
	}
	cb := d.onApply
	d.mu.Unlock()
	if cb != nil {
		cb(actions)
	}
	return nil
}

func (d *rvDB) snapshot() map[target.Key]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[target.Key]string{}
	for k, v := range d.rows {
		out[k] = v
	}
	return out
}

type rvWorld struct {
	t     *testing.T
	path  string
	db    *rvDB
	srcs  []*rvSource
	store statestore.Store
}

func newWorld(t *testing.T, nsrc int) *rvWorld {
	w := &rvWorld{t: t, path: filepath.Join(t.TempDir(), "state.db"), db: &rvDB{rows: map[target.Key]string{}}}
	for range nsrc {
		w.srcs = append(w.srcs, newRV())
	}
	st, err := sqlite.Open(t.Context(), w.path)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	w.store = st
	return w
}

func (w *rvWorld) engine(opts Options, inFlight int) *Engine {
	var sources []*Source
	for i, s := range w.srcs {
		sources = append(sources, &Source{Name: fmt.Sprintf("s%d", i), Impl: s, MaxInFlight: inFlight})
	}
	flow := &Flow{
		Name:    "review",
		Sources: sources,
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: w.db}))), Spec: "v1", Container: true}},
	}
	if opts.Batch == (BatchOptions{}) {
		opts.Batch = BatchOptions{MaxRows: 1000, MaxActions: 100000, MaxBytes: 1 << 30, MaxDelay: time.Minute}
	}
	opts.Retry = retry.Policy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 2}
	e, err := New(flow, w.store, opts)
	require.NoError(w.t, err)
	return e
}

func (w *rvWorld) update(opts Options, inFlight int, uo UpdateOptions) (Stats, error) {
	return w.engine(opts, inFlight).Update(w.t.Context(), uo)
}

// ---- tests --------------------------------------------------------------

// Two sources whose keys coincide share one flights map: a key of source B
// listed while the same key of source A is in flight is dropped from B's
// dispatch, never added to B's seen set, and B's deletion scan deletes it.
func TestRegressionCrossSourceKeyCollisionDeletesListedRow(t *testing.T) {
	w := newWorld(t, 2)
	a, b := w.srcs[0], w.srcs[1]
	b.set("x", "b-x=1")
	b.set("y", "b-y=1")
	_, err := w.update(Options{}, 2, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"b-x": "1", "b-y": "1"}, w.db.snapshot())

	// Second update: source A lists its own (new) row "x"; its Get stalls
	// while B's listing passes its "x", then finishes before B's listing
	// completes.
	a.set("x", "a-x=1")
	aGetting := make(chan struct{})
	releaseA := make(chan struct{})
	a.getGate = func(string) {
		close(aGetting)
		<-releaseA
	}
	b.listGate = func(k string) {
		switch k {
		case "x":
			<-aGetting
		case "y":
			time.Sleep(100 * time.Millisecond) // the linger dispatches [x] now
			close(releaseA)
			time.Sleep(200 * time.Millisecond) // A's row is written
		}
	}
	opts := Options{Batch: BatchOptions{MaxRows: 1000, MaxActions: 1000, MaxBytes: 1 << 20, MaxDelay: 10 * time.Millisecond}}
	st, err := w.update(opts, 2, UpdateOptions{})
	require.NoError(t, err)
	t.Logf("source s1 stats: %+v", st.Sources["s1"])
	require.Zero(t, st.Sources["s1"].Deleted, "B listed x: nothing of B may be deleted")
	require.Contains(t, w.db.snapshot(), target.Key("b-x"), "B's row x is still listed, its target state must stay")
}

// Two rows newly declare the same key in one batch; the later one's upsert
// wins and the earlier one's is cancelled. When the winner's row then fails
// (another of its writes is rejected), the shared key is written by no one,
// yet the surviving row commits it as written. If the failing row then
// disappears, the shared key is never written.
func TestRegressionDedupWinnerFailsLeavesStateMissing(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.set("A", "shared=v,a=1")
	s.set("B", "shared=v,bad=1")
	w.db.fail = func(a rec) bool { return a.key == "bad" }
	st, err := w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Sources["s0"].Errors)
	t.Logf("after update 1: %v", w.db.snapshot())

	// B goes away; A still declares "shared".
	s.del("B")
	w.db.fail = nil
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"shared": "v", "a": "1"}, w.db.snapshot(), "A declares shared and a")
}

// A row's cancelled (deduplicated) upsert still inserts its ownership at
// precommit, but the key is not in its staged blob. After a crash before
// commit the ownership row is invisible to the row's tracking, so when the
// row disappears its ownership is never removed, and the key can never be
// deleted again.
func TestRegressionOrphanOwnershipAfterCrash(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.set("A", "shared=v,a=1")
	s.set("B", "shared=v,b=1")
	crash := errors.New("crash")
	_, err := w.update(Options{Hooks: Hooks{BeforeCommit: func(context.Context) error { return crash }}}, 1, UpdateOptions{})
	require.ErrorIs(t, err, crash)

	s.del("A")
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"shared": "v", "b": "1"}, w.db.snapshot())

	// B stops declaring "shared": no row declares it any more.
	s.set("B", "b=1")
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"b": "1"}, w.db.snapshot(), "no source row declares shared")
}

// Same hole without any crash: the loser of the dedup fails on another of
// its writes, keeping its ownership insert but not the key in its tracking.
func TestRegressionOrphanOwnershipAfterRowFailure(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.set("A", "shared=v,bad=1")
	s.set("B", "shared=v,b=1")
	w.db.fail = func(a rec) bool { return a.key == "bad" }
	_, err := w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	w.db.fail = nil

	s.del("A")
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	s.set("B", "b=1")
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"b": "1"}, w.db.snapshot(), "no source row declares shared")
}

// Two rows declare one key with different values; the last writer's value
// is in the target. When that writer stops declaring the key, its delete
// is cancelled (the other row owns it), and the target keeps a value that
// no source row declares; a build from scratch has the other row's value.
func TestRegressionCoDeclarerLeavesStaleValue(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.set("A", "k=fromA")
	s.set("B", "k=fromB")
	_, err := w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, "fromB", w.db.snapshot()["k"])

	s.set("B", "")
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"k": "fromA"}, w.db.snapshot(), "only A declares k now, from the same update")
	s.gets.Store(0)
	_, err = w.update(Options{}, 1, UpdateOptions{})
	require.NoError(t, err)
	require.Zero(t, s.gets.Load(), "nothing left to do")
}

// A source without ordinals but with listed fingerprints (ETags) should be
// skipped by the first rung ("or whose cheap fingerprint matches"); skip
// returns false whenever the stored ordinal is nil, which it always is for
// such a source, so every row is fetched on every update.
func TestRegressionListedFingerprintSkipWithoutOrdinals(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.noOrdinal, s.listFP = true, true
	for i := range 10 {
		s.set(fmt.Sprint(i), fmt.Sprintf("k%d=v", i))
	}
	_, err := w.update(Options{}, 2, UpdateOptions{})
	require.NoError(t, err)
	s.gets.Store(0)
	st, err := w.update(Options{}, 2, UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(10), st.Sources["s0"].Unchanged)
	require.Zero(t, s.gets.Load(), "listed fingerprints all match: no Get needed")
}

// Preview must write nothing, yet it creates the flow and source rows in
// the state store.
func TestRegressionPreviewWritesStateStore(t *testing.T) {
	w := newWorld(t, 1)
	w.srcs[0].set("A", "a=1")
	_, err := w.update(Options{}, 1, UpdateOptions{Preview: true})
	require.NoError(t, err)
	db := w.store.(*sqlite.Store).DB()
	var flows, sources int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM tidemark_flows`).Scan(&flows))
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM tidemark_sources`).Scan(&sources))
	require.Zero(t, flows+sources, "preview wrote to the state store")
}

// A row whose write fails for good is staged again on every update, and the
// old staged sections are carried over each time: its staged blob grows
// without bound (one section per update).
func TestRegressionStagedBlobGrowsForFailingRow(t *testing.T) {
	w := newWorld(t, 1)
	s := w.srcs[0]
	s.set("A", "a=1,bad=1")
	w.db.fail = func(a rec) bool { return a.key == "bad" }
	db := w.store.(*sqlite.Store).DB()
	var sizes []int
	for range 6 {
		_, err := w.update(Options{}, 1, UpdateOptions{})
		require.NoError(t, err)
		var n int
		require.NoError(t, db.QueryRow(`SELECT length(staged) FROM tidemark_rows WHERE key = 'A'`).Scan(&n))
		sizes = append(sizes, n)
	}
	t.Logf("staged blob sizes: %v", sizes)
	require.Equal(t, sizes[0], sizes[len(sizes)-1], "staged blob must not grow with each failed retry")
}

// A root whose kind changes under the same key is torn down (dropped) and
// created again with a new id, but no generation is bumped: every row is
// skipped by its ordinal and the new container stays empty.
func TestRegressionKindChangeLeavesNewContainerEmpty(t *testing.T) {
	w := newWorld(t, 1)
	w.srcs[0].set("A", "a=1")
	// The container's drop clears the external table.
	mk := func(kind string) *Engine {
		cont := &containerHandler{sink: target.NewContainerSink(func(_ context.Context, actions []string) ([]target.Erased, error) {
			out := make([]target.Erased, len(actions))
			for i, a := range actions {
				if a == "drop" {
					w.db.mu.Lock()
					clear(w.db.rows)
					w.db.mu.Unlock()
					continue
				}
				out[i] = target.Erase[string](leafHandler{sink: w.db})
			}
			return out, nil
		})}
		flow := &Flow{
			Name:     "review",
			Sources:  []*Source{{Name: "s0", Impl: w.srcs[0], MaxInFlight: 1}},
			Roots:    []*Root{{Kind: kind, Key: "c", Handler: target.Erase[string](cont), Spec: "v1", Container: true}},
			Handlers: map[string]target.Erased{"old": target.Erase[string](cont)},
		}
		e, err := New(flow, w.store, Options{})
		require.NoError(t, err)
		return e
	}
	_, err := mk("old").Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[target.Key]string{"a": "1"}, w.db.snapshot())
	st, err := mk("new").Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	t.Logf("setup: %v; stats %+v", st.Setup, st.Sources["s0"])
	require.Equal(t, map[target.Key]string{"a": "1"}, w.db.snapshot(), "the recreated container must be filled again")
}
