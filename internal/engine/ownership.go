package engine

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// owners is the one place that decides who owns a target state. A state
// is owned by the rows whose committed tracking holds it (recorded in the
// state store with the tracking, at commit); a state some row declares
// stays, and one no row declares any more is deleted, once.
//
// The pass asks it which roots have owners at all when an update starts
// (known); a row's reconcile asks whether a state new to the row must wait
// for the writer (defers); for each batch the writer has it settle the
// states rows newly declare with what other rows know of them (adopt),
// carry containers' invalidations to other rows (spread), decide deletions
// and rewrites of shared states (resolve), and revive deletions whose
// declarers all failed (revive); and the commit asks what each row takes
// and drops (changes).
type owners struct {
	u *update
	// w is the update's writer: for the commit under way, the rows' own
	// precommit, and the source runs to hand marked rows to.
	w *writer
	// owned holds, per root id, whether some row may own a state of it
	// that this update's own batches did not write: one owned a state when
	// the update began, or (in a shared pass) another worker wrote in it
	// since. anyOwned says one does. The map is made by known and not
	// changed after; its values turn true, under the flow's lock, while
	// rows read them (defers).
	owned    map[int64]*atomic.Bool
	anyOwned atomic.Bool
	// stale holds target states whose value may be that of a row that no
	// longer declares them, with the records that value may have: the next
	// row of this update declaring one with another record writes it
	// again.
	stale map[trackKey][]target.Record
	// remade holds the row containers a batch of this update wrote with a
	// change that destroyed or may have lost what is in them: rows of later
	// batches, processed before it, write their states in them again.
	// rewritten holds the states in them written since, with the record
	// written: a row declaring one alike need not write it again.
	remade    map[trackKey]remake
	rewritten map[trackKey]target.Record
	// held holds the row containers that rows which failed in this update
	// wrote in: their next try knows of them, from their staged tracking,
	// so they stay until then.
	held map[trackKey]bool
	// staged holds, once a batch deleting a row container needed it, the
	// staged sections of the flow's rows that have any (see stagedIndex).
	stagedMu sync.Mutex
	staged   map[int64][]statestore.Section
}

// remake is a row container's write that invalidated what is in it, by
// the row by.
type remake struct {
	record     target.Record
	invalidate target.Invalidation
	by         *rowResult
}

func newOwners(u *update) *owners {
	return &owners{u: u, owned: make(map[int64]*atomic.Bool), stale: make(map[trackKey][]target.Record),
		remade: make(map[trackKey]remake), rewritten: make(map[trackKey]target.Record), held: make(map[trackKey]bool)}
}

// applied records what the batch's applied writes did to row containers:
// those remade, the states in them written since, and those rows that
// failed wrote in.
func (ow *owners) applied(batch []*rowResult, failed map[*rowResult]error) {
	for res := range failed {
		for _, a := range res.actions {
			if !a.applied {
				continue
			}
			for _, c := range enclosing(a.key) {
				ow.held[trackKey{a.root.id, c}] = true
			}
		}
	}
	for _, res := range batch {
		for _, a := range res.actions {
			if !a.applied || a.delete || a.phase.class != createContainer || a.invalidate == target.InvalidateNone {
				continue
			}
			k := trackKey{a.root.id, a.key}
			ow.remade[k] = remake{record: a.record, invalidate: max(ow.remade[k].invalidate, a.invalidate), by: res}
			for w := range ow.rewritten {
				if w.root == k.root && within(w.key, k.key) {
					delete(ow.rewritten, w) // written before this remake
				}
			}
		}
	}
	if len(ow.remade) == 0 {
		return
	}
	for _, res := range batch {
		for _, a := range res.actions {
			if a.applied && !a.delete && ow.inRemade(trackKey{a.root.id, a.key}) {
				ow.rewritten[trackKey{a.root.id, a.key}] = a.record
			}
		}
	}
}

// inRemade reports whether the state k is in a container remade in this
// update.
func (ow *owners) inRemade(k trackKey) bool {
	for _, c := range enclosing(k.key) {
		if _, ok := ow.remade[trackKey{k.root, c}]; ok {
			return true
		}
	}
	return false
}

// defers reports whether a state a row declares in the root id, and that
// its own committed tracking does not hold, is left to the writer to
// reconcile (adopt): some row may own it.
func (ow *owners) defers(id int64) bool { return ow.isOwned(id) }

// isOwned reports whether some row may own a state of the root id that
// this update's batches did not write (see owners.owned).
func (ow *owners) isOwned(id int64) bool {
	o := ow.owned[id]
	return o != nil && o.Load()
}

// changes returns the ownership res takes and drops when it commits.
func (ow *owners) changes(res *rowResult) (added, dropped []statestore.OwnerKey) {
	for k := range res.owned {
		if res.declaredSet[k] == nil {
			dropped = append(dropped, ownerKey(k))
		}
	}
	for k := range res.declaredSet {
		if !res.owned[k] {
			added = append(added, ownerKey(k))
		}
	}
	return added, dropped
}

// slot gathers what the rows of a batch want of one target state.
type slot struct {
	upserts []*plannedAction
	deletes []*plannedAction
	// declarers are the rows of the batch that declare the state.
	declarers []*rowResult
}

// resolve settles what the rows of a batch want of one target state, which
// several rows may declare. Of several writes of one state the last wins;
// the others stand by, to be applied if its row fails. A state some row of
// the batch declares is not deleted; if a row that stopped declaring it may
// have written the value in the target, and with another record, the last
// declarer writes its own again. A state no row of the batch declares is
// deleted once, and only if no other row owns it; if one does, that row is
// marked to write its own value again, under the same condition.
func (ow *owners) resolve(ctx context.Context, batch []*rowResult) error {
	if err := ow.adopt(ctx, batch); err != nil {
		return err
	}
	if err := ow.settleShared(ctx, batch); err != nil {
		return err
	}
	return ow.spread(ctx, batch)
}

// settleShared settles the writes and deletions of states several rows
// declare, or that a row stops declaring while another owns it; see
// resolve.
func (ow *owners) settleShared(ctx context.Context, batch []*rowResult) (err error) {
	slots := make(map[trackKey]*slot)
	get := func(k trackKey) *slot {
		s := slots[k]
		if s == nil {
			s = &slot{}
			slots[k] = s
		}
		return s
	}
	for _, res := range batch {
		for _, a := range res.actions {
			s := get(trackKey{a.root.id, a.key})
			if a.delete {
				s.deletes = append(s.deletes, a)
			} else {
				s.upserts = append(s.upserts, a)
			}
		}
	}
	// Rows that declare a state another row stopped declaring in an earlier
	// batch write it again.
	for _, res := range batch {
		if res.kind != resultUpdate {
			continue
		}
		for k := range res.declaredSet {
			if ow.stale[k] != nil {
				get(k)
			}
		}
	}
	if len(slots) == 0 {
		return nil
	}
	for _, res := range batch {
		if res.kind != resultUpdate {
			continue
		}
		if len(res.declaredSet) < len(slots) {
			for k := range res.declaredSet {
				if s := slots[k]; s != nil {
					s.declarers = append(s.declarers, res)
				}
			}
		} else {
			for k, s := range slots {
				if res.declaredSet[k] != nil {
					s.declarers = append(s.declarers, res)
				}
			}
		}
	}
	var (
		check    []statestore.OwnerKey
		checkFor = make(map[statestore.OwnerKey]*slot)
	)
	for k, s := range slots {
		for _, a := range s.upserts[:max(len(s.upserts)-1, 0)] {
			a.standby = true
		}
		if len(s.declarers) > 0 {
			for _, a := range s.deletes {
				a.cancelled, a.cancelledFor = true, s.declarers
			}
			last := s.declarers[len(s.declarers)-1]
			inTarget := append(wroteRecords(s.deletes), ow.stale[k]...)
			if r, ok := ow.remade[k]; ok {
				// Remade in this update: the value in the target is that
				// write's, whatever the rows dropping it wrote before.
				inTarget = []target.Record{r.record}
			}
			if len(s.upserts) == 0 && differs(inTarget, last.declaredSet[k].record) {
				ow.rewrite(last, k, inTarget)
			}
			delete(ow.stale, k)
			continue
		}
		if len(s.deletes) == 0 {
			continue
		}
		if ow.held[k] {
			for _, a := range s.deletes {
				a.cancelled = true
			}
			continue
		}
		for _, a := range s.deletes[1:] {
			a.cancelled = true
			if a.phase.class == deleteContainer {
				s.deletes[0].codeleters = append(s.deletes[0].codeleters, a.row)
			}
		}
		ok := ownerKey(k)
		check = append(check, ok)
		checkFor[ok] = s
	}
	if len(check) == 0 {
		return nil
	}
	owners, err := ow.findOwners(ctx, check)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			err = ow.keepFilled(ctx, batch, checkFor)
		}
	}()
	others := make(map[int64][]trackKey) // row id → states it must write again
	for _, o := range owners {
		s := checkFor[o.OwnerKey]
		dropping := false
		for _, a := range s.deletes {
			if a.row.id == o.RowID {
				dropping = true
				break
			}
		}
		if dropping {
			continue
		}
		// Another source row still declares the state: it stays. If the
		// value in the target may be the one of a row that no longer
		// declares it, the other row writes its own again.
		first := s.deletes[0]
		first.cancelled = true
		if _, ok := ow.remade[trackKey{first.root.id, first.key}]; ok {
			continue // remade in this update by a row that declares it
		}
		if inTarget := wroteRecords(s.deletes); len(inTarget) > 0 {
			k := trackKey{first.root.id, first.key}
			ow.stale[k] = inTarget
			others[o.RowID] = append(others[o.RowID], k)
		}
	}
	if len(others) == 0 || ow.u.opts.Preview {
		return nil
	}
	return ow.markForRewrite(ctx, others)
}

// keepFilled cancels the deletions of row containers, among those settled
// in slots, that a row outside the batch (or one of it that failed) may
// still hold a state in, which only its staged tracking knows of: a row
// whose update stopped (crashed) after it wrote there and before its
// commit. That row's next update, or its deletion once a listing leaves
// it out, settles what it wrote, and the container with it: every row
// that declares in a container declares the container.
func (ow *owners) keepFilled(ctx context.Context, batch []*rowResult, slots map[statestore.OwnerKey]*slot) error {
	var dels []*plannedAction
	for _, s := range slots {
		if a := s.deletes[0]; !a.cancelled && a.phase.class == deleteContainer {
			dels = append(dels, a)
		}
	}
	return ow.keepStaged(ctx, batch, dels)
}

// keepStaged cancels those of the container deletions dels that a staged
// state of a row other than the batch's own (but for its failed rows) is
// in. The staged states of the flow's rows are paged through once per
// update (once per batch in a shared pass, whose other workers stage and
// commit meanwhile), and only for a batch that deletes a row container.
func (ow *owners) keepStaged(ctx context.Context, batch []*rowResult, dels []*plannedAction) error {
	if len(dels) == 0 {
		return nil
	}
	if err := ow.w.awaitCommit(); err != nil {
		return err
	}
	idx, err := ow.stagedIndex(ctx)
	if err != nil {
		return err
	}
	settled := make(map[int64]bool, len(batch))
	for _, res := range batch {
		if res.kind != resultFailed {
			settled[res.id] = true // its staged states are in its own plan
		}
	}
	for id, sections := range idx {
		if settled[id] {
			continue
		}
		for _, sec := range sections {
			for _, e := range sec.Entries {
				for _, a := range dels {
					if !a.cancelled && a.root.id == sec.TargetID && within(target.Key(e.Key), a.key) {
						a.cancelled = true
					}
				}
			}
		}
	}
	return nil
}

// stagedIndex returns the staged sections of the flow's rows that have
// any, by row id: from the state store the first time in an update (in a
// shared pass, every time), then as commits since left them (unstaged).
func (ow *owners) stagedIndex(ctx context.Context) (map[int64][]statestore.Section, error) {
	ow.stagedMu.Lock()
	idx := ow.staged
	ow.stagedMu.Unlock()
	if idx != nil && !ow.u.shared {
		return idx, nil
	}
	e := ow.u.e
	var ids []int64
	for _, src := range e.flow.Sources {
		id, err := e.sourceID(ctx, src.Name, true)
		if err != nil {
			return nil, err
		}
		if id == 0 {
			continue // never updated
		}
		if err := e.eachRowPage(ctx, id, func(page []statestore.RowMeta) error {
			for _, m := range page {
				if m.Staged {
					ids = append(ids, m.ID)
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	idx = make(map[int64][]statestore.Section, len(ids))
	if len(ids) > 0 {
		loaded, err := ow.loadRows(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, t := range loaded {
			_, sections, err := ow.u.decodeTracking(t)
			if err != nil {
				return nil, fmt.Errorf("row %d: %w", t.ID, err)
			}
			if len(sections) > 0 {
				idx[t.ID] = sections
			}
		}
	}
	ow.stagedMu.Lock()
	ow.staged = idx
	ow.stagedMu.Unlock()
	return idx, nil
}

// unstaged forgets the staged states of the rows a commit settled: updated
// or deleted, not failed.
func (ow *owners) unstaged(batch []*rowResult) {
	ow.stagedMu.Lock()
	defer ow.stagedMu.Unlock()
	if ow.staged == nil {
		return
	}
	for _, res := range batch {
		if res.kind == resultUpdate || res.kind == resultGone || res.kind == resultBump {
			delete(ow.staged, res.id)
		}
	}
}

// wroteRecords returns the records the value in the target may have, as
// written by rows now deleting the state; none if none of them wrote it.
func wroteRecords(deletes []*plannedAction) []target.Record {
	var out []target.Record
	for _, a := range deletes {
		if a.wrote {
			out = append(out, a.prev...)
		}
	}
	return out
}

// differs reports whether a value in the target with one of the records
// inTarget may differ from the value with record rec: only then must it be
// written again.
func differs(inTarget []target.Record, rec target.Record) bool {
	for _, r := range inTarget {
		if !bytes.Equal(r, rec) {
			return true
		}
	}
	return false
}

// rewrite makes res write the state k again, with the value it declares:
// another row may have written the value in the target last.
// inTarget holds the records the value in the target may have; they are
// staged with the write, so that a row whose rewrite fails, or is cut short
// by a crash, still knows next time that its value may not be the one in
// the target.
func (ow *owners) rewrite(res *rowResult, k trackKey, inTarget []target.Record) {
	d := res.declaredSet[k]
	rs := ow.u.setup.byID[k.root]
	var prev []target.Record
	for _, r := range append([]target.Record{d.record}, inTarget...) {
		if r != nil && !containsRecord(prev, r) {
			prev = append(prev, r)
		}
	}
	prev, mayBeMissing, _ := d.in.fate(prev, true)
	rec, err := safeReconcile(d.h, d.leaf, d.value, prev, mayBeMissing)
	if err != nil {
		res.run.fail(res, fmt.Errorf("target %s, key %q: %w", rs.root.Key, displayKey(k.key), err))
		return
	}
	if rec == nil || rec.Action.IsZero() {
		return
	}
	res.actions = append(res.actions, &plannedAction{row: res, root: rs, key: k.key, action: rec.Action, record: rec.Record, others: inTarget, phase: d.phase(), invalidate: rec.Invalidate})
	if n := d.nest; n != nil && rec.Invalidate > n.invalidate {
		// Written again, the container loses what is in it: so do the
		// row's own states in it.
		n.invalidate = rec.Invalidate
		ow.settleIn(res, map[*nest]bool{n: true}, nil)
	}
}

// markForRewrite stages, on rows outside the batch, target states they must
// write again: the next time each row is processed (in this update if it is
// in flight, else in the next, since a staged row is never skipped), it finds
// them possibly missing and writes them.
func (ow *owners) markForRewrite(ctx context.Context, rows map[int64][]trackKey) error {
	loaded, err := ow.loadRows(ctx, slices.Collect(maps.Keys(rows)))
	if err != nil {
		return err
	}
	return ow.stageMarks(ctx, loaded, func(id int64, committed []statestore.Section) []stagedEntry {
		var add []stagedEntry
		for _, k := range rows[id] {
			// An owner whose value has the same record as the one in the
			// target need not write it again.
			rec, ok := findRecord(committed, k)
			if ok && !differs(ow.stale[k], rec) {
				continue
			}
			if !ok {
				add = append(add, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Deleting: true}})
				continue
			}
			// The versions the target may hold: the row, never skipped
			// while staged, is told them next time it is processed.
			for _, r := range ow.stale[k] {
				if r == nil {
					continue
				}
				add = append(add, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Record: r}})
			}
		}
		return add
	})
}

// stageMarks stages on rows outside the batch, loaded, the entries pick
// gives for each from its committed tracking, and has each source's scan
// process the rows marked again in this update.
func (ow *owners) stageMarks(ctx context.Context, loaded []statestore.RowTracking, pick func(id int64, committed []statestore.Section) []stagedEntry) error {
	var marks []statestore.PrecommitRow
	for _, t := range loaded {
		committed, err := statestore.DecodeSections(t.Tracking)
		if err != nil {
			return fmt.Errorf("reading the tracking of row %d: %w", t.ID, err)
		}
		staged, err := statestore.DecodeSections(t.Staged)
		if err != nil {
			return fmt.Errorf("reading the staged tracking of row %d: %w", t.ID, err)
		}
		if add := pick(t.ID, committed); len(add) > 0 {
			marks = append(marks, statestore.PrecommitRow{ID: t.ID, Staged: statestore.EncodeSections(mergeStaged(staged, add, ow.u.setup.gen))})
		}
	}
	if len(marks) == 0 {
		return nil
	}
	if err := ow.u.e.write(ctx, "mark rows", func(ctx context.Context) error {
		_, err := ow.u.e.store.Precommit(ctx, statestore.PrecommitParams{Rows: marks})
		return err
	}); err != nil {
		return err
	}
	// The marked rows may belong to any source (ids are unique across
	// sources): each source's scan looks for them.
	for _, run := range ow.w.runs {
		for _, m := range marks {
			run.mark(m.ID)
		}
	}
	return nil
}

// findRecord returns the record a row's committed tracking holds for k.
func findRecord(sections []statestore.Section, k trackKey) (target.Record, bool) {
	for _, s := range sections {
		if s.TargetID != k.root {
			continue
		}
		for _, e := range s.Entries {
			if e.Key == string(k.key) {
				return e.Record, true
			}
		}
	}
	return nil, false
}

// revive returns the deletions of states that were cancelled because rows
// of the batch declared them, when every one of those rows failed: nothing
// of theirs was written, so the state is deleted after all, unless a row
// outside the batch owns it. The deletions are staged first.
func (ow *owners) revive(ctx context.Context, batch []*rowResult, failed map[*rowResult]error) ([]*plannedAction, error) {
	var (
		cands []*plannedAction
		seen  = make(map[trackKey]bool)
	)
	for _, res := range batch {
		if _, bad := failed[res]; bad || res.kind == resultFailed {
			continue
		}
		for _, a := range res.actions {
			if !a.delete || !a.cancelled || len(a.cancelledFor) == 0 {
				continue
			}
			all := true
			for _, d := range a.cancelledFor {
				if _, bad := failed[d]; !bad && d.kind != resultFailed || a.phase.class == deleteContainer && holdsIn(d, trackKey{a.root.id, a.key}) {
					// A container stays if a declarer that failed wrote in
					// it, or may have (its staged tracking holds a state
					// in it): that row's next try knows of it.
					all = false
					break
				}
			}
			k := trackKey{a.root.id, a.key}
			if !all || seen[k] {
				continue
			}
			seen[k] = true
			a.cancelledFor = nil
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	check := make([]statestore.OwnerKey, len(cands))
	for i, a := range cands {
		check[i] = ownerKey(trackKey{a.root.id, a.key})
	}
	owners, err := ow.findOwners(ctx, check)
	if err != nil {
		return nil, err
	}
	deleting := make(map[statestore.OwnerKey]map[int64]bool)
	for _, res := range batch {
		for _, a := range res.actions {
			if a.delete {
				ok := ownerKey(trackKey{a.root.id, a.key})
				if deleting[ok] == nil {
					deleting[ok] = make(map[int64]bool)
				}
				deleting[ok][res.id] = true
			}
		}
	}
	owned := make(map[statestore.OwnerKey]bool)
	for _, o := range owners {
		if !deleting[o.OwnerKey][o.RowID] {
			owned[o.OwnerKey] = true
		}
	}
	var (
		out  []*plannedAction
		rows []*rowResult
		dels []*plannedAction
	)
	for i, a := range cands {
		if !owned[check[i]] && a.phase.class == deleteContainer {
			dels = append(dels, a)
		}
	}
	// A container deletion revived waits, as any, for a staged state of
	// another row in it: keepStaged marks it cancelled again.
	for _, a := range dels {
		a.cancelled = false
	}
	if err := ow.keepStaged(ctx, batch, dels); err != nil {
		return nil, err
	}
	for i, a := range cands {
		if owned[check[i]] || ow.u.opts.Preview || a.cancelled && a.phase.class == deleteContainer {
			a.cancelled = true
			continue
		}
		a.cancelled = false
		out = append(out, a)
		if !slices.Contains(rows, a.row) {
			rows = append(rows, a.row)
		}
	}
	for _, run := range ow.w.runs {
		if err := ow.w.precommit(ctx, run, rows); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// holdsIn reports whether res wrote a state in the row container c in this
// batch, or holds one in its staged tracking.
func holdsIn(res *rowResult, c trackKey) bool {
	for _, a := range res.actions {
		if a.applied && a.root.id == c.root && within(a.key, c.key) {
			return true
		}
	}
	for _, s := range res.oldStaged {
		if s.TargetID != c.root {
			continue
		}
		for _, e := range s.Entries {
			if within(target.Key(e.Key), c.key) {
				return true
			}
		}
	}
	return false
}

// ownerKey is the ownership key of a target state.
func ownerKey(k trackKey) statestore.OwnerKey {
	return statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))}
}
