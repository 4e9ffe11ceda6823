package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// SetupChange is one change to the setup of a root target or attachment.
type SetupChange = tidemarktype.SetupChange

// rootState is what an update knows of one declared root target.
type rootState struct {
	root  *Root
	index int
	// id is the root's id in the state store; 0 while it does not exist.
	id int64
	// child handles the root's children.
	child target.Erased
	// destroyedGen and lostGen say which children's tracking is void or
	// suspect; see statestore.Section.
	destroyedGen, lostGen int64
	// pending is set in preview when the root's setup would change: its
	// children cannot be reconciled before that change is applied.
	pending bool
	// mayBeMissing says the container may not have existed before this
	// update's setup: its attachments may be missing too.
	mayBeMissing bool
}

// setupState is the outcome of setting up a flow's targets.
type setupState struct {
	gen   int64
	roots []*rootState
	byID  map[int64]*rootState
	// reprocessBelow is the generation below which a row must be processed
	// again, because a target lost or destroyed children since.
	reprocessBelow int64
	changes        []SetupChange
}

// attachmentKey is the persistent key of an attachment.
func attachmentKey(root target.Key, kind string, key target.Key) string {
	return string(root) + "#" + kind + ":" + string(key)
}

// possibles returns the records a setup state may be in, and whether it may
// not exist at all.
func possibles(t *statestore.Target) ([]target.Record, bool) {
	if t == nil {
		return nil, true
	}
	var prev []target.Record
	mayBeMissing := !t.Exists
	if t.Exists {
		prev = append(prev, t.Record)
	}
	for _, s := range t.Staged {
		if s == nil {
			mayBeMissing = true
			continue
		}
		if !containsRecord(prev, s) {
			prev = append(prev, s)
		}
	}
	return prev, mayBeMissing
}

func containsRecord(list []target.Record, r []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, r) {
			return true
		}
	}
	return false
}

func describe(a target.Action) string {
	if s, ok := a.Value().(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}

// setupStep is one setup state an update reconciles: a root target or an
// attachment, set up or torn down. Steps are run in phases (retired roots,
// roots, attachments), each phase with one Apply per sink.
type setupStep struct {
	kind, key string
	parent    int64
	// rec is what the handler decided; its action may be zero for a
	// teardown with nothing to do.
	rec *target.Reconciled
	// change says the state changes: it is staged, applied and committed.
	// Otherwise only its action is applied (a container's keep, no I/O),
	// for the child handler.
	change bool
	// gone says the change tears the state down.
	gone bool
	// invalidate is what committing the change does to the children.
	invalidate target.Invalidation
	// rs is the root's state, for a root being set up.
	rs *rootState
	// id is the state's id in the store: known, or given at staging.
	id int64
	// child is the child handler a container sink returned.
	child target.Erased
}

// record is the record the step stages and commits: none for a teardown.
func (s *setupStep) record() []byte {
	if s.gone {
		return nil
	}
	return s.rec.Record
}

// runSteps runs one phase of setup: it checks the steps that change with
// their sinks (target.Checker), stages them, applies every step's action
// with one Apply per sink, in order of first appearance, and commits the
// changes. In preview it checks the steps that change and applies only the
// actions of those that do not, for their child handlers.
func (e *Engine) runSteps(ctx context.Context, st *setupState, steps []*setupStep, preview bool) error {
	if err := e.checkSteps(ctx, steps); err != nil {
		return err
	}
	var run []*setupStep
	for _, s := range steps {
		if !s.change || !preview {
			run = append(run, s)
		}
	}
	changed := false
	for _, s := range run {
		if !s.change || s.rec.Action.IsZero() {
			continue
		}
		staged, err := e.stageTarget(ctx, s.kind, s.key, s.parent, s.record())
		if err != nil {
			return err
		}
		s.id, changed = staged.ID, true
		if s.rs != nil {
			s.rs.id = staged.ID
		}
	}
	for _, g := range groupBySink(run) {
		if err := e.applySetup(ctx, g); err != nil {
			return err
		}
	}
	if changed {
		if err := runHook(ctx, e.opts.Hooks.AfterSetupApply); err != nil {
			return err
		}
	}
	for _, s := range run {
		if !s.change || s.id == 0 {
			continue
		}
		gen, err := e.commitTarget(ctx, s.id, !s.gone, s.record(), s.invalidate)
		if err != nil {
			return err
		}
		st.gen = gen
		if s.rs != nil {
			switch s.invalidate {
			case target.InvalidateLossy:
				s.rs.lostGen = gen
			case target.InvalidateDestructive:
				s.rs.destroyedGen = gen
			}
		}
	}
	return nil
}

// groupBySink groups the steps that have an action by its sink, in order
// of first appearance.
func groupBySink(steps []*setupStep) [][]*setupStep {
	var (
		groups [][]*setupStep
		bySink = make(map[any]int)
	)
	for _, s := range steps {
		if s.rec.Action.IsZero() {
			continue
		}
		i, ok := bySink[s.rec.Action.Sink()]
		if !ok {
			i = len(groups)
			bySink[s.rec.Action.Sink()] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], s)
	}
	return groups
}

// checkSteps has the sinks of the steps that change check them against
// their targets before anything is staged, one call per sink: a sink
// refuses a change its target cannot take (a table to create where one it
// did not create exists).
func (e *Engine) checkSteps(ctx context.Context, steps []*setupStep) error {
	var changes []*setupStep
	for _, s := range steps {
		if s.change {
			changes = append(changes, s)
		}
	}
	for _, g := range groupBySink(changes) {
		actions := make([]target.Action, len(g))
		keys := make([]string, len(g))
		for i, s := range g {
			actions[i], keys[i] = s.rec.Action, s.key
		}
		err := e.do(ctx, "check the setup of "+strings.Join(keys, ", "), func(ctx context.Context) (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("the setup sink's check panicked: %v", p)
				}
			}()
			return target.CheckBatch(ctx, actions)
		})
		if err != nil {
			return fmt.Errorf("setting up %s: %w", strings.Join(keys, ", "), err)
		}
	}
	return nil
}

// applySetup applies the actions of steps that share a sink in one call.
func (e *Engine) applySetup(ctx context.Context, steps []*setupStep) error {
	actions := make([]target.Action, len(steps))
	keys := make([]string, len(steps))
	changes := false
	for i, s := range steps {
		actions[i], keys[i] = s.rec.Action, s.key
		changes = changes || s.change
	}
	op := e.do
	if changes {
		op = e.write
	}
	var children []target.Erased
	err := op(ctx, "set up "+strings.Join(keys, ", "), func(ctx context.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("the setup sink panicked: %v", p)
			}
		}()
		children, err = target.ApplyBatch(ctx, actions)
		return err
	})
	if err != nil {
		return fmt.Errorf("setting up %s: %w", strings.Join(keys, ", "), err)
	}
	for i, s := range steps {
		if children != nil {
			s.child = children[i]
		}
	}
	return nil
}

// setup reconciles the flow's root targets and their attachments, applying
// the changes unless preview is set, and returns the child handlers. The
// state it returns lists the changes made, even with an error.
func (e *Engine) setup(ctx context.Context, preview bool) (*setupState, error) {
	var flow statestore.Flow
	if err := e.do(ctx, "get flow", func(ctx context.Context) (err error) {
		if preview {
			flow, err = e.store.FlowFind(ctx, statestore.FlowGetParams{Flow: e.flow.Name})
			if errors.Is(err, statestore.ErrNotFound) {
				flow, err = statestore.Flow{Name: e.flow.Name}, nil
			}
			return err
		}
		flow, err = e.store.FlowGet(ctx, statestore.FlowGetParams{Flow: e.flow.Name})
		return err
	}); err != nil {
		return &setupState{}, err
	}
	st := &setupState{gen: flow.Gen, byID: make(map[int64]*rootState)}
	stored, err := e.listTargets(ctx)
	if err != nil {
		return st, err
	}
	byKey := make(map[string]*statestore.Target, len(stored))
	for i := range stored {
		byKey[stored[i].Key] = &stored[i]
	}

	// Retire first what the flow no longer declares, or declares with
	// another kind, so that a new target never meets an old one's teardown.
	var retired []*setupStep
	declared := make(map[string]bool)
	for _, r := range e.flow.Roots {
		declared[string(r.Key)] = true
	}
	for i := range stored {
		cur := &stored[i]
		if cur.ParentID != 0 {
			continue
		}
		if declared[cur.Key] {
			if r := e.flow.root(cur.Key); r.Kind == cur.Kind {
				continue
			}
			delete(byKey, cur.Key)
		}
		h, ok := e.handlerFor(cur)
		if !ok {
			e.log.WarnContext(ctx, "a target is no longer declared, but no handler of its kind is registered; leaving it", "target", cur.Key, "kind", cur.Kind)
			continue
		}
		step, err := e.tearDown(st, h, cur, target.Key(cur.Key))
		if err != nil {
			return st, fmt.Errorf("dropping target %s: %w", cur.Key, err)
		}
		retired = append(retired, step)
	}
	if err := e.runSteps(ctx, st, retired, preview); err != nil {
		return st, fmt.Errorf("dropping targets: %w", err)
	}

	var roots []*setupStep
	for i, r := range e.flow.Roots {
		rs := &rootState{root: r, index: i}
		st.roots = append(st.roots, rs)
		step, err := e.setupRoot(st, rs, byKey[string(r.Key)], preview)
		if err != nil {
			return st, fmt.Errorf("setting up target %s: %w", r.Key, err)
		}
		if step != nil {
			roots = append(roots, step)
		}
	}
	destroyedBefore := make(map[*rootState]int64)
	for _, rs := range st.roots {
		destroyedBefore[rs] = rs.destroyedGen
	}
	if err := e.runSteps(ctx, st, roots, preview); err != nil {
		return st, err
	}
	relist := false
	for _, step := range roots {
		rs, r := step.rs, step.rs.root
		if !r.Container || rs.pending {
			continue
		}
		if step.child.IsZero() {
			return st, fmt.Errorf("setting up target %s: the container sink of %T returned no child handler", r.Key, r.Handler.Handler())
		}
		rs.child = step.child
		if r.ChildType != nil && rs.child.ValueType() != r.ChildType {
			return st, fmt.Errorf("setting up target %s: the container's child handler takes %s, but the flow declares %s", r.Key, rs.child.ValueType(), r.ChildType)
		}
		// Destroying a container staged drops on its attachments: read
		// them again.
		relist = relist || rs.destroyedGen != destroyedBefore[rs]
	}
	for _, rs := range st.roots {
		if rs.id != 0 {
			st.byID[rs.id] = rs
		}
	}
	if relist {
		if stored, err = e.listTargets(ctx); err != nil {
			return st, err
		}
	}

	var attachments []*setupStep
	for _, rs := range st.roots {
		r := rs.root
		if !r.Container {
			continue
		}
		if rs.pending {
			// The container's child handler is known only once its setup
			// is applied; the plan names the attachments it would create.
			cur := byKey[string(r.Key)]
			for _, a := range r.Attachments {
				full := attachmentKey(r.Key, a.Kind, a.Key)
				if !slices.ContainsFunc(stored, func(t statestore.Target) bool { return t.Key == full && cur != nil && t.ParentID == cur.ID }) {
					st.changes = append(st.changes, SetupChange{Kind: a.Kind, Key: full, Change: "create",
						Description: "a " + a.Kind + " of " + string(r.Key) + ", once that is set up"})
				}
			}
			continue
		}
		steps, err := e.setupAttachments(ctx, st, rs, stored)
		if err != nil {
			return st, fmt.Errorf("setting up the attachments of %s: %w", r.Key, err)
		}
		attachments = append(attachments, steps...)
	}
	if err := e.runSteps(ctx, st, attachments, preview); err != nil {
		return st, fmt.Errorf("setting up attachments: %w", err)
	}
	for _, rs := range st.roots {
		st.reprocessBelow = max(st.reprocessBelow, rs.lostGen, rs.destroyedGen)
	}
	return st, nil
}

// root returns the declared root of key, nil if none.
func (f *Flow) root(key string) *Root {
	for _, r := range f.Roots {
		if string(r.Key) == key {
			return r
		}
	}
	return nil
}

func (e *Engine) listTargets(ctx context.Context) ([]statestore.Target, error) {
	var stored []statestore.Target
	err := e.do(ctx, "list targets", func(ctx context.Context) (err error) {
		stored, err = e.store.TargetList(ctx, statestore.TargetListParams{Flow: e.flow.Name})
		return err
	})
	return stored, err
}

// setupRoot reconciles one declared root, returning its step; nil when
// there is nothing to apply.
func (e *Engine) setupRoot(st *setupState, rs *rootState, cur *statestore.Target, preview bool) (*setupStep, error) {
	r := rs.root
	if cur != nil {
		rs.id, rs.destroyedGen, rs.lostGen = cur.ID, cur.DestroyedGen, cur.LostGen
	}
	prev, mayBeMissing := possibles(cur)
	rec, err := safeReconcile(r.Handler, r.Key, r.Spec, prev, mayBeMissing)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		if r.Container {
			return nil, fmt.Errorf("the container handler %T returned no Reconciled; a container must always return one so its sink can give the child handler", r.Handler.Handler())
		}
		return nil, nil
	}
	unchanged := cur != nil && cur.Exists && len(cur.Staged) == 0 && bytes.Equal(cur.Record, rec.Record) && rec.Invalidate == target.InvalidateNone
	invalidate := rec.Invalidate
	switch {
	case len(prev) == 0 && r.Container:
		// A container created (again) holds nothing: every row must write
		// its children, even rows unchanged since they last did.
		invalidate = target.InvalidateDestructive
	case mayBeMissing && r.Container:
		// A container that may be gone (its drop was interrupted) may
		// have taken its children and attachments with it: every child is
		// written again, and deletions still happen as tracked.
		invalidate = max(invalidate, target.InvalidateLossy)
		rs.mayBeMissing = true
	}
	step := &setupStep{kind: r.Kind, key: string(r.Key), rec: rec, rs: rs, id: rs.id, change: !unchanged, invalidate: invalidate}
	if !unchanged {
		change, reported := "update", invalidate
		if len(prev) == 0 {
			change, reported = "create", rec.Invalidate
		}
		st.changes = append(st.changes, SetupChange{Kind: r.Kind, Key: string(r.Key), Change: change, Description: describe(rec.Action), Invalidate: reported})
		if preview {
			rs.pending = true
			if invalidate != target.InvalidateNone {
				// Every row would be processed again.
				st.reprocessBelow = math.MaxInt64
			}
		}
	}
	return step, nil
}

// setupAttachments reconciles a container's declared attachments, and
// those no longer declared as gone, returning their steps.
func (e *Engine) setupAttachments(ctx context.Context, st *setupState, rs *rootState, stored []statestore.Target) ([]*setupStep, error) {
	r := rs.root
	existing := make(map[string]*statestore.Target)
	if rs.id != 0 {
		for i := range stored {
			if stored[i].ParentID == rs.id {
				existing[stored[i].Key] = &stored[i]
			}
		}
	}
	var steps []*setupStep
	declared := make(map[string]bool)
	for _, a := range r.Attachments {
		full := attachmentKey(r.Key, a.Kind, a.Key)
		if declared[full] {
			return nil, fmt.Errorf("attachment %s declared twice", full)
		}
		declared[full] = true
		h, ok := rs.child.Attachment(a.Kind)
		if !ok {
			return nil, fmt.Errorf("the target has no attachment of kind %q", a.Kind)
		}
		cur := existing[full]
		prev, mayBeMissing := possibles(cur)
		rec, err := safeReconcile(h, a.Key, a.Spec, prev, mayBeMissing || rs.mayBeMissing)
		if err != nil {
			return nil, fmt.Errorf("attachment %s: %w", full, err)
		}
		if rec == nil {
			continue
		}
		change := "update"
		if len(prev) == 0 {
			change = "create"
		}
		st.changes = append(st.changes, SetupChange{Kind: a.Kind, Key: full, Change: change, Description: describe(rec.Action)})
		steps = append(steps, &setupStep{kind: a.Kind, key: full, parent: rs.id, rec: rec, change: true})
	}
	keys := slices.Sorted(maps.Keys(existing))
	for _, full := range keys {
		cur := existing[full]
		if declared[full] {
			continue
		}
		h, ok := rs.child.Attachment(cur.Kind)
		if !ok {
			e.log.WarnContext(ctx, "an attachment is no longer declared, but its kind is unknown; leaving it", "attachment", full)
			continue
		}
		key := target.Key(strings.TrimPrefix(full, string(r.Key)+"#"+cur.Kind+":"))
		step, err := e.tearDown(st, h, cur, key)
		if err != nil {
			return nil, fmt.Errorf("attachment %s: %w", full, err)
		}
		steps = append(steps, step)
	}
	return steps, nil
}

func (e *Engine) handlerFor(cur *statestore.Target) (target.Erased, bool) {
	for _, r := range e.flow.Roots {
		if r.Kind == cur.Kind {
			return r.Handler, true
		}
	}
	h, ok := e.flow.Handlers[cur.Kind]
	return h, ok
}

// tearDown reconciles a stored setup state as gone, returning the step that
// tears it down and forgets it.
func (e *Engine) tearDown(st *setupState, h target.Erased, cur *statestore.Target, key target.Key) (*setupStep, error) {
	prev, mayBeMissing := possibles(cur)
	rec, err := safeReconcile(h, key, nil, prev, mayBeMissing)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		rec = &target.Reconciled{}
	}
	st.changes = append(st.changes, SetupChange{Kind: cur.Kind, Key: cur.Key, Change: "drop", Description: describe(rec.Action)})
	return &setupStep{kind: cur.Kind, key: cur.Key, parent: cur.ParentID, rec: rec, change: true, gone: true, id: cur.ID}, nil
}

func (e *Engine) stageTarget(ctx context.Context, kind, key string, parent int64, record []byte) (statestore.Target, error) {
	var t statestore.Target
	err := e.write(ctx, "stage target "+key, func(ctx context.Context) (err error) {
		t, err = e.store.TargetStage(ctx, statestore.TargetStageParams{Flow: e.flow.Name, Kind: kind, Key: key, ParentID: parent, Record: record})
		return err
	})
	return t, err
}

func (e *Engine) commitTarget(ctx context.Context, id int64, exists bool, record []byte, inv target.Invalidation) (int64, error) {
	var res statestore.TargetCommitResult
	err := e.write(ctx, "commit target", func(ctx context.Context) (err error) {
		res, err = e.store.TargetCommit(ctx, statestore.TargetCommitParams{Flow: e.flow.Name, ID: id, Exists: exists, Record: record, Invalidate: inv})
		return err
	})
	return res.Gen, err
}

// dropAttachments returns the steps that tear down the attachments of the
// containers about to be dropped, for those the flow still declares
// unchanged: only then can the engine get the child handler that knows
// them. Otherwise they go with the container.
func (e *Engine) dropAttachments(ctx context.Context, st *setupState, stored []statestore.Target) ([]*setupStep, error) {
	var keeps []*setupStep
	curs := make(map[*setupStep]*statestore.Target)
	for i := range stored {
		cur := &stored[i]
		r := e.flow.root(cur.Key)
		if cur.ParentID != 0 || r == nil || r.Kind != cur.Kind || !r.Container || !cur.Exists || len(cur.Staged) > 0 {
			continue
		}
		rec, err := safeReconcile(r.Handler, r.Key, r.Spec, []target.Record{cur.Record}, false)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", cur.Key, err)
		}
		if rec == nil || !bytes.Equal(rec.Record, cur.Record) || rec.Invalidate != target.InvalidateNone {
			continue
		}
		step := &setupStep{kind: cur.Kind, key: cur.Key, rec: rec}
		keeps = append(keeps, step)
		curs[step] = cur
	}
	if err := e.runSteps(ctx, st, keeps, false); err != nil { // keeps: no I/O
		return nil, err
	}
	var steps []*setupStep
	for _, k := range keeps {
		cur := curs[k]
		if k.child.IsZero() {
			continue
		}
		for i := range stored {
			att := &stored[i]
			if att.ParentID != cur.ID {
				continue
			}
			h, ok := k.child.Attachment(att.Kind)
			if !ok {
				continue
			}
			key := target.Key(strings.TrimPrefix(att.Key, cur.Key+"#"+att.Kind+":"))
			step, err := e.tearDown(st, h, att, key)
			if err != nil {
				return nil, fmt.Errorf("attachment %s: %w", att.Key, err)
			}
			steps = append(steps, step)
		}
	}
	return steps, nil
}

// Plan returns the setup changes an update would apply, applying none. A
// change a sink refuses (target.Checker) is the plan's error, as it would
// be the update's.
func (e *Engine) Plan(ctx context.Context) ([]SetupChange, error) {
	st, err := e.setup(ctx, true)
	if err != nil {
		return nil, err
	}
	return st.changes, nil
}

// Setup applies the flow's setup changes and returns them, with those
// applied before an error.
func (e *Engine) Setup(ctx context.Context) ([]SetupChange, error) {
	release, err := e.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := e.setup(ctx, false)
	return st.changes, err
}

// Drop tears down every root target the flow has, with their children, and
// forgets everything kept for the flow. It refuses, changing nothing, when a
// stored target's kind has no handler.
func (e *Engine) Drop(ctx context.Context) ([]SetupChange, error) {
	release, err := e.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if e.coord != nil {
		// Shared workers in a pass would fail on a flow dropped under
		// them (an engine alone checked when it locked).
		if err := e.passRunning(ctx); err != nil {
			return nil, err
		}
	}
	stored, err := e.listTargets(ctx)
	if err != nil {
		return nil, err
	}
	type drop struct {
		cur *statestore.Target
		h   target.Erased
	}
	var drops []drop
	for i := range stored {
		cur := &stored[i]
		if cur.ParentID != 0 {
			continue // attachments go with their container
		}
		h, ok := e.handlerFor(cur)
		if !ok {
			return nil, fmt.Errorf("cannot drop target %s: no handler of kind %q is registered", cur.Key, cur.Kind)
		}
		drops = append(drops, drop{cur, h})
	}
	st := &setupState{}
	attachments, err := e.dropAttachments(ctx, st, stored)
	if err == nil {
		err = e.runSteps(ctx, st, attachments, false)
	}
	if err != nil {
		return st.changes, fmt.Errorf("dropping the attachments of the targets: %w", err)
	}
	var roots []*setupStep
	for _, d := range drops {
		step, err := e.tearDown(st, d.h, d.cur, target.Key(d.cur.Key))
		if err != nil {
			return st.changes, fmt.Errorf("dropping target %s: %w", d.cur.Key, err)
		}
		roots = append(roots, step)
	}
	if err := e.runSteps(ctx, st, roots, false); err != nil {
		return st.changes, fmt.Errorf("dropping targets: %w", err)
	}
	if err := e.write(ctx, "drop flow", func(ctx context.Context) error {
		return e.store.FlowDrop(ctx, statestore.FlowDropParams{Flow: e.flow.Name})
	}); err != nil {
		return st.changes, err
	}
	return st.changes, nil
}
