package engine

import (
	"context"
	"time"
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

	// The stage goroutine's state: committing is the commit under way, if
	// any.
	committing *commitJob
}

// commitJob is a batch's commit, run in its own goroutine.
type commitJob struct {
	done chan struct{} // closed when the commit ends
	err  error
}

func newWriter(u *update, runs []*sourceRun) *writer {
	w := &writer{u: u, runs: runs, queue: make(chan []*rowResult), stageDone: make(chan struct{})}
	u.own.w = w
	return w
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
	w.actions += len(res.actions) + res.deferred
	w.bytes += res.bytes
	res.run.inBatch++
}

// sourceWaiting reports whether a source waits for rows that are all in the
// batch, or in a shared pass for claims the batch holds, so flushing now
// lets it go on.
func (w *writer) sourceWaiting() bool {
	for _, r := range w.runs {
		r.pending.mu.Lock()
		waiting := r.waiting && r.inBatch > 0 && r.inBatch == r.pending.n
		r.pending.mu.Unlock()
		if waiting || r.inBatch > 0 && r.sh != nil && r.sh.full.Load() {
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
		if res.run.sh != nil {
			// Written now: the rows that come next wait for the next
			// batch, until the claims in hand reach their bound again.
			res.run.sh.full.Store(false)
		}
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
	if u.shared {
		// One worker at a time writes a batch, and only the rows whose
		// claims it still holds.
		release, err := e.lock(ctx)
		if err != nil {
			return err
		}
		defer release()
		if batch, err = w.keepClaimed(ctx, batch); err != nil || len(batch) == 0 {
			return err
		}
	}
	if err := w.u.own.writing(ctx); err != nil {
		return err
	}
	if err := w.u.own.resolve(ctx, batch); err != nil {
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
	w.u.own.applied(batch, failed)
	land := landings(batch)
	if u.shared {
		return w.commitBatch(ctx, batch, failed, land, started)
	}
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

// finish releases a written batch's rows, and nudges the collector: a
// source may now wait on its batch alone.
func (w *writer) finish(batch []*rowResult) {
	for _, res := range batch {
		res.run.release(res.key)
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
