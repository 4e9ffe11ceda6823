package target

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Connector is the simple way to write a target: no handlers or records,
// just a setup hook and batched mutations. Tidemark tracks what was written
// and computes the changes; the connector applies them.
//
// S is the spec of one target (a table name, a collection, a graph label):
// it must survive a JSON round trip, because Tidemark keeps the last applied
// spec to pass as prev to ApplySetupChange. V is the value of one target
// state (a row, a node); its fingerprint decides whether it changed.
//
// A connector value must be comparable (a pointer, typically). Every target
// declared with the same connector value shares one sink, so Mutate receives
// the changes of all of them in one call.
type Connector[S, V any] interface {
	// PersistentKey returns the stable identity of the target spec
	// describes. It must not change when, say, credentials change, or
	// Tidemark would see a new target and drop the old one.
	PersistentKey(spec S) Key
	// Describe returns a human-readable description of the target at key,
	// for setup plans and status output.
	Describe(key Key) string
	// ApplySetupChange brings the target at key from prev to cur: prev nil
	// means create, cur nil means drop. When an earlier change was
	// interrupted, the target may be in one of several previous states; it
	// is then called with prev nil first if the target may not exist, then
	// once for each possible previous spec, oldest first. It must therefore
	// be idempotent: create if not exists, drop if exists.
	ApplySetupChange(ctx context.Context, key Key, prev, cur *S) error
	// Mutate applies a batch of changes spanning many source rows and every
	// target of this connector, one Mutation per target, in the order the
	// targets first appear. Within a Mutation each key appears once; a nil
	// Value means delete. It must be idempotent.
	Mutate(ctx context.Context, batch []Mutation[S, V]) error
}

// Preparer is implemented by a Connector that must prepare a spec once per
// update before mutating its target (resolve a connection, look up an id).
// The prepared spec is what Mutate receives.
type Preparer[S any] interface {
	Prepare(ctx context.Context, spec S) (S, error)
}

// SetupInvalidator is implemented by a Connector whose setup changes can
// lose or destroy the rows of its target — a column's type changed, a table
// dropped and created again. It returns what changing from prev to cur does
// to the rows; Tidemark then writes them all again. A connector that is not
// a SetupInvalidator never loses rows to a setup change.
type SetupInvalidator[S any] interface {
	SetupInvalidation(prev, cur S) Invalidation
}

// Mutation is the batch of changes to one target of a Connector.
type Mutation[S, V any] struct {
	// Key is the target's persistent key.
	Key Key
	// Spec is the target's spec, prepared if the connector is a Preparer.
	Spec S
	// Changes are the changes to apply, each key once.
	Changes []Change[V]
}

// Change is one change to one target state: Value is the value to write, or
// nil to delete the state at Key.
type Change[V any] struct {
	Key   Key
	Value *V
}

// ConnectorTarget adapts a Connector to the handler API. Make one per
// connector value with NewConnectorTarget and declare each of its targets
// with Root; tidemark.Custom does both.
type ConnectorTarget[S, V any] struct {
	conn      Connector[S, V]
	setupSink *ContainerSinkFunc[connSetupAction[S]]
	rowSink   *SinkFunc[connChange[S, V]]
}

// NewConnectorTarget returns the adapter for conn.
func NewConnectorTarget[S, V any](conn Connector[S, V]) *ConnectorTarget[S, V] {
	c := &ConnectorTarget[S, V]{conn: conn}
	c.setupSink = NewContainerSink(c.applySetup)
	c.rowSink = NewSink(c.mutate)
	return c
}

// Connector returns the adapted connector.
func (c *ConnectorTarget[S, V]) Connector() Connector[S, V] { return c.conn }

// Key returns the persistent key of the target spec describes.
func (c *ConnectorTarget[S, V]) Key(spec S) Key { return c.conn.PersistentKey(spec) }

// Describe describes the target at key.
func (c *ConnectorTarget[S, V]) Describe(key Key) string { return c.conn.Describe(key) }

// Reconcile reconciles a target's spec: the root container state. Its record
// is the spec as JSON.
func (c *ConnectorTarget[S, V]) Reconcile(key Key, desired *S, prev []Record, prevMayBeMissing bool) (*Reconciled, error) {
	prevSpecs := make([]*S, 0, len(prev))
	for _, p := range prev {
		var s S
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, fmt.Errorf("target %s: decoding the previous spec: %w", key, err)
		}
		prevSpecs = append(prevSpecs, &s)
	}
	action := connSetupAction[S]{key: key, desc: c.conn.Describe(key), cur: desired, prevs: prevSpecs, mayBeMissing: prevMayBeMissing}
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &Reconciled{Action: DoContainer(c.setupSink, action)}, nil
	}
	rec, err := json.Marshal(desired)
	if err != nil {
		return nil, fmt.Errorf("target %s: encoding the spec: %w", key, err)
	}
	if Unchanged(rec, prev, prevMayBeMissing) {
		action.prevs, action.mayBeMissing, action.keep = nil, false, true
		return &Reconciled{Action: DoContainer(c.setupSink, action), Record: rec}, nil
	}
	inv := InvalidateNone
	if si, ok := c.conn.(SetupInvalidator[S]); ok {
		for _, p := range prevSpecs {
			inv = max(inv, si.SetupInvalidation(*p, *desired))
		}
	}
	return &Reconciled{Action: DoContainer(c.setupSink, action), Record: rec, Invalidate: inv}, nil
}

// connSetupAction brings one target's setup to cur.
type connSetupAction[S any] struct {
	key          Key
	desc         string
	cur          *S
	prevs        []*S
	mayBeMissing bool
	keep         bool // unchanged: only hand out the child handler
}

func (a connSetupAction[S]) String() string {
	switch {
	case a.cur == nil:
		return "drop " + a.desc
	case len(a.prevs) == 0:
		return "create " + a.desc
	case a.keep:
		return "keep " + a.desc
	default:
		return "update " + a.desc
	}
}

func (c *ConnectorTarget[S, V]) applySetup(ctx context.Context, actions []connSetupAction[S]) ([]Erased, error) {
	children := make([]Erased, len(actions))
	for i, a := range actions {
		if !a.keep {
			if a.mayBeMissing && len(a.prevs) > 0 && a.cur != nil {
				if err := c.conn.ApplySetupChange(ctx, a.key, nil, a.cur); err != nil {
					return nil, fmt.Errorf("setting up %s: %w", a.desc, err)
				}
			}
			if len(a.prevs) == 0 {
				if err := c.conn.ApplySetupChange(ctx, a.key, nil, a.cur); err != nil {
					return nil, fmt.Errorf("setting up %s: %w", a.desc, err)
				}
			}
			for _, prev := range a.prevs {
				if err := c.conn.ApplySetupChange(ctx, a.key, prev, a.cur); err != nil {
					return nil, fmt.Errorf("setting up %s: %w", a.desc, err)
				}
			}
		}
		if a.cur == nil {
			continue
		}
		spec := *a.cur
		if p, ok := c.conn.(Preparer[S]); ok {
			prepared, err := p.Prepare(ctx, spec)
			if err != nil {
				return nil, fmt.Errorf("preparing %s: %w", a.desc, err)
			}
			spec = prepared
		}
		children[i] = Erase[V](&connRows[S, V]{c: c, target: &connTargetRef[S]{key: a.key, spec: spec}})
	}
	return children, nil
}

// connTargetRef identifies one target of a connector in a change.
type connTargetRef[S any] struct {
	key  Key
	spec S
}

// connRows handles the rows of one connector target.
type connRows[S, V any] struct {
	c      *ConnectorTarget[S, V]
	target *connTargetRef[S]
}

type connChange[S, V any] struct {
	target *connTargetRef[S]
	change Change[V]
}

func (r *connRows[S, V]) Reconcile(key Key, desired *V, prev []Record, prevMayBeMissing bool) (*Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &Reconciled{Action: Do(r.c.rowSink, connChange[S, V]{target: r.target, change: Change[V]{Key: key}})}, nil
	}
	rec, err := Fingerprint(desired)
	if err != nil {
		return nil, fmt.Errorf("fingerprinting %s: %w", key, err)
	}
	if Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &Reconciled{
		Action: Do(r.c.rowSink, connChange[S, V]{target: r.target, change: Change[V]{Key: key, Value: desired}}),
		Record: rec,
	}, nil
}

// mutate groups changes by target, in order of first appearance, and hands
// them to the connector in one call.
func (c *ConnectorTarget[S, V]) mutate(ctx context.Context, changes []connChange[S, V]) error {
	var batch []Mutation[S, V]
	index := make(map[*connTargetRef[S]]int)
	for _, ch := range changes {
		i, ok := index[ch.target]
		if !ok {
			i = len(batch)
			index[ch.target] = i
			batch = append(batch, Mutation[S, V]{Key: ch.target.key, Spec: ch.target.spec})
		}
		batch[i].Changes = append(batch[i].Changes, ch.change)
	}
	return c.conn.Mutate(ctx, batch)
}

// ConnectorTargets keeps one ConnectorTarget per connector value, so every
// target of a connector shares one sink. The zero value is ready to use.
type ConnectorTargets struct {
	mu sync.Mutex
	m  map[any]any
}

// ConnectorTargetFor returns the adapter for conn from set, making it on
// first use.
func ConnectorTargetFor[S, V any](set *ConnectorTargets, conn Connector[S, V]) (*ConnectorTarget[S, V], error) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.m == nil {
		set.m = make(map[any]any)
	}
	if existing, ok := set.m[conn]; ok {
		ct, ok := existing.(*ConnectorTarget[S, V])
		if !ok {
			return nil, fmt.Errorf("target: connector %T is used with two spec or value types", conn)
		}
		return ct, nil
	}
	ct := NewConnectorTarget(conn)
	set.m[conn] = ct
	return ct, nil
}
