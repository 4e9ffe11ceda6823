package tidemark

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/internal/dburl"
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	pgstore "github.com/tidemark/tidemark/internal/statestore/postgres"
	redisstore "github.com/tidemark/tidemark/internal/statestore/redis"
	sqlitestore "github.com/tidemark/tidemark/internal/statestore/sqlite"
	"github.com/tidemark/tidemark/tidemarktype"
)

// Options configure an Engine.
type Options struct {
	// StateStore is where Tidemark keeps what it remembers: a file path for
	// an embedded SQLite database (created if missing), a postgres:// URL,
	// or a redis:// (rediss:// for TLS) URL, redis://[user:password@]host:port/N
	// for database N, which must keep its data on disk (see docs/engine.md,
	// "State store"). Required.
	StateStore string
	// StateSchema is the PostgreSQL schema of the state store's tables, or
	// the prefix of its Redis keys (which a redis:// URL may give as its
	// prefix parameter instead); default "tidemark". Ignored for SQLite.
	StateSchema string
	// Logger receives the engine's logs; default: none.
	Logger *slog.Logger
	// Batch bounds the batches of target writes and state commits; zero
	// fields take the defaults.
	Batch BatchOptions
	// Retry governs retries of transient faults; the zero value takes the
	// default (from 100ms doubling to 30s, for at most 2 minutes).
	Retry RetryPolicy

	// Observer, when set, is told what updates do as they happen: a value
	// implementing any of PassObserver, RowObserver, FetchObserver,
	// BatchObserver and StoreObserver.
	Observer any

	// Shared, when enabled, makes the engine one of several workers, in
	// one process or many, on one machine or many, that update the flow
	// at once through the same PostgreSQL or Redis state store and share
	// each pass's work (see docs/scale-out.md). Without it, a second
	// update of the flow is refused with ErrFlowLocked. SQLite cannot be
	// shared.
	Shared SharedOptions

	// Faults inject failures between the phases of each batch write, to
	// test that a target recovers from a crash there. Leave it zero in
	// production.
	Faults FaultHooks
}

// DefaultLeaseTTL is SharedOptions.LeaseTTL's default.
const DefaultLeaseTTL = engine.DefaultLeaseTTL

// SharedOptions configure a worker sharing its flow's updates with others
// (Options.Shared). Per source, one worker lists each pass, holding its
// listing lease; the rows that need work are shared out as claims, each
// processed by one worker at a time; the lister deletes what the listing
// left out once every claim is done. Leases and claims expire unless
// renewed, so the work of a worker that dies goes to the others after
// LeaseTTL, and a worker whose claims were taken commits nothing of them.
type SharedOptions struct {
	// Enabled shares the flow's updates.
	Enabled bool
	// Worker names this worker among the flow's workers, in logs and in
	// the state store; default: the host name, the process id and a
	// random suffix.
	Worker string
	// LeaseTTL is how long a listing lease or a claim lasts unless renewed
	// (every third of it): how long the work of a worker that died waits
	// for another (default 30s, at least 100ms).
	LeaseTTL time.Duration
	// Poll is how often an idle worker looks for claims; once the listing
	// is complete, twice as long (default 50ms).
	Poll time.Duration
}

// FaultHooks are called between the phases of each batch write: before the
// target keys are staged in the state store, before the sinks apply the
// batch, and before the batch is committed; and after a setup change (a
// table created or altered, an index added) is applied, before it is
// committed. An error from one stops the update there, as a crash would;
// the next update must converge. They let target and connector authors test
// their crash recovery.
type FaultHooks struct {
	BeforePrecommit func(ctx context.Context) error
	BeforeApply     func(ctx context.Context) error
	BeforeCommit    func(ctx context.Context) error
	AfterSetupApply func(ctx context.Context) error
}

// BatchOptions bound a batch of target writes and state commits, which
// spans many source rows. A batch is written when any bound is reached.
type BatchOptions struct {
	// MaxRows bounds the source rows in a batch (default 1000).
	MaxRows int
	// MaxActions bounds the target actions in a batch (default 10,000).
	MaxActions int
	// MaxBytes bounds the fetched source values in a batch, by the size of
	// their canonical encoding (default 32 MiB).
	MaxBytes int
	// MaxDelay bounds how long a processed row waits before it is written
	// and committed, and so how much a crash can lose (default 1s).
	MaxDelay time.Duration
}

// RetryPolicy governs retries of faults marked retryable: jittered
// exponential backoff from Initial, growing by Multiplier up to Max, for at
// most MaxElapsed (0: no bound) and MaxAttempts (0: no bound).
type RetryPolicy struct {
	Initial     time.Duration
	Max         time.Duration
	Multiplier  float64
	MaxElapsed  time.Duration
	MaxAttempts int
}

// Mode selects how much an update redoes.
type Mode uint8

const (
	// ModeIncremental fetches, processes and writes only what changed.
	ModeIncremental = Mode(engine.ModeIncremental)
	// ModeFullReprocess fetches and processes every row, ignoring ordinals
	// and content fingerprints; target states that did not change are
	// still not written.
	ModeFullReprocess = Mode(engine.ModeFullReprocess)
	// ModeReexport processes every row and writes every target state again.
	ModeReexport = Mode(engine.ModeReexport)
)

// String returns "incremental", "full-reprocess" or "reexport".
func (m Mode) String() string { return engine.Mode(m).String() }

// UpdateOptions configure one update.
type UpdateOptions struct {
	Mode Mode
	// Preview computes what the update would do, writing nothing. A target
	// whose setup would change is reported, but its rows are not: they
	// cannot be reconciled before the setup change.
	Preview bool
	// Sources, when set, limits the update to the sources named.
	Sources []string
	// Stop, when closed, stops the update gracefully: no more rows are
	// listed, the rows being processed are finished and committed, rows
	// waiting for a worker are left for the next update, and Update returns
	// an error matching ErrStopped. A listing cut short by the stop counts
	// as incomplete, so nothing is deleted for it; deletions of rows found
	// gone by a listing that had completed before the stop are kept.
	Stop <-chan struct{}
	// Progress, when set, is called with the counts so far every
	// ProgressInterval (default half a second) while the update runs, from
	// another goroutine.
	Progress         func(*tidemarktype.UpdateStats)
	ProgressInterval time.Duration
	// Confirm guards against a listing that would empty the targets by
	// mistake (a typo in a filter, an API answering an empty page). It is
	// asked before the rows a complete listing left out are deleted when
	// that listing named no row at all while the source has rows, or when
	// the source's options changed since its last update (for a source
	// that is an OptionsDescriber). It returns true to delete them. When
	// Confirm is nil or returns false they are kept (SourceStats.Held
	// counts them), and Update returns, with the stats of everything else
	// it did, an error matching ErrDeletionsHeld (a
	// *tidemarktype.DeletionsHeldError says what was held and why). It is
	// not asked in a preview.
	Confirm func(ctx context.Context, d tidemarktype.Deletions) (bool, error)
}

func (o UpdateOptions) engine() engine.UpdateOptions {
	eo := engine.UpdateOptions{Mode: engine.Mode(o.Mode), Preview: o.Preview, Sources: o.Sources,
		Stop: o.Stop, ProgressInterval: o.ProgressInterval, Confirm: o.Confirm}
	if o.Progress != nil {
		eo.Progress = func(st tidemarktype.UpdateStats) { o.Progress(&st) }
	}
	return eo
}

// Engine runs a flow's updates against its state store. It is safe for
// concurrent use; two updates of one flow never overlap: the second fails
// with ErrFlowLocked, in this process or another.
type Engine struct {
	flow  *Flow
	eng   *engine.Engine
	store statestore.Store
	log   *slog.Logger
}

// Open checks the flow, opens its state store (applying its migrations),
// and returns an engine ready to update. Close it when done.
func Open(ctx context.Context, f *Flow, opts Options) (*Engine, error) {
	if opts.StateStore == "" {
		return nil, errors.New("tidemark: Options.StateStore is required: a SQLite file path or a postgres:// or redis:// URL")
	}
	ef, err := f.engineFlow()
	if err != nil {
		return nil, err
	}
	store, err := openStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	e, err := newEngine(f, ef, store, opts)
	if err != nil {
		store.Close()
		return nil, err
	}
	return e, nil
}

// StateExists reports whether opts.StateStore (in opts.StateSchema) holds
// Tidemark's state, writing nothing: false for a SQLite file that does not
// exist or has none, a PostgreSQL database without the schema, or a Redis
// database without the prefix's keys. Read-only tools ask it before Open,
// which would create the state store.
func StateExists(ctx context.Context, opts Options) (bool, error) {
	dsn := opts.StateStore
	if err := dburl.CheckState(dsn); err != nil {
		return false, fmt.Errorf("tidemark: Options.StateStore: %w", err)
	}
	var (
		exists bool
		err    error
	)
	switch {
	case dburl.IsRedis(dsn):
		exists, err = redisstore.Exists(ctx, dburl.Normalize(dsn), opts.StateSchema)
	case dburl.IsPostgres(dsn):
		exists, err = pgstore.Exists(ctx, dburl.Normalize(dsn), opts.StateSchema)
	default:
		exists, err = sqlitestore.Exists(ctx, dsn)
	}
	if err != nil {
		return false, fmt.Errorf("tidemark: looking for the state store: %w", dburl.RedactError(dsn, err))
	}
	return exists, nil
}

func openStore(ctx context.Context, opts Options) (statestore.Store, error) {
	dsn := opts.StateStore
	if err := dburl.CheckState(dsn); err != nil {
		return nil, fmt.Errorf("tidemark: Options.StateStore: %w", err)
	}
	if dburl.IsRedis(dsn) {
		s, err := redisstore.Open(ctx, dburl.Normalize(dsn), redisstore.Config{Prefix: opts.StateSchema})
		if err != nil {
			return nil, fmt.Errorf("tidemark: opening the state store: %w", dburl.RedactError(dsn, err))
		}
		return s, nil
	}
	if dburl.IsPostgres(dsn) {
		s, err := pgstore.Open(ctx, dburl.Normalize(dsn), opts.StateSchema)
		if err != nil {
			return nil, fmt.Errorf("tidemark: opening the state store: %w", dburl.RedactError(dsn, err))
		}
		return s, nil
	}
	s, err := sqlitestore.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("tidemark: opening the state store: %w", err)
	}
	return s, nil
}

func newEngine(f *Flow, ef *engine.Flow, store statestore.Store, opts Options) (*Engine, error) {
	eng, err := engine.New(ef, store, engine.Options{
		Logger:    opts.Logger,
		Batch:     mergeBatch(opts.Batch),
		Retry:     retry.Policy(opts.Retry),
		Hooks:     engine.Hooks(opts.Faults),
		Observers: observers(opts.Observer),
		Shared:    engine.SharedOptions(opts.Shared),
	})
	if err != nil {
		return nil, fmt.Errorf("tidemark: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{flow: f, eng: eng, store: store, log: log}, nil
}

func mergeBatch(b BatchOptions) engine.BatchOptions {
	d := engine.DefaultBatchOptions()
	if b.MaxRows != 0 {
		d.MaxRows = b.MaxRows
	}
	if b.MaxActions != 0 {
		d.MaxActions = b.MaxActions
	}
	if b.MaxBytes != 0 {
		d.MaxBytes = b.MaxBytes
	}
	if b.MaxDelay != 0 {
		d.MaxDelay = b.MaxDelay
	}
	return d
}

// Close closes the state store.
func (e *Engine) Close() error { return e.store.Close() }

// Flow returns the engine's flow.
func (e *Engine) Flow() *Flow { return e.flow }

// Update runs one update: it sets up the targets, lists every source,
// fetches and processes the rows that changed, writes their target states,
// and deletes the states of rows gone from a complete listing. It returns
// an error when the update could not finish: a listing that failed (see
// ErrListingIncomplete; the other rows were still updated) or a fatal fault
// (nothing inconsistent is left: the next update resumes). Rows that failed
// alone are not errors: they are counted in the stats, recorded, and
// retried on the next update.
func (e *Engine) Update(ctx context.Context, opts UpdateOptions) (*tidemarktype.UpdateStats, error) {
	st, err := e.eng.Update(ctx, opts.engine())
	return &st, publicError(err)
}

// Plan returns the setup changes the next update would apply, applying
// none of them.
func (e *Engine) Plan(ctx context.Context) ([]tidemarktype.SetupChange, error) {
	changes, err := e.eng.Plan(ctx)
	return changes, err
}

// Setup applies the flow's setup changes (creating and altering targets)
// without processing any row, and returns them.
func (e *Engine) Setup(ctx context.Context) ([]tidemarktype.SetupChange, error) {
	changes, err := e.eng.Setup(ctx)
	return changes, err
}

// Drop tears down every target the flow set up, with all their contents,
// and forgets everything remembered of the flow; then each source that is
// a SourceDropper removes what it installed.
func (e *Engine) Drop(ctx context.Context) ([]tidemarktype.SetupChange, error) {
	changes, err := e.eng.Drop(ctx)
	if err != nil {
		return changes, err
	}
	for _, s := range e.flow.sources {
		if d, ok := s.impl.source().(SourceDropper); ok {
			if err := d.DropSource(ctx); err != nil {
				return changes, fmt.Errorf("tidemark: dropping source %s: %w", s.name, err)
			}
		}
	}
	return changes, nil
}

// FailingRows returns the number of rows whose last update failed, by
// source name, as Status counts them, from the state store's index of
// failed rows: cheap enough to ask at every metrics scrape.
func (e *Engine) FailingRows(ctx context.Context) (map[string]int64, error) {
	return e.eng.FailingRows(ctx)
}

// Status reports what the state store knows of the flow, with at most
// failures of the most recently failed rows per source.
func (e *Engine) Status(ctx context.Context, failures int) (*tidemarktype.Status, error) {
	st, err := e.eng.Status(ctx, failures)
	if err != nil {
		return nil, err
	}
	return &st, nil
}
