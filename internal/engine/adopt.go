package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// knowledge is what rows other than a declarer know of a target state:
// the records of the versions that may exist, and whether it may not exist
// at all (false as soon as one of them knows it exists).
type knowledge struct {
	prev         []target.Record
	mayBeMissing bool
}

func (k *knowledge) add(prev []target.Record, mayBeMissing bool) {
	for _, p := range prev {
		if !containsRecord(k.prev, p) {
			k.prev = append(k.prev, p)
		}
	}
	k.mayBeMissing = k.mayBeMissing && mayBeMissing
}

// ownersKnown finds which roots have states owned by some row, so that
// adopt need not look up the owners of states in a root that has none (a
// table being filled for the first time).
func (u *update) ownersKnown(ctx context.Context) error {
	u.owned = make(map[int64]bool)
	for _, rs := range u.setup.roots {
		if rs.id == 0 || rs.child.IsZero() {
			continue
		}
		var ok bool
		if err := u.e.do(ctx, "look up owners", func(ctx context.Context) (err error) {
			ok, err = u.e.store.OwnerExists(ctx, statestore.OwnerExistsParams{TargetID: rs.id})
			return err
		}); err != nil {
			return err
		}
		u.owned[rs.id] = ok
		u.anyOwned = u.anyOwned || ok
	}
	return nil
}

// adopt reconciles, with what other rows know of it, each state that a row
// of the batch declares and its own committed tracking does not hold. Such
// a state may exist already: another row may declare it, or may stop
// declaring it in this batch (the state moves from one source row to
// another), and the handler must be told the versions that may exist, not
// that the state was never written. So moving a state with the same value
// writes nothing, and moving a changed one is one update of the old value.
//
// In a root where some row owns a state, the worker left such a state to
// adopt; elsewhere (a root being filled) the worker reconciled it, and
// adopt reconciles it again only if another row of the batch knows of it
// (a row whose first write of it was interrupted now stops declaring it).
func (w *writer) adopt(ctx context.Context, batch []*rowResult) error {
	if !w.u.anyOwned && len(w.stale) == 0 && !hasDeletes(batch) {
		// No row owns a state and none stops declaring one (a first
		// fill): nobody knows anything the rows do not.
		return nil
	}
	type claim struct {
		res *rowResult
		d   *declaration
	}
	fresh := make(map[trackKey][]claim)
	anyDeferred := false
	for _, res := range batch {
		if res.kind != resultUpdate {
			continue
		}
		for k, d := range res.declaredSet {
			if d.fresh {
				fresh[k] = append(fresh[k], claim{res, d})
				anyDeferred = anyDeferred || d.deferred
			}
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	others := make(map[trackKey]*knowledge)
	know := func(k trackKey, prev []target.Record, mayBeMissing bool) {
		kn := others[k]
		if kn == nil {
			kn = &knowledge{mayBeMissing: true}
			others[k] = kn
		}
		kn.add(prev, mayBeMissing)
	}

	// What the batch's rows know from their own tracking: those that stop
	// declaring a state, and those that declared it before and still do.
	inBatch := make(map[int64]bool)
	for _, res := range batch {
		if res.kind != resultUpdate && res.kind != resultGone {
			continue
		}
		if res.id != 0 {
			inBatch[res.id] = true
		}
		for _, a := range res.actions {
			if k := (trackKey{a.root.id, a.key}); a.delete && fresh[k] != nil {
				know(k, a.prev, a.mayBeMissing)
			}
		}
		for k, d := range res.declaredSet {
			if !d.fresh && fresh[k] != nil {
				know(k, d.prev, d.mayBeMissing)
			}
		}
	}

	// A value a row that no longer declares the state wrote, in an earlier
	// batch of this update, may be the one in the target.
	for k := range fresh {
		if stale := w.stale[k]; stale != nil {
			know(k, stale, true)
		}
	}

	// What the other owners know, from their committed tracking, in roots
	// where some row owns a state.
	var check []statestore.OwnerKey
	byOwnerKey := make(map[statestore.OwnerKey]trackKey)
	for k := range fresh {
		if w.u.owned[k.root] {
			ok := ownerKey(k)
			check = append(check, ok)
			byOwnerKey[ok] = k
		}
	}
	if len(check) > 0 {
		if err := w.othersKnow(ctx, check, byOwnerKey, inBatch, know); err != nil {
			return err
		}
	}

	if len(others) == 0 && !anyDeferred {
		return nil // nothing anyone knows that the rows do not (a first fill)
	}
	keys := make([]trackKey, 0, len(fresh))
	for k := range fresh {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareTrackKeys)
	for _, k := range keys {
		kn := others[k]
		if kn == nil {
			kn = &knowledge{mayBeMissing: true}
		}
		news := len(kn.prev) > 0 || !kn.mayBeMissing
		rs := w.u.setup.byID[k.root]
		for _, c := range fresh[k] {
			if c.res.kind == resultFailed || !c.d.deferred && !news {
				continue
			}
			c.d.deferred = false
			prev := slices.Clone(c.d.prev)
			for _, p := range kn.prev {
				if !containsRecord(prev, p) {
					prev = append(prev, p)
				}
			}
			mayBeMissing := c.d.mayBeMissing && kn.mayBeMissing
			rec, err := safeReconcile(rs.child, k.key, c.d.value, prev, mayBeMissing)
			if err != nil {
				c.res.run.fail(c.res, fmt.Errorf("target %s, key %q: %w", rs.root.Key, k.key, err))
				continue
			}
			if c.d.action != nil {
				c.res.actions = slices.DeleteFunc(c.res.actions, func(a *plannedAction) bool { return a == c.d.action })
				c.d.action = nil
			}
			switch {
			case rec != nil && !rec.Action.IsZero():
				c.d.record = rec.Record
				c.d.action = &plannedAction{row: c.res, root: rs, key: k.key, action: rec.Action, record: rec.Record}
				c.res.actions = append(c.res.actions, c.d.action)
			case rec != nil:
				c.d.record, c.d.wrote = rec.Record, true
			case len(prev) > 0:
				// Unchanged: the value in the target is the row's own.
				c.d.record, c.d.wrote = prev[0], true
			default:
				c.d.record = nil
			}
			c.res.declared[k.root][c.d.entry].Record = c.d.record
		}
	}
	return nil
}

// hasDeletes reports whether a row of the batch deletes a state.
func hasDeletes(batch []*rowResult) bool {
	for _, res := range batch {
		for _, a := range res.actions {
			if a.delete {
				return true
			}
		}
	}
	return false
}

// othersKnow adds what the owners of the given states outside the batch know
// of them, from their tracking in the state store.
func (w *writer) othersKnow(ctx context.Context, check []statestore.OwnerKey, byOwnerKey map[statestore.OwnerKey]trackKey,
	inBatch map[int64]bool, know func(trackKey, []target.Record, bool)) error {
	owners, err := w.findOwners(ctx, check)
	if err != nil {
		return err
	}
	owns := make(map[int64][]trackKey)
	var ids []int64
	for _, o := range owners {
		if inBatch[o.RowID] {
			continue
		}
		if owns[o.RowID] == nil {
			ids = append(ids, o.RowID)
		}
		owns[o.RowID] = append(owns[o.RowID], byOwnerKey[o.OwnerKey])
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	var loaded []statestore.RowTracking
	if err := w.u.e.do(ctx, "load owners", func(ctx context.Context) (err error) {
		loaded, err = w.u.e.store.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
		return err
	}); err != nil {
		return err
	}
	for _, t := range loaded {
		tracking, _, err := w.u.decodeTracking(t)
		if err != nil {
			return fmt.Errorf("row %d: %w", t.ID, err)
		}
		for _, k := range owns[t.ID] {
			if tr := tracking[k]; tr != nil {
				know(k, tr.prev, tr.mayBeMissing)
			}
		}
	}
	return nil
}

// findOwners returns the owners of the given states, once the commit under
// way has landed: ownership is taken at commit.
func (w *writer) findOwners(ctx context.Context, keys []statestore.OwnerKey) ([]statestore.Owner, error) {
	if err := w.awaitCommit(); err != nil {
		return nil, err
	}
	var owners []statestore.Owner
	err := w.u.e.do(ctx, "find owners", func(ctx context.Context) (err error) {
		owners, err = w.u.e.store.OwnerFind(ctx, statestore.OwnerFindParams{Keys: keys})
		return err
	})
	return owners, err
}

// compareTrackKeys orders target states by root, then key.
func compareTrackKeys(a, b trackKey) int {
	return cmp.Or(cmp.Compare(a.root, b.root), cmp.Compare(a.key, b.key))
}
