package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/fingerprint"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/tidemarktype"
)

// UpdateOptions configure one update.
type UpdateOptions struct {
	Mode Mode
	// Preview computes what the update would do and writes nothing.
	Preview bool
	// Sources, when set, limits the update to the sources named; the others
	// are left as they are.
	Sources []string
	// Only, when set for a source, replaces its listing with these keys:
	// they are updated as if listed, and nothing of the source is deleted.
	Only map[string][]Listed
	// Stop, when closed, stops the update gracefully: no more keys are
	// listed (the listing counts as incomplete, with ErrStopped, so nothing
	// is deleted), the rows already handed on are finished and committed,
	// and Update returns.
	Stop <-chan struct{}
	// Progress, when set, is called with the counters so far every
	// ProgressInterval (default half a second) while the update runs, from
	// another goroutine.
	Progress         func(Stats)
	ProgressInterval time.Duration
	// Confirm is asked before the rows a complete listing left out are
	// deleted, when that listing named no row at all while the source has
	// rows, or when the source's options changed since its last update. It
	// returns true to delete them. When it is nil or returns false they are
	// kept, counted as Held, and the update ends with a DeletionsHeldError.
	// It is not asked in a preview. It is called from the source's
	// goroutine, while the other sources' rows go on.
	Confirm func(ctx context.Context, d tidemarktype.Deletions) (bool, error)

	// locked says the caller holds the flow's lock for the update: live
	// mode holds it for its whole run.
	locked bool
	// fresh, in a shared update, keeps a source's pass from being opened
	// when its last one started less than fresh ago (live mode: so that
	// its workers list once per interval).
	fresh time.Duration
}

// Stopped reports whether stop is closed; a nil stop never is.
func Stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// ErrStopped is the listing error of an update stopped with
// UpdateOptions.Stop.
var ErrStopped = errors.New("update stopped")

// ErrListingIncomplete is matched by a ListingError.
var ErrListingIncomplete = errors.New("listing incomplete")

// ListingError says a source's listing failed or ended early, so that no
// row of it was deleted.
type ListingError struct {
	Source string
	Err    error
}

// Error says which source's listing failed and that nothing was deleted.
func (e *ListingError) Error() string {
	return fmt.Sprintf("listing source %s failed; nothing was deleted from it: %v", e.Source, e.Err)
}

// Unwrap returns the listing's error.
func (e *ListingError) Unwrap() error { return e.Err }

// Is matches ErrListingIncomplete.
func (e *ListingError) Is(target error) bool { return target == ErrListingIncomplete }

// update is one running update.
type update struct {
	e        *Engine
	opts     UpdateOptions
	setup    *setupState
	counters *counters
	flights  *flights
	// results carries processed rows to the writer.
	results chan *rowResult
	// nudge asks the writer to check whether a source is waiting on it.
	nudge chan struct{}
	// own decides who owns target states.
	own *owners
	// shared says the update shares its passes with other workers: its
	// batches are written under the flow's lock, taken for each.
	shared bool
	// hooks delivers the changes of hooked targets; nil when there are
	// none.
	hooks *deliverer
}

// sourceRun is one source's part of an update.
type sourceRun struct {
	u        *update
	src      *Source
	id       int64
	counters *sourceCounters
	work     chan *item
	// seen holds the ids of the rows listed (or first written) in this
	// update; rows not in it after a complete listing are gone.
	seen idSet
	// pending counts rows handed to workers and not yet finished.
	pending pending
	// waiting is set once nothing more will be handed on until pending
	// drains, so the writer should flush as soon as it holds them all.
	waiting bool
	// inBatch counts the source's rows in the writer's current batch. Only
	// the writer touches it.
	inBatch int
	// failed holds the keys of the rows whose update failed in this update.
	// The deletion scan must not take a row seen for the first time that
	// failed for gone (the writer records it without learning its id), nor
	// retry a failed row.
	failedMu sync.Mutex
	failed   map[string]bool
	// marked holds the ids of rows the writer marked to write a state
	// again, until the scan after the listing hands them on; marks counts
	// them, so that the scan runs again while it grows.
	markedMu sync.Mutex
	marked   map[int64]bool
	marks    atomic.Int64
	// hold says the rows the listing left out are kept: their deletion
	// was not confirmed. held says which deletions.
	hold bool
	held *tidemarktype.Deletions
	// invalid counts the listed keys that cannot be used.
	invalid atomic.Int64
	// sh is the source's part in a shared pass; nil when the update is
	// not shared.
	sh *shareRun
}

// release lets a row handed on go: it is finished, or dropped.
func (r *sourceRun) release(key string) {
	r.u.flights.release(r.flightKey(key))
	r.pending.done()
	if r.sh != nil {
		r.sh.forget(key)
	}
}

// seenKey reports whether the row m was seen in this update: listed, or
// first written.
func (r *sourceRun) seenKey(m *statestore.RowMeta) bool {
	return r.seen.has(m.ID) || r.sh != nil && r.sh.wasListed(m.Key)
}

// flightKey is a row's key in the in-flight set: keys of two sources may be
// equal.
func (r *sourceRun) flightKey(key string) string {
	return fmt.Sprintf("%d\x00%s", r.id, key)
}

// item is a row handed to a worker.
type item struct {
	run    *sourceRun
	key    string
	listed Listed
	// meta is the row as kept; nil for a row seen for the first time.
	meta     *statestore.RowMeta
	tracking statestore.RowTracking
	// gone says the row is known to be gone: no Get.
	gone bool
	// claim is the row's claim in a shared pass; nil for a row the lister
	// hands on itself after its listing, or in an update not shared.
	claim *statestore.ClaimRef
}

// Update runs one update pass over every source.
func (e *Engine) Update(ctx context.Context, opts UpdateOptions) (Stats, error) {
	started := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	u := &update{e: e, opts: opts, counters: newCounters(e.flow), flights: newFlights(),
		results: make(chan *rowResult, 64), nudge: make(chan struct{}, 1)}
	obs := e.opts.Observers
	var runs []*sourceRun
	if obs.PassStarted != nil {
		obs.PassStarted(ctx, tidemarktype.PassStart{Flow: e.flow.Name, Started: started, Preview: opts.Preview})
	}
	finish := func(err error) (Stats, error) {
		st := u.counters.snapshot()
		st.Started, st.Finished = started, time.Now()
		if u.setup != nil {
			st.Setup = u.setup.changes
		}
		if !opts.Preview {
			e.noteUpdates(ctx, runs, st, err)
		}
		if obs.PassFinished != nil {
			obs.PassFinished(ctx, tidemarktype.PassEnd{Flow: e.flow.Name, Stats: st, Err: err, Preview: opts.Preview})
		}
		return st, err
	}

	for _, name := range opts.Sources {
		if !slices.ContainsFunc(e.flow.Sources, func(s *Source) bool { return s.Name == name }) {
			return finish(fmt.Errorf("flow %s has no source %q", e.flow.Name, name))
		}
	}
	u.shared = e.coord != nil && !opts.Preview && len(opts.Only) == 0
	var joinUnlocked func() // the setup's lock of a shared update, until its passes are joined
	defer func() {
		if joinUnlocked != nil {
			joinUnlocked()
		}
	}()
	if !opts.Preview && !opts.locked {
		release, err := e.lock(ctx)
		if err != nil {
			return finish(err)
		}
		if u.shared {
			// A shared update sets up under the lock, then takes it for
			// each batch it writes, in turn with the other workers.
			defer func() {
				if release != nil {
					release()
				}
			}()
		} else {
			defer release()
		}
		setup, err := e.setup(ctx, opts.Preview)
		u.setup = setup
		if err == nil {
			u.own = newOwners(u)
			err = u.own.known(ctx)
		}
		if err != nil {
			return finish(fmt.Errorf("setting up flow %s: %w", e.flow.Name, err))
		}
		if u.shared {
			// The passes are joined under the lock too (see prejoin), and
			// the lock released once they are.
			joinUnlocked = release
			release = nil
		}
	} else {
		setup, err := e.setup(ctx, opts.Preview)
		u.setup = setup
		if err != nil {
			return finish(fmt.Errorf("setting up flow %s: %w", e.flow.Name, err))
		}
		u.own = newOwners(u)
		if err := u.own.known(ctx); err != nil {
			return finish(err)
		}
	}

	if opts.Progress != nil {
		interval := opts.ProgressInterval
		if interval <= 0 {
			interval = 500 * time.Millisecond
		}
		progressDone := make(chan struct{})
		progressStopped := make(chan struct{})
		go func() {
			defer close(progressStopped)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					opts.Progress(u.counters.snapshot())
				case <-progressDone:
					return
				}
			}
		}()
		defer func() {
			close(progressDone)
			<-progressStopped
		}()
	}

	runs = make([]*sourceRun, 0, len(e.flow.Sources))
	for _, src := range e.flow.Sources {
		if len(opts.Sources) > 0 && !slices.Contains(opts.Sources, src.Name) {
			continue
		}
		id, err := e.sourceID(ctx, src.Name, opts.Preview)
		if err != nil {
			return finish(err)
		}
		r := &sourceRun{u: u, src: src, id: id, counters: u.counters.sources[src.Name],
			work: make(chan *item, src.MaxInFlight), failed: make(map[string]bool)}
		if u.shared {
			r.sh = newShareRun(r)
			if joinUnlocked != nil {
				if err := r.sh.prejoin(ctx); err != nil {
					return finish(err)
				}
			}
		}
		runs = append(runs, r)
	}
	if joinUnlocked != nil {
		joinUnlocked()
		joinUnlocked = nil
	}

	u.hooks = newDeliverer(u)
	u.hooks.start(ctx)
	w := newWriter(u, runs)
	writerDone := make(chan error, 1)
	go func() {
		err := w.run(ctx)
		if err != nil {
			cancel(err)
		}
		writerDone <- err
	}()

	g, gctx := errgroup.WithContext(ctx)
	for _, r := range runs {
		g.Go(func() error { return r.run(gctx) })
	}
	srcErr := g.Wait()
	close(u.results)
	writerErr := <-writerDone
	u.hooks.finish(ctx)

	var listingErrs []error
	for _, r := range runs {
		if err := r.counters.listingErr(); err != nil {
			listingErrs = append(listingErrs, &ListingError{Source: r.src.Name, Err: err})
		}
		if r.held != nil {
			listingErrs = append(listingErrs, &tidemarktype.DeletionsHeldError{Deletions: *r.held})
		}
	}
	switch {
	case writerErr != nil:
		return finish(writerErr)
	case srcErr != nil:
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return finish(cause)
		}
		return finish(srcErr)
	case ctx.Err() != nil:
		return finish(context.Cause(ctx))
	}
	if len(listingErrs) == 0 && Stopped(opts.Stop) {
		// Stopped after the listing: rows still waiting were left.
		return finish(fmt.Errorf("flow %s: %w", e.flow.Name, ErrStopped))
	}
	return finish(errors.Join(listingErrs...))
}

// noteUpdates records each source's part of an update that ran, for
// Status. A failure to record it is logged: the update's own outcome
// stands.
func (e *Engine) noteUpdates(ctx context.Context, runs []*sourceRun, st Stats, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, r := range runs {
		u := tidemarktype.SourceUpdate{Started: st.Started, Finished: st.Finished, Stats: st.Sources[r.src.Name]}
		if err != nil {
			u.Error = err.Error()
			u.Stopped = errors.Is(err, ErrStopped)
		}
		enc, jerr := json.Marshal(u)
		if jerr == nil {
			jerr = e.write(ctx, "record the last update", func(ctx context.Context) error {
				return e.store.SourceNotesSave(ctx, statestore.SourceNotesSaveParams{SourceID: r.id, LastUpdate: enc})
			})
		}
		if jerr != nil {
			e.log.WarnContext(ctx, "could not record the source's last update", "source", r.src.Name, "err", jerr)
		}
	}
}

// lock takes the flow's update lock, which the engine's writes check
// (see write) until release.
func (e *Engine) lock(ctx context.Context) (release func(), err error) {
	var l statestore.Lock
	for wait, waited := time.Millisecond, time.Duration(0); ; {
		err = e.do(ctx, "lock flow", func(ctx context.Context) (err error) {
			l, err = e.store.FlowLock(ctx, statestore.FlowLockParams{Flow: e.flow.Name})
			return err
		})
		if e.coord == nil || !errors.Is(err, statestore.ErrLocked) {
			break
		}
		// A shared engine waits its turn: the other workers hold the
		// lock for a batch at a time.
		if waited < 10*time.Second && waited+wait >= 10*time.Second {
			e.log.InfoContext(ctx, "waiting for the flow's lock", "flow", e.flow.Name, "err", err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		waited += wait
		wait = min(2*wait, 10*time.Millisecond)
	}
	if errors.Is(err, statestore.ErrLocked) {
		return nil, fmt.Errorf("flow %s: %w (%w)", e.flow.Name, ErrFlowLocked, err)
	}
	if err != nil {
		return nil, err
	}
	if e.coord == nil {
		if err := e.passRunning(ctx); err != nil {
			l.Release()
			return nil, err
		}
	}
	h := &heldLock{l: l}
	e.held.Store(h)
	return func() {
		e.held.CompareAndSwap(h, nil)
		l.Release()
	}, nil
}

// passRunning fails with ErrFlowLocked when shared workers are in a pass of
// one of the flow's sources: they hold the flow's lock only while they
// write a batch.
func (e *Engine) passRunning(ctx context.Context) error {
	if e.passes == nil {
		return nil
	}
	for _, src := range e.flow.Sources {
		id, err := e.sourceID(ctx, src.Name, true)
		if err != nil {
			return fmt.Errorf("flow %s: %w", e.flow.Name, err)
		}
		if id == 0 {
			continue // never updated
		}
		var running bool
		if err := e.do(ctx, "look for a shared pass", func(ctx context.Context) (err error) {
			running, err = e.passes.PassRunning(ctx, statestore.PassRunningParams{SourceID: id})
			return err
		}); err != nil {
			return fmt.Errorf("flow %s: %w", e.flow.Name, err)
		}
		if running {
			return fmt.Errorf("flow %s: %w (shared workers are in a pass of source %s)", e.flow.Name, ErrFlowLocked, src.Name)
		}
	}
	return nil
}

// heldLock is the lock the engine holds.
type heldLock struct{ l statestore.Lock }

// write runs op, a write to the state store or a target, as do does, after
// checking in each attempt that the flow's lock is still held: a write
// retried after the database came back must not go through if another
// process may have taken the lock meanwhile.
func (e *Engine) write(ctx context.Context, what string, op func(ctx context.Context) error) error {
	return e.do(ctx, what, func(ctx context.Context) error {
		if h := e.held.Load(); h != nil {
			if err := h.l.Check(ctx); err != nil {
				return fmt.Errorf("%w: %w", ErrLockLost, err)
			}
		}
		return op(ctx)
	})
}

// ErrFlowLocked says another update of the flow is running.
var ErrFlowLocked = errors.New("another update of the flow is running")

// ErrLockLost says the flow's update lock went while an update held it
// (its database session ended: the server restarted, the connection
// dropped), so another process may be updating the flow: the update
// stopped before writing again.
var ErrLockLost = errors.New("the flow's update lock was lost")

// sourceID returns the id of a source in the state store. Read-only, it
// returns 0 for a source never updated: it has no row.
func (e *Engine) sourceID(ctx context.Context, name string, readOnly bool) (int64, error) {
	var id int64
	err := e.do(ctx, "register source", func(ctx context.Context) (err error) {
		p := statestore.SourceEnsureParams{Flow: e.flow.Name, Name: name}
		if readOnly {
			id, err = e.store.SourceFind(ctx, p)
			if errors.Is(err, statestore.ErrNotFound) {
				id, err = 0, nil
			}
			return err
		}
		id, err = e.store.SourceEnsure(ctx, p)
		return err
	})
	return id, err
}

// run lists the source, hands changed rows to workers, and after a complete
// listing finds the rows that are gone.
func (r *sourceRun) run(ctx context.Context) error {
	if r.sh != nil {
		return r.runShared(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	for range r.src.MaxInFlight {
		g.Go(func() error { return r.worker(gctx) })
	}
	err := r.list(gctx)
	if err == nil && r.counters.listingComplete.Load() {
		err = r.afterListing(gctx)
	}
	if err == nil {
		err = r.drain(gctx)
	}
	close(r.work)
	if werr := g.Wait(); err == nil {
		err = werr
	}
	return err
}

// drain waits until every row handed on has been written.
func (r *sourceRun) drain(ctx context.Context) error {
	r.setWaiting(true)
	defer r.setWaiting(false)
	select {
	case r.u.nudge <- struct{}{}:
	default:
	}
	select {
	case <-r.pending.wait():
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *sourceRun) setWaiting(v bool) {
	r.pending.mu.Lock()
	r.waiting = v
	r.pending.mu.Unlock()
}

// listLinger is how long a partial chunk of listed keys waits for more
// before it is looked up anyway, so that a slow listing does not hold rows
// back.
const listLinger = 20 * time.Millisecond

// list streams the listing in chunks. A listing error is recorded, not
// returned: the rows listed so far are still processed, but none deleted.
func (r *sourceRun) list(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type listed struct {
		l   Listed
		err error
	}
	// The listing runs in its own goroutine so that a partial chunk can be
	// dispatched while it stalls. It is joined before list returns.
	ch := make(chan listed, r.u.e.opts.LookupChunk)
	listerDone := make(chan struct{})
	defer func() {
		cancel()
		<-listerDone
	}()
	go func() {
		defer close(listerDone)
		defer close(ch)
		defer func() {
			if p := recover(); p != nil {
				r.u.e.log.ErrorContext(ctx, "the source's listing panicked", "source", r.src.Name, "panic", p, "stack", string(debug.Stack()))
				select {
				case ch <- listed{err: fmt.Errorf("listing panicked: %v", p)}:
				case <-ctx.Done():
				}
			}
		}()
		listing := r.src.Impl.List(ctx)
		if only, ok := r.u.opts.Only[r.src.Name]; ok {
			listing = func(yield func(Listed, error) bool) {
				for _, l := range only {
					if !yield(l, nil) {
						return
					}
				}
			}
		}
		for l, err := range listing {
			select {
			case ch <- listed{l, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	stop := r.u.opts.Stop // nil blocks for ever
	chunkSize := r.u.e.opts.LookupChunk
	chunk := make([]Listed, 0, chunkSize)
	linger := time.NewTimer(listLinger)
	defer linger.Stop()
	flush := func() error {
		err := r.dispatch(ctx, chunk)
		chunk = chunk[:0]
		return err
	}
	for {
		var (
			item    listed
			ok      bool
			stopped bool
		)
		select {
		case <-stop:
			stopped = true
		case item, ok = <-ch:
		default:
			if len(chunk) == 0 {
				select {
				case item, ok = <-ch:
				case <-stop:
					stopped = true
				}
				break
			}
			linger.Reset(listLinger)
			select {
			case item, ok = <-ch:
			case <-stop:
				stopped = true
			case <-linger.C:
				if err := flush(); err != nil {
					return err
				}
				continue
			}
		}
		if stopped {
			r.counters.failListing(ErrStopped)
			r.u.e.log.InfoContext(ctx, "update stopped; the rows in hand are finished, the rest is left for the next update", "source", r.src.Name)
			break
		}
		if !ok {
			break
		}
		if item.err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			r.counters.failListing(item.err)
			r.u.e.log.ErrorContext(ctx, "listing failed; rows of this source will not be deleted in this update", "source", r.src.Name, "err", item.err)
			break
		}
		r.counters.listed.Add(1)
		if item.l.Invalid != nil {
			r.invalid.Add(1)
			r.u.counters.rowError(r.src.Name, item.l.Key, item.l.Invalid)
			r.u.e.log.WarnContext(ctx, "a listed key cannot be used; the row fails", "source", r.src.Name, "key", item.l.Key, "err", item.l.Invalid)
			continue
		}
		chunk = append(chunk, item.l)
		if len(chunk) == chunkSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := flush(); err != nil {
		return err
	}
	if _, only := r.u.opts.Only[r.src.Name]; r.counters.listingErr() == nil && !only {
		r.counters.listingComplete.Store(true)
	}
	return nil
}

// dispatch looks a chunk of listed keys up in the state store, skips those
// unchanged, and hands the rest to workers with their tracking.
func (r *sourceRun) dispatch(ctx context.Context, chunk []Listed) error {
	if len(chunk) == 0 {
		return nil
	}
	u := r.u
	keys := make([]string, 0, len(chunk))
	kept := make([]Listed, 0, len(chunk))
	for _, l := range chunk {
		keys = append(keys, l.Key)
		// A key already in flight (listed twice) is updated once; it is
		// still looked up, so that it counts as seen.
		if u.flights.acquire(r.flightKey(l.Key)) {
			kept = append(kept, l)
		}
	}
	var metas []statestore.RowMeta
	if err := u.e.do(ctx, "look up rows", func(ctx context.Context) (err error) {
		metas, err = u.e.store.RowLookup(ctx, statestore.RowLookupParams{SourceID: r.id, Keys: keys})
		return err
	}); err != nil {
		return err
	}
	byKey := make(map[string]*statestore.RowMeta, len(metas))
	for i := range metas {
		byKey[metas[i].Key] = &metas[i]
		r.seen.add(metas[i].ID)
	}
	items := make([]*item, 0, len(kept))
	for _, l := range kept {
		m := byKey[l.Key]
		if r.skip(l, m) {
			r.counters.unchanged.Add(1)
			u.flights.release(r.flightKey(l.Key))
			if done := u.e.opts.Observers.RowDone; done != nil {
				done(ctx, tidemarktype.RowDone{Source: r.src.Name, Key: l.Key, Outcome: tidemarktype.OutcomeUnchanged})
			}
			continue
		}
		items = append(items, &item{run: r, key: l.Key, listed: l, meta: m})
	}
	if r.sh != nil {
		r.sh.noteListed(chunk)
		return r.sh.enqueue(ctx, items)
	}
	if err := r.loadTracking(ctx, items); err != nil {
		return err
	}
	return r.handOn(ctx, items)
}

// skip is the first rung of the skip ladder: a row whose stored ordinal is
// at least the listed one (or whose cheap fingerprint matches), processed
// with the current logic and not invalidated since, needs no Get.
func (r *sourceRun) skip(l Listed, m *statestore.RowMeta) bool {
	u := r.u
	if u.opts.Mode != ModeIncremental || m == nil || m.Staged {
		return false
	}
	if !bytes.Equal(m.LogicFP, u.e.logicFP) || m.Gen < u.setup.reprocessBelow {
		return false
	}
	if m.Ordinal != nil && l.HasOrdinal && r.src.Impl.ProvidesOrdinal() && *m.Ordinal >= l.Ordinal {
		return true
	}
	return l.Fingerprint != nil && m.ContentFP != nil && bytes.Equal(m.ContentFP, l.Fingerprint)
}

// loadTracking loads the tracking of the items' rows in one call.
func (r *sourceRun) loadTracking(ctx context.Context, items []*item) error {
	ids := make([]int64, 0, len(items))
	for _, it := range items {
		if it.meta != nil {
			ids = append(ids, it.meta.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var loaded []statestore.RowTracking
	if err := r.u.e.do(ctx, "load rows", func(ctx context.Context) (err error) {
		loaded, err = r.u.e.store.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
		return err
	}); err != nil {
		return err
	}
	byID := make(map[int64]statestore.RowTracking, len(loaded))
	for _, t := range loaded {
		byID[t.ID] = t
	}
	for _, it := range items {
		if it.meta != nil {
			it.tracking = byID[it.meta.ID]
		}
	}
	return nil
}

func (r *sourceRun) handOn(ctx context.Context, items []*item) error {
	r.pending.add(len(items))
	for i, it := range items {
		select {
		case r.work <- it:
		case <-ctx.Done():
			for _, rest := range items[i:] {
				r.release(rest.key)
			}
			return context.Cause(ctx)
		}
	}
	return nil
}

// afterListing runs once a listing completed: it pages through the rows
// kept for the source and hands on, as gone, those the listing did not name,
// and, to be processed again, rows marked to write a state another row
// stopped declaring. Processing those may mark more rows, so it goes on
// until a pass over the rows finds nothing marked.
func (r *sourceRun) afterListing(ctx context.Context) error {
	if err := r.drain(ctx); err != nil {
		return err
	}
	if err := r.checkDeletions(ctx); err != nil {
		return err
	}
	for range 10 {
		if err := r.drain(ctx); err != nil {
			return err
		}
		marks := r.marks.Load()
		if marks == 0 && r.counters.deleted.Load() == 0 {
			// The ids seen are ids of the source's rows (none was deleted
			// in this update): when there are as many as the source has
			// rows, every row was seen, and with none marked the scan
			// would hand nothing on.
			all, err := r.rowCount(ctx)
			if err != nil {
				return err
			}
			if r.seen.len() == all && r.marks.Load() == 0 {
				return nil
			}
		}
		handed, err := r.scanRows(ctx)
		if err != nil {
			return err
		}
		if err := r.drain(ctx); err != nil {
			return err
		}
		if handed == 0 && r.marks.Load() == marks {
			return nil
		}
	}
	return nil
}

// checkDeletions runs once a complete listing's rows are written, before
// the rows it left out are deleted: when the listing named no row, or the
// source's options changed since its last update, and rows would go, it
// asks UpdateOptions.Confirm, and without a yes holds them. It records the
// source's options once their deletions may go ahead.
func (r *sourceRun) checkDeletions(ctx context.Context) error {
	u := r.u
	var notes statestore.SourceNotes
	if err := u.e.do(ctx, "read source notes", func(ctx context.Context) (err error) {
		notes, err = u.e.store.SourceNotesGet(ctx, statestore.SourceStatusParams{SourceID: r.id})
		return err
	}); err != nil {
		return err
	}
	now := r.src.Options
	var before map[string]string
	if notes.Options != nil {
		if err := json.Unmarshal(notes.Options, &before); err != nil {
			return fmt.Errorf("source %s: decoding the options kept for it: %w", r.src.Name, err)
		}
	}
	changed := notes.Options != nil && !maps.Equal(before, now)
	usable := r.counters.listed.Load() - r.invalid.Load()
	if usable == 0 || changed {
		all, gone, err := r.countGone(ctx)
		if err != nil {
			return err
		}
		d := tidemarktype.Deletions{Source: r.src.Name, Listed: usable, Tracked: all, Deleting: gone}
		if gone > 0 {
			if changed {
				d.OptionsBefore, d.OptionsNow = before, now
			}
			if u.opts.Preview {
				// Shown as held, as the update would keep them unless
				// confirmed; nobody is asked.
				r.hold = true
				r.counters.held.Store(d.Deleting)
				return nil
			}
			ok := false
			if u.opts.Confirm != nil {
				if ok, err = u.opts.Confirm(ctx, d); err != nil {
					return fmt.Errorf("source %s: confirming deletions: %w", r.src.Name, err)
				}
			}
			if !ok {
				r.hold, r.held = true, &d
				r.counters.held.Store(d.Deleting)
				u.e.log.WarnContext(ctx, "rows the listing left out are kept: deleting them needs a confirmation", "source", r.src.Name,
					"rows", d.Deleting, "reason", d.Reason())
				return nil
			}
		}
	}
	// Recorded the first time, and once a change may go ahead (a source
	// that stops describing its options records that too).
	if u.opts.Preview || !changed && (notes.Options != nil || now == nil) {
		return nil
	}
	enc, err := json.Marshal(now)
	if err != nil {
		return fmt.Errorf("source %s: encoding its options: %w", r.src.Name, err)
	}
	return u.e.write(ctx, "save source options", func(ctx context.Context) error {
		return u.e.store.SourceNotesSave(ctx, statestore.SourceNotesSaveParams{SourceID: r.id, Options: enc})
	})
}

// countGone pages through the source's rows and counts them, and those
// the deletion pass would hand on as gone: not seen in this update, nor
// failed in it.
func (r *sourceRun) countGone(ctx context.Context) (all, gone int64, err error) {
	err = r.eachPage(ctx, func(page []statestore.RowMeta) error {
		for i := range page {
			all++
			if !r.seenKey(&page[i]) && !r.isFailed(page[i].Key) {
				gone++
			}
		}
		return nil
	})
	return all, gone, err
}

// eachPage pages through the source's rows by ascending id, handing each
// page to fn.
func (r *sourceRun) eachPage(ctx context.Context, fn func(page []statestore.RowMeta) error) error {
	return r.u.e.eachRowPage(ctx, r.id, fn)
}

// eachRowPage pages through the rows of source id by ascending id, handing
// each page to fn.
func (e *Engine) eachRowPage(ctx context.Context, id int64, fn func(page []statestore.RowMeta) error) error {
	var after int64
	for {
		var page []statestore.RowMeta
		if err := e.do(ctx, "scan rows", func(ctx context.Context) (err error) {
			page, err = e.store.RowScan(ctx, statestore.RowScanParams{SourceID: id, AfterID: after, Limit: 1000})
			return err
		}); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].ID
		if err := fn(page); err != nil {
			return err
		}
	}
}

// rowCount returns the number of the source's rows in the state store.
func (r *sourceRun) rowCount(ctx context.Context) (int64, error) {
	var n int64
	err := r.u.e.do(ctx, "count rows", func(ctx context.Context) (err error) {
		n, err = r.u.e.store.RowCount(ctx, statestore.RowCountParams{SourceID: r.id})
		return err
	})
	return n, err
}

// scanRows pages through the source's rows once, handing on the gone and
// the marked ones, and returns how many it handed on.
func (r *sourceRun) scanRows(ctx context.Context) (int, error) {
	u := r.u
	handed := 0
	err := r.eachPage(ctx, func(page []statestore.RowMeta) error {
		var items []*item
		for i := range page {
			m := &page[i]
			seen := r.seenKey(m)
			if r.isFailed(m.Key) || seen && !(m.Staged && r.takeMarked(m.ID)) || !seen && r.hold || !u.flights.acquire(r.flightKey(m.Key)) {
				continue
			}
			// Unseen: gone; it counts as seen from now on. Seen: marked to
			// write a state again.
			r.seen.add(m.ID)
			items = append(items, &item{run: r, key: m.Key, meta: m, gone: !seen})
		}
		if err := r.loadTracking(ctx, items); err != nil {
			return err
		}
		if err := r.handOn(ctx, items); err != nil {
			return err
		}
		handed += len(items)
		return nil
	})
	return handed, err
}

// mark records that row id must write a state again.
func (r *sourceRun) mark(id int64) {
	r.markedMu.Lock()
	defer r.markedMu.Unlock()
	if r.marked == nil {
		r.marked = make(map[int64]bool)
	}
	r.marked[id] = true
	r.marks.Add(1)
}

// takeMarked reports whether row id is marked, unmarking it.
func (r *sourceRun) takeMarked(id int64) bool {
	r.markedMu.Lock()
	defer r.markedMu.Unlock()
	ok := r.marked[id]
	delete(r.marked, id)
	return ok
}

func (r *sourceRun) isFailed(key string) bool {
	r.failedMu.Lock()
	defer r.failedMu.Unlock()
	return r.failed[key]
}

func (r *sourceRun) markFailed(key string) {
	r.failedMu.Lock()
	defer r.failedMu.Unlock()
	r.failed[key] = true
}

// worker fetches and processes rows until the work channel closes.
func (r *sourceRun) worker(ctx context.Context) error {
	var h fingerprint.Hasher
	for it := range r.work {
		if Stopped(r.u.opts.Stop) {
			// A stopped update finishes the rows in hand, not those
			// waiting for a worker: they are redone next time.
			r.release(it.key)
			continue
		}
		res := r.process(ctx, it, &h)
		if res == nil { // cancelled
			r.release(it.key)
			continue
		}
		res.claim = it.claim
		select {
		case r.u.results <- res:
		case <-ctx.Done():
			r.release(it.key)
		}
	}
	return nil
}
