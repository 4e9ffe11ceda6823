package statestore

import (
	"context"
	"errors"
	"time"
)

// ErrFenced is returned to a worker whose lease or claim another worker
// took since: it expired, and the work went on without it. The worker
// must not write what it had in hand.
var ErrFenced = errors.New("statestore: the lease was taken by another worker")

// Coordinator is implemented by a state store that several processes can
// update a flow through at once (PostgreSQL and Redis; not SQLite, which
// stays single-process). The work of each source's pass is shared out through
// it:
//
//   - One worker at a time holds a pass's listing lease (PassJoin makes the
//     first who comes the lister): it lists the source, enqueues the keys
//     that need work as claims (PassEnqueue), says when the listing is
//     complete (PassListed), and, once every claim is done, deletes the rows
//     the listing left out and finishes the pass (PassFinish).
//   - Every worker, the lister too, takes claims (ClaimTake), a key at a
//     time in no worker but one, processes them, and marks them done
//     (ClaimDone).
//   - Leases and claims expire unless renewed (PassLease, ClaimRenew): a
//     worker killed leaves its part to the others. Each taking of a lease
//     or a claim advances its fence; a call with an older fence fails with
//     ErrFenced, so a worker that wakes up after its lease was taken
//     cannot write on.
//
// Times are the database's own (PostgreSQL's now(), Redis's TIME), so
// that the workers' clocks need not agree.
type Coordinator interface {
	// PassJoin joins the source's open pass, or opens one (see
	// PassJoinParams.Fresh). The caller is
	// its lister when it opened it, or when the lister's lease expired;
	// it is told the lease's fence then. A lister that takes over lists
	// again, even a listing that was complete: the set of keys listed, which
	// the deletions need, went with the lister before it.
	PassJoin(ctx context.Context, p PassJoinParams) (Pass, error)
	// PassLease renews the lister's lease for TTL; ErrFenced when it was
	// taken.
	PassLease(ctx context.Context, p PassLeaseParams) error
	// PassEnqueue adds claims of keys to the pass, under the lister's lease
	// (ErrFenced when it was taken). A key the pass has already takes the
	// new listed entry if it differs; when the key was done, it is then
	// pending again: a lister that took over lists again, and a row that
	// changed since it was done in this pass needs work again. A key
	// enqueued again with the same entry is left as it is.
	PassEnqueue(ctx context.Context, p PassEnqueueParams) error
	// PassListed records that the lister's listing is complete: every key
	// that needs work is enqueued.
	PassListed(ctx context.Context, p PassLeaseParams) error
	// PassProgress counts the pass's claims by state.
	PassProgress(ctx context.Context, p PassProgressParams) (PassProgress, error)
	// PassFinish closes the pass, under the lister's lease; the next
	// PassJoin opens another.
	PassFinish(ctx context.Context, p PassLeaseParams) error
	// PassRunning reports whether the source's open pass is under way:
	// its listing lease, or a claim of it, has not expired. An update that
	// does not share (--solo) refuses to run beside one.
	PassRunning(ctx context.Context, p PassRunningParams) (bool, error)

	// TargetWriter records Worker as the last worker to write in each of
	// the targets (those that exist; others are left out) and returns those
	// another worker was the last to write in. A worker calls it under the
	// flow's lock, before it writes a batch: as long as no other worker
	// wrote in a target since the worker found it owned by no row, what
	// its own batches did is all there is to know of the target's states,
	// and it fills the target without looking up their owners.
	TargetWriter(ctx context.Context, p TargetWriterParams) (others []int64, err error)

	// ClaimTake claims up to Limit keys of the pass for TTL: keys no worker
	// claimed yet, or whose claim expired. Two workers never get the same
	// key from one call each.
	ClaimTake(ctx context.Context, p ClaimTakeParams) ([]Claim, error)
	// ClaimRenew renews claims for TTL and returns those that were taken
	// meanwhile: the caller must drop them.
	ClaimRenew(ctx context.Context, p ClaimRenewParams) (lost []string, err error)
	// ClaimDone marks claims done and returns those that were taken
	// meanwhile, which are left to their new worker.
	ClaimDone(ctx context.Context, p ClaimDoneParams) (lost []string, err error)
}

// Pass is a worker's part in a source's pass.
type Pass struct {
	ID int64
	// Lister says the worker holds the listing lease, with Fence.
	Lister bool
	Fence  int64
	// Listed says the listing is complete.
	Listed bool
	// Mode is the pass's, as the worker that opened it gave it (see
	// PassJoinParams.Mode).
	Mode uint8
}

// PassJoinParams are the parameters of Coordinator.PassJoin.
type PassJoinParams struct {
	SourceID int64
	// Worker names the calling worker, uniquely among the workers.
	Worker string
	// TTL is the listing lease's, if the caller gets it.
	TTL time.Duration
	// Mode is recorded by a pass the call opens, and told to those who
	// join it: the engine's update mode, which its workers must share.
	Mode uint8
	// Fresh, when set, keeps a pass from being opened when the source's
	// last pass started less than Fresh ago: the Pass returned then has
	// ID 0. Live workers use it, so that N workers list once per interval,
	// not N times.
	Fresh time.Duration
}

// PassLeaseParams name a lister's lease: its pass, its worker and its
// fence. TTL is how long a renewal lasts.
type PassLeaseParams struct {
	PassID int64
	Worker string
	Fence  int64
	TTL    time.Duration
}

// PassEnqueueParams are the parameters of Coordinator.PassEnqueue.
type PassEnqueueParams struct {
	PassLeaseParams
	Items []ClaimItem
}

// ClaimItem is a key to enqueue, with what its worker needs of the listing
// (the listed entry, as the engine encodes it).
type ClaimItem struct {
	Key    string
	Listed []byte
}

// PassRunningParams are the parameters of Coordinator.PassRunning.
type PassRunningParams struct {
	SourceID int64
}

// TargetWriterParams are the parameters of Coordinator.TargetWriter.
type TargetWriterParams struct {
	TargetIDs []int64
	Worker    string
}

// PassProgressParams are the parameters of Coordinator.PassProgress.
type PassProgressParams struct {
	PassID int64
}

// PassProgress counts a pass's claims: not claimed yet (or expired),
// claimed, and done.
type PassProgress struct {
	Pending, Claimed, Done int64
	// Listed says the listing is complete; Finished that the pass is.
	Listed, Finished bool
}

// ClaimTakeParams are the parameters of Coordinator.ClaimTake.
type ClaimTakeParams struct {
	PassID int64
	Worker string
	Limit  int
	TTL    time.Duration
}

// Claim is a key claimed by a worker, with its fence.
type Claim struct {
	Key    string
	Listed []byte
	Fence  int64
}

// ClaimRef names a claim a worker holds: its key and fence.
type ClaimRef struct {
	Key   string
	Fence int64
}

// ClaimRenewParams are the parameters of Coordinator.ClaimRenew.
type ClaimRenewParams struct {
	PassID int64
	Worker string
	Claims []ClaimRef
	TTL    time.Duration
}

// ClaimDoneParams are the parameters of Coordinator.ClaimDone.
type ClaimDoneParams struct {
	PassID int64
	Worker string
	Claims []ClaimRef
}
