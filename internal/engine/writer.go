package engine

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// writer batches processed rows and writes each batch in three steps:
// precommit (stage the target keys about to be written), apply (the sinks
// write), commit (the rows' new tracking). Three goroutines form a
// pipeline: the collector (run) gathers the next batch while the stage
// goroutine resolves, precommits and applies one, while that one's
// predecessor commits. Batches hold different rows — a row stays in flight
// until its commit lands — so the steps of neighbouring batches touch
// different rows; each step is its own transaction; and the steps that
// read ownership (resolving a deletion) wait for the commit under way
// first. The stage goroutine is the only one that resolves and precommits,
// and commits land one at a time in batch order, which keeps ownership
// decisions serial.
type writer struct {
	u    *update
	runs []*sourceRun

	// The collector's batch.
	batch   []*rowResult
	actions int
	bytes   int

	// queue hands batches from the collector to the stage goroutine, which
	// closes stageDone when it stops, with stageErr.
	queue     chan []*rowResult
	stageDone chan struct{}
	stageErr  error

	// The stage goroutine's state. stale holds target states whose value
	// may be that of a row that no longer declares them, with the records
	// that value may have: the next row of this update declaring one with
	// another record writes it again.
	stale map[trackKey][]target.Record
	// committing is the commit under way, if any.
	committing *commitJob
}

// commitJob is a batch's commit, run in its own goroutine.
type commitJob struct {
	done chan struct{} // closed when the commit ends
	err  error
}

func newWriter(u *update, runs []*sourceRun) *writer {
	return &writer{u: u, runs: runs, stale: make(map[trackKey][]target.Record),
		queue: make(chan []*rowResult), stageDone: make(chan struct{})}
}

// run batches results until the channel closes, handing a batch on when it
// is full, when it is MaxDelay old, or when a source waits on its rows. It
// returns once every batch handed on is committed, or at the first error.
func (w *writer) run(ctx context.Context) error {
	go func() {
		defer close(w.stageDone)
		w.stageErr = w.stage(ctx)
	}()
	err := w.collect(ctx)
	close(w.queue)
	<-w.stageDone
	if err == nil {
		err = w.stageErr
	}
	return err
}

// collect gathers results into batches and hands them on.
func (w *writer) collect(ctx context.Context) error {
	opts := w.u.e.opts.Batch
	var (
		timer  *time.Timer
		timerC <-chan time.Time
	)
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
	}
	defer stopTimer()
	for {
		select {
		case res, ok := <-w.u.results:
			if !ok {
				return w.flush(ctx)
			}
			w.add(res)
			if timer == nil {
				timer = time.NewTimer(opts.MaxDelay)
				timerC = timer.C
			}
			if len(w.batch) >= opts.MaxRows || w.actions >= opts.MaxActions || w.bytes >= opts.MaxBytes || w.sourceWaiting() {
				stopTimer()
				if err := w.flush(ctx); err != nil {
					return err
				}
			}
		case <-timerC:
			timer, timerC = nil, nil
			if err := w.flush(ctx); err != nil {
				return err
			}
		case <-w.u.nudge:
			// Rows finished, or a source began to wait: it may now wait on
			// the batch alone.
			if w.sourceWaiting() {
				stopTimer()
				if err := w.flush(ctx); err != nil {
					return err
				}
			}
		case <-w.stageDone:
			return w.stageErr
		case <-ctx.Done():
			// Abandon the batch: its rows were at most precommitted, which
			// the next update resolves.
			return context.Cause(ctx)
		}
	}
}

func (w *writer) add(res *rowResult) {
	w.batch = append(w.batch, res)
	w.actions += len(res.actions)
	w.bytes += res.bytes
	res.run.inBatch++
}

// sourceWaiting reports whether a source waits for rows that are all in the
// batch, so flushing now lets it go on.
func (w *writer) sourceWaiting() bool {
	for _, r := range w.runs {
		r.pending.mu.Lock()
		waiting := r.waiting && r.inBatch > 0 && r.inBatch == r.pending.n
		r.pending.mu.Unlock()
		if waiting {
			return true
		}
	}
	return false
}

// flush hands the batch to the stage goroutine, waiting while that writes
// the one before.
func (w *writer) flush(ctx context.Context) error {
	if len(w.batch) == 0 {
		return nil
	}
	batch := w.batch
	w.batch, w.actions, w.bytes = nil, 0, 0
	for _, res := range batch {
		res.run.inBatch--
	}
	select {
	case w.queue <- batch:
		return nil
	case <-w.stageDone:
		return w.stageErr
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// stage writes the batches handed on, in order, and waits for the last
// commit.
func (w *writer) stage(ctx context.Context) error {
	// Whatever happens, the commit under way ends before the stage does.
	defer func() { _ = w.awaitCommit() }()
	for {
		select {
		case batch, ok := <-w.queue:
			if !ok {
				return w.awaitCommit()
			}
			if err := w.write(ctx, batch); err != nil {
				return err
			}
		case <-w.commitDone():
			// A failed commit stops the update now: its rows never finish.
			if err := w.awaitCommit(); err != nil {
				return err
			}
		}
	}
}

// commitDone returns a channel closed when the commit under way ends; nil
// (never ready) when there is none.
func (w *writer) commitDone() <-chan struct{} {
	if w.committing == nil {
		return nil
	}
	return w.committing.done
}

// awaitCommit waits for the commit under way, if any, and returns its
// error.
func (w *writer) awaitCommit() error {
	job := w.committing
	if job == nil {
		return nil
	}
	<-job.done
	w.committing = nil
	return job.err
}

// write writes one batch. It returns once the batch is applied; its commit
// runs on, and its rows are finished when that lands.
func (w *writer) write(ctx context.Context, batch []*rowResult) error {
	u := w.u
	e := u.e
	if err := w.resolve(ctx, batch); err != nil {
		return err
	}
	if u.opts.Preview {
		for _, res := range batch {
			for _, a := range res.actions {
				if !a.cancelled && !a.standby {
					w.count(a)
				}
			}
			w.countRow(ctx, res, nil)
		}
		w.finish(batch)
		return nil
	}

	started := time.Now()
	if err := runHook(ctx, e.opts.Hooks.BeforePrecommit); err != nil {
		return err
	}
	for _, run := range w.runs {
		if err := w.precommit(ctx, run, batch); err != nil {
			return err
		}
	}
	if err := runHook(ctx, e.opts.Hooks.BeforeApply); err != nil {
		return err
	}
	failed, err := w.apply(ctx, batch)
	if err != nil {
		return err
	}
	land := landings(batch)
	// One commit at a time, in batch order.
	if err := w.awaitCommit(); err != nil {
		return err
	}
	job := &commitJob{done: make(chan struct{})}
	w.committing = job
	go func() {
		defer close(job.done)
		job.err = w.commitBatch(ctx, batch, failed, land, started)
	}()
	return nil
}

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
	for _, res := range batch {
		w.countRow(ctx, res, failed[res])
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

// finish releases a written batch's rows, and nudges the collector: a
// source may now wait on its batch alone.
func (w *writer) finish(batch []*rowResult) {
	for _, res := range batch {
		w.u.flights.release(res.run.flightKey(res.key))
		res.run.pending.done()
	}
	select {
	case w.u.nudge <- struct{}{}:
	default:
	}
}

func runHook(ctx context.Context, hook func(context.Context) error) error {
	if hook == nil {
		return nil
	}
	return hook(ctx)
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
func (w *writer) resolve(ctx context.Context, batch []*rowResult) error {
	if err := w.adopt(ctx, batch); err != nil {
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
				w.rewrite(last, k)
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
func (w *writer) rewrite(res *rowResult, k trackKey) {
	d := res.declaredSet[k]
	rs := w.u.setup.byID[k.root]
	var prev []target.Record
	if d.record != nil {
		prev = []target.Record{d.record}
	}
	rec, err := safeReconcile(rs.child, k.key, d.value, prev, true)
	if err != nil {
		res.run.fail(res, fmt.Errorf("target %s, key %q: %w", rs.root.Key, k.key, err))
		return
	}
	if rec != nil && !rec.Action.IsZero() {
		res.actions = append(res.actions, &plannedAction{row: res, root: rs, key: k.key, action: rec.Action, record: rec.Record})
	}
}

// safeReconcile calls a handler, turning a panic into an error.
func safeReconcile(h target.Erased, key target.Key, desired any, prev []target.Record, mayBeMissing bool) (rec *target.Reconciled, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h.Reconcile(key, desired, prev, mayBeMissing)
}

// markForRewrite stages, on rows outside the batch, target states they must
// write again: the next time each row is processed (in this update if it is
// in flight, else in the next, since a staged row is never skipped), it finds
// them possibly missing and writes them.
func (w *writer) markForRewrite(ctx context.Context, rows map[int64][]trackKey) error {
	ids := make([]int64, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var loaded []statestore.RowTracking
	if err := w.u.e.do(ctx, "load rows", func(ctx context.Context) (err error) {
		loaded, err = w.u.e.store.RowLoad(ctx, statestore.RowLoadParams{IDs: ids})
		return err
	}); err != nil {
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
			if rec, ok := findRecord(committed, k); ok && !differs(w.stale[k], rec) {
				continue
			}
			add = append(add, stagedEntry{root: k.root, entry: statestore.Entry{Key: string(k.key), Deleting: true}})
		}
		if len(add) == 0 {
			continue
		}
		marks = append(marks, statestore.PrecommitRow{ID: t.ID, Staged: statestore.EncodeSections(mergeStaged(staged, add, w.u.setup.gen))})
	}
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

// sinkGroup is the live actions of a batch that one sink applies.
type sinkGroup struct {
	actions []*plannedAction
}

// apply writes the batch's live actions, one call per sink, in order of
// first appearance. A write that fails for good is split by source row
// until the rows at fault are found; they are returned as failed. Where the
// row of a state's winning write failed, the latest write of that state by
// a row that did not fail is applied next. A transient fault that outlasts
// the retries fails the update.
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
		if err := w.applyActions(ctx, next, failed); err != nil {
			return nil, err
		}
		// Fall back to the latest standing-by write of each state whose
		// winning row failed.
		next = next[:0]
		for k, a := range winner {
			if _, bad := failed[a.row]; !bad {
				continue
			}
			delete(winner, k)
			cands := standby[k]
			for len(cands) > 0 {
				c := cands[len(cands)-1]
				cands = cands[:len(cands)-1]
				if _, bad := failed[c.row]; !bad {
					next = append(next, c)
					winner[k] = c
					break
				}
			}
			standby[k] = cands
		}
		revived, err := w.revive(ctx, batch, failed)
		if err != nil {
			return nil, err
		}
		next = append(next, revived...)
	}
	return failed, nil
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

// applyActions applies actions, one call per sink in order of first
// appearance.
func (w *writer) applyActions(ctx context.Context, actions []*plannedAction, failed map[*rowResult]error) error {
	var (
		groups []*sinkGroup
		bySink = make(map[any]*sinkGroup)
	)
	for _, a := range actions {
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
	return nil
}

// applyGroup applies actions of one sink, splitting them by source row
// when they fail for good, to find the rows at fault.
func (w *writer) applyGroup(ctx context.Context, actions []*plannedAction, failed map[*rowResult]error) error {
	var todo []*plannedAction
	for _, a := range actions {
		if _, bad := failed[a.row]; !bad && a.row.kind != resultFailed {
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
	u := w.u
	p := statestore.CommitParams{SourceID: run.id, At: now}
	for _, res := range batch {
		if res.run != run {
			continue
		}
		if err := failed[res]; err != nil {
			res.kind, res.err = resultFailed, err
		}
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
			var added, dropped []statestore.OwnerKey
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
			p.Rows = append(p.Rows, statestore.CommitRow{ID: res.id, Ordinal: res.ordinal, ContentFP: res.contentFP, LogicFP: u.e.logicFP,
				Gen: u.setup.gen, Tracking: statestore.EncodeSections(sections), NewOwners: added, DroppedOwners: dropped})
		case resultBump:
			p.Bumps = append(p.Bumps, statestore.OrdinalBump{ID: res.id, Ordinal: res.ordinal})
		case resultGone:
			owners := make([]statestore.OwnerKey, 0, len(res.owned))
			for k := range res.owned {
				owners = append(owners, ownerKey(k))
			}
			p.Deletes = append(p.Deletes, statestore.RowDelete{ID: res.id, Owners: owners})
		case resultFailed:
			p.Failed = append(p.Failed, statestore.RowFailed{ID: res.id, Key: res.key, Message: res.err.Error()})
			run.markFailed(res.key)
		}
	}
	if len(p.Rows)+len(p.Bumps)+len(p.Deletes)+len(p.Failed) == 0 {
		return nil
	}
	return u.e.write(ctx, "commit", func(ctx context.Context) error { return u.e.store.Commit(ctx, p) })
}

// ownerKey is the ownership key of a target state.
func ownerKey(k trackKey) statestore.OwnerKey {
	return statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))}
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
