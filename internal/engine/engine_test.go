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
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/internal/statestore/sqlite"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSource is a SourceImpl over a map; each row declares decls(key,
// value) into root 0.
type fakeSource struct {
	mu    sync.Mutex
	rows  map[string]string
	order []string
	// listGate, if set, is called before listing the i-th key.
	listGate func(i int)
	decls    func(key, value string) []Decl
}

func newFakeSource(n int, value func(i int) string) *fakeSource {
	s := &fakeSource{rows: make(map[string]string)}
	for i := range n {
		k := fmt.Sprintf("%04d", i)
		s.rows[k] = value(i)
		s.order = append(s.order, k)
	}
	s.decls = func(key, value string) []Decl { return []Decl{{Root: 0, Key: target.Key(key), Value: value}} }
	return s
}

func (s *fakeSource) List(ctx context.Context) iter.Seq2[Listed, error] {
	return func(yield func(Listed, error) bool) {
		for i, k := range s.order {
			if s.listGate != nil {
				s.listGate(i)
			}
			if !yield(Listed{Key: k, Ordinal: 1, HasOrdinal: true}, nil) {
				return
			}
		}
	}
}

func (s *fakeSource) Get(ctx context.Context, key string) (Fetched, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.rows[key]
	return Fetched{Exists: ok, Value: v, Ordinal: 1, HasOrdinal: true}, nil
}

func (s *fakeSource) Process(ctx context.Context, key string, value any) ([]Decl, error) {
	return s.decls(key, value.(string)), nil
}

func (s *fakeSource) ProvidesOrdinal() bool { return true }

// recordingSink records the batches it applies.
type recordingSink struct {
	mu      sync.Mutex
	batches [][]string
	fail    func(keys []string) error
}

type rec struct {
	key   target.Key
	value *string
}

func (s *recordingSink) Apply(_ context.Context, actions []rec) error {
	keys := make([]string, len(actions))
	for i, a := range actions {
		keys[i] = string(a.key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(keys); err != nil {
			return err
		}
	}
	s.batches = append(s.batches, keys)
	return nil
}

func (s *recordingSink) sizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, b := range s.batches {
		out = append(out, len(b))
	}
	return out
}

// leafHandler writes every declared value through sink, remembering a
// fingerprint of it.
type leafHandler struct{ sink target.Sink[rec] }

func (h leafHandler) Reconcile(key target.Key, desired *string, prev []target.Record, mm bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do[rec](h.sink, rec{key: key})}, nil
	}
	r, err := target.Fingerprint(*desired)
	if err != nil {
		return nil, err
	}
	if target.Unchanged(r, prev, mm) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do[rec](h.sink, rec{key: key, value: desired}), Record: r}, nil
}

// containerHandler is a container whose children are handled by child.
type containerHandler struct {
	sink *target.ContainerSinkFunc[string]
}

func newContainer(child target.Erased) *containerHandler {
	return &containerHandler{sink: target.NewContainerSink(func(_ context.Context, actions []string) ([]target.Erased, error) {
		out := make([]target.Erased, len(actions))
		for i := range out {
			out[i] = child
		}
		return out, nil
	})}
}

func (h *containerHandler) Reconcile(key target.Key, desired *string, prev []target.Record, mm bool) (*target.Reconciled, error) {
	if desired == nil {
		return &target.Reconciled{Action: target.DoContainer(h.sink, "drop")}, nil
	}
	return &target.Reconciled{Action: target.DoContainer(h.sink, *desired), Record: []byte(*desired)}, nil
}

// countingStore wraps a store, counting commits and failing on demand.
type countingStore struct {
	statestore.Store
	mu         sync.Mutex
	commits    []int // rows per Commit call
	precommits int
	failCommit func(n int) error // n counts Commit calls from 1
}

func (s *countingStore) Commit(ctx context.Context, p statestore.CommitParams) error {
	s.mu.Lock()
	n := len(s.commits) + 1
	fail := s.failCommit
	s.mu.Unlock()
	if fail != nil {
		if err := fail(n); err != nil {
			s.mu.Lock()
			s.commits = append(s.commits, -1)
			s.mu.Unlock()
			return err
		}
	}
	if err := s.Store.Commit(ctx, p); err != nil {
		return err
	}
	s.mu.Lock()
	s.commits = append(s.commits, len(p.Rows)+len(p.Bumps)+len(p.Failed)+len(p.Deletes))
	s.mu.Unlock()
	return nil
}

func (s *countingStore) Precommit(ctx context.Context, p statestore.PrecommitParams) ([]int64, error) {
	s.mu.Lock()
	s.precommits++
	s.mu.Unlock()
	return s.Store.Precommit(ctx, p)
}

func (s *countingStore) commitSizes() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commits)
}

type bundle struct {
	src   *fakeSource
	sink  *recordingSink
	store *countingStore
	flow  *Flow
}

func setup(t *testing.T, src *fakeSource) *bundle {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	sink := &recordingSink{}
	flow := &Flow{
		Name:    "test",
		Sources: []*Source{{Name: "s", Impl: src, MaxInFlight: 4}},
		Roots:   []*Root{{Kind: "k", Key: "c", Handler: target.Erase[string](newContainer(target.Erase[string](leafHandler{sink: sink}))), Spec: "v1", Container: true}},
	}
	return &bundle{src: src, sink: sink, store: &countingStore{Store: st}, flow: flow}
}

func (b *bundle) engine(t *testing.T, batch BatchOptions) *Engine {
	t.Helper()
	e, err := New(b.flow, b.store, Options{Batch: batch, Retry: retry.Policy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 3}})
	require.NoError(t, err)
	return e
}

func TestBatchesAreBoundedByRows(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(100, func(i int) string { return fmt.Sprint(i) }))
	st, err := b.engine(t, BatchOptions{MaxRows: 10, MaxActions: 1000, MaxBytes: 1 << 20, MaxDelay: time.Minute}).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(100), st.Sources["s"].Added)
	require.Equal(t, slices.Repeat([]int{10}, 10), b.store.commitSizes(), "ten rows per state transaction")
	require.Equal(t, slices.Repeat([]int{10}, 10), b.sink.sizes(), "ten rows per sink call")
}

func TestBatchesAreBoundedByActions(t *testing.T) {
	t.Parallel()
	src := newFakeSource(12, func(i int) string { return fmt.Sprint(i) })
	src.decls = func(key, value string) []Decl {
		var out []Decl
		for j := range 5 {
			out = append(out, Decl{Root: 0, Key: target.Key(fmt.Sprintf("%s/%d", key, j)), Value: value})
		}
		return out
	}
	b := setup(t, src)
	_, err := b.engine(t, BatchOptions{MaxRows: 1000, MaxActions: 12, MaxBytes: 1 << 20, MaxDelay: time.Minute}).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	// Flushed once a batch holds 12 actions or more: three rows of five.
	require.Equal(t, []int{3, 3, 3, 3}, b.store.commitSizes())
	require.Equal(t, []int{15, 15, 15, 15}, b.sink.sizes())
}

func TestBatchesAreBoundedByBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(20, func(i int) string { return strings.Repeat("x", 1000) + fmt.Sprint(i) }))
	_, err := b.engine(t, BatchOptions{MaxRows: 1000, MaxActions: 1000, MaxBytes: 4000, MaxDelay: time.Minute}).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	// Each value encodes to just over 1,000 bytes: four fill a batch.
	require.Equal(t, []int{4, 4, 4, 4, 4}, b.store.commitSizes())
}

func TestBatchesAreFlushedByTime(t *testing.T) {
	t.Parallel()
	src := newFakeSource(5, func(i int) string { return fmt.Sprint(i) })
	var b *bundle
	// The listing stalls after the first two rows until they are committed:
	// only the MaxDelay flush can commit them.
	committed := make(chan struct{})
	src.listGate = func(i int) {
		if i != 2 {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(b.store.commitSizes()) == 0 {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
		close(committed)
	}
	b = setup(t, src)
	_, err := b.engine(t, BatchOptions{MaxRows: 1000, MaxActions: 1000, MaxBytes: 1 << 20, MaxDelay: 20 * time.Millisecond}).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	select {
	case <-committed:
	default:
		t.Fatal("the first rows were not committed while the listing stalled")
	}
	require.Equal(t, []int{2, 3}, b.store.commitSizes())
}

func TestTransientStoreFaultsAreRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(30, func(i int) string { return fmt.Sprint(i) }))
	b.store.failCommit = func(n int) error {
		if n == 1 {
			return retry.Mark(errors.New("connection reset by peer"))
		}
		return nil
	}
	st, err := b.engine(t, BatchOptions{MaxRows: 10, MaxActions: 1000, MaxBytes: 1 << 20, MaxDelay: time.Minute}).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(30), st.Sources["s"].Added)
	require.Equal(t, []int{-1, 10, 10, 10}, b.store.commitSizes())
}

func TestPermanentStoreFaultStopsTheUpdateAndTheNextConverges(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(30, func(i int) string { return fmt.Sprint(i) }))
	b.store.failCommit = func(n int) error {
		if n == 2 {
			return errors.New("disk full")
		}
		return nil
	}
	opts := BatchOptions{MaxRows: 10, MaxActions: 1000, MaxBytes: 1 << 20, MaxDelay: time.Minute}
	_, err := b.engine(t, opts).Update(t.Context(), UpdateOptions{})
	require.ErrorContains(t, err, "disk full")

	b.store.failCommit = nil
	st, err := b.engine(t, opts).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	s := st.Sources["s"]
	require.Equal(t, int64(10), s.Unchanged, "the first batch was committed")
	require.Equal(t, int64(20), s.Added)
}

func TestWriteFailureIsolatesTheRow(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(16, func(i int) string { return fmt.Sprint(i) }))
	b.sink.fail = func(keys []string) error {
		if slices.Contains(keys, "0005") || slices.Contains(keys, "0011") {
			return errors.New("value violates a constraint")
		}
		return nil
	}
	st, err := b.engine(t, DefaultBatchOptions()).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Sources["s"].Errors)
	require.Equal(t, int64(14), st.Sources["s"].Added)
	var failed []string
	for _, e := range st.Failures {
		failed = append(failed, e.Key)
		require.Contains(t, e.Message, "value violates a constraint")
	}
	require.ElementsMatch(t, []string{"0005", "0011"}, failed)
	var written int
	for _, batch := range b.sink.batches {
		written += len(batch)
	}
	require.Equal(t, 14, written)

	// Both are retried, and written once the target accepts them.
	b.sink.fail = nil
	st, err = b.engine(t, DefaultBatchOptions()).Update(t.Context(), UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Sources["s"].Added)
}

func TestNewFlowValidation(t *testing.T) {
	t.Parallel()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"))
	require.NoError(t, err)
	defer store.Close()
	for name, tt := range map[string]struct {
		flow *Flow
		opts Options
		want string
	}{
		"no name":        {flow: &Flow{}, want: "needs a name"},
		"dup source":     {flow: &Flow{Name: "f", Sources: []*Source{{Name: "a", MaxInFlight: 1}, {Name: "a", MaxInFlight: 1}}}, want: "source names"},
		"in flight":      {flow: &Flow{Name: "f", Sources: []*Source{{Name: "a"}}}, want: "MaxInFlight must be at least 1, got 0"},
		"dup target":     {flow: &Flow{Name: "f", Roots: []*Root{{Key: "t", Handler: target.Erase[string](leafHandler{})}, {Key: "t", Handler: target.Erase[string](leafHandler{})}}}, want: "target keys"},
		"bad batch":      {flow: &Flow{Name: "f"}, opts: Options{Batch: BatchOptions{MaxRows: -1, MaxActions: 1, MaxBytes: 1, MaxDelay: 1}}, want: "Batch.MaxRows must be at least 1, got -1"},
		"bad retry":      {flow: &Flow{Name: "f"}, opts: Options{Retry: retry.Policy{Initial: -1}}, want: "Initial must be positive"},
		"no handler":     {flow: &Flow{Name: "f", Roots: []*Root{{Key: "t"}}}, want: "has no handler"},
		"leaf attachers": {flow: &Flow{Name: "f", Roots: []*Root{{Key: "t", Handler: target.Erase[string](leafHandler{}), Attachments: []*Attachment{{Kind: "x"}}}}}, want: "not a container"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.flow, store, tt.opts)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestIDSet(t *testing.T) {
	t.Parallel()
	var s idSet
	ids := []int64{0, 1, 63, 64, 32767, 32768, 1 << 40}
	for _, id := range ids {
		require.False(t, s.has(id))
		s.add(id)
	}
	for _, id := range ids {
		require.True(t, s.has(id), "%d", id)
	}
	require.False(t, s.has(2))
	require.False(t, s.has(1<<40+1))
}

func TestFlights(t *testing.T) {
	t.Parallel()
	f := newFlights()
	require.True(t, f.acquire("a"))
	require.False(t, f.acquire("a"), "in flight")
	require.True(t, f.acquire("b"))
	f.release("a")
	require.True(t, f.acquire("a"), "released")
}

func TestPending(t *testing.T) {
	t.Parallel()
	var p pending
	requireClosed := func(c <-chan struct{}, want bool) {
		t.Helper()
		select {
		case <-c:
			require.True(t, want, "closed too early")
		default:
			require.False(t, want, "not closed")
		}
	}
	requireClosed(p.wait(), true)
	p.add(0) // nothing added: still idle
	requireClosed(p.wait(), true)
	p.add(2)
	c := p.wait()
	requireClosed(c, false)
	p.done()
	requireClosed(c, false)
	p.done()
	requireClosed(c, true)
	requireClosed(p.wait(), true)
}

// TestStoreIsTimedOnlyWhenObserved: the store is wrapped in the timing
// decorator only for an engine with a StoreOp observer.
func TestStoreIsTimedOnlyWhenObserved(t *testing.T) {
	t.Parallel()
	b := setup(t, newFakeSource(1, func(i int) string { return fmt.Sprint(i) }))
	e, err := New(b.flow, b.store, Options{Observers: Observers{RowDone: func(context.Context, tidemarktype.RowDone) {}}})
	require.NoError(t, err)
	require.Same(t, b.store, e.store, "no store observer: the store as given")
	e, err = New(b.flow, b.store, Options{Observers: Observers{StoreOp: func(context.Context, tidemarktype.StoreOp) {}}})
	require.NoError(t, err)
	require.IsType(t, &timedStore{}, e.store)
}
