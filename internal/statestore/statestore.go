// Package statestore defines where Tidemark keeps what it remembers between
// runs: per flow, the setup state of every target; per source row, its
// ordinal, content fingerprint, logic version and the target states it wrote
// with their tracking records, plus what an update staged before writing.
//
// Store is one seam with three drivers, SQLite (statestore/sqlite, the
// default: a file beside the app), PostgreSQL (statestore/postgres, its
// own schema) and Redis (statestore/redis, keys under a prefix). All pass
// one conformance suite, statestoretest.Exercise.
// The engine is the only caller. It encodes tracking with EncodeSections;
// stores keep those blobs as they are.
package statestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/target"
)

// ErrNotFound is returned when a flow, target or row that must exist does
// not.
var ErrNotFound = errors.New("statestore: not found")

// ErrLocked is matched by the error of FlowLock when another update holds
// the flow; the error is a *LockedError, which says who.
var ErrLocked = errors.New("statestore: the flow is locked by another update")

// ErrLockLost is returned by Lock.Check when the lock may no longer be held.
var ErrLockLost = errors.New("statestore: the flow's lock was lost")

// Lock is a flow's update lock, held from FlowLock until Release.
type Lock interface {
	// Check returns an error matching ErrLockLost when the lock may no
	// longer be held — its database session ended, as when the server
	// restarts or the connection drops — so that another process may hold
	// it now. A lock once lost stays lost. Check must be called before
	// each write that relies on the lock, inside its retries: a write
	// retried after a reconnection would otherwise go through unlocked.
	Check(ctx context.Context) error
	// Release releases the lock; after a loss it only frees what the lock
	// used.
	Release()
}

// Store is a state store. Methods are safe for concurrent use, but the engine
// serialises writes (Precommit, Commit, Target*) through one goroutine; reads
// may run beside them. Every write method is one transaction: it happens
// whole or not at all. Errors a retry may fix (a dropped connection, a busy
// database) satisfy tidemark.IsRetryable; the engine retries them. A retry
// after an ambiguous failure (the commit happened, its answer was lost) is
// safe: at worst a failure is counted twice or a generation advanced twice,
// which costs a reprocessing, never a lost or orphaned state.
type Store interface {
	Outbox
	// FlowGet returns a flow's state, creating it on first use.
	FlowGet(ctx context.Context, p FlowGetParams) (Flow, error)
	// FlowFind returns a flow's state without creating it: ErrNotFound for
	// a flow never updated. Read-only commands (preview, plan, status) use
	// it, so that they write nothing.
	FlowFind(ctx context.Context, p FlowGetParams) (Flow, error)
	// FlowLock takes the flow's update lock, so that two processes never
	// update one flow at once. It records this process as the holder
	// (statestore.ThisProcess) and returns a *LockedError, matching
	// ErrLocked, at once if another holder has it. The lock is held until
	// it is released, and is released by the system if the process dies:
	// at once in SQLite and PostgreSQL, once its TTL has run out in Redis.
	FlowLock(ctx context.Context, p FlowLockParams) (Lock, error)
	// FlowDrop forgets everything kept for a flow, the outbox's changes of
	// its targets too.
	FlowDrop(ctx context.Context, p FlowDropParams) error

	// SourceEnsure returns the id of a flow's source, creating it on first use.
	SourceEnsure(ctx context.Context, p SourceEnsureParams) (int64, error)
	// SourceFind returns the id of a flow's source without creating it:
	// ErrNotFound for a source never updated.
	SourceFind(ctx context.Context, p SourceEnsureParams) (int64, error)
	// SourceStatus summarises the rows kept for a source.
	SourceStatus(ctx context.Context, p SourceStatusParams) (SourceStatus, error)
	// SourceNotesGet returns what is kept about a source besides its rows;
	// empty notes for a source that has none.
	SourceNotesGet(ctx context.Context, p SourceStatusParams) (SourceNotes, error)
	// SourceNotesSave replaces the notes given (a nil field keeps its
	// value).
	SourceNotesSave(ctx context.Context, p SourceNotesSaveParams) error

	// TargetList returns the setup states of a flow's targets.
	TargetList(ctx context.Context, p TargetListParams) ([]Target, error)
	// TargetStage records that a setup change to a target is about to be
	// applied, creating the target on first use. A record already staged is
	// not staged again.
	TargetStage(ctx context.Context, p TargetStageParams) (Target, error)
	// TargetCommit records a setup change as applied: the committed record
	// is replaced and the staged ones are cleared. A target that no longer
	// exists is deleted, with its attachments and the ownership of its
	// children. An invalidation advances the flow's generation; a
	// destructive one also forgets the ownership of the target's children
	// and stages a drop on each of its attachments, which went with it, so
	// that they are created again.
	TargetCommit(ctx context.Context, p TargetCommitParams) (TargetCommitResult, error)

	// RowLookup returns the rows kept for the given keys of a source; keys
	// with no row are left out.
	RowLookup(ctx context.Context, p RowLookupParams) ([]RowMeta, error)
	// RowLoad returns the tracking blobs of the given rows; unknown ids are
	// left out.
	RowLoad(ctx context.Context, p RowLoadParams) ([]RowTracking, error)
	// RowScan pages through a source's rows by ascending id.
	RowScan(ctx context.Context, p RowScanParams) ([]RowMeta, error)
	// RowCount returns the number of a source's rows, staged, failed and
	// committed alike: every row RowScan would return.
	RowCount(ctx context.Context, p RowCountParams) (int64, error)
	// RowFailures returns a source's rows whose last update failed, most
	// recent failure first.
	RowFailures(ctx context.Context, p RowFailuresParams) ([]RowFailure, error)

	// RowFind returns one row of a source by key, everything kept for it;
	// ErrNotFound when there is none. It is for inspection, not updates.
	RowFind(ctx context.Context, p RowFindParams) (RowInfo, error)
	// RowGet returns the rows of the given ids; unknown ids are left out.
	RowGet(ctx context.Context, p RowGetParams) ([]RowInfo, error)
	// RowPage returns up to Limit rows of a source in key order, after the
	// key After; with Failed, only rows whose last update failed.
	RowPage(ctx context.Context, p RowPageParams) ([]RowInfo, error)

	// OwnerFind returns which rows own each of the given target keys.
	OwnerFind(ctx context.Context, p OwnerFindParams) ([]Owner, error)
	// OwnerExists reports whether any row owns a state of the target.
	OwnerExists(ctx context.Context, p OwnerExistsParams) (bool, error)

	// Precommit stages target keys for many rows in one transaction before
	// their target writes, inserting rows seen for the first time, and
	// returns the rows' ids in order. Rows may be committed (by Commit) at
	// the same time, in another transaction: never the same rows.
	Precommit(ctx context.Context, p PrecommitParams) ([]int64, error)
	// Commit records many rows' outcomes in one transaction after their
	// target writes.
	Commit(ctx context.Context, p CommitParams) error

	// Close releases the store's connections.
	Close() error
}

// Flow is the state kept for a flow.
type Flow struct {
	Name string
	// Gen is the flow's generation. It advances whenever a target's change
	// invalidates that target's children; rows committed in an older
	// generation are processed again.
	Gen int64
}

// FlowGetParams are the parameters of Store.FlowGet and Store.FlowFind.
type FlowGetParams struct {
	Flow string
}

// FlowLockParams are the parameters of Store.FlowLock.
type FlowLockParams struct {
	Flow string
}

// FlowDropParams are the parameters of Store.FlowDrop.
type FlowDropParams struct {
	Flow string
}

// SourceEnsureParams are the parameters of Store.SourceEnsure and
// Store.SourceFind.
type SourceEnsureParams struct {
	Flow string
	Name string
}

// SourceStatusParams are the parameters of Store.SourceStatus.
type SourceStatusParams struct {
	SourceID int64
	// FailingOnly counts the failing rows only, through the index of
	// failed rows: a status of Failing alone, cheap however many rows the
	// source has (a metrics scrape asks for it every few seconds).
	FailingOnly bool
}

// SourceNotes are what the engine keeps about a source besides its rows,
// as blobs it encodes itself.
type SourceNotes struct {
	// Options describes the options of the source's last complete listing
	// whose deletions went ahead.
	Options []byte
	// LastUpdate is the source's part of its last update's statistics.
	LastUpdate []byte
}

// SourceNotesSaveParams are the parameters of Store.SourceNotesSave.
type SourceNotesSaveParams struct {
	SourceID int64
	// Options and LastUpdate replace the notes kept when not nil.
	Options, LastUpdate []byte
}

// SourceStatus summarises the rows of a source.
type SourceStatus struct {
	// Rows is the number of rows whose update was committed; rows staged
	// by an update that did not finish, or that never succeeded, are not
	// counted.
	Rows int64
	// Failing is the number of rows whose last update failed.
	Failing int64
	// LastProcessedAt is when a row was last processed; zero if never.
	LastProcessedAt time.Time
}

// Target is the setup state of one target state declared by a flow itself
// (not by a source row): a container such as a table, or an attachment.
type Target struct {
	ID   int64
	Flow string
	// Kind names the handler that reconciles the target.
	Kind string
	// Key is the target's persistent key, unique within the flow.
	Key string
	// ParentID is the container of an attachment; 0 for a root target.
	ParentID int64
	// Exists says the target was committed as existing, with Record.
	Exists bool
	Record []byte
	// Staged are the records of setup changes staged but not committed; a
	// nil entry stages a drop.
	Staged [][]byte
	// DestroyedGen and LostGen are the flow generations at which the
	// target's children were last destroyed or possibly lost.
	DestroyedGen int64
	LostGen      int64
	UpdatedAt    time.Time
}

// TargetListParams are the parameters of Store.TargetList.
type TargetListParams struct {
	Flow string
}

// TargetStageParams are the parameters of Store.TargetStage.
type TargetStageParams struct {
	Flow     string
	Kind     string
	Key      string
	ParentID int64
	// Record is the record of the change about to be applied; nil stages a
	// drop.
	Record []byte
}

// TargetCommitParams are the parameters of Store.TargetCommit.
type TargetCommitParams struct {
	Flow string
	ID   int64
	// Exists says whether the target exists after the change. When false,
	// the target, its attachments and its children's ownership are deleted.
	Exists bool
	Record []byte
	// Invalidate is what the change did to the target's children.
	Invalidate target.Invalidation
}

// TargetCommitResult is the outcome of Store.TargetCommit.
type TargetCommitResult struct {
	// Gen is the flow's generation after the commit.
	Gen int64
}

// RowMeta is the cheap part of a row: enough to decide whether to fetch it.
type RowMeta struct {
	ID  int64
	Key string
	// Ordinal is the source ordinal last committed; nil when none was (a
	// row only staged, or failing since it was first seen).
	Ordinal *int64
	// ContentFP and LogicFP fingerprint the source value and the processing
	// logic last committed.
	ContentFP []byte
	LogicFP   []byte
	// Gen is the flow generation the row was last committed in.
	Gen int64
	// Staged says the row has staged target keys: an update was
	// interrupted after its precommit.
	Staged bool
	// ErrorCount is the number of consecutive failed updates.
	ErrorCount int64
}

// RowTracking holds a row's tracking blobs, as written by EncodeSections.
type RowTracking struct {
	ID       int64
	Tracking []byte
	Staged   []byte
}

// RowLookupParams are the parameters of Store.RowLookup.
type RowLookupParams struct {
	SourceID int64
	Keys     []string
}

// RowLoadParams are the parameters of Store.RowLoad.
type RowLoadParams struct {
	IDs []int64
}

// RowScanParams are the parameters of Store.RowScan.
type RowScanParams struct {
	SourceID int64
	// AfterID returns rows with a larger id.
	AfterID int64
	Limit   int
}

// RowCountParams are the parameters of Store.RowCount.
type RowCountParams struct {
	SourceID int64
}

// RowFailuresParams are the parameters of Store.RowFailures.
type RowFailuresParams struct {
	SourceID int64
	Limit    int
}

// RowFailure is a row whose last update failed.
type RowFailure struct {
	Key     string
	Message string
	Count   int64
	At      time.Time
}

// OwnerKey identifies a target key within a root target for ownership: the
// first 16 bytes of the SHA-256 of the key.
type OwnerKey struct {
	TargetID int64
	KeyHash  [16]byte
}

// Owner says that row RowID declared, or staged, the target key.
type Owner struct {
	OwnerKey
	RowID int64
}

// OwnerFindParams are the parameters of Store.OwnerFind.
type OwnerFindParams struct {
	Keys []OwnerKey
}

// RowInfo is everything kept for one source row.
type RowInfo struct {
	ID        int64
	SourceID  int64
	Key       string
	Ordinal   *int64
	ContentFP []byte
	LogicFP   []byte
	Gen       int64
	// Tracking and Staged are the row's blobs (see EncodeSections).
	Tracking []byte
	Staged   []byte
	// Error is the row's last failure, empty when its last update did
	// not fail; ErrorCount counts the updates in a row that failed it.
	Error       string
	ErrorCount  int64
	ErrorAt     time.Time
	ProcessedAt time.Time
}

// RowFindParams are the parameters of Store.RowFind.
type RowFindParams struct {
	SourceID int64
	Key      string
}

// RowGetParams are the parameters of Store.RowGet.
type RowGetParams struct {
	IDs []int64
	// Blobs asks for the rows' tracking and staged blobs too; without it
	// they are left nil.
	Blobs bool
}

// RowPageParams are the parameters of Store.RowPage.
type RowPageParams struct {
	SourceID int64
	After    string
	Limit    int
	Failed   bool
}

// OwnerExistsParams are the parameters of Store.OwnerExists.
type OwnerExistsParams struct {
	TargetID int64
}

// PrecommitParams are the parameters of Store.Precommit.
type PrecommitParams struct {
	SourceID int64
	Rows     []PrecommitRow
}

// PrecommitRow stages one row's target keys.
type PrecommitRow struct {
	// ID is the row's id; 0 for a row seen for the first time, which is
	// inserted (or found, if it exists by now) by Key.
	ID  int64
	Key string
	// Staged replaces the row's staged blob.
	Staged []byte
}

// CommitParams are the parameters of Store.Commit.
type CommitParams struct {
	SourceID int64
	// Rows are rows updated: tracking replaced, staged and error cleared.
	Rows []CommitRow
	// Bumps are rows whose content did not change: only the ordinal is
	// updated (and the error cleared).
	Bumps []OrdinalBump
	// Failed are rows whose update failed. Their tracking is left as it is.
	Failed []RowFailed
	// Deletes are rows gone from the source, deleted with their owners.
	Deletes []RowDelete
	// At is the time to record as the rows' processing time.
	At time.Time
	// Changes go to the outbox (see Outbox) in the same transaction, with
	// At as their time. A commit may carry changes and nothing else.
	Changes []Change
	// Fence, when set, makes the commit that of a worker sharing a pass
	// (see Coordinator): it lands only if the worker still holds what
	// Fence names, and marks the claims done in the same transaction.
	// Otherwise nothing is committed and the error is a *FencedError.
	Fence *CommitFence
}

// CommitFence names what a worker sharing a pass must still hold for its
// commit to land.
type CommitFence struct {
	PassID int64
	Worker string
	// Claims are the claims of the committed rows, each held by Worker
	// with its fence; they are marked done with the commit.
	Claims []ClaimRef
	// Lister, when not zero, is the fence of the pass's listing lease,
	// which Worker must hold: rows committed without a claim (the
	// deletions after the listing) are the lister's.
	Lister int64
}

// FencedError is the error of a fenced commit that did not land: Keys are
// the claims the worker no longer holds, and Lease says it lost the
// listing lease. It matches ErrFenced.
type FencedError struct {
	Keys  []string
	Lease bool
}

// Error says what the worker lost.
func (e *FencedError) Error() string {
	if e.Lease {
		return "statestore: the listing lease was taken by another worker"
	}
	return fmt.Sprintf("statestore: %d claims were taken by another worker", len(e.Keys))
}

// Is matches ErrFenced.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// CommitRow is one row's successful update.
type CommitRow struct {
	ID        int64
	Ordinal   *int64
	ContentFP []byte
	LogicFP   []byte
	Gen       int64
	Tracking  []byte
	// NewOwners are ownerships the row takes, of the states its tracking
	// holds for the first time; DroppedOwners are those it gives up. The
	// ownerships of a row thus always match its committed tracking.
	NewOwners     []OwnerKey
	DroppedOwners []OwnerKey
}

// OrdinalBump is a row whose content was unchanged under a new ordinal.
type OrdinalBump struct {
	ID      int64
	Ordinal *int64
}

// RowFailed is a row whose update failed. A row seen for the first time
// (ID 0) is inserted by Key so that the failure can be shown.
type RowFailed struct {
	ID      int64
	Key     string
	Message string
}

// RowDelete is a row gone from the source.
type RowDelete struct {
	ID     int64
	Owners []OwnerKey
}
