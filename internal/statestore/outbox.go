package statestore

import (
	"context"
	"time"
)

// Outbox keeps the committed changes of target states that a flow's
// change hooks are told of, until they are delivered: a change is written
// by the commit that makes it (CommitParams.Changes), in the same
// transaction, so that a crash between the commit and the delivery loses
// nothing; the next update delivers it.
//
// Changes of one target state (one TargetID and Key) are delivered in the
// order of their IDs, which is their commit order: OutboxTake gives only
// the oldest change of each state, and the next once it is done. A change
// whose delivery failed waits until its NextAt, and so do the later changes
// of its state; other states' changes go on.
type Outbox interface {
	// OutboxTake leases, for TTL, up to Limit changes of the targets
	// TargetIDs that are due: for each target state, its oldest change,
	// when it is not leased by a worker (or its lease ended) and its
	// NextAt has come. The changes that never failed are taken first, in
	// ID order, then those that failed, in ID order: states that keep
	// failing do not fill every take. Each comes with a new Fence.
	OutboxTake(ctx context.Context, p OutboxTakeParams) ([]Change, error)
	// OutboxDone removes delivered changes: those Worker still leases with
	// the fence given. It returns the IDs of the others, which are left as
	// they are (another worker took them when the lease ended).
	OutboxDone(ctx context.Context, p OutboxDoneParams) (lost []int64, err error)
	// OutboxRetry records a failed delivery of a change Worker leases:
	// its attempts grow by one, its error is kept, it is due again at
	// NextAt, and its lease ends. A change not held is left as it is.
	OutboxRetry(ctx context.Context, p OutboxRetryParams) error
	// OutboxStatus counts the undelivered changes of each of the targets
	// TargetIDs that has some, in TargetID order.
	OutboxStatus(ctx context.Context, p OutboxStatusParams) ([]OutboxStatus, error)
}

// Change is one committed change of a target state, kept in the outbox
// until a change hook is told of it.
type Change struct {
	// ID is given by the store when the change is committed, growing in
	// commit order; it is ignored in CommitParams.Changes.
	ID       int64
	TargetID int64
	// SourceID and RowKey are the source row whose update made the change.
	SourceID int64
	RowKey   string
	// Key is the target state's key in its target.
	Key string
	// Seq orders the changes of the state made by the row, growing. With
	// TargetID, SourceID, RowKey and Key it identifies the change; a
	// change committed twice is kept once.
	Seq int64
	// Old and New are the state's values before and after (JSON), nil
	// when it did not exist before (Old) or no longer exists (New).
	Old, New []byte
	// At is the commit's time.
	At time.Time

	// Set by the store, from OutboxTake and OutboxStatus.

	// Attempts counts the failed deliveries; LastError is the last one's.
	Attempts  int
	LastError string
	// NextAt is when the change is due again after a failed delivery;
	// zero when it never failed.
	NextAt time.Time
	// Fence names OutboxTake's lease of the change.
	Fence int64
}

// OutboxTakeParams are the parameters of Outbox.OutboxTake.
type OutboxTakeParams struct {
	TargetIDs []int64
	// Worker names the taker, uniquely among the workers of the store.
	Worker string
	Limit  int
	TTL    time.Duration
	// Steal takes changes leased by other workers too: the caller knows
	// that no other worker delivers them (it updates the flow alone, under
	// its lock), so their leases are those of workers that died.
	Steal bool
}

// OutboxRef names a change as OutboxTake leased it.
type OutboxRef struct {
	ID    int64
	Fence int64
}

// OutboxDoneParams are the parameters of Outbox.OutboxDone.
type OutboxDoneParams struct {
	Worker  string
	Changes []OutboxRef
}

// OutboxRetryParams are the parameters of Outbox.OutboxRetry.
type OutboxRetryParams struct {
	Worker string
	Change OutboxRef
	Error  string
	NextAt time.Time
}

// OutboxStatusParams are the parameters of Outbox.OutboxStatus.
type OutboxStatusParams struct {
	TargetIDs []int64
}

// OutboxStatus counts a target's undelivered changes.
type OutboxStatus struct {
	TargetID int64
	// Pending counts the undelivered changes, Failing those of them whose
	// delivery failed at least once.
	Pending, Failing int64
	// OldestAt is the commit time of the oldest undelivered change.
	OldestAt time.Time
	// Failed is, if any change is failing, the failing change with the
	// smallest ID: its Attempts, LastError and NextAt say how it fails.
	Failed *Change
}
