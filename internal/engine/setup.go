package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// SetupChange is one change to the setup of a root target or attachment.
type SetupChange struct {
	Kind string
	// Key is the root's key, or for an attachment "root#kind:key".
	Key string
	// Change is "create", "update" or "drop".
	Change string
	// Description is the action's own description, if it has one.
	Description string
	// Invalidate is what the change does to the target's children.
	Invalidate target.Invalidation
}

// String describes the change in a line: what, on which target, and what
// it does to the target's rows.
func (c SetupChange) String() string {
	s := c.Change + " " + c.Key
	if c.Description != "" {
		s += ": " + c.Description
	}
	if c.Invalidate != target.InvalidateNone {
		s += " (" + c.Invalidate.String() + ": every row is written again)"
	}
	return s
}

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
	declared := make(map[string]bool)
	for _, r := range e.flow.Roots {
		declared[string(r.Key)] = true
		if cur := byKey[string(r.Key)]; cur != nil && (cur.ParentID != 0 || cur.Kind != r.Kind) {
			if err := e.retire(ctx, st, cur, preview); err != nil {
				return st, err
			}
			delete(byKey, string(r.Key))
		}
	}
	for i := range stored {
		cur := &stored[i]
		if cur.ParentID != 0 || declared[cur.Key] {
			continue
		}
		if err := e.retire(ctx, st, cur, preview); err != nil {
			return st, err
		}
	}
	for i, r := range e.flow.Roots {
		rs := &rootState{root: r, index: i}
		cur := byKey[string(r.Key)]
		if err := e.setupRoot(ctx, st, rs, cur, preview); err != nil {
			return st, fmt.Errorf("setting up target %s: %w", r.Key, err)
		}
		if cur != nil && rs.destroyedGen != cur.DestroyedGen {
			// Destroying the container staged drops on its attachments:
			// read them again.
			if stored, err = e.listTargets(ctx); err != nil {
				return st, err
			}
		}
		st.roots = append(st.roots, rs)
		if rs.id != 0 {
			st.byID[rs.id] = rs
		}
		if r.Container && !rs.pending {
			if err := e.setupAttachments(ctx, st, rs, stored, preview); err != nil {
				return st, fmt.Errorf("setting up the attachments of %s: %w", r.Key, err)
			}
		}
		if r.Container && rs.pending {
			// The container's child handler is known only once its setup
			// is applied; the plan names the attachments it would create.
			for _, a := range r.Attachments {
				full := attachmentKey(r.Key, a.Kind, a.Key)
				if !slices.ContainsFunc(stored, func(t statestore.Target) bool { return t.Key == full && cur != nil && t.ParentID == cur.ID }) {
					st.changes = append(st.changes, SetupChange{Kind: a.Kind, Key: full, Change: "create",
						Description: "a " + a.Kind + " of " + string(r.Key) + ", once that is set up"})
				}
			}
		}
	}
	for _, rs := range st.roots {
		st.reprocessBelow = max(st.reprocessBelow, rs.lostGen, rs.destroyedGen)
	}
	return st, nil
}

func (e *Engine) listTargets(ctx context.Context) ([]statestore.Target, error) {
	var stored []statestore.Target
	err := e.do(ctx, "list targets", func(ctx context.Context) (err error) {
		stored, err = e.store.TargetList(ctx, statestore.TargetListParams{Flow: e.flow.Name})
		return err
	})
	return stored, err
}

// setupRoot reconciles one declared root.
func (e *Engine) setupRoot(ctx context.Context, st *setupState, rs *rootState, cur *statestore.Target, preview bool) error {
	r := rs.root
	if cur != nil {
		rs.id, rs.destroyedGen, rs.lostGen = cur.ID, cur.DestroyedGen, cur.LostGen
	}
	prev, mayBeMissing := possibles(cur)
	rec, err := safeReconcile(r.Handler, r.Key, r.Spec, prev, mayBeMissing)
	if err != nil {
		return err
	}
	if rec == nil {
		if r.Container {
			return fmt.Errorf("the container handler %T returned no Reconciled; a container must always return one so its sink can give the child handler", r.Handler.Handler())
		}
		return nil
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
			return nil
		}
		staged, err := e.stageTarget(ctx, r.Kind, string(r.Key), 0, rec.Record)
		if err != nil {
			return err
		}
		rs.id = staged.ID
	}
	children, err := e.applySetup(ctx, string(r.Key), rec.Action)
	if err != nil {
		return err
	}
	if !unchanged {
		if err := runHook(ctx, e.opts.Hooks.AfterSetupApply); err != nil {
			return err
		}
		gen, err := e.commitTarget(ctx, rs.id, true, rec.Record, invalidate)
		if err != nil {
			return err
		}
		st.gen = gen
		switch invalidate {
		case target.InvalidateLossy:
			rs.lostGen = gen
		case target.InvalidateDestructive:
			rs.destroyedGen = gen
		}
	}
	if r.Container {
		if len(children) != 1 || children[0].IsZero() {
			return fmt.Errorf("the container sink of %T returned no child handler", r.Handler.Handler())
		}
		rs.child = children[0]
		if r.ChildType != nil && rs.child.ValueType() != r.ChildType {
			return fmt.Errorf("the container's child handler takes %s, but the flow declares %s", rs.child.ValueType(), r.ChildType)
		}
	}
	return nil
}

// setupAttachments reconciles a container's declared attachments and tears
// down those no longer declared.
func (e *Engine) setupAttachments(ctx context.Context, st *setupState, rs *rootState, stored []statestore.Target, preview bool) error {
	r := rs.root
	existing := make(map[string]*statestore.Target)
	if rs.id != 0 {
		for i := range stored {
			if stored[i].ParentID == rs.id {
				existing[stored[i].Key] = &stored[i]
			}
		}
	}
	declared := make(map[string]bool)
	for _, a := range r.Attachments {
		full := attachmentKey(r.Key, a.Kind, a.Key)
		if declared[full] {
			return fmt.Errorf("attachment %s declared twice", full)
		}
		declared[full] = true
		h, ok := rs.child.Attachment(a.Kind)
		if !ok {
			return fmt.Errorf("the target has no attachment of kind %q", a.Kind)
		}
		cur := existing[full]
		prev, mayBeMissing := possibles(cur)
		rec, err := safeReconcile(h, a.Key, a.Spec, prev, mayBeMissing || rs.mayBeMissing)
		if err != nil {
			return fmt.Errorf("attachment %s: %w", full, err)
		}
		if rec == nil {
			continue
		}
		change := "update"
		if len(prev) == 0 {
			change = "create"
		}
		st.changes = append(st.changes, SetupChange{Kind: a.Kind, Key: full, Change: change, Description: describe(rec.Action)})
		if preview {
			continue
		}
		staged, err := e.stageTarget(ctx, a.Kind, full, rs.id, rec.Record)
		if err != nil {
			return err
		}
		if _, err := e.applySetup(ctx, full, rec.Action); err != nil {
			return err
		}
		if err := runHook(ctx, e.opts.Hooks.AfterSetupApply); err != nil {
			return err
		}
		if _, err := e.commitTarget(ctx, staged.ID, true, rec.Record, target.InvalidateNone); err != nil {
			return err
		}
	}
	for full, cur := range existing {
		if declared[full] {
			continue
		}
		h, ok := rs.child.Attachment(cur.Kind)
		if !ok {
			e.log.WarnContext(ctx, "an attachment is no longer declared, but its kind is unknown; leaving it", "attachment", full)
			continue
		}
		key := target.Key(strings.TrimPrefix(full, string(r.Key)+"#"+cur.Kind+":"))
		if err := e.tearDown(ctx, st, h, cur, key, preview); err != nil {
			return fmt.Errorf("attachment %s: %w", full, err)
		}
	}
	return nil
}

// retire tears down a root target the flow no longer declares.
func (e *Engine) retire(ctx context.Context, st *setupState, cur *statestore.Target, preview bool) error {
	h, ok := e.handlerFor(cur)
	if !ok {
		e.log.WarnContext(ctx, "a target is no longer declared, but no handler of its kind is registered; leaving it", "target", cur.Key, "kind", cur.Kind)
		return nil
	}
	if err := e.tearDown(ctx, st, h, cur, target.Key(cur.Key), preview); err != nil {
		return fmt.Errorf("dropping target %s: %w", cur.Key, err)
	}
	return nil
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

// tearDown reconciles a stored setup state as gone and forgets it.
func (e *Engine) tearDown(ctx context.Context, st *setupState, h target.Erased, cur *statestore.Target, key target.Key, preview bool) error {
	prev, mayBeMissing := possibles(cur)
	rec, err := safeReconcile(h, key, nil, prev, mayBeMissing)
	if err != nil {
		return err
	}
	var action target.Action
	if rec != nil {
		action = rec.Action
	}
	st.changes = append(st.changes, SetupChange{Kind: cur.Kind, Key: cur.Key, Change: "drop", Description: describe(action)})
	if preview {
		return nil
	}
	if !action.IsZero() {
		if _, err := e.stageTarget(ctx, cur.Kind, cur.Key, cur.ParentID, nil); err != nil {
			return err
		}
		if _, err := e.applySetup(ctx, cur.Key, action); err != nil {
			return err
		}
		if err := runHook(ctx, e.opts.Hooks.AfterSetupApply); err != nil {
			return err
		}
	}
	gen, err := e.commitTarget(ctx, cur.ID, false, nil, target.InvalidateNone)
	if err != nil {
		return err
	}
	st.gen = gen
	return nil
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

func (e *Engine) applySetup(ctx context.Context, key string, action target.Action) ([]target.Erased, error) {
	if action.IsZero() {
		return nil, nil
	}
	var children []target.Erased
	err := e.write(ctx, "set up "+key, func(ctx context.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("the setup sink panicked: %v", p)
			}
		}()
		children, err = target.ApplyBatch(ctx, []target.Action{action})
		return err
	})
	return children, err
}

// dropAttachments tears down the attachments of a container about to be
// dropped, when the flow still declares it unchanged: only then can the
// engine get the child handler that knows them. Otherwise they go with the
// container.
func (e *Engine) dropAttachments(ctx context.Context, st *setupState, cur *statestore.Target, stored []statestore.Target) error {
	var root *Root
	for _, r := range e.flow.Roots {
		if string(r.Key) == cur.Key && r.Kind == cur.Kind && r.Container {
			root = r
		}
	}
	if root == nil || !cur.Exists || len(cur.Staged) > 0 {
		return nil
	}
	rec, err := safeReconcile(root.Handler, root.Key, root.Spec, []target.Record{cur.Record}, false)
	if err != nil || rec == nil || !bytes.Equal(rec.Record, cur.Record) || rec.Invalidate != target.InvalidateNone {
		return err
	}
	children, err := e.applySetup(ctx, cur.Key, rec.Action) // a keep: no I/O
	if err != nil || len(children) != 1 || children[0].IsZero() {
		return err
	}
	for i := range stored {
		att := &stored[i]
		if att.ParentID != cur.ID {
			continue
		}
		h, ok := children[0].Attachment(att.Kind)
		if !ok {
			continue
		}
		key := target.Key(strings.TrimPrefix(att.Key, cur.Key+"#"+att.Kind+":"))
		if err := e.tearDown(ctx, st, h, att, key, false); err != nil {
			return fmt.Errorf("attachment %s: %w", att.Key, err)
		}
	}
	return nil
}

// Plan returns the setup changes an update would apply, applying none.
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
	for _, d := range drops {
		if err := e.dropAttachments(ctx, st, d.cur, stored); err != nil {
			return st.changes, fmt.Errorf("dropping the attachments of %s: %w", d.cur.Key, err)
		}
		if err := e.tearDown(ctx, st, d.h, d.cur, target.Key(d.cur.Key), false); err != nil {
			return st.changes, fmt.Errorf("dropping target %s: %w", d.cur.Key, err)
		}
	}
	if err := e.write(ctx, "drop flow", func(ctx context.Context) error {
		return e.store.FlowDrop(ctx, statestore.FlowDropParams{Flow: e.flow.Name})
	}); err != nil {
		return st.changes, err
	}
	return st.changes, nil
}
