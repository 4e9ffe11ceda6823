// Package target is Tidemark's target-state API: how a target — a table, a
// directory, a search index, anything outside Tidemark — learns what a flow
// wants and makes it so. Built-in targets are written on it, and so are
// custom ones; there is no private back door.
//
// # Handlers, actions and sinks
//
// A flow declares target states: "this row should exist with these values",
// "this file should hold these bytes". For each declared or previously
// declared state, the engine calls the target's Handler:
//
//	Reconcile(key, desired, prev, prevMayBeMissing) (*Reconciled, error)
//
// desired is the state wanted now, or nil when it is no longer declared.
// prev holds the tracking records of every version that may exist in the
// external system (usually one; more after an interrupted update), and
// prevMayBeMissing says the state may not exist at all: it is true for a
// state never written, one whose first write or whose deletion was
// interrupted, and every child of a container that lost or may have lost
// its data (a lossy or destructive change, a re-export); it is false for a
// committed state whose change was interrupted, which exists in one of the
// versions prev lists. prev spans every source row: a state one source row
// stops declaring and another starts declaring (it moves) reaches the new
// declarer's Reconcile with the old declarer's record, so moving an
// unchanged value writes nothing and moving a changed one is one update. Reconcile is pure: it
// does no I/O, only decides. It returns nil when nothing needs to change, or a
// Reconciled holding an Action (made with Do or DoContainer), the Record to
// remember, and for a container whether the change invalidates its children.
//
// Actions are applied by sinks in batches. The engine groups the actions of
// many source rows, and of every target that shares a sink, into one Apply
// call, so a sink can write thousands of rows in one statement and order
// dependent changes (graph nodes before edges on upsert, edges before nodes
// on delete). Sinks do the I/O. Apply must be idempotent — after a crash the
// engine may apply an action again — and must not fail for a reason that a
// retry would not fix without saying so (see tidemark.Retryable).
//
// # Containers, children and attachments
//
// A container is a target state with children: a table has rows, a directory
// has files. Its sink is a ContainerSink, which returns for each applied
// action the handler of the container's children (Erased, made with Erase).
// A container's Reconcile must return a Reconciled even when nothing changes,
// with an action its sink can apply without I/O, because that is how the
// engine obtains the child handler; the engine skips the write to its own
// state store when the record is unchanged.
//
// A container change that destroys its children (a table dropped and created
// again) returns InvalidateDestructive: the engine forgets the children's
// tracking and writes them all again. One that may lose data (a column type
// changed) returns InvalidateLossy: every child is written again, with
// prevMayBeMissing set.
//
// An attachment is auxiliary state of a container kept apart from its
// children — a full-text index, a SQL command with its teardown. A child
// handler that supports attachments implements Attacher; the flow declares
// attachments on the container by kind and key.
//
// # Keys and records
//
// Keys identify a target state within its target and are compared byte for
// byte. Records are opaque bytes the handler chooses: usually a fingerprint
// of the desired value (see Fingerprint), or the full spec where teardown
// needs it. A nil record means "no record"; the engine stores the rest as is.
package target

import (
	"bytes"
	"context"
	"fmt"
	"reflect"

	"github.com/tidemark/tidemark/fingerprint"
)

// Key identifies a target state within its target: a table row's primary
// key, a file's name, a container's persistent name.
type Key string

// Record is what a handler remembers about a target state it wrote, to tell
// next time whether the state changed: usually a fingerprint, sometimes the
// full spec where teardown needs it.
type Record []byte

// Invalidation says what a container change does to the container's children.
type Invalidation uint8

const (
	// InvalidateNone leaves the children as they are.
	InvalidateNone Invalidation = iota
	// InvalidateLossy says the change may have lost children's data (a
	// column's type changed): every child is written again, and deletions
	// still happen as tracked.
	InvalidateLossy
	// InvalidateDestructive says the change destroyed every child (a table
	// dropped and created again): the children's tracking is forgotten and
	// every child is written again.
	InvalidateDestructive
)

// String returns "none", "lossy" or "destructive".
func (i Invalidation) String() string {
	switch i {
	case InvalidateNone:
		return "none"
	case InvalidateLossy:
		return "lossy"
	case InvalidateDestructive:
		return "destructive"
	default:
		return fmt.Sprintf("Invalidation(%d)", uint8(i))
	}
}

// Handler reconciles the desired state of one target state against what may
// exist. Implementations must be pure (no I/O) and safe for concurrent use:
// the engine calls Reconcile from many goroutines.
type Handler[V any] interface {
	// Reconcile decides what to do for the state at key. desired is nil when
	// the state is no longer declared. prev holds the records of every
	// version that may exist; prevMayBeMissing says it may not exist at all.
	// Reconcile returns nil when nothing needs to change. An error fails the
	// source row that declared the state, not the whole update.
	Reconcile(key Key, desired *V, prev []Record, prevMayBeMissing bool) (*Reconciled, error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc[V any] func(key Key, desired *V, prev []Record, prevMayBeMissing bool) (*Reconciled, error)

// Reconcile calls f.
func (f HandlerFunc[V]) Reconcile(key Key, desired *V, prev []Record, prevMayBeMissing bool) (*Reconciled, error) {
	return f(key, desired, prev, prevMayBeMissing)
}

// Reconciled is what Reconcile decided: an action to apply, the record to
// keep once it is applied, and for a container the effect on its children.
type Reconciled struct {
	// Action is the change to apply, made with Do or DoContainer.
	Action Action
	// Record is the tracking record to keep after Action is applied; nil when
	// the state no longer exists afterwards (or needs no record).
	Record Record
	// Invalidate says what the change does to a container's children.
	Invalidate Invalidation
}

// Sink applies batches of actions of type A to an external system. A sink
// must be comparable (a pointer, typically) and one sink value should serve
// every target whose actions it can apply together.
type Sink[A any] interface {
	// Apply applies actions, in order. It must be idempotent. An error fails
	// the whole batch; the engine retries errors marked retryable and
	// otherwise splits the batch to find the source rows at fault. The
	// engine never splits the actions one source row has for a sink
	// across two calls, so a sink that applies a call in one transaction
	// writes each source row all or nothing.
	Apply(ctx context.Context, actions []A) error
}

// ConcurrentSink is implemented by a sink (a Sink or ContainerSink) whose
// Apply may run in several calls at once, each with actions of other
// source rows and other states: the engine splits a large batch into up to
// Concurrency calls and runs them together. The calls are unordered, so a
// sink that orders dependent changes within a call (nodes before edges)
// must not implement it.
type ConcurrentSink interface {
	// Concurrency returns how many calls may run at once; 1 or less means
	// one at a time.
	Concurrency() int
}

// ContainerSink applies batches of container actions and returns, for each
// action in order, the handler of that container's children; the zero Erased
// where the container no longer exists.
type ContainerSink[A any] interface {
	Apply(ctx context.Context, actions []A) ([]Erased, error)
}

// SinkFunc is a Sink made from a function by NewSink.
type SinkFunc[A any] struct {
	fn func(ctx context.Context, actions []A) error
}

// NewSink returns a Sink that calls fn. Keep the returned sink and use it for
// every action: the engine batches actions by sink, and two NewSink results
// are two sinks.
func NewSink[A any](fn func(ctx context.Context, actions []A) error) *SinkFunc[A] {
	return &SinkFunc[A]{fn: fn}
}

// Apply calls the function.
func (s *SinkFunc[A]) Apply(ctx context.Context, actions []A) error { return s.fn(ctx, actions) }

// ContainerSinkFunc is a ContainerSink made from a function by
// NewContainerSink.
type ContainerSinkFunc[A any] struct {
	fn func(ctx context.Context, actions []A) ([]Erased, error)
}

// NewContainerSink returns a ContainerSink that calls fn; see NewSink.
func NewContainerSink[A any](fn func(ctx context.Context, actions []A) ([]Erased, error)) *ContainerSinkFunc[A] {
	return &ContainerSinkFunc[A]{fn: fn}
}

// Apply calls the function.
func (s *ContainerSinkFunc[A]) Apply(ctx context.Context, actions []A) ([]Erased, error) {
	return s.fn(ctx, actions)
}

// Action is an action paired with the sink that applies it. The zero Action
// does nothing.
type Action struct {
	sink  applier
	value any
}

// applier is a typed sink with its action type erased. Implementations are
// comparable values, equal when their sinks are equal, so the engine can
// group actions by sink.
type applier interface {
	apply(ctx context.Context, values []any) ([]Erased, error)
	check(ctx context.Context, values []any) error
	sinkValue() any
}

// Checker is implemented by a sink (a Sink or ContainerSink) of setup
// actions that can check them against the external system before any of
// them is staged or applied: a table about to be created where one it did
// not create exists already. The engine calls Check with the setup actions
// of each setup phase it is about to stage and apply — and, in a plan, with
// those it would — grouped by sink like Apply. An error refuses them:
// nothing of that phase is staged or applied, and the plan or setup
// returns the error. Check only reads; errors marked retryable are
// retried.
type Checker[A any] interface {
	Check(ctx context.Context, actions []A) error
}

// checkTyped calls the Check of sink, if it is a Checker.
func checkTyped[A any](ctx context.Context, sink any, values []any) error {
	c, ok := sink.(Checker[A])
	if !ok {
		return nil
	}
	return c.Check(ctx, typedValues[A](values))
}

func typedValues[A any](values []any) []A {
	typed := make([]A, len(values))
	for i, v := range values {
		typed[i] = v.(A)
	}
	return typed
}

type leafApplier[A any] struct{ s Sink[A] }

func (a leafApplier[A]) apply(ctx context.Context, values []any) ([]Erased, error) {
	return nil, a.s.Apply(ctx, typedValues[A](values))
}

func (a leafApplier[A]) check(ctx context.Context, values []any) error {
	return checkTyped[A](ctx, a.s, values)
}

func (a leafApplier[A]) sinkValue() any { return a.s }

type containerApplier[A any] struct{ s ContainerSink[A] }

func (a containerApplier[A]) apply(ctx context.Context, values []any) ([]Erased, error) {
	children, err := a.s.Apply(ctx, typedValues[A](values))
	if err != nil {
		return nil, err
	}
	if len(children) != len(values) {
		return nil, fmt.Errorf("target: container sink %T returned %d child handlers for %d actions", a.s, len(children), len(values))
	}
	return children, nil
}

func (a containerApplier[A]) check(ctx context.Context, values []any) error {
	return checkTyped[A](ctx, a.s, values)
}

func (a containerApplier[A]) sinkValue() any { return a.s }

// Do pairs action with the sink that applies it. It panics if sink is nil or
// not comparable, a programming error the engine reports as a failed row.
func Do[A any](sink Sink[A], action A) Action {
	mustComparable(sink)
	return Action{sink: leafApplier[A]{s: sink}, value: action}
}

// DoContainer pairs a container action with the container sink that applies
// it; see Do.
func DoContainer[A any](sink ContainerSink[A], action A) Action {
	mustComparable(sink)
	return Action{sink: containerApplier[A]{s: sink}, value: action}
}

func mustComparable(sink any) {
	if sink == nil {
		panic("target: nil sink")
	}
	if t := reflect.TypeOf(sink); !t.Comparable() {
		panic(fmt.Sprintf("target: sink of type %s is not comparable; use a pointer", t))
	}
}

// IsZero reports whether a is the zero Action.
func (a Action) IsZero() bool { return a.sink == nil }

// Value returns the action itself, as passed to Do.
func (a Action) Value() any { return a.value }

// Sink returns the sink as passed to Do, for grouping actions by sink; nil
// for the zero Action.
func (a Action) Sink() any {
	if a.sink == nil {
		return nil
	}
	return a.sink.sinkValue()
}

// SameSink reports whether a and b are applied by the same sink.
func SameSink(a, b Action) bool { return a.sink == b.sink }

// ApplyBatch applies actions that share one sink in one call and returns the
// child handlers a container sink returned, one per action (nil for a leaf
// sink). Zero actions are skipped. It is what the engine calls; tests of a
// handler and its sink can call it too.
func ApplyBatch(ctx context.Context, actions []Action) ([]Erased, error) {
	s, values, err := batchOf("ApplyBatch", actions)
	if err != nil || s == nil {
		return nil, err
	}
	children, err := s.apply(ctx, values)
	if err != nil || children == nil {
		return nil, err
	}
	// Realign with the input, where zero actions have no child.
	out := make([]Erased, len(actions))
	j := 0
	for i, a := range actions {
		if a.sink != nil {
			out[i] = children[j]
			j++
		}
	}
	return out, nil
}

// CheckBatch checks setup actions that share one sink in one call, if the
// sink is a Checker (see Checker); otherwise it returns nil. Zero actions
// are skipped.
func CheckBatch(ctx context.Context, actions []Action) error {
	s, values, err := batchOf("CheckBatch", actions)
	if err != nil || s == nil {
		return err
	}
	return s.check(ctx, values)
}

// batchOf returns the one sink of actions, nil if every action is zero,
// and their values, zero actions skipped.
func batchOf(caller string, actions []Action) (applier, []any, error) {
	var s applier
	values := make([]any, 0, len(actions))
	for _, a := range actions {
		if a.sink == nil {
			continue
		}
		if s == nil {
			s = a.sink
		} else if s != a.sink {
			return nil, nil, fmt.Errorf("target: %s got actions of two sinks, %T and %T", caller, s.sinkValue(), a.sink.sinkValue())
		}
		values = append(values, a.value)
	}
	return s, values, nil
}

// Erased is a Handler with its value type erased: what a container sink
// returns for its children and what the engine holds. Make one with Erase.
// The zero Erased is no handler.
type Erased struct {
	h erasedHandler
}

type erasedHandler interface {
	reconcile(key Key, desired any, prev []Record, prevMayBeMissing bool) (*Reconciled, error)
	valueType() reflect.Type
	handler() any
}

type typedHandler[V any] struct{ h Handler[V] }

func (t typedHandler[V]) reconcile(key Key, desired any, prev []Record, mayBeMissing bool) (*Reconciled, error) {
	if desired == nil {
		return t.h.Reconcile(key, nil, prev, mayBeMissing)
	}
	switch d := desired.(type) {
	case *V:
		return t.h.Reconcile(key, d, prev, mayBeMissing)
	case V:
		return t.h.Reconcile(key, &d, prev, mayBeMissing)
	default:
		return nil, fmt.Errorf("target: handler %T wants %s, got %T", t.h, t.valueType(), desired)
	}
}

func (t typedHandler[V]) valueType() reflect.Type { return reflect.TypeFor[V]() }

func (t typedHandler[V]) handler() any { return t.h }

// Erase erases the value type of h.
func Erase[V any](h Handler[V]) Erased {
	if h == nil {
		return Erased{}
	}
	return Erased{h: typedHandler[V]{h: h}}
}

// IsZero reports whether e holds no handler.
func (e Erased) IsZero() bool { return e.h == nil }

// Reconcile calls the handler. desired is nil when the state is gone, and
// otherwise a V or a *V.
func (e Erased) Reconcile(key Key, desired any, prev []Record, prevMayBeMissing bool) (*Reconciled, error) {
	if e.h == nil {
		return nil, fmt.Errorf("target: Reconcile on the zero Erased handler")
	}
	return e.h.reconcile(key, desired, prev, prevMayBeMissing)
}

// ValueType returns the type V of values the handler reconciles.
func (e Erased) ValueType() reflect.Type {
	if e.h == nil {
		return nil
	}
	return e.h.valueType()
}

// Handler returns the handler passed to Erase.
func (e Erased) Handler() any {
	if e.h == nil {
		return nil
	}
	return e.h.handler()
}

// Attachment returns the handler for attachments of kind on the container
// whose children e handles, if the child handler implements Attacher.
func (e Erased) Attachment(kind string) (Erased, bool) {
	if e.h == nil {
		return Erased{}, false
	}
	a, ok := e.h.handler().(Attacher)
	if !ok {
		return Erased{}, false
	}
	return a.Attachment(kind)
}

// Attacher is implemented by a container's child handler that supports
// attachments: auxiliary states of the container, such as an index or a SQL
// command with teardown, declared by kind and reconciled like any other state
// (once per update, before the children are written).
type Attacher interface {
	// Attachment returns the handler of attachments of kind, or false if the
	// container has no such kind.
	Attachment(kind string) (Erased, bool)
}

// Unchanged reports whether a state whose new record is rec needs no write:
// it certainly exists and every version it may be in has record rec. It is
// the usual test at the top of a handler's upsert path.
func Unchanged(rec Record, prev []Record, prevMayBeMissing bool) bool {
	if prevMayBeMissing || len(prev) == 0 {
		return false
	}
	for _, p := range prev {
		if !bytes.Equal(p, rec) {
			return false
		}
	}
	return true
}

// Fingerprint returns the fingerprint of v as a Record, the usual tracking
// record of a state whose full value need not be kept.
func Fingerprint(v any) (Record, error) {
	fp, err := fingerprint.Of(v)
	if err != nil {
		return nil, err
	}
	return fp[:], nil
}

// Nester is implemented by a handler whose states may be containers
// themselves — a directory per source row, a table per tenant — declared by
// the processing function with tidemark.Nest, to any depth. Such a
// container lives while some source row declares it; when none does, the
// engine deletes its children first, then its attachments, then the
// container, and it creates a container before its attachments and
// children.
//
// Children returns the handler of the children of the state at key, or the
// zero Erased when that state is not a container. desired is the value
// declared now (a V or a *V); when the state is no longer declared it is
// nil and record is a record Reconcile returned for it, so a record must
// hold what the children's handler needs (a path, a table name). Children
// is pure, like Reconcile, and is called often: keep it cheap.
type Nester interface {
	Children(key Key, desired any, record Record) (Erased, error)
}

// Nests reports whether the handler implements Nester.
func (e Erased) Nests() bool {
	if e.h == nil {
		return false
	}
	_, ok := e.h.handler().(Nester)
	return ok
}

// Children returns the handler of the children of the state at key, if
// the handler implements Nester; see Nester.
func (e Erased) Children(key Key, desired any, record Record) (Erased, error) {
	if e.h == nil {
		return Erased{}, nil
	}
	n, ok := e.h.handler().(Nester)
	if !ok {
		return Erased{}, nil
	}
	return n.Children(key, desired, record)
}
