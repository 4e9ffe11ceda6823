package tidemark

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/tidemarktype"
)

// DefaultRefreshInterval is how often live mode lists a source that sets no
// RefreshInterval of its own, unless LiveOptions.Refresh says otherwise.
const DefaultRefreshInterval = time.Minute

// LiveOptions configure live mode.
type LiveOptions struct {
	// Mode is the mode of the first pass; later passes are incremental.
	Mode Mode
	// Refresh, when set, is every source's refresh interval, overriding the
	// sources' own RefreshInterval.
	Refresh time.Duration
	// Stop, when closed, ends live mode gracefully: a pass in progress
	// finishes what it has in hand, commits it, and Live returns nil.
	Stop <-chan struct{}
	// Now, when a value comes on it, asks for a pass of every source: once
	// the pass running, if any, is done, the next lists them all.
	Now <-chan struct{}
	// OnPass, when set, is called after every pass.
	OnPass func(Pass)
	// Progress and ProgressInterval are passed on to every pass.
	Progress         func(*tidemarktype.UpdateStats)
	ProgressInterval time.Duration
	// Confirm is asked, pass by pass, before suspicious deletions, as
	// UpdateOptions.Confirm is.
	Confirm func(ctx context.Context, d tidemarktype.Deletions) (bool, error)
}

// Pass is one update made by live mode.
type Pass struct {
	// N counts the passes of this run of live mode, from 1.
	N int
	// Sources are the sources the pass updated.
	Sources []string
	// Changes is the number of keys announced by change streams that the
	// pass updated without a listing; 0 for a listing pass.
	Changes int
	// Stats are the pass's counts; Err its error, if any (live mode goes
	// on after a failed pass and tries again at the next interval).
	Stats *tidemarktype.UpdateStats
	Err   error
	// Overran says the pass took longer than a refresh interval of one of
	// its sources: the source is listed again at once, and changes are
	// seen later than the interval promises.
	Overran bool
}

// Duration is how long the pass took.
func (p Pass) Duration() time.Duration { return p.Stats.Finished.Sub(p.Stats.Started) }

// Live keeps the flow's targets up to date until ctx ends or opts.Stop is
// closed. It updates every source at once, then lists each source again
// every refresh interval, and, for a source with a change stream (a
// Watcher), updates the keys it announces as they come, without waiting
// for the next listing. A pass that fails (a listing error, a fault that
// outlasted its retries) is reported to OnPass and logged, and the next is
// tried at the next interval; a pass that overruns an interval is logged as
// a warning.
//
// Live holds the flow's lock for its whole run, so that no other update of
// the flow runs between its passes: it returns at once, with an error
// matching ErrFlowLocked, when another update holds it, and it returns
// when the lock is lost. It also returns after a first pass whose
// deletions were held for a confirmation (ErrDeletionsHeld): a mistyped
// option would be held again at every pass. Live returns nil when stopped
// with opts.Stop, and the context's cause when ctx ends.
func (e *Engine) Live(ctx context.Context, opts LiveOptions) error {
	if opts.Refresh < 0 {
		return fmt.Errorf("tidemark: LiveOptions.Refresh must not be negative, got %s", opts.Refresh)
	}
	lo := engine.LiveOptions{Mode: engine.Mode(opts.Mode), Refresh: opts.Refresh, DefaultRefresh: DefaultRefreshInterval,
		Stop: opts.Stop, Now: opts.Now, ProgressInterval: opts.ProgressInterval, Confirm: opts.Confirm}
	if opts.Progress != nil {
		lo.Progress = func(st tidemarktype.UpdateStats) { opts.Progress(&st) }
	}
	if opts.OnPass != nil {
		lo.OnPass = func(p engine.LivePass) {
			opts.OnPass(Pass{N: p.N, Sources: p.Sources, Changes: p.Changes, Stats: &p.Stats, Err: publicError(p.Err), Overran: p.Overran})
		}
	}
	return publicError(e.eng.Live(ctx, lo))
}
