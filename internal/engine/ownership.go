package engine

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

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
func (w *writer) resolve(ctx context.Context, batch []*rowResult) error {
	if err := w.adopt(ctx, batch); err != nil {
		return err
	}
	if err := w.spread(ctx, batch); err != nil {
		return err
	}
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
			if w.stale[k] != nil {
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
			inTarget := append(wroteRecords(s.deletes), w.stale[k]...)
			if len(s.upserts) == 0 && differs(inTarget, last.declaredSet[k].record) {
				w.rewrite(last, k, inTarget)
			}
			delete(w.stale, k)
			continue
		}
		if len(s.deletes) == 0 {
			continue
		}
		for _, a := range s.deletes[1:] {
			a.cancelled = true
		}
		ok := ownerKey(k)
		check = append(check, ok)
		checkFor[ok] = s
	}
	if len(check) == 0 {
		return nil
	}
	owners, err := w.findOwners(ctx, check)
	if err != nil {
		return err
	}
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
		if inTarget := wroteRecords(s.deletes); len(inTarget) > 0 {
			k := trackKey{first.root.id, first.key}
			w.stale[k] = inTarget
			others[o.RowID] = append(others[o.RowID], k)
		}
	}
	if len(others) == 0 || w.u.opts.Preview {
		return nil
	}
	return w.markForRewrite(ctx, others)
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
func (w *writer) rewrite(res *rowResult, k trackKey, inTarget []target.Record) {
	d := res.declaredSet[k]
	rs := w.u.setup.byID[k.root]
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
	if rec != nil && !rec.Action.IsZero() {
		res.actions = append(res.actions, &plannedAction{row: res, root: rs, key: k.key, action: rec.Action, record: rec.Record, others: inTarget, phase: d.phase()})
	}
}

// markForRewrite stages, on rows outside the batch, target states they must
// write again: the next time each row is processed (in this update if it is
// in flight, else in the next, since a staged row is never skipped), it finds
// them possibly missing and writes them.
func (w *writer) markForRewrite(ctx context.Context, rows map[int64][]trackKey) error {
	loaded, err := w.loadRows(ctx, slices.Collect(maps.Keys(rows)))
	if err != nil {
		return err
	}
	var marks []statestore.PrecommitRow
	for _, t := range loaded {
		staged, err := statestore.DecodeSections(t.Staged)
		if err != nil {
			return fmt.Errorf("reading the staged tracking of row %d: %w", t.ID, err)
		}
		committed, err := statestore.DecodeSections(t.Tracking)
		if err != nil {
			return fmt.Errorf("reading the tracking of row %d: %w", t.ID, err)
		}
		var add []stagedEntry
		for _, k := range rows[t.ID] {
			// An owner whose value has the same record as the one in the
			// target need not write it again.
			rec, ok := findRecord(committed, k)
			if ok && !differs(w.stale[k], rec) {
				continue
			}
			if !ok {
				add = append(add, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Deleting: true}})
				continue
			}
			// The versions the target may hold: the row, never skipped
			// while staged, is told them next time it is processed.
			for _, r := range w.stale[k] {
				if r == nil {
					continue
				}
				add = append(add, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Record: r}})
			}
		}
		if len(add) == 0 {
			continue
		}
		marks = append(marks, statestore.PrecommitRow{ID: t.ID, Staged: statestore.EncodeSections(mergeStaged(staged, add, w.u.setup.gen))})
	}
	return w.stageMarks(ctx, marks)
}

// stageMarks stages marks on rows outside the batch, and has each source's
// scan process them again in this update.
func (w *writer) stageMarks(ctx context.Context, marks []statestore.PrecommitRow) error {
	if len(marks) == 0 {
		return nil
	}
	if err := w.u.e.write(ctx, "mark rows", func(ctx context.Context) error {
		_, err := w.u.e.store.Precommit(ctx, statestore.PrecommitParams{Rows: marks})
		return err
	}); err != nil {
		return err
	}
	// The marked rows may belong to any source (ids are unique across
	// sources): each source's scan looks for them.
	for _, run := range w.runs {
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
func (w *writer) revive(ctx context.Context, batch []*rowResult, failed map[*rowResult]error) ([]*plannedAction, error) {
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
				if _, bad := failed[d]; !bad && d.kind != resultFailed {
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
	owners, err := w.findOwners(ctx, check)
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
	)
	for i, a := range cands {
		if owned[check[i]] || w.u.opts.Preview {
			continue
		}
		a.cancelled = false
		out = append(out, a)
		if !slices.Contains(rows, a.row) {
			rows = append(rows, a.row)
		}
	}
	for _, run := range w.runs {
		if err := w.precommit(ctx, run, rows); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ownerKey is the ownership key of a target state.
func ownerKey(k trackKey) statestore.OwnerKey {
	return statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))}
}
