package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/tidemarktype"
)

// SharedOptions make an engine one of several workers that update a flow
// at once, on one machine or many, sharing each pass's work through the
// state store (a statestore.Coordinator: PostgreSQL or Redis). Per source,
// a pass is listed by one worker, which holds the pass's listing lease;
// the rows that need work are shared out as claims, each processed by one
// worker at a time; the lister deletes what the listing left out once
// every claim is done. Leases and claims expire unless renewed, so that
// the work of a worker that dies goes to the others, and each taking
// advances a fence that a commit must match, so that a worker that wakes
// up after its claims were taken commits nothing. The writes of batches
// take the flow's lock in turn, one worker at a time: what scales out is
// the fetching and processing. See docs/scale-out.md.
type SharedOptions struct {
	// Enabled shares the work; without it the engine updates alone, under
	// the flow's lock, as with SQLite.
	Enabled bool
	// Worker names this worker among the flow's workers; default: the
	// host name, the process id and a random suffix.
	Worker string
	// LeaseTTL is how long a listing lease or a claim lasts unless renewed
	// (every third of it): how long the work of a worker that died waits
	// for another. Default 30s.
	LeaseTTL time.Duration
	// Poll is how often an idle worker looks for claims; once the listing
	// is complete, twice as long. Default 50ms.
	Poll time.Duration
}

// DefaultLeaseTTL is SharedOptions.LeaseTTL's default.
const DefaultLeaseTTL = 30 * time.Second

func (o *SharedOptions) defaults() error {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Poll == 0 {
		o.Poll = 50 * time.Millisecond
	}
	switch {
	case o.LeaseTTL < 100*time.Millisecond:
		return fmt.Errorf("Shared.LeaseTTL must be at least 100ms, got %s", o.LeaseTTL)
	case o.Poll <= 0:
		return fmt.Errorf("Shared.Poll must be positive, got %s", o.Poll)
	}
	if o.Worker == "" {
		o.Worker = defaultWorker()
	}
	return nil
}

// defaultWorker makes up a worker's name: the host's, the process id and
// a random suffix.
func defaultWorker() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Worker returns the name under which the engine shares its flow's work;
// empty when it does not.
func (e *Engine) Worker() string {
	if e.coord == nil {
		return ""
	}
	return e.opts.Shared.Worker
}

// shareRun is a source run's part in a shared pass.
type shareRun struct {
	r *sourceRun

	mu sync.Mutex
	// pass is the pass joined; lister says this worker holds its listing
	// lease, with the pass's Fence.
	pass   statestore.Pass
	lister bool
	// held are the claims in hand, by key with their fences, until their
	// rows are committed or dropped.
	held map[string]int64
	// listed holds the keys the lister's listing named, which the
	// deletion scan must not take for gone: other workers insert rows
	// first seen, whose ids the lister does not learn.
	listed map[string]struct{}
	// freed is signalled when claims leave hand.
	freed chan struct{}
	// over says this worker finished the pass.
	over bool
	// full says the claims in hand are at their bound, or that there is
	// nothing more to claim for now: the writer writes its batch now,
	// rather than after its delay.
	full atomic.Bool
	// first is the pass joined under the setup's lock (see prejoin), which
	// the claim loop starts from; nil to join when the loop starts.
	first *statestore.Pass
}

func newShareRun(r *sourceRun) *shareRun {
	return &shareRun{r: r, held: make(map[string]int64), freed: make(chan struct{}, 1)}
}

// sharedListed is a listed entry as a claim carries it.
type sharedListed struct {
	Ordinal     int64  `json:"o,omitempty"`
	HasOrdinal  bool   `json:"h,omitempty"`
	Fingerprint []byte `json:"f,omitempty"`
}

func encodeListed(l Listed) ([]byte, error) {
	return json.Marshal(sharedListed{Ordinal: l.Ordinal, HasOrdinal: l.HasOrdinal, Fingerprint: l.Fingerprint})
}

func decodeListed(key string, b []byte) (Listed, error) {
	var s sharedListed
	if err := json.Unmarshal(b, &s); err != nil {
		return Listed{}, fmt.Errorf("decoding the claim of %q: %w", key, err)
	}
	return Listed{Key: key, Ordinal: s.Ordinal, HasOrdinal: s.HasOrdinal, Fingerprint: s.Fingerprint}, nil
}

// claim returns the claim held on key, nil if none.
func (sh *shareRun) claim(key string) *statestore.ClaimRef {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	f, ok := sh.held[key]
	if !ok {
		return nil
	}
	return &statestore.ClaimRef{Key: key, Fence: f}
}

// forget lets the claims on keys go from hand.
func (sh *shareRun) forget(keys ...string) {
	sh.mu.Lock()
	for _, k := range keys {
		delete(sh.held, k)
	}
	sh.mu.Unlock()
	select {
	case sh.freed <- struct{}{}:
	default:
	}
}

func (sh *shareRun) inHand() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.held)
}

func (sh *shareRun) refs() []statestore.ClaimRef {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]statestore.ClaimRef, 0, len(sh.held))
	for k, f := range sh.held {
		out = append(out, statestore.ClaimRef{Key: k, Fence: f})
	}
	return out
}

func (sh *shareRun) passID() int64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.pass.ID
}

// lease returns the listing lease held, and whether one is.
func (sh *shareRun) lease() (statestore.PassLeaseParams, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	o := sh.r.u.e.opts.Shared
	return statestore.PassLeaseParams{PassID: sh.pass.ID, Worker: o.Worker, Fence: sh.pass.Fence, TTL: o.LeaseTTL}, sh.lister
}

func (sh *shareRun) wasListed(key string) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.listed[key]
	return ok
}

// rejoinFresh is the PassJoinParams.Fresh of a worker that joins its pass
// again: longer than any pass, so that no pass is opened.
const rejoinFresh = 100 * 365 * 24 * time.Hour

// errLeaseLost cancels a lister's work when its lease was taken.
var errLeaseLost = errors.New("the listing lease was taken by another worker")

// runShared is run for a shared pass: the source's workers process the
// claims this worker takes, and the lister, if this worker is it, lists.
func (r *sourceRun) runShared(ctx context.Context) error {
	sh := r.sh
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	werrs := make(chan error, r.src.MaxInFlight)
	for range r.src.MaxInFlight {
		wg.Go(func() {
			if err := r.worker(ctx); err != nil {
				werrs <- err
				cancel(err)
			}
		})
	}
	renewDone := make(chan struct{})
	renewCtx, stopRenew := context.WithCancel(ctx)
	go func() {
		defer close(renewDone)
		sh.renewClaims(renewCtx)
	}()
	err := sh.loop(ctx)
	if err == nil {
		err = r.drain(ctx)
	}
	close(r.work)
	wg.Wait()
	stopRenew()
	<-renewDone
	select {
	case werr := <-werrs:
		if err == nil {
			err = werr
		}
	default:
	}
	return err
}

// loop joins the source's pass and takes claims until the pass is
// finished, the update stopped, or the context is done.
func (sh *shareRun) loop(ctx context.Context) (err error) {
	r := sh.r
	e := r.u.e
	o := e.opts.Shared
	stop := r.u.opts.Stop
	var (
		leading  chan error // the lister's outcome, while it lists
		leadErr  error
		idle     = o.Poll
		rejoin   bool // joined once already
		joinedAt time.Time
	)
	// The lister's part stops with this loop when the loop fails: else it
	// would wait for claims this worker holds and will not finish.
	leadCtx, stopLead := context.WithCancelCause(ctx)
	defer stopLead(nil)
	join := func() (bool, error) {
		fresh := r.u.opts.fresh
		if rejoin {
			// Joining again must not open a pass: if the pass joined is
			// finished, this worker's part is over.
			fresh = rejoinFresh
		}
		var (
			p   statestore.Pass
			err error
		)
		if sh.first != nil && !rejoin {
			p = *sh.first
		} else if p, err = sh.joinMode(ctx, fresh, rejoin); err != nil {
			return false, err
		}
		joinedAt, rejoin = time.Now(), true
		sh.mu.Lock()
		defer sh.mu.Unlock()
		switch {
		case p.ID == 0:
			return false, nil // a pass ran a moment ago
		case sh.pass.ID != 0 && p.ID != sh.pass.ID:
			return false, nil // the pass joined is finished
		}
		sh.pass = p
		if p.Lister && leading == nil {
			sh.lister = true
			leading = make(chan error, 1)
			go func() { leading <- sh.lead(leadCtx) }()
		}
		return true, nil
	}
	defer func() {
		if leading != nil {
			if err != nil {
				stopLead(err)
			}
			<-leading
		}
	}()
	if ok, err := join(); !ok || err != nil {
		return err
	}
	if _, lister := sh.lease(); !lister {
		e.log.InfoContext(ctx, "joined a pass another worker lists", "source", r.src.Name, "pass", sh.passID())
	}
	for {
		if Stopped(stop) || ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// Claims are taken MaxInFlight at a time, which handOn gives the
		// source's workers as they free up, up to eight times that in hand:
		// the rest waits in the writer's batch.
		limit := min(r.src.MaxInFlight, 8*r.src.MaxInFlight-sh.inHand())
		if limit <= 0 {
			// The claims in hand wait for the writer: have it write them
			// now rather than after its delay.
			sh.flush()
			select {
			case <-sh.freed:
			case <-stop:
			case <-ctx.Done():
			}
			sh.full.Store(false)
			continue
		}
		n, err := sh.take(ctx, limit)
		if err != nil {
			return err
		}
		if n > 0 {
			idle = o.Poll
			continue
		}
		if sh.inHand() > 0 {
			// Nothing more to claim for now: the rows in hand need not
			// wait for the writer's delay.
			sh.flush()
		}
		if leading != nil {
			select {
			case leadErr = <-leading:
				leading = nil
				if leadErr != nil {
					return leadErr
				}
				if sh.finished() {
					return nil
				}
			default:
			}
		}
		pr, err := sh.progress(ctx)
		if err != nil {
			return err
		}
		if pr.Finished {
			return nil
		}
		if _, lister := sh.lease(); !lister && time.Since(joinedAt) >= o.LeaseTTL/2 {
			// The lister may be gone: joining again takes its lease if it
			// expired.
			if ok, err := join(); err != nil || !ok {
				return err
			}
		}
		t := time.NewTimer(idle)
		select {
		case <-t.C:
		case <-stop:
		case <-ctx.Done():
		case leadErr = <-leading: // a nil channel: never
			leading = nil
			if leadErr != nil {
				t.Stop()
				return leadErr
			}
			if sh.finished() {
				t.Stop()
				return nil
			}
		}
		t.Stop()
		if pr.Listed {
			// Nothing left to claim until a worker dies: the pass ends
			// soon.
			idle = min(2*idle, 2*o.Poll)
		}
	}
}

// prejoin joins the source's pass, or opens one, while the update holds
// the flow's lock for its setup: an update alone (--solo) that takes the
// lock next sees the pass running. A pass of another mode is left for the
// claim loop to wait on.
func (sh *shareRun) prejoin(ctx context.Context) error {
	p, err := sh.passJoin(ctx, sh.r.u.opts.fresh)
	if err != nil {
		return err
	}
	if p.ID == 0 || p.Mode == uint8(sh.r.u.opts.Mode) {
		sh.first = &p
	}
	return nil
}

// passJoin joins the source's pass, or opens one in the update's mode
// unless the last pass started less than fresh ago.
func (sh *shareRun) passJoin(ctx context.Context, fresh time.Duration) (statestore.Pass, error) {
	r := sh.r
	e := r.u.e
	o := e.opts.Shared
	var p statestore.Pass
	err := e.do(ctx, "join the pass", func(ctx context.Context) (err error) {
		p, err = e.coord.PassJoin(ctx, statestore.PassJoinParams{SourceID: r.id, Worker: o.Worker, TTL: o.LeaseTTL, Fresh: fresh, Mode: uint8(r.u.opts.Mode)})
		return err
	})
	return p, err
}

// joinMode joins the source's pass, or opens one. A pass of another mode
// (an incremental worker beside a reexport) is not joined: its rows need
// other work. The worker waits for it to finish, or ends it if its lister
// is gone, then opens a pass of its own. Joining again (rejoin), the worker
// takes whatever pass it is given: the caller checks it is its own.
func (sh *shareRun) joinMode(ctx context.Context, fresh time.Duration, rejoin bool) (statestore.Pass, error) {
	r := sh.r
	e := r.u.e
	o := e.opts.Shared
	mode := uint8(r.u.opts.Mode)
	wait, told := o.Poll, false
	for {
		p, err := sh.passJoin(ctx, fresh)
		if err != nil || rejoin || p.ID == 0 || p.Mode == mode {
			return p, err
		}
		if p.Lister {
			// Its lister is gone, and no worker of its mode took it over.
			e.log.WarnContext(ctx, "ending a pass of another mode whose workers are gone", "source", r.src.Name, "pass", p.ID, "mode", Mode(p.Mode))
			lease := statestore.PassLeaseParams{PassID: p.ID, Worker: o.Worker, Fence: p.Fence, TTL: o.LeaseTTL}
			if err := e.do(ctx, "end the pass", func(ctx context.Context) error { return e.coord.PassFinish(ctx, lease) }); err != nil && !errors.Is(err, statestore.ErrFenced) {
				return statestore.Pass{}, err
			}
			continue
		}
		if !told {
			e.log.InfoContext(ctx, "waiting for the pass of another mode to finish", "source", r.src.Name, "pass", p.ID, "mode", Mode(p.Mode), "this", r.u.opts.Mode)
			told = true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.u.opts.Stop:
			t.Stop()
			return statestore.Pass{}, nil
		case <-ctx.Done():
			t.Stop()
			return statestore.Pass{}, context.Cause(ctx)
		}
		wait = min(2*wait, 20*o.Poll)
	}
}

// flush has the writer write the rows of the claims in hand that it holds
// now, rather than after its delay.
func (sh *shareRun) flush() {
	sh.full.Store(true)
	select {
	case sh.r.u.nudge <- struct{}{}:
	default:
	}
}

// progress counts the pass's claims.
func (sh *shareRun) progress(ctx context.Context) (statestore.PassProgress, error) {
	e := sh.r.u.e
	var pr statestore.PassProgress
	err := e.do(ctx, "count the pass's claims", func(ctx context.Context) (err error) {
		pr, err = e.coord.PassProgress(ctx, statestore.PassProgressParams{PassID: sh.passID()})
		return err
	})
	return pr, err
}

// finished reports whether this worker finished the pass.
func (sh *shareRun) finished() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.over
}

// take claims up to limit keys of the pass and hands those that need work
// to the source's workers; it returns how many it claimed.
func (sh *shareRun) take(ctx context.Context, limit int) (int, error) {
	r := sh.r
	u := r.u
	e := u.e
	o := e.opts.Shared
	var claims []statestore.Claim
	if err := e.do(ctx, "take claims", func(ctx context.Context) (err error) {
		claims, err = e.coord.ClaimTake(ctx, statestore.ClaimTakeParams{PassID: sh.passID(), Worker: o.Worker, Limit: limit, TTL: o.LeaseTTL})
		return err
	}); err != nil || len(claims) == 0 {
		return 0, err
	}
	sh.mu.Lock()
	for _, c := range claims {
		sh.held[c.Key] = c.Fence
	}
	sh.mu.Unlock()
	keys := make([]string, len(claims))
	for i, c := range claims {
		keys[i] = c.Key
	}
	var metas []statestore.RowMeta
	if err := e.do(ctx, "look up rows", func(ctx context.Context) (err error) {
		metas, err = e.store.RowLookup(ctx, statestore.RowLookupParams{SourceID: r.id, Keys: keys})
		return err
	}); err != nil {
		return 0, err
	}
	byKey := make(map[string]*statestore.RowMeta, len(metas))
	for i := range metas {
		byKey[metas[i].Key] = &metas[i]
	}
	var (
		items []*item
		done  []statestore.ClaimRef
	)
	for _, c := range claims {
		l, err := decodeListed(c.Key, c.Listed)
		if err != nil {
			return 0, err
		}
		m := byKey[c.Key]
		if !u.flights.acquire(r.flightKey(c.Key)) {
			// In flight here already (no pass claims a key twice): the
			// claim lapses, and is taken again if need be.
			e.log.WarnContext(ctx, "a claimed key is in flight already", "source", r.src.Name, "key", c.Key)
			sh.forget(c.Key)
			continue
		}
		// The row may have been committed since the lister looked it up
		// (a lister that took over lists again).
		if r.skip(l, m) {
			u.flights.release(r.flightKey(c.Key))
			if !sh.wasListed(c.Key) {
				// Else this worker's listing counted it, and told of it.
				r.counters.unchanged.Add(1)
				if obs := e.opts.Observers.RowDone; obs != nil {
					obs(ctx, tidemarktype.RowDone{Source: r.src.Name, Key: c.Key, Outcome: tidemarktype.OutcomeUnchanged})
				}
			}
			done = append(done, statestore.ClaimRef{Key: c.Key, Fence: c.Fence})
			continue
		}
		items = append(items, &item{run: r, key: c.Key, listed: l, meta: m, claim: &statestore.ClaimRef{Key: c.Key, Fence: c.Fence}})
	}
	if len(done) > 0 {
		if err := sh.end(ctx, done); err != nil {
			return 0, err
		}
	}
	if err := r.loadTracking(ctx, items); err != nil {
		return 0, err
	}
	return len(claims), r.handOn(ctx, items)
}

// end marks claims done that need no commit.
func (sh *shareRun) end(ctx context.Context, refs []statestore.ClaimRef) error {
	e := sh.r.u.e
	keys := make([]string, len(refs))
	for i, c := range refs {
		keys[i] = c.Key
	}
	defer sh.forget(keys...)
	return e.do(ctx, "end claims", func(ctx context.Context) error {
		_, err := e.coord.ClaimDone(ctx, statestore.ClaimDoneParams{PassID: sh.passID(), Worker: e.opts.Shared.Worker, Claims: refs})
		return err
	})
}

// renewClaims renews the claims in hand every third of their TTL, and
// forgets those taken meanwhile: the writer drops their rows.
func (sh *shareRun) renewClaims(ctx context.Context) {
	e := sh.r.u.e
	o := e.opts.Shared
	every(ctx, o.LeaseTTL/3, func() bool {
		refs := sh.refs()
		if len(refs) == 0 {
			return true
		}
		lost, err := e.coord.ClaimRenew(ctx, statestore.ClaimRenewParams{PassID: sh.passID(), Worker: o.Worker, Claims: refs, TTL: o.LeaseTTL})
		if err != nil {
			if ctx.Err() == nil {
				e.log.WarnContext(ctx, "could not renew claims; trying again", "source", sh.r.src.Name, "claims", len(refs), "err", err)
			}
			return true
		}
		if len(lost) > 0 {
			e.log.WarnContext(ctx, "claims were taken by another worker: their rows are left to it", "source", sh.r.src.Name, "claims", len(lost))
			sh.forget(lost...)
		}
		return true
	})
}

// every calls fn every d until it returns false or ctx is done.
func every(ctx context.Context, d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if !fn() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// lead is the lister's part: it lists the source, enqueueing the keys that
// need work, waits until every claim is done, deletes what a complete
// listing left out, and finishes the pass. A lister whose lease is taken
// stops leading, and goes on as any worker.
func (sh *shareRun) lead(ctx context.Context) error {
	r := sh.r
	e := r.u.e
	o := e.opts.Shared
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sh.mu.Lock()
	sh.listed = make(map[string]struct{})
	sh.mu.Unlock()
	r.counters.newListing()
	r.invalid.Store(0)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		every(ctx, o.LeaseTTL/3, func() bool {
			lease, _ := sh.lease()
			err := e.coord.PassLease(ctx, lease)
			switch {
			case errors.Is(err, statestore.ErrFenced):
				cancel(errLeaseLost)
				return false
			case err != nil && ctx.Err() == nil:
				e.log.WarnContext(ctx, "could not renew the listing lease; trying again", "source", r.src.Name, "err", err)
			}
			return true
		})
	}()
	defer func() {
		cancel(nil)
		<-renewed
	}()
	err := sh.leadPass(ctx)
	if errors.Is(err, statestore.ErrFenced) || errors.Is(context.Cause(ctx), errLeaseLost) {
		e.log.WarnContext(ctx, "the listing lease was taken by another worker, which lists again", "source", r.src.Name)
		sh.mu.Lock()
		sh.lister = false
		sh.mu.Unlock()
		return nil
	}
	return err
}

func (sh *shareRun) leadPass(ctx context.Context) error {
	r := sh.r
	e := r.u.e
	e.log.InfoContext(ctx, "listing the source for the workers", "source", r.src.Name, "pass", sh.passID())
	if err := r.list(ctx); err != nil {
		return err
	}
	complete := r.counters.listingComplete.Load()
	if complete {
		lease, _ := sh.lease()
		if err := e.do(ctx, "end the listing", func(ctx context.Context) error { return e.coord.PassListed(ctx, lease) }); err != nil {
			return err
		}
	}
	// Every claim must be done before the deletions: a row gone from one
	// key may have moved to another.
	wait := e.opts.Shared.Poll
	for {
		pr, err := sh.progress(ctx)
		if err != nil {
			return err
		}
		if pr.Pending == 0 && pr.Claimed == 0 {
			break
		}
		if Stopped(r.u.opts.Stop) {
			return nil // the lease lapses: another worker lists again
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		wait = min(2*wait, 2*e.opts.Shared.Poll)
	}
	if complete {
		if err := r.afterListing(ctx); err != nil {
			return err
		}
	} else if err := r.drain(ctx); err != nil {
		return err
	}
	lease, _ := sh.lease()
	if err := e.do(ctx, "finish the pass", func(ctx context.Context) error { return e.coord.PassFinish(ctx, lease) }); err != nil {
		return err
	}
	sh.mu.Lock()
	sh.over, sh.lister = true, false
	sh.mu.Unlock()
	return nil
}

// enqueue hands the listed items that need work to the workers, as claims
// of the pass.
func (sh *shareRun) enqueue(ctx context.Context, items []*item) error {
	r := sh.r
	e := r.u.e
	// The workers that take the claims, this one among them, hold the
	// keys in flight.
	for _, it := range items {
		r.u.flights.release(r.flightKey(it.key))
	}
	if len(items) == 0 {
		return nil
	}
	add := make([]statestore.ClaimItem, len(items))
	for i, it := range items {
		b, err := encodeListed(it.listed)
		if err != nil {
			return fmt.Errorf("encoding the listing of %q: %w", it.key, err)
		}
		add[i] = statestore.ClaimItem{Key: it.key, Listed: b}
	}
	lease, ok := sh.lease()
	if !ok {
		return errLeaseLost
	}
	return e.do(ctx, "enqueue claims", func(ctx context.Context) error {
		return e.coord.PassEnqueue(ctx, statestore.PassEnqueueParams{PassLeaseParams: lease, Items: add})
	})
}

// noteListed records keys the lister's listing named.
func (sh *shareRun) noteListed(chunk []Listed) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, l := range chunk {
		sh.listed[l.Key] = struct{}{}
	}
}

// keepClaimed renews the claims of a batch's rows before the batch is
// written, and drops the rows whose claims were taken meanwhile: another
// worker processes them now.
func (w *writer) keepClaimed(ctx context.Context, batch []*rowResult) ([]*rowResult, error) {
	e := w.u.e
	lost := make(map[*sourceRun]map[string]bool)
	for _, run := range w.runs {
		if run.sh == nil {
			continue
		}
		var refs []statestore.ClaimRef
		for _, res := range batch {
			if res.run == run && res.claim != nil {
				refs = append(refs, *res.claim)
			}
		}
		if len(refs) == 0 {
			continue
		}
		var gone []string
		if err := e.do(ctx, "renew claims", func(ctx context.Context) (err error) {
			gone, err = e.coord.ClaimRenew(ctx, statestore.ClaimRenewParams{PassID: run.sh.passID(), Worker: e.opts.Shared.Worker, Claims: refs, TTL: e.opts.Shared.LeaseTTL})
			return err
		}); err != nil {
			return nil, err
		}
		if len(gone) > 0 {
			lost[run] = make(map[string]bool, len(gone))
			for _, k := range gone {
				lost[run][k] = true
			}
		}
	}
	if len(lost) == 0 {
		return batch, nil
	}
	kept := batch[:0:0]
	for _, res := range batch {
		if res.claim != nil && lost[res.run][res.key] {
			e.log.WarnContext(ctx, "a row's claim was taken by another worker before it was written: the row is left to it", "source", res.run.src.Name, "key", res.key)
			res.run.release(res.key)
			continue
		}
		kept = append(kept, res)
	}
	return kept, nil
}

// commitShared commits run's rows of a batch under their claims, which it
// marks done; rows without a claim (the lister's deletions) under the
// listing lease. Rows whose claims, or the lease, were taken since the
// batch began are dropped from the commit: their new workers commit them.
func (w *writer) commitShared(ctx context.Context, run *sourceRun, rows []*rowResult, land landing, now time.Time) error {
	e := w.u.e
	sh := run.sh
	for {
		p := w.commitParams(run, rows, land, now)
		f := &statestore.CommitFence{PassID: sh.passID(), Worker: e.opts.Shared.Worker}
		unclaimed := false
		for _, res := range rows {
			if res.claim != nil {
				f.Claims = append(f.Claims, *res.claim)
			} else {
				unclaimed = true
			}
		}
		if unclaimed {
			lease, ok := sh.lease()
			f.Lister = lease.Fence
			if !ok {
				f.Lister = -1 // fenced: the lease went
			}
		}
		if len(p.Rows)+len(p.Bumps)+len(p.Deletes)+len(p.Failed) == 0 {
			if len(f.Claims) == 0 {
				return nil
			}
			// Rows with nothing to commit (seen first, and gone at once).
			return sh.end(ctx, f.Claims)
		}
		p.Fence = f
		err := e.write(ctx, "commit", func(ctx context.Context) error { return e.store.Commit(ctx, p) })
		var fe *statestore.FencedError
		if !errors.As(err, &fe) {
			return err
		}
		lost := make(map[string]bool, len(fe.Keys))
		for _, k := range fe.Keys {
			lost[k] = true
		}
		kept := rows[:0:0]
		for _, res := range rows {
			if res.claim != nil && lost[res.key] || res.claim == nil && fe.Lease {
				res.lost = true
				e.log.WarnContext(ctx, "a row's claim was taken by another worker while it was written: its commit is left to that worker",
					"source", run.src.Name, "key", res.key)
				continue
			}
			kept = append(kept, res)
		}
		if len(kept) == len(rows) {
			return fmt.Errorf("a fenced commit named nothing it lost: %w", err)
		}
		rows = kept
	}
}
