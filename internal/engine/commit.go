package engine

import (
	"context"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// commitBatch commits a batch and finishes its rows. It runs beside the
// writer goroutine, so it touches no writer state.
func (w *writer) commitBatch(ctx context.Context, batch []*rowResult, failed map[*rowResult]error, land landing, started time.Time) error {
	e := w.u.e
	if err := runHook(ctx, e.opts.Hooks.BeforeCommit); err != nil {
		return err
	}
	now := time.Now()
	for _, run := range w.runs {
		if err := w.commit(ctx, run, batch, failed, land, now); err != nil {
			return err
		}
	}
	w.u.own.unstaged(batch)
	for _, res := range batch {
		if !res.lost {
			w.countRow(ctx, res, failed[res])
		}
	}
	if written := e.opts.Observers.BatchWritten; written != nil {
		written(ctx, batchWritten(batch, failed, time.Since(started)))
	}
	w.finish(batch)
	e.log.DebugContext(ctx, "wrote a batch", "rows", len(batch), "failed", len(failed))
	return nil
}

// batchWritten describes a committed batch for an observer.
func batchWritten(batch []*rowResult, failed map[*rowResult]error, d time.Duration) tidemarktype.Batch {
	b := tidemarktype.Batch{Rows: len(batch), Targets: make(map[string]TargetStats), Duration: d}
	for _, res := range batch {
		if _, bad := failed[res]; bad || res.kind == resultFailed {
			b.Failed++
		}
		for _, a := range res.actions {
			if !a.applied {
				continue
			}
			t := b.Targets[string(a.root.root.Key)]
			if a.delete {
				t.Deletes++
			} else {
				t.Upserts++
			}
			b.Targets[string(a.root.root.Key)] = t
		}
	}
	return b
}

// stagedEntry is a staged entry for a root target.
type stagedEntry struct {
	root  int64
	entry statestore.Entry
}

// mergeStaged merges new staged entries into old staged sections, keeping
// each distinct (target, key, record, deleting) once, so that a row that
// keeps failing does not grow its staged tracking.
func mergeStaged(old []statestore.Section, add []stagedEntry, gen int64) []statestore.Section {
	type id struct {
		root     int64
		key      string
		record   string
		hasRec   bool
		deleting bool
	}
	seen := make(map[id]bool)
	keyOf := func(root int64, e statestore.Entry) id {
		return id{root, e.Key, string(e.Record), e.Record != nil, e.Deleting}
	}
	var out []statestore.Section
	for _, s := range old {
		kept := statestore.Section{TargetID: s.TargetID, Gen: s.Gen}
		for _, e := range s.Entries {
			k := keyOf(s.TargetID, e)
			if !seen[k] {
				seen[k] = true
				kept.Entries = append(kept.Entries, e)
			}
		}
		if len(kept.Entries) > 0 {
			out = append(out, kept)
		}
	}
	bySection := make(map[int64]int)
	for _, a := range add {
		k := keyOf(a.root, a.entry)
		if seen[k] {
			continue
		}
		seen[k] = true
		i, ok := bySection[a.root]
		if !ok {
			i = len(out)
			bySection[a.root] = i
			out = append(out, statestore.Section{TargetID: a.root, Gen: gen})
		}
		out[i].Entries = append(out[i].Entries, a.entry)
	}
	return out
}

// liveActions returns the actions of res still to be written.
func liveActions(res *rowResult) []*plannedAction {
	var out []*plannedAction
	for _, a := range res.actions {
		if !a.cancelled {
			out = append(out, a)
		}
	}
	return out
}

// precommit stages, for the rows of run about to write, every target state
// they write or delete, and inserts the rows seen for the first time. A
// crash after the writes leaves the staged states for the next update to
// resolve; ownership is taken only at commit, with the tracking.
func (w *writer) precommit(ctx context.Context, run *sourceRun, batch []*rowResult) error {
	var (
		rows []statestore.PrecommitRow
		who  []*rowResult
	)
	for _, res := range batch {
		if res.run != run || (res.kind != resultUpdate && res.kind != resultGone) {
			continue
		}
		var add []stagedEntry
		for _, a := range liveActions(res) {
			add = append(add, stagedEntry{root: a.root.id, entry: statestore.Entry{Key: string(a.key), Record: a.record, Deleting: a.delete}})
			add = append(add, res.containersOf(a)...)
			for _, r := range a.others {
				if r == nil {
					continue
				}
				// Until the write lands, the value in the target may have
				// another row's record: kept past a failure or a crash.
				add = append(add, stagedEntry{root: a.root.id, entry: statestore.Entry{Key: string(a.key), Record: r}})
			}
		}
		// A row seen for the first time is precommitted even with nothing to
		// stage: that is where it is inserted and gets its id.
		if len(add) == 0 && res.id != 0 {
			continue
		}
		staged := mergeStaged(res.oldStaged, add, w.u.setup.gen)
		rows = append(rows, statestore.PrecommitRow{ID: res.id, Key: res.key, Staged: statestore.EncodeSections(staged)})
		who = append(who, res)
	}
	if len(rows) == 0 {
		return nil
	}
	var ids []int64
	if err := w.u.e.write(ctx, "precommit", func(ctx context.Context) (err error) {
		ids, err = w.u.e.store.Precommit(ctx, statestore.PrecommitParams{SourceID: run.id, Rows: rows})
		return err
	}); err != nil {
		return err
	}
	for i, res := range who {
		res.id = ids[i]
		run.seen.add(ids[i])
	}
	return nil
}

// containersOf returns, for a write in row containers, the staged entries
// of those containers that the row's committed tracking lacks and that it
// does not write itself (another row wrote them): the row's tracking must
// know a container to know the handler of what is in it, should its write
// be cut short.
func (res *rowResult) containersOf(a *plannedAction) []stagedEntry {
	if a.delete {
		return nil
	}
	var out []stagedEntry
	for _, c := range enclosing(a.key) {
		k := trackKey{a.root.id, c}
		d := res.declaredSet[k]
		if res.owned[k] || d == nil || d.action != nil || d.record == nil {
			continue
		}
		out = append(out, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Record: d.record}})
	}
	return out
}

// landing says which writes of a batch landed: a row's own write makes its
// value the one in the target; another row's write of a state makes it no
// longer so.
type landing struct {
	written   map[trackKey]bool
	wrote     map[*rowResult]map[trackKey]bool
	attempted map[*rowResult]map[trackKey]bool
}

func landings(batch []*rowResult) landing {
	l := landing{written: make(map[trackKey]bool), wrote: make(map[*rowResult]map[trackKey]bool), attempted: make(map[*rowResult]map[trackKey]bool)}
	for _, res := range batch {
		for _, a := range res.actions {
			if a.delete {
				continue
			}
			k := trackKey{a.root.id, a.key}
			if l.attempted[res] == nil {
				l.attempted[res], l.wrote[res] = make(map[trackKey]bool), make(map[trackKey]bool)
			}
			l.attempted[res][k] = true
			if a.applied {
				l.written[k] = true
				l.wrote[res][k] = true
			}
		}
	}
	return l
}

// wroteIt reports whether res's value of k is the one in the target now, as
// far as it knows: it wrote it in this batch, or wrote it before and nobody
// wrote it since in this batch.
func (l landing) wroteIt(res *rowResult, k trackKey) bool {
	return l.wrote[res][k] || !l.written[k] && !l.attempted[res][k] && res.declaredSet[k].wrote
}

// commit records the outcome of run's rows in the batch.
func (w *writer) commit(ctx context.Context, run *sourceRun, batch []*rowResult, failed map[*rowResult]error, land landing, now time.Time) error {
	var rows []*rowResult
	for _, res := range batch {
		if res.run != run {
			continue
		}
		if err := failed[res]; err != nil {
			res.kind, res.err = resultFailed, err
		}
		rows = append(rows, res)
	}
	var err error
	if run.sh == nil {
		p := w.commitParams(run, rows, land, now)
		if len(p.Rows)+len(p.Bumps)+len(p.Deletes)+len(p.Failed) == 0 {
			return nil
		}
		err = w.u.e.write(ctx, "commit", func(ctx context.Context) error { return w.u.e.store.Commit(ctx, p) })
	} else {
		err = w.commitShared(ctx, run, rows, land, now)
	}
	if err != nil {
		return err
	}
	changes := 0
	for _, res := range rows {
		if res.lost || res.kind != resultUpdate && res.kind != resultGone {
			continue // its changes were not committed
		}
		for _, c := range res.changes {
			w.u.counters.targets[string(w.u.setup.byID[c.TargetID].root.Key)].changes.Add(1)
		}
		changes += len(res.changes)
	}
	if changes > 0 {
		w.u.hooks.nudge()
	}
	return nil
}

// appendChanges appends the row's changes of hooked states, from source
// sourceID, to changes.
func (res *rowResult) appendChanges(changes []statestore.Change, sourceID int64) []statestore.Change {
	for _, c := range res.changes {
		c.SourceID = sourceID
		changes = append(changes, c)
	}
	return changes
}

// commitParams returns the commit of rows, run's rows in a batch.
func (w *writer) commitParams(run *sourceRun, rows []*rowResult, land landing, now time.Time) statestore.CommitParams {
	u := w.u
	p := statestore.CommitParams{SourceID: run.id, At: now}
	for _, res := range rows {
		switch res.kind {
		case resultUpdate:
			sections := make([]statestore.Section, 0, len(res.declared))
			for _, rs := range u.setup.roots {
				entries := res.declared[rs.id]
				if len(entries) == 0 {
					continue
				}
				for i := range entries {
					k := trackKey{rs.id, target.Key(entries[i].Key)}
					entries[i].Wrote = land.wroteIt(res, k)
				}
				sections = append(sections, statestore.Section{TargetID: rs.id, Gen: u.setup.gen, Entries: entries})
			}
			added, dropped := u.own.changes(res)
			p.Rows = append(p.Rows, statestore.CommitRow{ID: res.id, Ordinal: res.ordinal, ContentFP: res.contentFP, LogicFP: u.e.logicFP,
				Gen: u.setup.gen, Tracking: statestore.EncodeSections(sections), NewOwners: added, DroppedOwners: dropped})
			p.Changes = res.appendChanges(p.Changes, run.id)
		case resultBump:
			p.Bumps = append(p.Bumps, statestore.OrdinalBump{ID: res.id, Ordinal: res.ordinal})
		case resultGone:
			owners := make([]statestore.OwnerKey, 0, len(res.owned))
			for k := range res.owned {
				owners = append(owners, ownerKey(k))
			}
			p.Deletes = append(p.Deletes, statestore.RowDelete{ID: res.id, Owners: owners})
			p.Changes = res.appendChanges(p.Changes, run.id)
		case resultFailed:
			p.Failed = append(p.Failed, statestore.RowFailed{ID: res.id, Key: res.key, Message: res.err.Error()})
			run.markFailed(res.key)
		}
	}
	return p
}

// count adds a written action to its target's counters.
func (w *writer) count(a *plannedAction) {
	c := w.u.counters.targets[string(a.root.root.Key)]
	if a.delete {
		c.deletes.Add(1)
	} else {
		c.upserts.Add(1)
	}
}

// countRow adds a finished row to its source's counters, and tells the
// observer.
func (w *writer) countRow(ctx context.Context, res *rowResult, failedErr error) {
	c := res.run.counters
	var outcome tidemarktype.Outcome
	if failedErr != nil || res.kind == resultFailed {
		err := res.err
		if failedErr != nil {
			err = failedErr
		}
		w.u.counters.rowError(res.run.src.Name, res.key, err)
		w.u.e.log.Warn("a row failed; it will be retried next update", "source", res.run.src.Name, "key", res.key, "err", err)
		if done := w.u.e.opts.Observers.RowDone; done != nil {
			done(ctx, tidemarktype.RowDone{Source: res.run.src.Name, Key: res.key, Outcome: tidemarktype.OutcomeFailed, Message: err.Error()})
		}
		return
	}
	switch res.kind {
	case resultBump:
		c.unchanged.Add(1)
		outcome = tidemarktype.OutcomeUnchanged
	case resultGone:
		c.deleted.Add(1)
		outcome = tidemarktype.OutcomeDeleted
	case resultUpdate:
		switch res.stat {
		case statAdded:
			c.added.Add(1)
			outcome = tidemarktype.OutcomeAdded
		case statUpdated:
			c.updated.Add(1)
			outcome = tidemarktype.OutcomeUpdated
		case statReprocessed:
			c.reprocessed.Add(1)
			outcome = tidemarktype.OutcomeReprocessed
		}
	}
	if done := w.u.e.opts.Observers.RowDone; done != nil && outcome != "" {
		done(ctx, tidemarktype.RowDone{Source: res.run.src.Name, Key: res.key, Outcome: outcome})
	}
}
