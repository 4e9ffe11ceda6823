package tidemark_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktype"
)

// recorder is an observer of every kind, recording what it is told.
type recorder struct {
	mu       sync.Mutex
	starts   []tidemarktype.PassStart
	ends     []tidemarktype.PassEnd
	outcomes map[tidemarktype.Outcome]int
	failures []tidemarktype.RowDone
	fetches  []tidemarktype.Fetch
	batches  []tidemarktype.Batch
	storeOps []tidemarktype.StoreOp
}

func (r *recorder) PassStarted(_ context.Context, p tidemarktype.PassStart) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts = append(r.starts, p)
}

func (r *recorder) PassFinished(_ context.Context, p tidemarktype.PassEnd) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, p)
}

func (r *recorder) RowDone(_ context.Context, d tidemarktype.RowDone) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes == nil {
		r.outcomes = make(map[tidemarktype.Outcome]int)
	}
	r.outcomes[d.Outcome]++
	if d.Outcome == tidemarktype.OutcomeFailed {
		r.failures = append(r.failures, d)
	}
}

func (r *recorder) Fetched(_ context.Context, f tidemarktype.Fetch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetches = append(r.fetches, f)
}

func (r *recorder) BatchWritten(_ context.Context, b tidemarktype.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
}

func (r *recorder) StoreOp(_ context.Context, op tidemarktype.StoreOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.storeOps = append(r.storeOps, op)
}

// ops counts the store operations told, by name, and returns the errors
// told with them.
func (r *recorder) ops() (map[string]int, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := make(map[string]int)
	var errs []error
	for _, op := range r.storeOps {
		n[op.Op]++
		if op.Err != nil {
			errs = append(errs, op.Err)
		}
	}
	return n, errs
}

// written sums the batches: rows, and target states per target.
func (r *recorder) written() (rows int, targets map[string]tidemarktype.TargetStats) {
	targets = make(map[string]tidemarktype.TargetStats)
	for _, b := range r.batches {
		rows += b.Rows
		for k, t := range b.Targets {
			sum := targets[k]
			sum.Upserts += t.Upserts
			sum.Deletes += t.Deletes
			targets[k] = sum
		}
	}
	return rows, targets
}

// nonzero drops the targets nothing was written to.
func nonzero(m map[string]tidemarktype.TargetStats) map[string]tidemarktype.TargetStats {
	out := make(map[string]tidemarktype.TargetStats)
	for k, t := range m {
		if t != (tidemarktype.TargetStats{}) {
			out[k] = t
		}
	}
	return out
}

func TestObserverIsToldWhatUpdatesDo(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		rec := &recorder{}
		h.opts.Observer = rec
		h.fill(10)
		st := h.mustUpdate()

		require.Len(t, rec.starts, 1)
		require.Equal(t, "Docs", rec.starts[0].Flow)
		require.Len(t, rec.ends, 1)
		require.NoError(t, rec.ends[0].Err)
		require.Equal(t, st.Sources, rec.ends[0].Stats.Sources, "the pass's stats")
		require.Len(t, rec.fetches, 10)
		for _, f := range rec.fetches {
			require.True(t, f.Exists)
			require.NoError(t, f.Err)
			require.Equal(t, "docs", f.Source)
		}
		require.Equal(t, map[tidemarktype.Outcome]int{tidemarktype.OutcomeAdded: 10}, rec.outcomes)
		rows, targets := rec.written()
		require.Equal(t, 10, rows)
		require.Equal(t, nonzero(st.Targets), targets, "the batches add up to the update's writes")

		// Two changed, one deleted, seven skipped by ordinal, one failing.
		*rec = recorder{}
		h.src.Set(1, doc{Title: "changed"})
		h.src.Set(2, doc{Title: "changed too"})
		h.src.Delete(3)
		h.src.FailGet(func(k int) error {
			if k == 4 {
				return errors.New("refused")
			}
			return nil
		})
		h.src.Touch(4)
		st, err := h.update(tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, map[tidemarktype.Outcome]int{tidemarktype.OutcomeUpdated: 2, tidemarktype.OutcomeDeleted: 1,
			tidemarktype.OutcomeUnchanged: 6, tidemarktype.OutcomeFailed: 1}, rec.outcomes)
		require.Len(t, rec.failures, 1)
		require.Equal(t, "4", rec.failures[0].Key)
		require.Contains(t, rec.failures[0].Message, "refused")
		require.Len(t, rec.fetches, 3, "the two changed rows and the failing one")
		rows, targets = rec.written()
		require.Equal(t, 4, rows, "2 updated, 1 deleted, 1 failed")
		require.Equal(t, nonzero(st.Targets), targets)
		failed := 0
		for _, b := range rec.batches {
			failed += b.Failed
		}
		require.Equal(t, 1, failed)
		require.False(t, rec.ends[0].Preview)

		*rec = recorder{}
		_, err = h.update(tidemark.UpdateOptions{Preview: true})
		require.NoError(t, err)
		require.Len(t, rec.ends, 1)
		require.True(t, rec.starts[0].Preview)
		require.True(t, rec.ends[0].Preview, "the end of a preview says so too")
	})
}

// rowsOnly observes rows only: the other callbacks are not required.
type rowsOnly struct{ n atomic.Int64 }

func (r *rowsOnly) RowDone(context.Context, tidemarktype.RowDone) { r.n.Add(1) }

func TestObserverOfOneKind(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "sqlite")
	obs := &rowsOnly{}
	h.opts.Observer = obs
	h.fill(5)
	h.mustUpdate()
	require.Equal(t, int64(5), obs.n.Load())
}

// panicky is an observer of every kind whose every callback panics.
type panicky struct{}

func (panicky) PassStarted(context.Context, tidemarktype.PassStart) { panic("observer bug") }
func (panicky) PassFinished(context.Context, tidemarktype.PassEnd)  { panic("observer bug") }
func (panicky) RowDone(context.Context, tidemarktype.RowDone)       { panic("observer bug") }
func (panicky) Fetched(context.Context, tidemarktype.Fetch)         { panic("observer bug") }
func (panicky) BatchWritten(context.Context, tidemarktype.Batch)    { panic("observer bug") }
func (panicky) StoreOp(context.Context, tidemarktype.StoreOp)       { panic("observer bug") }

// TestAPanickingObserverChangesNothing: an observer's panics are logged;
// no row fails, the update completes and the next one has nothing to do.
func TestAPanickingObserverChangesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		h.opts.Observer = panicky{}
		h.fill(6)
		st := h.mustUpdate()
		require.Zero(t, st.Failed())
		h.expectDocs()
		h.src.Set(1, doc{Title: "changed"})
		st = h.mustUpdate()
		require.Equal(t, int64(1), st.Sources["docs"].Updated)
		require.Equal(t, int64(5), st.Sources["docs"].Unchanged)
		h.expectDocs()
	})
}

// TestJoinedObserversAreEachTold: each observer JoinObservers joins is told
// what it implements; nil ones are skipped.
func TestJoinedObserversAreEachTold(t *testing.T) {
	t.Parallel()
	require.Nil(t, tidemark.JoinObservers(nil, nil))
	one := &rowsOnly{}
	require.Same(t, one, tidemark.JoinObservers(nil, one))

	h := newHarness(t, "sqlite")
	all, rows := &recorder{}, &rowsOnly{}
	h.opts.Observer = tidemark.JoinObservers(rows, nil, all)
	h.fill(5)
	h.mustUpdate()
	require.Equal(t, int64(5), rows.n.Load())
	all.mu.Lock()
	defer all.mu.Unlock()
	require.Len(t, all.starts, 1)
	require.Len(t, all.ends, 1)
	require.Equal(t, 5, all.outcomes[tidemarktype.OutcomeAdded])
	require.Len(t, all.fetches, 5)
	n, _ := all.written()
	require.Equal(t, 5, n)
	require.NotEmpty(t, all.storeOps, "a store observer among the joined is told")

	_, isStore := tidemark.JoinObservers(rows, &rowsOnly{}).(tidemark.StoreObserver)
	require.False(t, isStore, "observers none of which asks for store timings do not make the engine time its store")
}

// TestStoreObserverIsToldOfStoreOps: an update tells a StoreObserver of
// its state store calls, each timed; a flow not found is an answer, not
// an error.
func TestStoreObserverIsToldOfStoreOps(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		rec := &recorder{}
		h.opts.Observer = rec
		h.fill(10)

		e := h.open()
		_, err := e.Status(t.Context(), 10)
		require.NoError(t, err)
		ops, errs := rec.ops()
		require.Empty(t, errs, "nothing kept yet is no error")
		require.Positive(t, ops["flow_find"]+ops["source_find"], "%v", ops)
		require.NoError(t, e.Close())

		rec.mu.Lock()
		rec.storeOps = nil
		rec.mu.Unlock()
		h.mustUpdate()
		ops, errs = rec.ops()
		require.Empty(t, errs)
		for _, op := range []string{"lock", "lock_check", "unlock", "flow_get", "source_ensure", "lookup", "precommit", "commit"} {
			require.Positive(t, ops[op], "%s in %v", op, ops)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, op := range rec.storeOps {
			if op.Op == "precommit" || op.Op == "commit" {
				require.Positive(t, op.Duration, "%s is timed", op.Op)
			}
		}
	})
}
