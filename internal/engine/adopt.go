package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

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

// known finds which roots have states owned by some row, so that adopt
// need not look up the owners of states in a root that has none (a table
// being filled for the first time).
func (ow *owners) known(ctx context.Context) error {
	u := ow.u
	ow.owned = make(map[int64]*atomic.Bool)
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
		ow.owned[rs.id] = new(atomic.Bool)
		if ok {
			ow.owned[rs.id].Store(true)
			ow.anyOwned.Store(true)
		}
	}
	return nil
}

// writing is called by every update of a shared engine under the flow's
// lock, before it writes a batch. It records the worker as the last
// writer of every root, and takes as owned the roots no row owned so far
// that another worker wrote in since: from then on, their states' owners
// are looked up, as in a root that had owners when the update began.
// While no other worker writes in a root, a worker alone fills it as an
// update alone would. Every writer records itself, whether it looks owners
// up or not, or a worker taking the shortcut would miss it.
func (ow *owners) writing(ctx context.Context) error {
	u := ow.u
	if u.e.coord == nil || u.opts.Preview {
		return nil // alone: no other worker writes while it does
	}
	ids := make([]int64, 0, len(ow.owned))
	for id := range ow.owned {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	var others []int64
	if err := u.e.do(ctx, "record the writer", func(ctx context.Context) (err error) {
		others, err = u.e.coord.TargetWriter(ctx, statestore.TargetWriterParams{TargetIDs: ids, Worker: u.e.opts.Shared.Worker})
		return err
	}); err != nil {
		return err
	}
	for _, id := range others {
		if o := ow.owned[id]; o != nil {
			o.Store(true)
			ow.anyOwned.Store(true)
		}
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
func (ow *owners) adopt(ctx context.Context, batch []*rowResult) error {
	if !ow.anyOwned.Load() && len(ow.stale) == 0 && !hasDeletes(batch) {
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
		if stale := ow.stale[k]; stale != nil {
			know(k, stale, true)
		}
	}

	// What the other owners know, from their committed tracking, in roots
	// where some row owns a state.
	var check []statestore.OwnerKey
	byOwnerKey := make(map[statestore.OwnerKey]trackKey)
	for k := range fresh {
		if ow.isOwned(k.root) {
			ok := ownerKey(k)
			check = append(check, ok)
			byOwnerKey[ok] = k
		}
	}
	if len(check) > 0 {
		if err := ow.othersKnow(ctx, check, byOwnerKey, inBatch, know); err != nil {
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
	// Containers before what is in them: a state inherits what became of
	// its containers (nest.fate).
	depth := func(k trackKey) int { return fresh[k][0].d.depth }
	slices.SortFunc(keys, func(a, b trackKey) int { return cmp.Or(cmp.Compare(depth(a), depth(b)), compareTrackKeys(a, b)) })
	// changed holds the containers reconciled again here: what is in them
	// is reconciled again too, with their new fate.
	changed := make(map[*nest]bool)
	for _, k := range keys {
		kn := others[k]
		if kn == nil {
			kn = &knowledge{mayBeMissing: true}
		}
		news := len(kn.prev) > 0 || !kn.mayBeMissing
		for _, c := range fresh[k] {
			if c.res.kind == resultFailed || !c.d.deferred && !news && !changed[c.d.in] {
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
			// What may exist of it is known now, for a reconcile again.
			c.d.prev, c.d.mayBeMissing = prev, mayBeMissing
			prev, mayBeMissing, _ = c.d.in.fate(prev, mayBeMissing)
			if n := c.d.nest; n != nil {
				n.mayBeMissing, n.invalidate = mayBeMissing && len(prev) > 0, target.InvalidateNone
				changed[n] = true
			}
			ow.settle(c.res, k, c.d, prev, mayBeMissing)
		}
	}
	return nil
}

// settle reconciles the state k that res declares as d again, told prev
// and mayBeMissing, replacing the row's planned write of it.
func (ow *owners) settle(res *rowResult, k trackKey, d *declaration, prev []target.Record, mayBeMissing bool) {
	rs := ow.u.setup.byID[k.root]
	// What may exist may be a container (another row's): written once
	// what is in it is gone.
	if err := d.replacing(prev); err != nil {
		res.run.fail(res, fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err))
		return
	}
	rec, err := safeReconcile(d.h, d.leaf, d.value, prev, mayBeMissing)
	if err != nil {
		res.run.fail(res, fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err))
		return
	}
	if d.action != nil {
		res.actions = slices.DeleteFunc(res.actions, func(a *plannedAction) bool { return a == d.action })
		d.action = nil
	}
	switch {
	case rec != nil && !rec.Action.IsZero():
		d.plan(res, rs, k.key, rec)
	case rec != nil:
		d.record, d.wrote = rec.Record, true
	case len(prev) > 0:
		// Unchanged: the value in the target is the row's own.
		d.record, d.wrote = prev[0], true
	default:
		d.record = nil
	}
	res.declared[k.root][d.entry].Record = d.record
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
func (ow *owners) othersKnow(ctx context.Context, check []statestore.OwnerKey, byOwnerKey map[statestore.OwnerKey]trackKey,
	inBatch map[int64]bool, know func(trackKey, []target.Record, bool)) error {
	owns, loaded, err := ow.ownedOutside(ctx, check, byOwnerKey, inBatch)
	if err != nil {
		return err
	}
	for _, t := range loaded {
		tracking, _, err := ow.u.decodeTracking(t)
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

// ownedOutside finds the owners of the given states that are not rows of
// the batch, and loads their tracking: it returns, by row id, the states
// each owns, and the rows.
func (ow *owners) ownedOutside(ctx context.Context, check []statestore.OwnerKey, byOwnerKey map[statestore.OwnerKey]trackKey,
	inBatch map[int64]bool) (map[int64][]trackKey, []statestore.RowTracking, error) {
	owners, err := ow.findOwners(ctx, check)
	if err != nil {
		return nil, nil, err
	}
	owns := make(map[int64][]trackKey)
	for _, o := range owners {
		if !inBatch[o.RowID] {
			owns[o.RowID] = append(owns[o.RowID], byOwnerKey[o.OwnerKey])
		}
	}
	if len(owns) == 0 {
		return nil, nil, nil
	}
	loaded, err := ow.loadRows(ctx, slices.Collect(maps.Keys(owns)))
	return owns, loaded, err
}

// loadRows loads the tracking of the rows ids, in id order.
func (ow *owners) loadRows(ctx context.Context, ids []int64) ([]statestore.RowTracking, error) {
	slices.Sort(ids)
	var loaded []statestore.RowTracking
	err := ow.u.e.do(ctx, "load rows", func(ctx context.Context) (err error) {
		loaded, err = ow.u.e.store.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
		return err
	})
	return loaded, err
}

// findOwners returns the owners of the given states, once the commit under
// way has landed: ownership is taken at commit.
func (ow *owners) findOwners(ctx context.Context, keys []statestore.OwnerKey) ([]statestore.Owner, error) {
	if err := ow.w.awaitCommit(); err != nil {
		return nil, err
	}
	var owners []statestore.Owner
	err := ow.u.e.do(ctx, "find owners", func(ctx context.Context) (err error) {
		owners, err = ow.u.e.store.OwnerFind(ctx, statestore.OwnerFindParams{Keys: keys})
		return err
	})
	return owners, err
}

// compareTrackKeys orders target states by root, then key.
func compareTrackKeys(a, b trackKey) int {
	return cmp.Or(cmp.Compare(a.root, b.root), cmp.Compare(a.key, b.key))
}
