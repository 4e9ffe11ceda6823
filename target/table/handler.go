package table

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/fingerprint"
	"github.com/tidemark/tidemark/target"
)

// Driver is a database as table targets see it. Its methods do the I/O;
// the handlers of this package decide what to do.
type Driver interface {
	// SQLType returns the dialect's type for a column without an override.
	SQLType(c Column) string
	// ApplySetup applies setup changes to tables, in order. A change with a
	// nil Cur drops the table. Otherwise the driver brings the table to Cur
	// from whatever state it is in — the table may be missing, or in any of
	// the states Prev lists, or halfway between after an interrupted change
	// — by looking at the table itself; Change says what differs from the
	// states recorded.
	ApplySetup(ctx context.Context, changes []SetupChange) error
	// Write applies row changes in one transaction: all of them or, with
	// an error, none. Within a Write a row key appears at most once per
	// table. It must be idempotent, and mark errors a retry may fix with
	// tidemark.Retryable.
	Write(ctx context.Context, writes []Write) error
	// Attachment returns the handler of attachments of kind on a table.
	Attachment(t *Spec, kind string) (target.Erased, bool)
}

// ErrNotOurs is matched (errors.Is) by a setup refused because it would
// create a table, or an attachment of one, where the database holds
// something of that name Tidemark did not create; the error is a
// *NotOursError, naming it.
var ErrNotOurs = errors.New("table: exists already and was not created by Tidemark")

// NotOursError refuses to create a table, or an attachment of one, where
// the database already holds something of that name that Tidemark did not
// create: setting it up would drop or alter what someone else made. It
// matches ErrNotOurs.
type NotOursError struct {
	// Kind is what exists: "table" (any relation) or "column".
	Kind string
	// Name is its name, qualified by the schema where the dialect has them.
	Name string
	// Table is the table declared, as the setup plan names it.
	Table string
	// Role, when what exists is not the table itself, is what Tidemark
	// would keep there: "the full-text index".
	Role string
}

// Error names what exists and what to do about it.
func (e *NotOursError) Error() string {
	msg := e.Kind + " " + e.Name + " already exists and was not created by Tidemark"
	if e.Role != "" {
		msg += ", and " + e.Role + " of table " + e.Table + " would be kept there"
	}
	return msg + ": drop or rename it, or declare another table name"
}

// Is makes the error match ErrNotOurs.
func (e *NotOursError) Is(target error) bool { return target == ErrNotOurs }

// CreateChecker is implemented by a Driver that can look at the live
// database before setup: Sinks has it check each table about to be
// created — one with no setup Tidemark tracks, so neither committed nor
// staged by an interrupted setup — in plans and before the creation is
// staged, so that a table someone else made is refused, never dropped or
// altered.
type CreateChecker interface {
	// CheckCreate returns a *NotOursError for the first of tables that
	// exists already in the database, or whose creation would take over a
	// relation that exists (a full-text table kept beside it); nil if none
	// does. It only reads.
	CheckCreate(ctx context.Context, tables []*Spec) error
}

// ConcurrentDriver is a Driver whose Write may run in several calls at
// once, with disjoint rows: the engine splits a large batch into that many
// calls, each holding whole source rows (see target.ConcurrentSink).
type ConcurrentDriver interface {
	Driver
	// Concurrency returns how many calls of Write may run at once.
	Concurrency() int
}

// SetupChange is a change of a table's setup to apply.
type SetupChange struct {
	Key target.Key
	// Cur is the setup wanted; nil drops the table.
	Cur *Spec
	// Prev lists the setups the table may be in.
	Prev []Spec
	// MayBeMissing says the table may not exist.
	MayBeMissing bool
	// Change is the change from the setups recorded; empty with Keep.
	Change Change
	// Keep says nothing changes: the driver does no I/O.
	Keep bool

	child func() target.Erased
}

// String describes the change for a setup plan.
func (c SetupChange) String() string {
	switch {
	case c.Cur == nil:
		return "drop table " + qualified(c.Prev)
	case c.creates():
		return "create table " + c.Cur.name()
	case c.Keep:
		return "keep table " + c.Cur.name()
	case c.Change.Empty():
		return "complete the setup of table " + c.Cur.name()
	default:
		return "alter table " + c.Cur.name() + ": " + c.Change.String()
	}
}

func qualified(prev []Spec) string {
	if len(prev) == 0 {
		return "?"
	}
	return prev[len(prev)-1].name()
}

func (s *Spec) name() string {
	if s.Schema != "" {
		return s.Schema + "." + s.Table
	}
	return s.Table
}

// Write is the row changes of one table in a batch.
type Write struct {
	Table *Spec
	// Upserts hold whole rows, in column order.
	Upserts [][]any
	// Deletes hold primary key values, in primary key order.
	Deletes [][]any
}

// Sinks are the sinks a driver's tables share, so that one batch carries
// the changes of every table of the database. Make one per driver value.
type Sinks struct {
	driver Driver
	setup  *setupSink
	rows   *rowSink
}

// setupSink applies the setup changes of every table of a driver, and
// checks those that create a table with the driver, if it can.
type setupSink struct{ s *Sinks }

// Apply implements target.ContainerSink.
func (u *setupSink) Apply(ctx context.Context, changes []SetupChange) ([]target.Erased, error) {
	return u.s.applySetup(ctx, changes)
}

// Check implements target.Checker: the tables created (no setup tracked)
// must not exist already.
func (u *setupSink) Check(ctx context.Context, changes []SetupChange) error {
	c, ok := u.s.driver.(CreateChecker)
	if !ok {
		return nil
	}
	var created []*Spec
	for _, ch := range changes {
		if ch.creates() {
			created = append(created, ch.Cur)
		}
	}
	if len(created) == 0 {
		return nil
	}
	return c.CheckCreate(ctx, created)
}

// creates reports whether the change creates a table Tidemark has no
// setup of, committed or staged.
func (c SetupChange) creates() bool { return c.Cur != nil && len(c.Prev) == 0 }

// rowSink applies the row actions of every table of a driver.
type rowSink struct{ s *Sinks }

// Apply implements target.Sink.
func (r *rowSink) Apply(ctx context.Context, actions []RowAction) error {
	return r.s.applyRows(ctx, actions)
}

// Concurrency implements target.ConcurrentSink with the driver's.
func (r *rowSink) Concurrency() int {
	if c, ok := r.s.driver.(ConcurrentDriver); ok {
		return c.Concurrency()
	}
	return 1
}

// NewSinks returns the sinks of driver.
func NewSinks(driver Driver) *Sinks {
	s := &Sinks{driver: driver}
	s.setup = &setupSink{s: s}
	s.rows = &rowSink{s: s}
	return s
}

// Driver returns the sinks' driver.
func (s *Sinks) Driver() Driver { return s.driver }

func (s *Sinks) applySetup(ctx context.Context, changes []SetupChange) ([]target.Erased, error) {
	var todo []SetupChange
	for _, c := range changes {
		if !c.Keep {
			todo = append(todo, c)
		}
	}
	if len(todo) > 0 {
		if err := s.driver.ApplySetup(ctx, todo); err != nil {
			return nil, err
		}
	}
	children := make([]target.Erased, len(changes))
	for i, c := range changes {
		if c.Cur != nil {
			children[i] = c.child()
		}
	}
	return children, nil
}

// RowAction is the upsert or delete of one row.
type RowAction struct {
	Table *Spec
	Key   target.Key
	// Values is the row to write; nil deletes the row with primary key PK.
	Values []any
	PK     []any
}

func (s *Sinks) applyRows(ctx context.Context, actions []RowAction) error {
	var (
		writes []Write
		index  = make(map[*Spec]int)
	)
	for _, a := range actions {
		i, ok := index[a.Table]
		if !ok {
			i = len(writes)
			index[a.Table] = i
			writes = append(writes, Write{Table: a.Table})
		}
		if a.Values == nil {
			writes[i].Deletes = append(writes[i].Deletes, a.PK)
		} else {
			writes[i].Upserts = append(writes[i].Upserts, a.Values)
		}
	}
	return s.driver.Write(ctx, writes)
}

// Handler reconciles a table: the container of its rows.
type Handler struct {
	sinks  *Sinks
	schema *Schema
}

// NewHandler returns the handler of tables whose rows have schema.
func NewHandler(sinks *Sinks, schema *Schema) *Handler {
	return &Handler{sinks: sinks, schema: schema}
}

// Reconcile reconciles a table's setup; its record is the Spec as JSON.
func (h *Handler) Reconcile(key target.Key, desired *Spec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	prevSpecs := make([]Spec, 0, len(prev))
	for _, p := range prev {
		var s Spec
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, fmt.Errorf("table %s: decoding the previous setup: %w", key, err)
		}
		prevSpecs = append(prevSpecs, s)
	}
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.DoContainer(h.sinks.setup, SetupChange{Key: key, Prev: prevSpecs, MayBeMissing: prevMayBeMissing})}, nil
	}
	rec, err := json.Marshal(desired)
	if err != nil {
		return nil, err
	}
	spec := *desired
	c := SetupChange{Key: key, Cur: &spec, Prev: prevSpecs, MayBeMissing: prevMayBeMissing,
		child: func() target.Erased {
			return target.Erase[Values](&rowHandler{sinks: h.sinks, schema: h.schema, spec: &spec})
		}}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		c.Keep = true
		return &target.Reconciled{Action: target.DoContainer(h.sinks.setup, c), Record: rec}, nil
	}
	for i := range prevSpecs {
		c.Change = c.Change.Merge(Diff(&prevSpecs[i], &spec))
	}
	return &target.Reconciled{Action: target.DoContainer(h.sinks.setup, c), Record: rec, Invalidate: c.Change.Invalidation()}, nil
}

// Values are a row's column values, as Schema.Values returns them: what a
// table's processing function declares.
type Values []any

// rowHandler reconciles the rows of one table; a row's record is the
// fingerprint of its column values.
type rowHandler struct {
	sinks  *Sinks
	schema *Schema
	spec   *Spec
}

func (h *rowHandler) Reconcile(key target.Key, desired *Values, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		pk, err := h.schema.DecodeKey(key)
		if err != nil {
			return nil, err
		}
		return &target.Reconciled{Action: target.Do(h.sinks.rows, RowAction{Table: h.spec, Key: key, PK: pk})}, nil
	}
	values := *desired
	if len(values) != len(h.spec.Columns) {
		return nil, fmt.Errorf("table %s: %d values for %d columns", h.spec.Table, len(values), len(h.spec.Columns))
	}
	fp, err := fingerprint.Of([]any(values))
	if err != nil {
		return nil, fmt.Errorf("table: fingerprinting row %s: %w", key, err)
	}
	rec := target.Record(fp[:])
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do(h.sinks.rows, RowAction{Table: h.spec, Key: key, Values: values}), Record: rec}, nil
}

// Attachment implements target.Attacher with the driver's attachments.
func (h *rowHandler) Attachment(kind string) (target.Erased, bool) {
	return h.sinks.driver.Attachment(h.spec, kind)
}

// Guard is the sink of the attachment actions that create an attachment
// Tidemark tracks no setup of, committed or staged: it applies them with
// the attachment's own sink, and has check look at the database first
// (see target.Checker), so that creating a full-text index never takes
// over a relation or column someone else made. Make one per driver value
// and wrap the attachment's handler with GuardCreate.
type Guard[A any] struct {
	sink  target.Sink[A]
	check func(ctx context.Context, actions []A) error
}

// NewGuard returns the guard of sink's creations; check returns a
// *NotOursError for the first action whose creation would take over
// something that exists, and only reads.
func NewGuard[A any](sink target.Sink[A], check func(ctx context.Context, actions []A) error) *Guard[A] {
	return &Guard[A]{sink: sink, check: check}
}

// Apply implements target.Sink with the attachment's sink.
func (g *Guard[A]) Apply(ctx context.Context, actions []A) error { return g.sink.Apply(ctx, actions) }

// Check implements target.Checker.
func (g *Guard[A]) Check(ctx context.Context, actions []A) error { return g.check(ctx, actions) }

// GuardCreate wraps h, an attachment handler whose actions are As applied
// by the guard's sink, so that the action creating a state with no setup
// tracked goes through the guard.
func GuardCreate[V, A any](g *Guard[A], h target.Handler[V]) target.Handler[V] {
	return &guarded[V, A]{g: g, h: h}
}

type guarded[V, A any] struct {
	g *Guard[A]
	h target.Handler[V]
}

// Reconcile implements target.Handler.
func (w *guarded[V, A]) Reconcile(key target.Key, desired *V, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	rec, err := w.h.Reconcile(key, desired, prev, prevMayBeMissing)
	if err != nil || rec == nil || desired == nil || len(prev) > 0 || rec.Action.IsZero() {
		return rec, err
	}
	a, ok := rec.Action.Value().(A)
	if !ok {
		return nil, fmt.Errorf("table: attachment %s: the guard takes %T actions, the handler made a %T", key, *new(A), rec.Action.Value())
	}
	out := *rec
	out.Action = target.Do[A](w.g, a)
	return &out, nil
}
