package tidemark

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/target"
)

// TargetChange is a committed change of a target state, as a change hook is told
// of it (see OnChange).
type TargetChange[V any] struct {
	// Target is the target's key, Key the state's.
	Target target.Key
	Key    target.Key
	// Old and New are the state's values before and after the change. Old
	// is nil for a state new to its source row (or last written before the
	// target had its hook); New is nil for a state deleted.
	Old, New *V
	// Source and Row name the source row whose update made the change (Row
	// as the source encodes its key).
	Source string
	Row    string
	// Seq orders the row's changes of the state: it grows from one to the
	// next (it is the change's time in µs, or one more than the last), and
	// across the row's deletion and return.
	Seq int64
	// At is when the change was committed.
	At time.Time
	// Attempt is 1 more than the failed deliveries of the change (a
	// delivery cut short by a crash is not counted).
	Attempt int

	// sourceID is the source's id in the state store, which ID uses: a
	// source's name may change while a change waits.
	sourceID int64
}

// ID returns the change's idempotency key: the same for every delivery of
// the change, and different for any other change, so that a receiver can
// drop a change told twice. It is 32 hex digits, safe in a header or a
// file name.
func (c TargetChange[V]) ID() string {
	h := sha256.New()
	source := c.Source
	if c.sourceID != 0 {
		source = fmt.Sprintf("#%d", c.sourceID)
	}
	for _, s := range []string{string(c.Target), source, c.Row, string(c.Key)} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(c.Seq))
	h.Write(seq[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Created reports whether the change made the state (Old is nil and New is
// not); Deleted whether it removed it.
func (c TargetChange[V]) Created() bool { return c.Old == nil && c.New != nil }

// Deleted reports whether the change removed the state.
func (c TargetChange[V]) Deleted() bool { return c.New == nil }

// HookOption configures a change hook (see OnChange).
type HookOption func(*engine.Hook)

// HookBackoff sets how long a change whose delivery failed for the n-th
// time (n from 1) waits before the next try; the default is 1 s, doubling,
// at most 5 min.
func HookBackoff(backoff func(n int) time.Duration) HookOption {
	return func(h *engine.Hook) { h.Backoff = backoff }
}

// OnChange attaches hook to the flow's target t: hook is told of each
// committed change of one of t's states — created, changed or deleted —
// after the commit, with the value before and after. A state whose value
// is unchanged makes no call: not an identical poll, nor a reexport. The
// states in row containers (see Nest) are not told of.
//
// Delivery is at least once, in commit order for each state: the changes
// are kept in the state store's outbox by the commit that makes them, so
// a crash between the commit and the delivery delivers them on the next
// update. A hook that returns an error is tried again after a backoff
// (see HookBackoff); the state's later changes wait behind it, other
// states' go on. A change told twice has the same ID.
//
// Values are kept as JSON: a hook sees what encoding/json makes of them,
// and a value that does not encode, or does not decode back, fails its
// row.
// To tell the old value, the flow keeps each hooked state's last value in
// its state store: the cost of a hook is the size of its target's values
// once more, there. Call OnChange while building the flow, once per
// target.
func OnChange[V any](t *Target[V], hook func(ctx context.Context, c TargetChange[V]) error, opts ...HookOption) {
	OnChangeAs(t, func(v V) (V, error) { return v, nil }, hook, opts...)
}

// OnChangeAs is OnChange for a target whose values a hook would rather see
// as another type: each value declared is converted by as, and the hook is
// told of the converted values. A table target uses it to tell its rows as
// the struct they were declared as (see table.OnChange).
func OnChangeAs[V, W any](t *Target[V], as func(V) (W, error), hook func(ctx context.Context, c TargetChange[W]) error, opts ...HookOption) {
	f := t.flow
	if t.row != nil {
		t.row.errs = append(t.row.errs, fmt.Errorf("tidemark: OnChange on container %q of target %s: hooks are attached to a flow's targets, while building the flow", t.path[len(t.path)-1], t.root.Key))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.opened:
		panic(fmt.Sprintf("tidemark: OnChange on target %s once the flow is open: attach hooks while building the flow", t.root.Key))
	case hook == nil || as == nil:
		f.errs = append(f.errs, fmt.Errorf("tidemark: OnChange on target %s: the hook is nil", t.root.Key))
		return
	case t.root.Hook != nil:
		f.errs = append(f.errs, fmt.Errorf("tidemark: target %s has a change hook already", t.root.Key))
		return
	}
	h := &engine.Hook{
		Encode: func(v any) ([]byte, error) {
			p, ok := v.(*V)
			if !ok {
				return nil, fmt.Errorf("tidemark: a value of type %T in a target of %T", v, p)
			}
			w, err := as(*p)
			if err != nil {
				return nil, err
			}
			b, err := json.Marshal(w)
			if err != nil {
				return nil, fmt.Errorf("the change hook's value does not encode as JSON: %w", err)
			}
			// What cannot be told must fail its row now, not block its
			// state's changes in the outbox for ever.
			if _, err := decodeHooked[W](b); err != nil {
				return nil, fmt.Errorf("the change hook's value does not decode back from JSON into %T: %w", w, err)
			}
			return b, nil
		},
		Deliver: func(ctx context.Context, c engine.HookChange) error {
			ch := TargetChange[W]{Target: c.Target, Key: c.Key, Source: c.Source, Row: c.Row, Seq: c.Seq, At: c.At, Attempt: c.Attempt, sourceID: c.SourceID}
			var err error
			if ch.Old, err = decodeHooked[W](c.Old); err != nil {
				// Kept by a release whose type was another: unknown now.
				ch.Old = nil
			}
			if ch.New, err = decodeHooked[W](c.New); err != nil {
				return fmt.Errorf("decoding the new value of %q: %w", c.Key, err)
			}
			return hook(ctx, ch)
		},
	}
	for _, o := range opts {
		o(h)
	}
	t.root.Hook = h
}

// decodeHooked decodes a hooked value; nil for none.
func decodeHooked[V any](b []byte) (*V, error) {
	if b == nil {
		return nil, nil
	}
	v := new(V)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}
