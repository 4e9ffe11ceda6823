package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/tidemarktype"
)

// Watching is implemented by a SourceImpl whose source has a change stream:
// Watch runs it, calling notify with each changed key, until ctx ends or
// the stream fails. ok is false for a source without one.
type Watching interface {
	Watch(ctx context.Context, notify func(Listed) error) (ok bool, err error)
}

// LiveOptions configure live mode.
type LiveOptions struct {
	// Mode is the mode of the first pass, until a listing pass succeeds;
	// later passes are incremental.
	Mode Mode
	// Refresh, when set, is every source's refresh interval; otherwise a
	// source's own RefreshInterval, or DefaultRefresh.
	Refresh, DefaultRefresh time.Duration
	// Stop, when closed, ends live mode gracefully.
	Stop <-chan struct{}
	// Now, when a value comes on it, makes every source due: the next
	// pass, once the one running is done, lists them all.
	Now <-chan struct{}
	// OnPass, when set, is called after every pass.
	OnPass func(LivePass)
	// Progress and ProgressInterval are passed on to every pass.
	Progress         func(tidemarktype.UpdateStats)
	ProgressInterval time.Duration
	// Confirm is passed on to every pass (see UpdateOptions.Confirm).
	Confirm func(ctx context.Context, d tidemarktype.Deletions) (bool, error)
}

// LivePass is one update made by live mode.
type LivePass struct {
	N       int
	Sources []string
	// Changes counts the announced keys a pass without a listing updated.
	Changes int
	Stats   tidemarktype.UpdateStats
	Err     error
	// Overran says the pass took longer than a refresh interval of one of
	// its sources.
	Overran bool
}

// Live updates every source at once, then lists each source again every
// refresh interval, and updates the keys change streams announce as they
// come. A failed pass is reported and logged, and the next is tried at the
// next interval. It holds the flow's lock for its whole run, so that no
// other update of the flow runs between its passes: it is refused at once
// when another holds it, and it returns when the lock is lost. It returns
// nil when stopped with opts.Stop, and the context's cause when ctx ends.
func (e *Engine) Live(ctx context.Context, opts LiveOptions) error {
	if e.coord == nil {
		release, err := e.lock(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	intervals := make(map[string]time.Duration)
	for _, s := range e.flow.Sources {
		switch {
		case opts.Refresh > 0:
			intervals[s.Name] = opts.Refresh
		case s.RefreshInterval > 0:
			intervals[s.Name] = s.RefreshInterval
		default:
			intervals[s.Name] = opts.DefaultRefresh
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &watchers{signal: make(chan struct{}, 1), pending: make(map[string]map[string]Listed)}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, s := range e.flow.Sources {
		if src, ok := s.Impl.(Watching); ok {
			wg.Go(func() { w.run(ctx, e, s.Name, src, intervals[s.Name]) })
		}
	}

	next := make(map[string]time.Time)
	now := time.Now()
	for name := range intervals {
		next[name] = now
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	mode := opts.Mode
	asked := false // a pass was asked for now (LiveOptions.Now)
	for n := 1; ; n++ {
		if Stopped(opts.Stop) {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// The lock is checked before each pass, not only before writes: a
		// pass that writes nothing must not run on while another process,
		// which took the lock meanwhile, updates the flow.
		if h := e.held.Load(); h != nil {
			if err := e.do(ctx, "check the flow's lock", h.l.Check); err != nil {
				return fmt.Errorf("flow %s: %w: %w", e.flow.Name, ErrLockLost, err)
			}
		}
		var due []string
		now := time.Now()
		for name, at := range next {
			if !at.After(now) {
				due = append(due, name)
			}
		}
		slices.Sort(due)
		uo := UpdateOptions{Mode: mode, Stop: opts.Stop, Progress: opts.Progress, ProgressInterval: opts.ProgressInterval,
			Confirm: opts.Confirm, locked: e.coord == nil}
		pass := LivePass{N: n}
		var announced map[string][]Listed
		switch {
		case len(due) > 0:
			uo.Sources, pass.Sources = due, due
			if e.coord != nil && !asked {
				// Several workers tick: the first lists, the others join
				// its pass or, once it is over, wait for the next.
				for i, name := range due {
					if f := intervals[name] * 9 / 10; i == 0 || f < uo.fresh {
						uo.fresh = f
					}
				}
			}
			// A complete listing covers what they announced so far; a
			// listing that fails gives it back.
			announced = w.take(due...)
		default:
			only := w.take()
			if len(only) == 0 {
				earliest := time.Time{}
				for _, at := range next {
					if earliest.IsZero() || at.Before(earliest) {
						earliest = at
					}
				}
				timer.Reset(time.Until(earliest))
				select {
				case <-timer.C:
				case <-w.signal:
				case <-opts.Now:
					asked = true
					for name := range next {
						next[name] = time.Now()
					}
				case <-opts.Stop:
				case <-ctx.Done():
				}
				n--
				continue
			}
			uo.Only = only
			pass.Sources = slices.Sorted(maps.Keys(only))
			uo.Sources = pass.Sources
			for _, keys := range only {
				pass.Changes += len(keys)
			}
		}
		started := time.Now()
		pass.Stats, pass.Err = e.Update(ctx, uo)
		asked = false
		held := errors.Is(pass.Err, tidemarktype.ErrDeletionsHeld) && !errors.Is(pass.Err, ErrListingIncomplete)
		if (pass.Err == nil || held) && len(uo.Only) == 0 {
			// The first mode holds until a listing pass succeeds; one that
			// only kept rows for a confirmation did all the rest.
			mode = ModeIncremental
		}
		for name, keys := range announced {
			if !pass.Stats.Sources[name].ListingComplete {
				w.giveBack(map[string][]Listed{name: keys})
			}
		}
		elapsed := time.Since(started)
		for _, name := range due {
			next[name] = started.Add(intervals[name])
			if elapsed > intervals[name] {
				pass.Overran = true
				e.log.WarnContext(ctx, "a live pass took longer than the refresh interval; the source is listed again at once",
					"source", name, "took", elapsed.Round(time.Millisecond), "interval", intervals[name])
			}
		}
		switch {
		case pass.Err == nil:
		case errors.Is(pass.Err, ErrStopped) && Stopped(opts.Stop):
			pass.Err = nil
		case ctx.Err() != nil:
		case held:
			// checkDeletions logged it.
		default:
			e.log.ErrorContext(ctx, "a live pass failed; trying again at the next interval", "pass", n, "err", pass.Err)
		}
		if opts.OnPass != nil {
			opts.OnPass(pass)
		}
		if pass.Err != nil && pass.Changes > 0 {
			w.giveBack(uo.Only) // not lost: tried again with the next pass
		}
		if err := fatalPass(n, pass); err != nil {
			return err
		}
	}
}

// fatalPass returns the error of a pass that ends live mode: the flow's
// lock lost (another process may be updating it), or a first pass whose
// deletions were held for a confirmation (a mistyped option, which the
// passes after it would repeat). A failed listing does not end it: an API
// down when live mode starts may be back at the next interval.
func fatalPass(n int, pass LivePass) error {
	if errors.Is(pass.Err, ErrLockLost) || n == 1 && errors.Is(pass.Err, tidemarktype.ErrDeletionsHeld) {
		return pass.Err
	}
	return nil
}

// watchers runs the change streams of a flow's sources, collecting the
// keys they announce until a pass takes them.
type watchers struct {
	signal  chan struct{}
	mu      sync.Mutex
	pending map[string]map[string]Listed
}

// run runs one source's change stream, restarting it after a failure (the
// periodic listing covers the gap).
func (w *watchers) run(ctx context.Context, e *Engine, name string, src Watching, retryAfter time.Duration) {
	for {
		ok, err := src.Watch(ctx, func(l Listed) error {
			w.mu.Lock()
			if w.pending[name] == nil {
				w.pending[name] = make(map[string]Listed)
			}
			if prev, seen := w.pending[name][l.Key]; !seen || !prev.HasOrdinal || l.Ordinal > prev.Ordinal || !l.HasOrdinal {
				w.pending[name][l.Key] = l
			}
			w.mu.Unlock()
			select {
			case w.signal <- struct{}{}:
			default:
			}
			return nil
		})
		if !ok || ctx.Err() != nil {
			return
		}
		e.log.WarnContext(ctx, "a source's change stream ended; restarting it", "source", name, "err", err, "after", retryAfter)
		select {
		case <-time.After(retryAfter):
		case <-ctx.Done():
			return
		}
	}
}

// take returns and forgets the keys announced so far by the sources named,
// or by every source when none is named.
func (w *watchers) take(sources ...string) map[string][]Listed {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(sources) == 0 {
		sources = slices.Collect(maps.Keys(w.pending))
	}
	out := make(map[string][]Listed)
	for _, name := range sources {
		if keys := w.pending[name]; len(keys) > 0 {
			out[name] = slices.Collect(maps.Values(keys))
		}
		delete(w.pending, name)
	}
	return out
}

// giveBack returns keys a failed pass did not update.
func (w *watchers) giveBack(only map[string][]Listed) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, keys := range only {
		if w.pending[name] == nil {
			w.pending[name] = make(map[string]Listed)
		}
		for _, l := range keys {
			if _, newer := w.pending[name][l.Key]; !newer {
				w.pending[name][l.Key] = l
			}
		}
	}
}
