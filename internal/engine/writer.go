package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// writer batches processed rows and writes each batch in three steps:
// precommit (stage the target keys about to be written), apply (the sinks
// write), commit (the rows' new tracking). It is the only goroutine that
// writes rows to the state store, which keeps ownership decisions serial.
type writer struct {
	u       *update
	runs    []*sourceRun
	batch   []*rowResult
	actions int
	bytes   int
}

func newWriter(u *update, runs []*sourceRun) *writer {
	return &writer{u: u, runs: runs}
}

// run batches results until the channel closes, flushing a batch when it is
// full, when it is MaxDelay old, or when a source waits on its rows.
func (w *writer) run(ctx context.Context) error {
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
			if w.sourceWaiting() {
				stopTimer()
				if err := w.flush(ctx); err != nil {
					return err
				}
			}
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

func (w *writer) flush(ctx context.Context) error {
	if len(w.batch) == 0 {
		return nil
	}
	batch := w.batch
	w.batch, w.actions, w.bytes = nil, 0, 0
	if err := w.write(ctx, batch); err != nil {
		return err
	}
	for _, res := range batch {
		res.run.inBatch--
		w.u.flights.release(res.key)
		res.run.pending.done()
	}
	return nil
}

// write writes one batch.
func (w *writer) write(ctx context.Context, batch []*rowResult) error {
	u := w.u
	e := u.e
	if err := w.resolve(ctx, batch); err != nil {
		return err
	}
	if u.opts.Preview {
		for _, res := range batch {
			for _, a := range res.actions {
				if !a.cancelled {
					w.count(a)
				}
			}
			w.countRow(res, nil)
		}
		return nil
	}

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
	if err := runHook(ctx, e.opts.Hooks.BeforeCommit); err != nil {
		return err
	}
	now := time.Now()
	for _, run := range w.runs {
		if err := w.commit(ctx, run, batch, failed, now); err != nil {
			return err
		}
	}
	for _, res := range batch {
		w.countRow(res, failed[res])
	}
	e.log.DebugContext(ctx, "wrote a batch", "rows", len(batch), "failed", len(failed))
	return nil
}

func runHook(ctx context.Context, hook func(context.Context) error) error {
	if hook == nil {
		return nil
	}
	return hook(ctx)
}

// slot gathers the actions of a batch for one target state.
type slot struct {
	upserts  []*plannedAction
	deletes  []*plannedAction
	declared bool // some row of the batch declares the state
}

// resolve settles what the rows of a batch want for the same target state:
// a state some row declares is not deleted, and of several writes the last
// wins; a state no row of the batch declares is deleted once, and only if no
// other row owns it.
func (w *writer) resolve(ctx context.Context, batch []*rowResult) error {
	slots := make(map[trackKey]*slot)
	for _, res := range batch {
		for _, a := range res.actions {
			k := trackKey{a.root.id, a.key}
			s := slots[k]
			if s == nil {
				s = &slot{}
				slots[k] = s
			}
			if a.delete {
				s.deletes = append(s.deletes, a)
			} else {
				s.upserts = append(s.upserts, a)
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
					s.declared = true
				}
			}
		} else {
			for k, s := range slots {
				if res.declaredSet[k] {
					s.declared = true
				}
			}
		}
	}
	var (
		check    []statestore.OwnerKey
		checkFor = make(map[statestore.OwnerKey]*slot)
	)
	for k, s := range slots {
		if s.declared {
			for _, a := range s.deletes {
				a.cancelled = true
			}
			for _, a := range s.upserts[:max(len(s.upserts)-1, 0)] {
				a.cancelled = true
			}
			continue
		}
		for _, a := range s.deletes[1:] {
			a.cancelled = true
		}
		ok := statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))}
		check = append(check, ok)
		checkFor[ok] = s
	}
	if len(check) == 0 {
		return nil
	}
	var owners []statestore.Owner
	if err := w.u.e.do(ctx, "find owners", func(ctx context.Context) (err error) {
		owners, err = w.u.e.store.OwnerFind(ctx, statestore.OwnerFindParams{Keys: check})
		return err
	}); err != nil {
		return err
	}
	for _, o := range owners {
		s := checkFor[o.OwnerKey]
		dropping := false
		for _, a := range s.deletes {
			if a.row.id == o.RowID {
				dropping = true
				break
			}
		}
		if !dropping {
			// Another source row still declares the state: it stays.
			s.deletes[0].cancelled = true
		}
	}
	return nil
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

// newOwners returns the target states res declares that it did not own.
func newOwners(res *rowResult) []statestore.OwnerKey {
	var out []statestore.OwnerKey
	for _, rs := range res.run.u.setup.roots {
		for _, e := range res.declared[rs.id] {
			k := trackKey{rs.id, target.Key(e.Key)}
			if !res.owned[k] {
				out = append(out, statestore.OwnerKey{TargetID: rs.id, KeyHash: statestore.HashKey(e.Key)})
			}
		}
	}
	return out
}

// precommit stages, for the rows of run about to write, every target state
// they write or delete, and records ownership of the states they declare
// for the first time.
func (w *writer) precommit(ctx context.Context, run *sourceRun, batch []*rowResult) error {
	var (
		rows []statestore.PrecommitRow
		who  []*rowResult
	)
	for _, res := range batch {
		if res.run != run || (res.kind != resultUpdate && res.kind != resultGone) {
			continue
		}
		live := liveActions(res)
		owners := newOwners(res)
		// A row seen for the first time is precommitted even with nothing to
		// stage: that is where it is inserted and gets its id.
		if len(live) == 0 && len(owners) == 0 && res.id != 0 {
			continue
		}
		staged := append([]statestore.Section(nil), res.oldStaged...)
		bySection := make(map[int64]int)
		for _, a := range live {
			i, ok := bySection[a.root.id]
			if !ok {
				i = len(staged)
				bySection[a.root.id] = i
				staged = append(staged, statestore.Section{TargetID: a.root.id, Gen: w.u.setup.gen})
			}
			staged[i].Entries = append(staged[i].Entries, statestore.Entry{Key: string(a.key), Record: a.record, Deleting: a.delete})
		}
		rows = append(rows, statestore.PrecommitRow{ID: res.id, Key: res.key, Staged: statestore.EncodeSections(staged), NewOwners: owners})
		who = append(who, res)
	}
	if len(rows) == 0 {
		return nil
	}
	var ids []int64
	if err := w.u.e.do(ctx, "precommit", func(ctx context.Context) (err error) {
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
// first appearance. A write that fails for good is split by source row until
// the rows at fault are found; they are returned as failed. A transient
// fault that outlasts the retries fails the whole update.
func (w *writer) apply(ctx context.Context, batch []*rowResult) (map[*rowResult]error, error) {
	var (
		groups []*sinkGroup
		bySink = make(map[any]*sinkGroup)
	)
	for _, res := range batch {
		for _, a := range res.actions {
			if a.cancelled {
				continue
			}
			s := a.action.Sink()
			g := bySink[s]
			if g == nil {
				g = &sinkGroup{}
				bySink[s] = g
				groups = append(groups, g)
			}
			g.actions = append(g.actions, a)
		}
	}
	failed := make(map[*rowResult]error)
	for _, g := range groups {
		if err := w.applyGroup(ctx, g.actions, failed); err != nil {
			return nil, err
		}
	}
	return failed, nil
}

func (w *writer) applyGroup(ctx context.Context, actions []*plannedAction, failed map[*rowResult]error) error {
	var todo []*plannedAction
	for _, a := range actions {
		if _, bad := failed[a.row]; !bad {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	plain := make([]target.Action, len(todo))
	for i, a := range todo {
		plain[i] = a.action
	}
	err := w.u.e.do(ctx, "write", func(ctx context.Context) error { return applySafely(ctx, plain) })
	if err == nil {
		for _, a := range todo {
			w.count(a)
		}
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if retry.Is(err) {
		return fmt.Errorf("writing to target %s: %w", todo[0].root.root.Key, err)
	}
	var rows []*rowResult
	seen := make(map[*rowResult]bool)
	for _, a := range todo {
		if !seen[a.row] {
			seen[a.row] = true
			rows = append(rows, a.row)
		}
	}
	if len(rows) == 1 {
		failed[rows[0]] = fmt.Errorf("writing to target %s: %w", todo[0].root.root.Key, err)
		return nil
	}
	firstHalf := make(map[*rowResult]bool, len(rows)/2)
	for _, r := range rows[:len(rows)/2] {
		firstHalf[r] = true
	}
	var a, b []*plannedAction
	for _, act := range todo {
		if firstHalf[act.row] {
			a = append(a, act)
		} else {
			b = append(b, act)
		}
	}
	if err := w.applyGroup(ctx, a, failed); err != nil {
		return err
	}
	return w.applyGroup(ctx, b, failed)
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

// commit records the outcome of run's rows in the batch.
func (w *writer) commit(ctx context.Context, run *sourceRun, batch []*rowResult, failed map[*rowResult]error, now time.Time) error {
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
				if entries := res.declared[rs.id]; len(entries) > 0 {
					sections = append(sections, statestore.Section{TargetID: rs.id, Gen: u.setup.gen, Entries: entries})
				}
			}
			var dropped []statestore.OwnerKey
			for k := range res.owned {
				if !res.declaredSet[k] {
					dropped = append(dropped, statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))})
				}
			}
			p.Rows = append(p.Rows, statestore.CommitRow{ID: res.id, Ordinal: res.ordinal, ContentFP: res.contentFP, LogicFP: u.e.logicFP,
				Gen: u.setup.gen, Tracking: statestore.EncodeSections(sections), DroppedOwners: dropped})
		case resultBump:
			p.Bumps = append(p.Bumps, statestore.OrdinalBump{ID: res.id, Ordinal: res.ordinal})
		case resultGone:
			owners := make([]statestore.OwnerKey, 0, len(res.owned))
			for k := range res.owned {
				owners = append(owners, statestore.OwnerKey{TargetID: k.root, KeyHash: statestore.HashKey(string(k.key))})
			}
			p.Deletes = append(p.Deletes, statestore.RowDelete{ID: res.id, Owners: owners})
		case resultFailed:
			p.Errors = append(p.Errors, statestore.RowFailure{ID: res.id, Key: res.key, Message: res.err.Error()})
			if res.id == 0 {
				run.markFailedNew(res.key)
			}
		}
	}
	if len(p.Rows)+len(p.Bumps)+len(p.Deletes)+len(p.Errors) == 0 {
		return nil
	}
	return u.e.do(ctx, "commit", func(ctx context.Context) error { return u.e.store.Commit(ctx, p) })
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

// countRow adds a finished row to its source's counters.
func (w *writer) countRow(res *rowResult, failedErr error) {
	c := res.run.counters
	if failedErr != nil || res.kind == resultFailed {
		err := res.err
		if failedErr != nil {
			err = failedErr
		}
		w.u.counters.rowError(res.run.src.Name, res.key, err)
		w.u.e.log.Warn("a row failed; it will be retried next update", "source", res.run.src.Name, "key", res.key, "err", err)
		return
	}
	switch res.kind {
	case resultBump:
		c.unchanged.Add(1)
	case resultGone:
		c.deleted.Add(1)
	case resultUpdate:
		switch res.stat {
		case statAdded:
			c.added.Add(1)
		case statUpdated:
			c.updated.Add(1)
		case statReprocessed:
			c.reprocessed.Add(1)
		}
	}
}
