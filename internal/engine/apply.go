package engine

import (
	"context"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/target"
)

// safeReconcile calls a handler, turning a panic into an error.
func safeReconcile(h target.Erased, key target.Key, desired any, prev []target.Record, mayBeMissing bool) (rec *target.Reconciled, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h.Reconcile(key, desired, prev, mayBeMissing)
}

// sinkGroup is the live actions of a batch that one sink applies.
type sinkGroup struct {
	actions []*plannedAction
}

// apply writes the batch's live actions phase by phase (see nest.go), and
// within a phase one call per sink, in order of first appearance. A write
// that fails for good is split by source row until the rows at fault are
// found; they are returned as failed. Where the row of a state's winning
// write failed, the latest write of that state by a row that did not fail
// is applied next, in its phase. A transient fault that outlasts the
// retries fails the update.
func (w *writer) apply(ctx context.Context, batch []*rowResult) (map[*rowResult]error, error) {
	var (
		next    []*plannedAction
		standby = make(map[trackKey][]*plannedAction) // latest last
		winner  = make(map[trackKey]*plannedAction)
	)
	for _, res := range batch {
		if res.kind == resultFailed {
			continue
		}
		for _, a := range res.actions {
			switch k := (trackKey{a.root.id, a.key}); {
			case a.cancelled:
			case a.standby:
				standby[k] = append(standby[k], a)
			default:
				next = append(next, a)
				if !a.delete {
					winner[k] = a
				}
			}
		}
	}
	failed := make(map[*rowResult]error)
	for len(next) > 0 {
		// Apply the first phase; the later ones wait, so that what its
		// failures bring (a standing-by write, a revived deletion) is
		// applied in its own phase, before them.
		parts := byPhase(next)
		if err := w.applyActions(ctx, parts[0], failed); err != nil {
			return nil, err
		}
		var rest []*plannedAction
		for _, p := range parts[1:] {
			rest = append(rest, p...)
		}
		// Fall back to the latest standing-by write of each state whose
		// winning row failed; not for a container the winner wrote before
		// it failed, which holds what other rows wrote in it since.
		for k, a := range winner {
			if _, bad := failed[a.row]; !bad || a.applied && a.phase.class == createContainer {
				continue
			}
			delete(winner, k)
			cands := standby[k]
			for len(cands) > 0 {
				c := cands[len(cands)-1]
				cands = cands[:len(cands)-1]
				if _, bad := failed[c.row]; !bad {
					rest = append(rest, c)
					winner[k] = c
					break
				}
			}
			standby[k] = cands
		}
		revived, err := w.u.own.revive(ctx, batch, failed)
		if err != nil {
			return nil, err
		}
		next = append(rest, revived...)
	}
	return failed, nil
}

// applyActions applies actions phase by phase (see nest.go), and within a
// phase one call per sink in order of first appearance.
func (w *writer) applyActions(ctx context.Context, actions []*plannedAction, failed map[*rowResult]error) error {
	for _, part := range byPhase(actions) {
		var (
			groups []*sinkGroup
			bySink = make(map[any]*sinkGroup)
		)
		for _, a := range part {
			s := a.action.Sink()
			g := bySink[s]
			if g == nil {
				g = &sinkGroup{}
				bySink[s] = g
				groups = append(groups, g)
			}
			g.actions = append(g.actions, a)
		}
		for _, g := range groups {
			if err := w.applyGroup(ctx, g.actions, failed); err != nil {
				return err
			}
		}
	}
	return nil
}

// byPhase splits actions by phase, in phase order, keeping their order
// within a phase. Without row containers there is one phase.
func byPhase(actions []*plannedAction) [][]*plannedAction {
	one := true
	for _, a := range actions {
		one = one && a.phase == actions[0].phase
	}
	if one {
		return [][]*plannedAction{actions}
	}
	sorted := slices.Clone(actions)
	slices.SortStableFunc(sorted, func(a, b *plannedAction) int { return comparePhases(a.phase, b.phase) })
	var out [][]*plannedAction
	for i, a := range sorted {
		if i == 0 || a.phase != sorted[i-1].phase {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], a)
	}
	return out
}

// applyGroup applies actions of one sink, splitting them by source row
// when they fail for good, to find the rows at fault.
func (w *writer) applyGroup(ctx context.Context, actions []*plannedAction, failed map[*rowResult]error) error {
	var todo []*plannedAction
	for _, a := range actions {
		if _, bad := failed[a.row]; !bad && a.row.kind != resultFailed && !anyFailed(a.codeleters, failed) {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	parts := [][]*plannedAction{todo}
	if c, ok := todo[0].action.Sink().(target.ConcurrentSink); ok && c.Concurrency() > 1 && len(todo) >= 2*c.Concurrency() {
		parts = splitByRow(todo, c.Concurrency())
	}
	errs := make([]error, len(parts))
	var g errgroup.Group
	for i, part := range parts {
		g.Go(func() error {
			errs[i] = w.applyCall(ctx, part)
			return nil
		})
	}
	_ = g.Wait()
	for i, part := range parts {
		err := errs[i]
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if retry.Is(err) {
			return fmt.Errorf("writing to target %s: %w", part[0].root.root.Key, err)
		}
		// The call failed for good: split it by source row until the rows
		// at fault are found.
		halves := splitByRow(part, 2)
		if len(halves) == 1 {
			failed[part[0].row] = fmt.Errorf("writing to target %s: %w", part[0].root.root.Key, err)
			continue
		}
		for _, h := range halves {
			if err := w.applyGroup(ctx, h, failed); err != nil {
				return err
			}
		}
	}
	return nil
}

// anyFailed reports whether one of rows failed.
func anyFailed(rows []*rowResult, failed map[*rowResult]error) bool {
	for _, r := range rows {
		if _, bad := failed[r]; bad || r.kind == resultFailed {
			return true
		}
	}
	return false
}

// applyCall applies actions of one sink in one call, with retries.
func (w *writer) applyCall(ctx context.Context, actions []*plannedAction) error {
	plain := make([]target.Action, len(actions))
	for i, a := range actions {
		plain[i] = a.action
	}
	err := w.u.e.write(ctx, "write", func(ctx context.Context) error { return applySafely(ctx, plain) })
	if err != nil {
		return err
	}
	for _, a := range actions {
		a.applied = true
		w.count(a)
	}
	return nil
}

// splitByRow splits actions into at most n parts of about as many actions
// each, keeping every source row's actions in one part and the order of
// actions within a part. It returns one part when the actions are of one
// row.
func splitByRow(actions []*plannedAction, n int) [][]*plannedAction {
	var rows []*rowResult
	count := make(map[*rowResult]int)
	for _, a := range actions {
		if count[a.row] == 0 {
			rows = append(rows, a.row)
		}
		count[a.row]++
	}
	n = min(n, len(rows))
	if n <= 1 {
		return [][]*plannedAction{actions}
	}
	part := make(map[*rowResult]int, len(rows))
	size := (len(actions) + n - 1) / n
	p, filled := 0, 0
	for i, r := range rows {
		// Move on once a part is full, leaving a row for each part still
		// to fill.
		if filled >= size && p < n-1 || len(rows)-i == n-1-p {
			p, filled = p+1, 0
		}
		part[r] = p
		filled += count[r]
	}
	out := make([][]*plannedAction, p+1)
	for _, a := range actions {
		out[part[a.row]] = append(out[part[a.row]], a)
	}
	return out
}

// applySafely applies actions of one sink, turning a panic into an error.
func applySafely(ctx context.Context, actions []target.Action) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the sink panicked: %v", p)
		}
	}()
	_, err = target.ApplyBatch(ctx, actions)
	return err
}
