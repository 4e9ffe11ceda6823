package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// Hook is a root target's change hook: it is told of each committed change
// of the root's children (not of the states in row containers below them),
// after the commit, at least once, in commit order for each state.
//
// The changes wait in the state store's outbox, written by the commit that
// makes them, until the hook returns nil: a crash between the commit and
// the delivery delivers on the next update. For that, the values of a
// hooked target's states are kept in the rows' tracking, as JSON.
type Hook struct {
	// Deliver tells the hook of a change. An error makes the change wait
	// Backoff before the next try, and the state's later changes wait
	// behind it; the other states' changes go on.
	Deliver func(ctx context.Context, c HookChange) error
	// Backoff is the wait after a change's n-th failed delivery (n from
	// 1); nil for DefaultHookBackoff.
	Backoff func(n int) time.Duration
	// Encode encodes a declared value (Decl.Value) as the hook is told of
	// it; nil for encoding/json.
	Encode func(v any) ([]byte, error)
}

// encode encodes the declared value v as the hook is told of it.
func (h *Hook) encode(v any) ([]byte, error) {
	if h.Encode != nil {
		return h.Encode(v)
	}
	return json.Marshal(v)
}

// HookChange is a committed change of a hooked target state.
type HookChange struct {
	// Target is the root target's key, Key the state's.
	Target target.Key
	Key    target.Key
	// Source and Row name the source row whose update made the change;
	// SourceID is the source's id in the state store, which the change's
	// identity uses (a source's name may change).
	Source   string
	SourceID int64
	Row      string
	// Seq orders the row's changes of the state (see nextSeq): with
	// Source, Row and Key it identifies the change, for a receiver to drop
	// one told twice.
	Seq int64
	// Old and New are the values before and after, as JSON; Old is nil
	// for a state new to its row (or written before the target had its
	// hook), New is nil for a state deleted.
	Old, New []byte
	// At is the commit's time.
	At time.Time
	// Attempt is 1 more than the failed deliveries of the change
	// recorded (a delivery cut short by a crash is not).
	Attempt int
}

// DefaultHookBackoff is the wait after a change's n-th failed delivery:
// 1 s, doubling, at most 5 min.
func DefaultHookBackoff(n int) time.Duration {
	d := time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// hookLease is how long a worker leases the changes it delivers, unless it
// shares its flow with a lease TTL of its own.
const hookLease = 30 * time.Second

// deliverer delivers an update's outbox changes to the hooks: after each
// commit that made some, and once more as the update ends.
type deliverer struct {
	u     *update
	roots map[int64]*rootState
	ids   []int64
	// steal says no other worker delivers the flow's changes: an update
	// alone holds the flow's lock, and changes leased by a worker that
	// died are its to take.
	steal bool
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	sources map[int64]string
}

// newDeliverer returns the deliverer of u, nil when no root has a hook or u
// commits nothing (preview).
func newDeliverer(u *update) *deliverer {
	if u.opts.Preview {
		return nil
	}
	// An engine that never shares holds the flow's lock for its updates,
	// live ones too; a shared engine's updates of a few keys (Only: a live
	// worker's change stream) are not shared, yet other workers deliver.
	d := &deliverer{u: u, roots: make(map[int64]*rootState), steal: u.e.coord == nil, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	for _, rs := range u.setup.roots {
		if rs.root.Hook != nil && rs.id != 0 {
			d.roots[rs.id] = rs
			d.ids = append(d.ids, rs.id)
		}
	}
	if len(d.ids) == 0 {
		return nil
	}
	return d
}

// nudge asks for a delivery soon.
func (d *deliverer) nudge() {
	if d == nil {
		return
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// start delivers, from a goroutine, what is due now and after each nudge,
// until finish.
func (d *deliverer) start(ctx context.Context) {
	if d == nil {
		return
	}
	d.nudge() // what an update before left
	d.wg.Go(func() {
		for {
			select {
			case <-d.kick:
				d.drain(ctx)
			case <-d.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	})
}

// finish stops the goroutine and delivers what is due, unless ctx is done.
func (d *deliverer) finish(ctx context.Context) {
	if d == nil {
		return
	}
	close(d.stop)
	d.wg.Wait()
	if ctx.Err() == nil {
		d.drain(ctx)
	}
}

// drain delivers the changes due until none is, or a round delivers
// none: a change whose backoff is shorter than a round is not tried over
// and over. A failure of the state store is logged: the changes stay in
// the outbox for the next update.
func (d *deliverer) drain(ctx context.Context) {
	if err := d.deliverDue(ctx); err != nil && ctx.Err() == nil {
		d.u.e.log.WarnContext(ctx, "could not deliver the changes of hooked targets; the next update will", "err", err)
	}
}

func (d *deliverer) deliverDue(ctx context.Context) error {
	e := d.u.e
	ttl := hookLease
	if d.u.shared {
		ttl = e.opts.Shared.LeaseTTL
	}
	for ctx.Err() == nil {
		var due []statestore.Change
		if err := e.do(ctx, "take changes", func(ctx context.Context) (err error) {
			due, err = e.store.OutboxTake(ctx, statestore.OutboxTakeParams{TargetIDs: d.ids, Worker: e.worker, Limit: 100, TTL: ttl, Steal: d.steal})
			return err
		}); err != nil {
			return err
		}
		if len(due) == 0 {
			return nil
		}
		var done []statestore.OutboxRef
		for _, c := range due {
			if ctx.Err() != nil {
				break
			}
			ref := statestore.OutboxRef{ID: c.ID, Fence: c.Fence}
			err := d.deliver(ctx, c)
			if err == nil {
				done = append(done, ref)
				continue
			}
			if ctx.Err() != nil {
				break
			}
			rs := d.roots[c.TargetID]
			d.u.counters.hookFailed(string(rs.root.Key))
			backoff := rs.root.Hook.Backoff
			if backoff == nil {
				backoff = DefaultHookBackoff
			}
			wait := backoff(c.Attempts + 1)
			next := time.Now().Add(wait)
			e.log.WarnContext(ctx, "a change hook failed; the change is delivered again later", "target", rs.root.Key, "key", c.Key,
				"attempt", c.Attempts+1, "retry_in", wait, "err", err)
			if err := e.do(ctx, "retry a change", func(ctx context.Context) error {
				return e.store.OutboxRetry(ctx, statestore.OutboxRetryParams{Worker: e.worker, Change: ref, Error: err.Error(), NextAt: next})
			}); err != nil {
				return err
			}
		}
		if len(done) == 0 {
			return nil // every change taken failed
		}
		// Delivered: recorded even when the update is being stopped, or
		// they would be told again.
		var lost []int64
		if err := e.do(context.WithoutCancel(ctx), "end changes", func(ctx context.Context) (err error) {
			lost, err = e.store.OutboxDone(ctx, statestore.OutboxDoneParams{Worker: e.worker, Changes: done})
			return err
		}); err != nil {
			return err
		}
		if len(lost) > 0 {
			e.log.WarnContext(ctx, "changes were delivered by this worker after their lease ended: another worker may deliver them again", "changes", len(lost))
		}
	}
	return nil
}

// deliver tells c to its hook, once: a failure waits its backoff, so that
// a hook that keeps failing holds back no other state. A panic in the hook
// is its error.
func (d *deliverer) deliver(ctx context.Context, c statestore.Change) error {
	e := d.u.e
	rs := d.roots[c.TargetID]
	source, err := d.source(ctx, c.SourceID)
	if err != nil {
		return err
	}
	hc := HookChange{Target: rs.root.Key, Key: target.Key(c.Key), Source: source, SourceID: c.SourceID, Row: c.RowKey, Seq: c.Seq, Old: c.Old, New: c.New, At: c.At, Attempt: c.Attempts + 1}
	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				e.log.ErrorContext(ctx, "a panic in a change hook", "target", rs.root.Key, "key", c.Key, "panic", p, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return rs.root.Hook.Deliver(ctx, hc)
	}()
	if err == nil {
		d.u.counters.hookDelivered(string(rs.root.Key))
	}
	return err
}

// source returns the name of the flow's source id.
func (d *deliverer) source(ctx context.Context, id int64) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sources == nil {
		names, err := d.u.e.sourceNames(ctx)
		if err != nil {
			return "", err
		}
		d.sources = names
	}
	if name, ok := d.sources[id]; ok {
		return name, nil
	}
	return fmt.Sprintf("source %d", id), nil
}
