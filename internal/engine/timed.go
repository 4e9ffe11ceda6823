package engine

import (
	"context"
	"errors"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/tidemarktype"
)

// timedStore is a state store that tells an observer how long each call
// took and how it went (Observers.StoreOp). New puts it in front of the
// store only when there is such an observer, so that an engine without one
// pays nothing. Close is not timed. It wraps each method itself, embedding
// nothing, so that a method added to statestore.Store cannot go untimed.
type timedStore struct {
	store   statestore.Store
	observe func(ctx context.Context, op tidemarktype.StoreOp)
}

var _ statestore.Store = (*timedStore)(nil)

// timed calls fn(ctx, p) and tells the store's observer about it as op.
func timed[P, R any](ctx context.Context, s *timedStore, op string, fn func(context.Context, P) (R, error), p P) (R, error) {
	start := time.Now()
	r, err := fn(ctx, p)
	s.report(ctx, op, start, err)
	return r, err
}

// timedErr is timed for a call that returns only an error.
func timedErr[P any](ctx context.Context, s *timedStore, op string, fn func(context.Context, P) error, p P) error {
	start := time.Now()
	err := fn(ctx, p)
	s.report(ctx, op, start, err)
	return err
}

// report tells the observer of a call to op begun at start that returned
// err. A flow, source or row not found and a lock held by another are
// answers, not failures: they are told with no error.
func (s *timedStore) report(ctx context.Context, op string, start time.Time, err error) {
	d := time.Since(start)
	if errors.Is(err, statestore.ErrNotFound) || errors.Is(err, statestore.ErrLocked) {
		err = nil
	}
	s.observe(ctx, tidemarktype.StoreOp{Op: op, Duration: d, Err: err})
}

func (s *timedStore) FlowGet(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	return timed(ctx, s, "flow_get", s.store.FlowGet, p)
}

func (s *timedStore) FlowFind(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	return timed(ctx, s, "flow_find", s.store.FlowFind, p)
}

func (s *timedStore) FlowLock(ctx context.Context, p statestore.FlowLockParams) (statestore.Lock, error) {
	l, err := timed(ctx, s, "lock", s.store.FlowLock, p)
	if err != nil {
		return nil, err
	}
	return &timedLock{lock: l, s: s}, nil
}

func (s *timedStore) FlowDrop(ctx context.Context, p statestore.FlowDropParams) error {
	return timedErr(ctx, s, "flow_drop", s.store.FlowDrop, p)
}

func (s *timedStore) SourceEnsure(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	return timed(ctx, s, "source_ensure", s.store.SourceEnsure, p)
}

func (s *timedStore) SourceFind(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	return timed(ctx, s, "source_find", s.store.SourceFind, p)
}

func (s *timedStore) SourceStatus(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceStatus, error) {
	return timed(ctx, s, "source_status", s.store.SourceStatus, p)
}

func (s *timedStore) SourceNotesGet(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceNotes, error) {
	return timed(ctx, s, "source_notes_get", s.store.SourceNotesGet, p)
}

func (s *timedStore) SourceNotesSave(ctx context.Context, p statestore.SourceNotesSaveParams) error {
	return timedErr(ctx, s, "source_notes_save", s.store.SourceNotesSave, p)
}

func (s *timedStore) TargetList(ctx context.Context, p statestore.TargetListParams) ([]statestore.Target, error) {
	return timed(ctx, s, "target_list", s.store.TargetList, p)
}

func (s *timedStore) TargetStage(ctx context.Context, p statestore.TargetStageParams) (statestore.Target, error) {
	return timed(ctx, s, "target_stage", s.store.TargetStage, p)
}

func (s *timedStore) TargetCommit(ctx context.Context, p statestore.TargetCommitParams) (statestore.TargetCommitResult, error) {
	return timed(ctx, s, "target_commit", s.store.TargetCommit, p)
}

func (s *timedStore) RowLookup(ctx context.Context, p statestore.RowLookupParams) ([]statestore.RowMeta, error) {
	return timed(ctx, s, "lookup", s.store.RowLookup, p)
}

func (s *timedStore) RowLoad(ctx context.Context, p statestore.RowLoadParams) ([]statestore.RowTracking, error) {
	return timed(ctx, s, "row_load", s.store.RowLoad, p)
}

func (s *timedStore) RowScan(ctx context.Context, p statestore.RowScanParams) ([]statestore.RowMeta, error) {
	return timed(ctx, s, "row_scan", s.store.RowScan, p)
}

func (s *timedStore) RowCount(ctx context.Context, p statestore.RowCountParams) (int64, error) {
	return timed(ctx, s, "row_count", s.store.RowCount, p)
}

func (s *timedStore) RowFailures(ctx context.Context, p statestore.RowFailuresParams) ([]statestore.RowFailure, error) {
	return timed(ctx, s, "row_failures", s.store.RowFailures, p)
}

func (s *timedStore) RowFind(ctx context.Context, p statestore.RowFindParams) (statestore.RowInfo, error) {
	return timed(ctx, s, "row_find", s.store.RowFind, p)
}

func (s *timedStore) RowGet(ctx context.Context, p statestore.RowGetParams) ([]statestore.RowInfo, error) {
	return timed(ctx, s, "row_get", s.store.RowGet, p)
}

func (s *timedStore) RowPage(ctx context.Context, p statestore.RowPageParams) ([]statestore.RowInfo, error) {
	return timed(ctx, s, "row_page", s.store.RowPage, p)
}

func (s *timedStore) OwnerFind(ctx context.Context, p statestore.OwnerFindParams) ([]statestore.Owner, error) {
	return timed(ctx, s, "owner_find", s.store.OwnerFind, p)
}

func (s *timedStore) OwnerExists(ctx context.Context, p statestore.OwnerExistsParams) (bool, error) {
	return timed(ctx, s, "owner_exists", s.store.OwnerExists, p)
}

func (s *timedStore) Precommit(ctx context.Context, p statestore.PrecommitParams) ([]int64, error) {
	return timed(ctx, s, "precommit", s.store.Precommit, p)
}

func (s *timedStore) Commit(ctx context.Context, p statestore.CommitParams) error {
	return timedErr(ctx, s, "commit", s.store.Commit, p)
}

func (s *timedStore) OutboxTake(ctx context.Context, p statestore.OutboxTakeParams) ([]statestore.Change, error) {
	return timed(ctx, s, "outbox_take", s.store.OutboxTake, p)
}

func (s *timedStore) OutboxDone(ctx context.Context, p statestore.OutboxDoneParams) ([]int64, error) {
	return timed(ctx, s, "outbox_done", s.store.OutboxDone, p)
}

func (s *timedStore) OutboxRetry(ctx context.Context, p statestore.OutboxRetryParams) error {
	return timedErr(ctx, s, "outbox_retry", s.store.OutboxRetry, p)
}

func (s *timedStore) OutboxStatus(ctx context.Context, p statestore.OutboxStatusParams) ([]statestore.OutboxStatus, error) {
	return timed(ctx, s, "outbox_status", s.store.OutboxStatus, p)
}

func (s *timedStore) Close() error { return s.store.Close() }

// timedLock is a flow's lock whose checks and release are timed too.
type timedLock struct {
	lock statestore.Lock
	s    *timedStore
}

func (l *timedLock) Check(ctx context.Context) error {
	start := time.Now()
	err := l.lock.Check(ctx)
	l.s.report(ctx, "lock_check", start, err)
	return err
}

// Release is told with a background context: it is given none.
func (l *timedLock) Release() {
	start := time.Now()
	l.lock.Release()
	l.s.report(context.Background(), "unlock", start, nil)
}
