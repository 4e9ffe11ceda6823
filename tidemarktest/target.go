package tidemarktest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// DB is an in-memory database of tables, standing in for an external
// system. Tables are containers whose rows are keyed by target.Key; an
// "index" attachment records an index on a table. It counts what it is
// asked to do and can be told to fail. It is safe for concurrent use.
//
// A DB outlives the engines that write to it, like a real database, so a
// test can crash an update and check that the next one converges.
type DB struct {
	mu     sync.Mutex
	tables map[target.Key]*table
	counts Counts
	// failIn counts the actions still allowed before every apply fails;
	// negative when no failure is set.
	failIn  int
	failErr error
	// failSetup fails every table and index change while set.
	failSetup error
	// failRows fails every apply holding a write of one of these rows.
	failRows map[target.Key]error
	// recording says row reconciles are logged in reconciles.
	recording  bool
	reconciles []Reconcile

	tableSink *target.ContainerSinkFunc[tableAction]
	rowSink   *target.SinkFunc[rowAction]
	idxSink   *target.SinkFunc[indexAction]
}

type table struct {
	spec    TableSpec
	rows    map[target.Key]any
	indexes map[target.Key]IndexSpec
}

// Counts are what a DB was asked to do.
type Counts struct {
	// Applies counts calls of the row sink: batches.
	Applies int
	// Upserts and Deletes count row actions applied.
	Upserts int
	Deletes int
	// Setups counts table and index changes applied.
	Setups int
	// SetupApplies counts the calls of the table sink and of the index
	// sink that changed something: batches of setup changes.
	SetupApplies int
}

// NewDB returns an empty database.
func NewDB() *DB {
	db := &DB{tables: make(map[target.Key]*table), failIn: -1}
	db.tableSink = target.NewContainerSink(db.applyTables)
	db.rowSink = target.NewSink(db.applyRows)
	db.idxSink = target.NewSink(db.applyIndexes)
	return db
}

// TableSpec is the setup state of a table.
type TableSpec struct {
	// Name is the table's name.
	Name string
	// Schema stands for the table's columns: changing it is lossy (every
	// row's value is lost and must be written again).
	Schema string
	// KeySchema stands for the table's primary key: changing it is
	// destructive (the table is dropped and created again).
	KeySchema string
}

// IndexSpec is the setup state of an index attachment.
type IndexSpec struct {
	Field string
}

// TableOption configures a table.
type TableOption func(*TableSpec)

// Schema sets the table's column schema; see TableSpec.
func Schema(s string) TableOption { return func(t *TableSpec) { t.Schema = s } }

// KeySchema sets the table's key schema; see TableSpec.
func KeySchema(s string) TableOption { return func(t *TableSpec) { t.KeySchema = s } }

// Table declares the table name in db as a target of f, whose rows are
// values of type V.
func Table[V any](f *tidemark.Flow, db *DB, name string, opts ...TableOption) *tidemark.Target[V] {
	spec := TableSpec{Name: name}
	for _, o := range opts {
		o(&spec)
	}
	return tidemark.DeclareContainer[TableSpec, V](f, "memory.table", target.Key("memory/"+name), &tableHandler[V]{db: db}, spec)
}

// Index declares an index on the field of a table's rows.
func Index[V any](t *tidemark.Target[V], name, field string) {
	tidemark.Attach(t, "index", target.Key(name), IndexSpec{Field: field})
}

// tableHandler reconciles tables; its record is the spec as JSON.
type tableHandler[V any] struct{ db *DB }

type tableAction struct {
	key    target.Key
	spec   *TableSpec // nil: drop
	create bool
	lossy  bool
	rows   func(db *DB, t *table) target.Erased
}

func (a tableAction) String() string {
	switch {
	case a.spec == nil:
		return "drop table " + string(a.key)
	case a.create:
		return "create table " + a.spec.Name
	case a.lossy:
		return "alter table " + a.spec.Name
	default:
		return "keep table " + a.spec.Name
	}
}

func (h *tableHandler[V]) Reconcile(key target.Key, desired *TableSpec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	rows := func(db *DB, t *table) target.Erased { return target.Erase[V](&rowHandler[V]{db: db, table: key}) }
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.DoContainer(h.db.tableSink, tableAction{key: key})}, nil
	}
	rec, err := json.Marshal(desired)
	if err != nil {
		return nil, err
	}
	action := tableAction{key: key, spec: desired, rows: rows}
	inv := target.InvalidateNone
	for _, p := range prev {
		var old TableSpec
		if err := json.Unmarshal(p, &old); err != nil {
			return nil, fmt.Errorf("decoding table record: %w", err)
		}
		switch {
		case old.KeySchema != desired.KeySchema:
			action.create, inv = true, target.InvalidateDestructive
		case old.Schema != desired.Schema && inv != target.InvalidateDestructive:
			action.lossy, inv = true, target.InvalidateLossy
		}
	}
	if len(prev) == 0 {
		action.create = true
	}
	return &target.Reconciled{Action: target.DoContainer(h.db.tableSink, action), Record: rec, Invalidate: inv}, nil
}

func (db *DB) applyTables(_ context.Context, actions []tableAction) ([]target.Erased, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failSetup != nil {
		return nil, db.failSetup
	}
	defer db.countSetupApply(db.counts.Setups)
	out := make([]target.Erased, len(actions))
	for i, a := range actions {
		if a.spec == nil {
			delete(db.tables, a.key)
			db.counts.Setups++
			continue
		}
		t := db.tables[a.key]
		switch {
		case t == nil || a.create && t.spec.KeySchema != a.spec.KeySchema:
			t = &table{rows: make(map[target.Key]any), indexes: make(map[target.Key]IndexSpec)}
			db.tables[a.key] = t
			db.counts.Setups++
		case a.lossy && t.spec.Schema != a.spec.Schema:
			for k := range t.rows {
				t.rows[k] = nil // the data is lost
			}
			db.counts.Setups++
		}
		t.spec = *a.spec
		out[i] = a.rows(db, t)
	}
	return out, nil
}

// rowHandler reconciles the rows of one table; its record is the row's
// fingerprint.
type rowHandler[V any] struct {
	db    *DB
	table target.Key
}

type rowAction struct {
	table target.Key
	key   target.Key
	value any // nil: delete
}

func (h *rowHandler[V]) Reconcile(key target.Key, desired *V, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	h.db.record(h.table, key, desired, prev, prevMayBeMissing)
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.db.rowSink, rowAction{table: h.table, key: key})}, nil
	}
	rec, err := target.Fingerprint(desired)
	if err != nil {
		return nil, err
	}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do(h.db.rowSink, rowAction{table: h.table, key: key, value: *desired}), Record: rec}, nil
}

// Attachment implements target.Attacher: tables have "index" attachments.
func (h *rowHandler[V]) Attachment(kind string) (target.Erased, bool) {
	if kind != "index" {
		return target.Erased{}, false
	}
	return target.Erase[IndexSpec](&indexHandler{db: h.db, table: h.table}), true
}

func (db *DB) applyRows(_ context.Context, actions []rowAction) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.counts.Applies++
	for _, a := range actions {
		if err := db.failRows[a.key]; err != nil {
			return err
		}
	}
	for _, a := range actions {
		if db.failIn == 0 {
			return db.failErr
		}
		if db.failIn > 0 {
			db.failIn--
		}
		t := db.tables[a.table]
		if t == nil {
			return fmt.Errorf("memory: table %s does not exist", a.table)
		}
		if a.value == nil {
			delete(t.rows, a.key)
			db.counts.Deletes++
		} else {
			t.rows[a.key] = a.value
			db.counts.Upserts++
		}
	}
	return nil
}

// indexHandler reconciles index attachments; its record is the spec.
type indexHandler struct {
	db    *DB
	table target.Key
}

type indexAction struct {
	table target.Key
	name  target.Key
	spec  *IndexSpec // nil: drop
}

func (h *indexHandler) Reconcile(key target.Key, desired *IndexSpec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.db.idxSink, indexAction{table: h.table, name: key})}, nil
	}
	rec := target.Record(desired.Field)
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{Action: target.Do(h.db.idxSink, indexAction{table: h.table, name: key, spec: desired}), Record: rec}, nil
}

func (db *DB) applyIndexes(_ context.Context, actions []indexAction) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failSetup != nil {
		return db.failSetup
	}
	defer db.countSetupApply(db.counts.Setups)
	for _, a := range actions {
		t := db.tables[a.table]
		if t == nil {
			return fmt.Errorf("memory: table %s does not exist", a.table)
		}
		if a.spec == nil {
			delete(t.indexes, a.name)
		} else {
			t.indexes[a.name] = *a.spec
		}
		db.counts.Setups++
	}
	return nil
}

// countSetupApply counts a setup sink's call that changed something: the
// setups counted went past before. The caller holds db.mu.
func (db *DB) countSetupApply(before int) {
	if db.counts.Setups > before {
		db.counts.SetupApplies++
	}
}

// FailAfter lets the next n row actions succeed, then fails every row
// apply with err, as a database that went away mid-batch; Heal ends it.
func (db *DB) FailAfter(n int, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.failIn, db.failErr = n, err
}

// FailSetup makes every table and index change fail with err, as a
// database refusing DDL; Heal ends it.
func (db *DB) FailSetup(err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.failSetup = err
}

// FailRow makes every row apply that holds an action on a row keyed key,
// in any table, fail with err, writing nothing, as a database refusing one
// value; Heal ends it.
func (db *DB) FailRow(key target.Key, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failRows == nil {
		db.failRows = make(map[target.Key]error)
	}
	db.failRows[key] = err
}

// Heal ends the failures set by FailAfter, FailSetup and FailRow.
func (db *DB) Heal() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.failIn, db.failErr, db.failSetup, db.failRows = -1, nil, nil, nil
}

// Reconcile is one call of a table row handler's Reconcile, as logged
// while RecordReconciles is on: what the engine told the handler.
type Reconcile struct {
	// Table is the table's name.
	Table string
	Key   target.Key
	// Desired is the row's value, nil when it is no longer declared.
	Desired any
	// Prev and PrevMayBeMissing are as the handler got them.
	Prev             []target.Record
	PrevMayBeMissing bool
}

// RecordReconciles turns the log of row reconciles on or off; turning it
// on clears it.
func (db *DB) RecordReconciles(on bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.recording, db.reconciles = on, nil
}

// Reconciles returns the row reconciles logged since RecordReconciles was
// turned on, in the order they happened.
func (db *DB) Reconciles() []Reconcile {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.reconciles)
}

func (db *DB) record(table target.Key, key target.Key, desired any, prev []target.Record, mayBeMissing bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.recording {
		return
	}
	r := Reconcile{Table: strings.TrimPrefix(string(table), "memory/"), Key: key, Prev: slices.Clone(prev), PrevMayBeMissing: mayBeMissing}
	if v := reflect.ValueOf(desired); v.Kind() == reflect.Pointer && !v.IsNil() {
		r.Desired = v.Elem().Interface()
	}
	db.reconciles = append(db.reconciles, r)
}

// Counts returns what the DB was asked to do.
func (db *DB) Counts() Counts {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.counts
}

// ResetCounts sets the counters to zero.
func (db *DB) ResetCounts() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.counts = Counts{}
}

// Tables returns the names of the tables that exist.
func (db *DB) Tables() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	var names []string
	for _, t := range db.tables {
		names = append(names, t.spec.Name)
	}
	return names
}

// Indexes returns the indexes of a table, by name.
func (db *DB) Indexes(name string) map[target.Key]IndexSpec {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.tables[target.Key("memory/"+name)]
	if t == nil {
		return nil
	}
	return maps.Clone(t.indexes)
}

// Rows returns a copy of the rows of a table, nil if it does not exist. A
// row whose value was lost (see TableSpec.Schema) is present with a nil
// value.
func (db *DB) Rows(name string) map[target.Key]any {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := db.tables[target.Key("memory/"+name)]
	if t == nil {
		return nil
	}
	return maps.Clone(t.rows)
}
