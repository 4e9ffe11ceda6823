// Package engine runs Tidemark's update passes: it sets up a flow's targets,
// lists every source, fetches and processes only the rows that changed,
// writes the resulting target changes in batches with a two-phase commit in
// the state store, and deletes what vanished from a complete listing.
//
// The engine sees sources, handlers and values with their types erased; the
// root tidemark package is the typed face of it. See docs/engine.md for the
// algorithm and its crash story.
package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/fingerprint"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// Flow is the engine's view of a flow: its sources, the root target states
// it declares itself, and the logic version of its processing.
type Flow struct {
	Name         string
	LogicVersion string
	Sources      []*Source
	Roots        []*Root
	// Handlers reconcile roots no longer declared, by kind, so that they can
	// be torn down. Every declared root's handler is found by its kind too.
	Handlers map[string]target.Erased
}

// Root is a target state the flow declares itself (not per source row): a
// container such as a table, or a single state.
type Root struct {
	Kind    string
	Key     target.Key
	Handler target.Erased
	// Spec is the desired state, a value of the handler's type.
	Spec any
	// Container says the root has children; its sink returns their handler.
	Container bool
	// ChildType, if set, is the value type the child handler must take.
	ChildType   reflect.Type
	Attachments []*Attachment
	// Hook, if set, is told of the committed changes of the root's
	// children.
	Hook *Hook
}

// Attachment is auxiliary state of a container root, reconciled by the
// handler the container's child handler gives for Kind.
type Attachment struct {
	Kind string
	Key  target.Key
	Spec any
}

// Source is one source of a flow with its processing function.
type Source struct {
	Name string
	Impl SourceImpl
	// MaxInFlight bounds the rows fetched and processed at once.
	MaxInFlight int
	// RefreshInterval is how often live mode lists the source; 0 means
	// only once.
	RefreshInterval time.Duration
	// Options describes the options that decide what the source lists,
	// when it says: a change of them needs a confirmation before the rows
	// the listing leaves out are deleted (see UpdateOptions.Confirm).
	Options map[string]string
}

// SourceImpl is a source with its key and value types erased, bundled with
// the flow's processing function for it. Keys are encoded strings.
type SourceImpl interface {
	// List streams the source's keys. An error ends the listing, which then
	// counts as incomplete.
	List(ctx context.Context) iter.Seq2[Listed, error]
	// Get fetches one row.
	Get(ctx context.Context, key string) (Fetched, error)
	// Process runs the processing function on a fetched value and returns
	// the target states it declared.
	Process(ctx context.Context, key string, value any) ([]Decl, error)
	// ProvidesOrdinal reports whether listed ordinals can be trusted.
	ProvidesOrdinal() bool
}

// Listed is one key from a listing.
type Listed struct {
	Key        string
	Ordinal    int64
	HasOrdinal bool
	// Fingerprint is a cheap content fingerprint (an ETag), if the source
	// has one; it must equal Fetched.Fingerprint for the same content.
	Fingerprint []byte
	// Invalid, when set, says the listed key cannot be used (it cannot be
	// encoded faithfully): the row fails with this error, and Key only
	// describes it. The listing goes on.
	Invalid error
}

// Fetched is one fetched row.
type Fetched struct {
	Exists      bool
	Value       any
	Ordinal     int64
	HasOrdinal  bool
	Fingerprint []byte
}

// Decl is a target state declared by the processing function: a child of
// the root at index Root of Flow.Roots, or a state in a container the row
// declares there (see nest.go).
type Decl struct {
	Root int
	// Path holds the keys of the row containers the state is in, from the
	// root's child down; each must be declared earlier by the same row.
	Path []target.Key
	// Attach is the kind of an attachment of the container Path names;
	// empty for a child.
	Attach string
	Key    target.Key
	Value  any
}

// Mode selects how much an update redoes.
type Mode uint8

const (
	// ModeIncremental fetches, processes and writes only what changed.
	ModeIncremental Mode = iota
	// ModeFullReprocess fetches and processes every row, ignoring ordinals
	// and content fingerprints; unchanged target states are still skipped.
	ModeFullReprocess
	// ModeReexport processes every row and writes every target state again.
	ModeReexport
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeIncremental:
		return "incremental"
	case ModeFullReprocess:
		return "full-reprocess"
	case ModeReexport:
		return "reexport"
	default:
		return fmt.Sprintf("Mode(%d)", uint8(m))
	}
}

// BatchOptions bound a batch of target writes and state commits. A batch is
// flushed when any bound is reached.
type BatchOptions struct {
	// MaxRows bounds the source rows in a batch.
	MaxRows int
	// MaxActions bounds the target actions in a batch.
	MaxActions int
	// MaxBytes bounds the batch's size, measured as the canonical encoding
	// of the fetched source values.
	MaxBytes int
	// MaxDelay bounds how long a row waits in a batch before it is written,
	// and so how much committed progress a crash can lose.
	MaxDelay time.Duration
}

// DefaultBatchOptions returns the batch bounds used unless told otherwise.
func DefaultBatchOptions() BatchOptions {
	return BatchOptions{MaxRows: 1000, MaxActions: 10000, MaxBytes: 32 << 20, MaxDelay: time.Second}
}

func (b BatchOptions) validate() error {
	switch {
	case b.MaxRows < 1:
		return fmt.Errorf("Batch.MaxRows must be at least 1, got %d", b.MaxRows)
	case b.MaxActions < 1:
		return fmt.Errorf("Batch.MaxActions must be at least 1, got %d", b.MaxActions)
	case b.MaxBytes < 1:
		return fmt.Errorf("Batch.MaxBytes must be at least 1, got %d", b.MaxBytes)
	case b.MaxDelay <= 0:
		return fmt.Errorf("Batch.MaxDelay must be positive, got %s", b.MaxDelay)
	}
	return nil
}

// Options configure an Engine.
type Options struct {
	Logger *slog.Logger
	Batch  BatchOptions
	// Retry governs retries of transient faults of sources, sinks and the
	// state store.
	Retry retry.Policy
	// LookupChunk is how many listed keys are looked up in the state store
	// at once.
	LookupChunk int
	// Hooks let tests inject faults between the phases of a write.
	Hooks Hooks
	// Observers are told what updates do; nil ones are not called.
	Observers Observers
	// Shared shares the flow's updates with other workers (see
	// SharedOptions); the store must then be a statestore.Coordinator.
	Shared SharedOptions
}

// Observers are the engine's observer callbacks, each optional. They are
// called from the engine's goroutines, several at once; a callback that
// panics is logged and changes nothing else (see guarded).
type Observers struct {
	PassStarted  func(ctx context.Context, p tidemarktype.PassStart)
	PassFinished func(ctx context.Context, p tidemarktype.PassEnd)
	RowDone      func(ctx context.Context, r tidemarktype.RowDone)
	Fetched      func(ctx context.Context, f tidemarktype.Fetch)
	BatchWritten func(ctx context.Context, b tidemarktype.Batch)
	// StoreOp, when set, is told of every state store call: New wraps the
	// store in a timing decorator (see timedStore) only then.
	StoreOp func(ctx context.Context, op tidemarktype.StoreOp)
}

// Hooks are called between the phases of each batch write, and after a
// setup change is applied but before it is committed; an error from a hook
// aborts the update there, as a crash would.
type Hooks struct {
	BeforePrecommit func(ctx context.Context) error
	BeforeApply     func(ctx context.Context) error
	BeforeCommit    func(ctx context.Context) error
	AfterSetupApply func(ctx context.Context) error
}

// Engine runs updates of one flow against one state store.
type Engine struct {
	flow    *Flow
	store   statestore.Store
	log     *slog.Logger
	opts    Options
	logicFP []byte
	// held is the flow's lock while an update, setup or drop holds it.
	held atomic.Pointer[heldLock]
	// coord shares the flow's passes with other workers; nil when the
	// engine updates alone.
	coord statestore.Coordinator
	// passes is the store's coordinator when it can share: an engine that
	// updates alone refuses to run beside a shared pass, and none drops
	// the flow under one.
	passes statestore.Coordinator
	// worker names the engine to the outbox (and, shared, to the other
	// workers): Options.Shared.Worker, or one made up.
	worker string
}

// New returns an engine for flow, keeping its state in store.
func New(flow *Flow, store statestore.Store, opts Options) (*Engine, error) {
	if flow == nil || flow.Name == "" {
		return nil, errors.New("engine: the flow needs a name")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Batch == (BatchOptions{}) {
		opts.Batch = DefaultBatchOptions()
	}
	if err := opts.Batch.validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if opts.Retry == (retry.Policy{}) {
		opts.Retry = retry.DefaultPolicy()
	}
	if err := opts.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if opts.LookupChunk == 0 {
		opts.LookupChunk = 1000
	}
	if err := flow.validate(); err != nil {
		return nil, err
	}
	logicFP, err := fingerprint.Of([]string{flow.Name, flow.LogicVersion})
	if err != nil {
		return nil, fmt.Errorf("engine: fingerprinting the logic version: %w", err)
	}
	passes, _ := store.(statestore.Coordinator)
	var coord statestore.Coordinator
	if opts.Shared.Enabled {
		if passes == nil {
			return nil, fmt.Errorf("engine: a %T state store cannot be shared by several workers: use PostgreSQL or Redis", store)
		}
		if err := opts.Shared.defaults(); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		coord = passes
	}
	opts.Observers = opts.Observers.guarded(opts.Logger)
	if opts.Observers.StoreOp != nil {
		store = &timedStore{store: store, observe: opts.Observers.StoreOp}
	}
	worker := opts.Shared.Worker
	if worker == "" {
		worker = defaultWorker()
	}
	return &Engine{flow: flow, store: store, log: opts.Logger, opts: opts, logicFP: logicFP[:], coord: coord, passes: passes, worker: worker}, nil
}

func (f *Flow) validate() error {
	sources := make(map[string]bool)
	for _, s := range f.Sources {
		if s.Name == "" || sources[s.Name] {
			return fmt.Errorf("flow %s: source names must be unique and not empty, got %q", f.Name, s.Name)
		}
		sources[s.Name] = true
		if s.MaxInFlight < 1 {
			return fmt.Errorf("flow %s: source %s: MaxInFlight must be at least 1, got %d", f.Name, s.Name, s.MaxInFlight)
		}
	}
	roots := make(map[target.Key]bool)
	for _, r := range f.Roots {
		if r.Key == "" || roots[r.Key] {
			return fmt.Errorf("flow %s: target keys must be unique and not empty, got %q", f.Name, r.Key)
		}
		roots[r.Key] = true
		if r.Handler.IsZero() {
			return fmt.Errorf("flow %s: target %s has no handler", f.Name, r.Key)
		}
		if len(r.Attachments) > 0 && !r.Container {
			return fmt.Errorf("flow %s: target %s has attachments but is not a container", f.Name, r.Key)
		}
	}
	return nil
}

// do runs op with the engine's retry policy, logging retries.
func (e *Engine) do(ctx context.Context, what string, op func(ctx context.Context) error) error {
	return retry.Do(ctx, e.opts.Retry, op, func(attempt int, err error) {
		e.log.WarnContext(ctx, "retrying after a transient fault", "op", what, "attempt", attempt, "err", err)
	})
}

// guarded returns the observers with each callback's panics recovered and
// logged: monitoring code must not fail rows or stop an update.
func (o Observers) guarded(log *slog.Logger) Observers {
	return Observers{
		PassStarted:  guard(log, "PassStarted", o.PassStarted),
		PassFinished: guard(log, "PassFinished", o.PassFinished),
		RowDone:      guard(log, "RowDone", o.RowDone),
		Fetched:      guard(log, "Fetched", o.Fetched),
		BatchWritten: guard(log, "BatchWritten", o.BatchWritten),
		StoreOp:      guard(log, "StoreOp", o.StoreOp),
	}
}

// guard wraps fn, nil staying nil, so that a panic in it is logged.
func guard[E any](log *slog.Logger, name string, fn func(context.Context, E)) func(context.Context, E) {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, ev E) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ctx, "an observer panicked; the update goes on", "observer", name, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		fn(ctx, ev)
	}
}
