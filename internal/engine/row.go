package engine

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/fingerprint"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// resultKind says what became of a row.
type resultKind uint8

const (
	// resultNone: nothing to do (a row never seen is gone already).
	resultNone resultKind = iota
	// resultUpdate: the row was processed; its actions are to be written.
	resultUpdate
	// resultBump: same content under a new ordinal; only the ordinal moves.
	resultBump
	// resultGone: the row is gone; its target states are to be deleted.
	resultGone
	// resultFailed: the row failed and keeps its old state.
	resultFailed
)

// rowStat is which counter a written row adds to.
type rowStat uint8

const (
	statAdded rowStat = iota
	statUpdated
	statReprocessed
)

// trackKey identifies a target state: a key within a root target.
type trackKey struct {
	root int64
	key  target.Key
}

// tracked is what may exist for one target state of a row.
type tracked struct {
	prev         []target.Record
	mayBeMissing bool
	// wrote says the row's value may be the one in the target.
	wrote bool
	// committed says the row's committed tracking holds the state, so the
	// row owns it.
	committed bool
	// value and seq are the committed value and change count of a state of
	// a target with a change hook (see statestore.Entry); value is nil when
	// none was kept.
	value []byte
	seq   int64
}

// declaration is a target state a row declares.
type declaration struct {
	value  any
	record target.Record
	// wrote says the row's value may be the one in the target already.
	wrote bool
	// fresh says the row's committed tracking does not hold the state:
	// another row may have written it (see owners.adopt). prev and
	// mayBeMissing are what the row's own tracking says of it.
	fresh        bool
	prev         []target.Record
	mayBeMissing bool
	// deferred says the state is reconciled by the writer, not yet.
	deferred bool
	// action is the row's planned write of the state, if any; entry is
	// the state's index in the row's declared entries of its root.
	action *plannedAction
	entry  int
	// h reconciles the state, under its key within its container, leaf.
	h    target.Erased
	leaf target.Key
	// in is the row container the state is in, nil for a child of a root;
	// nest is the state's own, when it is a row container.
	in, nest *nest
	// attachment says the state is an attachment of its container; depth
	// counts the containers it is in.
	attachment bool
	depth      int
	// replaces says the state, no container now, may be one in the
	// target: it is written once what is in that container is gone.
	replaces bool
}

// replacing sets whether the declared state, no container itself, may be
// one in the target, in one of the versions prev.
func (d *declaration) replacing(prev []target.Record) error {
	if d.nest != nil || d.attachment {
		d.replaces = false
		return nil
	}
	was, err := trackedChildren(d.h, d.leaf, prev)
	d.replaces = !was.IsZero()
	return err
}

// phase returns the phase of a write of the declared state.
func (d *declaration) phase() phase {
	if d.replaces {
		return phaseOf(true, false, true, d.depth)
	}
	return phaseOf(d.nest != nil, d.attachment, false, d.depth)
}

// plan makes rec the row's planned write of the declared state.
func (d *declaration) plan(res *rowResult, rs *rootState, key target.Key, rec *target.Reconciled) {
	d.record = rec.Record
	if d.nest != nil {
		d.nest.invalidate = rec.Invalidate
	}
	d.action = &plannedAction{row: res, root: rs, key: key, action: rec.Action, record: rec.Record, phase: d.phase(), invalidate: rec.Invalidate}
	res.actions = append(res.actions, d.action)
}

// plannedAction is an action a row's update wants written.
type plannedAction struct {
	row    *rowResult
	root   *rootState
	key    target.Key
	action target.Action
	// record is the record staged for the action; delete marks an action
	// for a state no longer declared.
	record target.Record
	delete bool
	// cancelled is set by the writer on a deletion that another row's
	// declaration or ownership makes moot, or that another row of the batch
	// already asks for.
	cancelled bool
	// standby is set by the writer on a write of a state that a later row
	// of the batch writes too: it is applied only if that row fails.
	standby bool
	// wrote, on a deletion, says the row's value may be the one in the
	// target, with one of the records prev, and mayBeMissing that it may not
	// exist; applied says the writer applied the action.
	wrote        bool
	prev         []target.Record
	mayBeMissing bool
	applied      bool
	// others, on a write of a state that other rows may have written last,
	// are the records the value in the target may have: staged with the
	// write, so that the row still knows them if the write does not land.
	others []target.Record
	// cancelledFor holds the rows of the batch whose declaration of the
	// state cancelled this deletion: were they all to fail, the deletion
	// is applied after all.
	cancelledFor []*rowResult
	// phase orders the action among the batch's (see nest.go);
	// invalidate is what a write of a container does to what is in it.
	phase      phase
	invalidate target.Invalidation
	// codeleters, on the one deletion of a container that several rows of
	// the batch delete, are the others: should one fail, it still owns
	// the container and what is left in it, which stays.
	codeleters []*rowResult
}

// rowResult is a processed row on its way to the writer.
type rowResult struct {
	run  *sourceRun
	key  string
	id   int64 // 0 for a row seen for the first time
	kind resultKind
	stat rowStat
	err  error
	// bytes is the size of the fetched value, for batching.
	bytes     int
	ordinal   *int64
	contentFP []byte
	// declared holds the row's target states per root, with their records:
	// its tracking once committed.
	declared map[int64][]statestore.Entry
	// declaredSet holds the same target states with their values, for
	// lookups and for writing a state again when another row stops
	// declaring it.
	declaredSet map[trackKey]*declaration
	// owned are the target states the row owned before this update: those
	// of its committed tracking.
	owned   map[trackKey]bool
	actions []*plannedAction
	// deferred counts the declarations left to the writer (see
	// owners.adopt), which count as actions for batching.
	deferred int
	// oldStaged are the row's staged entries still in force.
	oldStaged []statestore.Section
	// claim is the row's claim in a shared pass, if it has one; lost says
	// the claim was taken before the row's commit, which is left to the
	// worker that took it.
	claim *statestore.ClaimRef
	lost  bool
	// changes are the changes of hooked target states the row's commit
	// puts in the outbox (see Hook).
	changes []statestore.Change
}

func (r *sourceRun) fail(res *rowResult, err error) *rowResult {
	res.kind = resultFailed
	res.err = err
	res.actions = nil
	return res
}

// process fetches and processes one row; nil when the update is cancelled.
// A panic in the source, the processing function, a handler or the
// fingerprinting fails the row.
func (r *sourceRun) process(ctx context.Context, it *item, h *fingerprint.Hasher) (res *rowResult) {
	defer func() {
		if p := recover(); p != nil {
			r.u.e.log.ErrorContext(ctx, "a panic while updating a row", "source", r.src.Name, "key", it.key, "panic", p, "stack", string(debug.Stack()))
			res = r.fail(&rowResult{run: r, key: it.key, id: idOf(it.meta)}, fmt.Errorf("panic: %v", p))
		}
	}()
	return r.processRow(ctx, it, h)
}

func idOf(m *statestore.RowMeta) int64 {
	if m == nil {
		return 0
	}
	return m.ID
}

func (r *sourceRun) processRow(ctx context.Context, it *item, h *fingerprint.Hasher) *rowResult {
	u := r.u
	res := &rowResult{run: r, key: it.key}
	if it.meta != nil {
		res.id = it.meta.ID
	}
	var fetched Fetched
	if !it.gone {
		var start time.Time
		observe := u.e.opts.Observers.Fetched
		if observe != nil {
			start = time.Now()
		}
		err := u.e.do(ctx, "get "+it.key, func(ctx context.Context) (err error) {
			r.counters.fetched.Add(1)
			fetched, err = r.src.Impl.Get(ctx, it.key)
			return err
		})
		if ctx.Err() != nil {
			return nil
		}
		if observe != nil {
			observe(ctx, tidemarktype.Fetch{Source: r.src.Name, Key: it.key, Duration: time.Since(start), Exists: err == nil && fetched.Exists, Err: err})
		}
		if err != nil {
			return r.fail(res, fmt.Errorf("fetching: %w", err))
		}
		it.gone = !fetched.Exists
	}
	if it.gone {
		if it.meta == nil {
			res.kind = resultNone
			return res
		}
		res.kind = resultGone
		if err := r.reconcile(res, it, nil); err != nil {
			return r.fail(res, err)
		}
		return res
	}

	switch {
	case fetched.HasOrdinal:
		res.ordinal = &fetched.Ordinal
	case it.listed.HasOrdinal:
		res.ordinal = &it.listed.Ordinal
	}
	if !r.src.Impl.ProvidesOrdinal() {
		res.ordinal = nil
	}
	fp, err := h.Sum(fetched.Value)
	if err != nil {
		return r.fail(res, fmt.Errorf("fingerprinting the value: %w", err))
	}
	res.bytes = h.Len()
	res.contentFP = fetched.Fingerprint
	if res.contentFP == nil {
		res.contentFP = fp[:]
	}

	m := it.meta
	logicCurrent := m != nil && bytes.Equal(m.LogicFP, u.e.logicFP) && m.Gen >= u.setup.reprocessBelow
	switch {
	case m == nil || m.Ordinal == nil && m.ContentFP == nil:
		res.stat = statAdded
	case !logicCurrent || u.opts.Mode != ModeIncremental:
		res.stat = statReprocessed
	default:
		res.stat = statUpdated
	}
	// The second rung of the skip ladder: the same content, processed with
	// the same logic, needs only its ordinal moved.
	if u.opts.Mode == ModeIncremental && m != nil && !m.Staged && logicCurrent && bytes.Equal(m.ContentFP, res.contentFP) {
		res.kind = resultBump
		return res
	}

	decls, err := r.runProcess(ctx, it.key, fetched.Value)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return r.fail(res, fmt.Errorf("processing: %w", err))
	}
	res.kind = resultUpdate
	if err := r.reconcile(res, it, decls); err != nil {
		return r.fail(res, err)
	}
	return res
}

// runProcess runs the processing function.
func (r *sourceRun) runProcess(ctx context.Context, key string, value any) ([]Decl, error) {
	return r.src.Impl.Process(ctx, key, value)
}

// liveSection returns the root a tracked section belongs to, and whether
// its states may have lost their data; nil when the states no longer exist.
func (u *update) liveSection(s statestore.Section) (*rootState, bool) {
	rs := u.setup.byID[s.TargetID]
	if rs == nil || s.Gen < rs.destroyedGen {
		return nil, false
	}
	return rs, s.Gen < rs.lostGen
}

// decodeTracking turns a row's tracking blobs into what may exist for each
// of its target states, and returns the staged sections still in force.
func (u *update) decodeTracking(t statestore.RowTracking) (map[trackKey]*tracked, []statestore.Section, error) {
	committed, err := statestore.DecodeSections(t.Tracking)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the row's tracking: %w", err)
	}
	staged, err := statestore.DecodeSections(t.Staged)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the row's staged tracking: %w", err)
	}
	out := make(map[trackKey]*tracked)
	reexport := u.opts.Mode == ModeReexport
	for _, s := range committed {
		rs, lost := u.liveSection(s)
		if rs == nil {
			continue
		}
		for _, e := range s.Entries {
			out[trackKey{rs.id, target.Key(e.Key)}] = &tracked{prev: []target.Record{e.Record}, mayBeMissing: lost || reexport, wrote: e.Wrote, committed: true,
				value: e.Value, seq: e.Seq}
		}
	}
	var live []statestore.Section
	for _, s := range staged {
		rs, _ := u.liveSection(s)
		if rs == nil {
			continue
		}
		live = append(live, s)
		for _, e := range s.Entries {
			k := trackKey{rs.id, target.Key(e.Key)}
			t := out[k]
			if t == nil {
				t = &tracked{}
				out[k] = t
			}
			// A staged change may or may not have happened: a staged write
			// leaves a committed state in its old version or the new one,
			// while a state first written, or deleted, may not exist.
			if e.Deleting || !t.committed {
				t.mayBeMissing = true
			}
			t.wrote = true
			if !e.Deleting && !containsRecord(t.prev, e.Record) {
				t.prev = append(t.prev, e.Record)
			}
		}
	}
	return out, live, nil
}

// hookChange records, in entry, the value hooked that the row declares for
// the state key of the hooked root rs, which t tracks, and adds the change
// to the row's changes when there is one: the value differs from the one
// committed; or, when none was kept (the state is new to the row, or was
// written before the target had its hook), when written says the state is
// written.
func (res *rowResult) hookChange(rs *rootState, key target.Key, t *tracked, hooked []byte, entry *statestore.Entry, written bool) {
	entry.Value, entry.Seq = hooked, t.seq
	var old []byte
	switch {
	case t.committed && t.value != nil:
		if bytes.Equal(t.value, hooked) {
			return
		}
		old = t.value
	case t.committed && !written:
		return
	}
	entry.Seq = nextSeq(t.seq)
	res.changes = append(res.changes, statestore.Change{TargetID: rs.id, RowKey: res.key, Key: string(key), Seq: entry.Seq, Old: old, New: hooked})
}

// nextSeq returns the sequence number of a state's change after one
// numbered last: the time in microseconds, or last+1 if that is not more.
// A number made from the time grows across a row's deletion and return,
// when its tracking, and with it the last number, went with the row: the
// changes of the row's next life never take the numbers, and so the
// idempotency keys, of its last.
func nextSeq(last int64) int64 {
	return max(last+1, time.Now().UnixMicro())
}

// reconcile runs the handlers for a row's declared target states, and for
// those it no longer declares, planning the actions to write.
func (r *sourceRun) reconcile(res *rowResult, it *item, decls []Decl) error {
	u := r.u
	tracking, oldStaged, err := u.decodeTracking(it.tracking)
	if err != nil {
		return err
	}
	res.oldStaged = oldStaged
	res.owned = make(map[trackKey]bool, len(tracking))
	for k, t := range tracking {
		if t.committed {
			res.owned[k] = true
		}
	}
	res.declared = make(map[int64][]statestore.Entry)
	seen := make(map[trackKey]*declaration, len(decls))
	res.declaredSet = seen
	sc := &scope{u: u, tracking: tracking, nests: make(map[trackKey]*nest)}
	for _, d := range decls {
		if d.Root < 0 || d.Root >= len(u.setup.roots) {
			return fmt.Errorf("declared a state of unknown target %d", d.Root)
		}
		rs := u.setup.roots[d.Root]
		if rs.pending {
			continue // preview: its setup changes first
		}
		if rs.child.IsZero() {
			return fmt.Errorf("declared %q in target %s, which has no children", d.Key, rs.root.Key)
		}
		key := nestedKey(d.Path, d.Attach, d.Key)
		decl := &declaration{value: d.Value, h: rs.child, leaf: d.Key, attachment: d.Attach != "", depth: len(d.Path)}
		switch {
		case len(d.Path) > 0:
			ck := trackKey{rs.id, nested{path: d.Path}.container()}
			in := sc.nests[ck]
			switch {
			case in == nil && seen[ck] != nil:
				return fmt.Errorf("declared %q in %q of target %s, which is not a container: its handler %T gives no child handler for it (see target.Nester)", d.Key, displayKey(ck.key), rs.root.Key, seen[ck].h.Handler())
			case in == nil:
				return fmt.Errorf("declared %q in container %q of target %s, which the row does not declare", d.Key, displayKey(ck.key), rs.root.Key)
			}
			decl.in, decl.h = in, in.children
			if d.Attach != "" {
				h, ok := in.children.Attachment(d.Attach)
				if !ok {
					return fmt.Errorf("declared attachment %q of container %q in target %s, which has no attachment of kind %q", d.Key, d.Path[len(d.Path)-1], rs.root.Key, d.Attach)
				}
				decl.h = h
			}
		case d.Attach != "":
			return fmt.Errorf("declared attachment %q of target %s from a row: a root's attachments are declared with the flow", d.Key, rs.root.Key)
		case strings.HasPrefix(string(d.Key), nestedPrefix) && rs.child.Nests():
			return fmt.Errorf("declared %q in target %s: keys starting with a NUL byte are reserved in a target whose states may be containers", d.Key, rs.root.Key)
		}
		k := trackKey{rs.id, key}
		if seen[k] != nil {
			return fmt.Errorf("declared %q in target %s twice", displayKey(key), rs.root.Key)
		}
		t := tracking[k]
		if t == nil {
			t = &tracked{mayBeMissing: true}
		}
		prev, mayBeMissing := t.prev, t.mayBeMissing
		if decl.in != nil {
			prev, mayBeMissing, _ = decl.in.fate(prev, mayBeMissing)
		}
		decl.wrote, decl.fresh, decl.prev, decl.mayBeMissing = t.wrote, !t.committed, prev, mayBeMissing
		decl.entry = len(res.declared[rs.id])
		if !decl.attachment {
			children, err := safeChildren(decl.h, d.Key, d.Value, nil)
			if err != nil {
				return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(key), err)
			}
			if !children.IsZero() {
				decl.nest = &nest{children: children, parent: decl.in, mayBeMissing: mayBeMissing && len(prev) > 0}
				sc.nests[k] = decl.nest
			}
		}
		if err := decl.replacing(prev); err != nil {
			return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(key), err)
		}
		seen[k] = decl
		var hooked []byte // the value a change hook is told of
		if rs.root.Hook != nil && len(d.Path) == 0 && d.Attach == "" {
			if hooked, err = rs.root.Hook.encode(d.Value); err != nil {
				return fmt.Errorf("target %s, key %q: encoding the value for its change hook: %w", rs.root.Key, displayKey(key), err)
			}
		}
		if decl.fresh && u.own.defers(rs.id) {
			// Another row may own the state: the writer reconciles it
			// with what that row knows (owners.adopt).
			decl.deferred = true
			res.deferred++
			entry := statestore.Entry{Key: string(key)}
			if hooked != nil {
				res.hookChange(rs, key, t, hooked, &entry, true)
			}
			res.declared[rs.id] = append(res.declared[rs.id], entry)
			continue
		}
		rec, err := safeReconcile(decl.h, d.Key, d.Value, prev, mayBeMissing)
		if err != nil {
			return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(key), err)
		}
		planned := rec != nil && !rec.Action.IsZero()
		switch {
		case planned:
			decl.plan(res, rs, key, rec)
		case rec != nil:
			decl.record = rec.Record
		case len(prev) > 0:
			decl.record = prev[0]
		}
		entry := statestore.Entry{Key: string(key), Record: decl.record}
		if hooked != nil {
			res.hookChange(rs, key, t, hooked, &entry, planned && u.opts.Mode != ModeReexport)
		}
		res.declared[rs.id] = append(res.declared[rs.id], entry)
	}
	gone := make([]trackKey, 0, len(tracking))
	for k := range tracking {
		if seen[k] == nil {
			gone = append(gone, k)
		}
	}
	// Sorted, so that sinks see deletions in a stable order.
	slices.SortFunc(gone, compareTrackKeys)
	for _, k := range gone {
		t := tracking[k]
		rs := u.setup.byID[k.root]
		if rs.pending {
			continue
		}
		h, in, n, err := sc.handler(k)
		if err != nil {
			return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err)
		}
		prev, mayBeMissing, destroyed := in.fate(t.prev, t.mayBeMissing)
		if destroyed {
			continue // gone with its container
		}
		container := false
		if n.attach == "" {
			children, err := trackedChildren(h, n.key, t.prev)
			if err != nil {
				return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err)
			}
			container = !children.IsZero()
		}
		rec, err := safeReconcile(h, n.key, nil, prev, mayBeMissing)
		if err != nil {
			return fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err)
		}
		if rs.root.Hook != nil && n.depth() == 0 && n.attach == "" && t.committed {
			res.changes = append(res.changes, statestore.Change{TargetID: rs.id, RowKey: res.key, Key: string(k.key), Seq: nextSeq(t.seq), Old: t.value})
		}
		if rec != nil && !rec.Action.IsZero() {
			res.actions = append(res.actions, &plannedAction{row: res, root: rs, key: k.key, action: rec.Action, delete: true, wrote: t.wrote, prev: prev, mayBeMissing: mayBeMissing,
				phase: phaseOf(container, n.attach != "", true, n.depth())})
		}
	}
	return nil
}
