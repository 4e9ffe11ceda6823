// Package tidemarktype holds the types that Tidemark's results are made
// of — an update's counts, a flow's status, a setup change, a failed row —
// shared by the engine and the root package alike, so that each concept
// has one name and one definition in every layer. It depends on nothing
// of Tidemark's but package target.
package tidemarktype

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/target"
)

// UpdateStats describe one update.
type UpdateStats struct {
	Started  time.Time
	Finished time.Time
	// Setup lists the setup changes the update applied (or, in preview,
	// would apply).
	Setup []SetupChange
	// Sources are per source, by name.
	Sources map[string]SourceStats
	// Targets are per root target, by key: the target states written to
	// its children (or, in preview, that would be).
	Targets map[string]TargetStats
	// Failures are the first rows that failed, at most MaxFailures.
	Failures []RowFailure
}

// MaxFailures bounds UpdateStats.Failures.
const MaxFailures = 100

// Failed returns the number of rows that failed, over every source.
func (s *UpdateStats) Failed() int64 {
	var n int64
	for _, src := range s.Sources {
		n += src.Errors
	}
	return n
}

// SourceStats count what an update did with one source's rows.
type SourceStats struct {
	// Listed is the number of keys listed.
	Listed int64 `json:"listed"`
	// Fetched is the number of rows fetched with Get.
	Fetched int64 `json:"fetched"`
	// Added, Updated and Reprocessed count rows processed: seen for the
	// first time, changed, or processed again because the logic, a target's
	// setup or the mode asked for it.
	Added       int64 `json:"added"`
	Updated     int64 `json:"updated"`
	Reprocessed int64 `json:"reprocessed"`
	// Deleted counts rows gone from the source whose targets were deleted.
	Deleted int64 `json:"deleted"`
	// Unchanged counts rows skipped: by ordinal, or fetched and found with
	// the same content.
	Unchanged int64 `json:"unchanged"`
	// Errors counts rows that failed; they are retried next update.
	Errors int64 `json:"failed"`
	// ListingComplete says the listing ran to its end, so rows missing from
	// it were deleted.
	ListingComplete bool `json:"listing_complete"`
	// ListingError is why the listing did not complete, if it did not.
	ListingError string `json:"listing_error,omitempty"`
	// Held counts the rows a complete listing left out that were not
	// deleted, because their deletion needed a confirmation it did not get
	// (see Deletions).
	Held int64 `json:"held"`
}

// Deletions describes the rows a complete listing of a source left out,
// when deleting them needs a confirmation: the listing named no row at all
// while the source has rows, or the source's options changed since its
// last update (a typo in a filter would otherwise empty the targets).
type Deletions struct {
	// Source is the source's name.
	Source string
	// Listed is how many rows the listing named; Tracked how many rows the
	// source has in the state store; Deleting how many of them the listing
	// left out, which would be deleted.
	Listed, Tracked, Deleting int64
	// OptionsBefore and OptionsNow describe the source's options at its
	// last update and now, when they differ; both nil otherwise.
	OptionsBefore, OptionsNow map[string]string
}

// Empty says the listing named no row at all.
func (d Deletions) Empty() bool { return d.Listed == 0 }

// Reason says, in a phrase, why the deletions need a confirmation.
func (d Deletions) Reason() string {
	if d.Empty() {
		return fmt.Sprintf("its listing named no rows, while %d rows are kept for it", d.Tracked)
	}
	return "its options changed since its last update: " + OptionsChange(d.OptionsBefore, d.OptionsNow)
}

// OptionsChange describes how options changed, option by option in name
// order: `tag "story" → "nosuchtag"`.
func OptionsChange(before, now map[string]string) string {
	names := slices.Sorted(maps.Keys(before))
	for n := range now {
		if _, ok := before[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		b, hadB := before[n]
		a, hasA := now[n]
		switch {
		case hadB && hasA && a == b:
		case !hadB:
			parts = append(parts, fmt.Sprintf("%s %q (new)", n, a))
		case !hasA:
			parts = append(parts, fmt.Sprintf("%s %q (gone)", n, b))
		default:
			parts = append(parts, fmt.Sprintf("%s %q → %q", n, b, a))
		}
	}
	return strings.Join(parts, ", ")
}

// ErrDeletionsHeld is matched by a DeletionsHeldError.
var ErrDeletionsHeld = errors.New("deletions held for confirmation")

// DeletionsHeldError is the error of an update that kept rows a complete
// listing left out, because deleting them needed a confirmation it did
// not get. Everything else of the update went ahead.
type DeletionsHeldError struct {
	Deletions Deletions
}

// Error says which rows were kept and why.
func (e *DeletionsHeldError) Error() string {
	d := e.Deletions
	return fmt.Sprintf("source %s: %d rows not deleted: %s; deleting them needs a confirmation", d.Source, d.Deleting, d.Reason())
}

// Is matches ErrDeletionsHeld.
func (e *DeletionsHeldError) Is(target error) bool { return target == ErrDeletionsHeld }

// TargetStats count the target states written to a root target's
// children: upserted and deleted.
type TargetStats struct {
	Upserts int64
	Deletes int64
	// Changes counts the changes of the target's states the update
	// committed for its change hook; Delivered those the hook was told of
	// (some may be from earlier updates), and DeliveryFailures the
	// deliveries that failed, to be tried again later.
	Changes          int64 `json:",omitempty"`
	Delivered        int64 `json:",omitempty"`
	DeliveryFailures int64 `json:",omitempty"`
}

// RowFailure is a source row whose update failed: in an update's stats,
// the failure of that update; in a flow's status, the row's last failure.
type RowFailure struct {
	// Source is the source's name.
	Source string `json:"source"`
	// Key is the row's key, as the source encodes it.
	Key string `json:"key"`
	// Message says what failed.
	Message string `json:"message"`
	// Count is the number of updates in a row that failed it (status
	// only).
	Count int64 `json:"count,omitempty"`
	// At is when it failed (status only).
	At time.Time `json:"at,omitzero"`
}

// SetupChange is one change to the setup of a root target or attachment.
type SetupChange struct {
	Kind string
	// Key is the target's persistent key; for an attachment
	// "target#kind:key".
	Key string
	// Change is "create", "update" or "drop".
	Change string
	// Description is the action's own description, if it has one.
	Description string
	// Invalidate is what the change does to the target's children.
	Invalidate target.Invalidation
}

// String describes the change in a line, as setup plans print it: what, on
// which target, and what it does to the target's rows.
func (c SetupChange) String() string {
	s := c.Change + " " + c.Key
	if c.Description != "" {
		s += ": " + c.Description
	}
	if c.Invalidate != target.InvalidateNone {
		s += " (" + c.Invalidate.String() + ": every row is written again)"
	}
	return s
}

// Status is what the state store knows of a flow.
type Status struct {
	Flow    string
	Sources []SourceStatus
	Targets []TargetStatus
}

// SourceStatus describes the rows kept for one source.
type SourceStatus struct {
	Name string
	// Options describe the source's options as the flow gives them now
	// (see tidemark.OptionsDescriber); nil for a source that does not.
	Options map[string]string
	// Rows counts the source's rows kept, Failing those whose last update
	// failed.
	Rows    int64
	Failing int64
	// LastProcessedAt is when a row of the source was last committed.
	LastProcessedAt time.Time
	// Failures are the most recently failed rows, up to the limit asked.
	Failures []RowFailure
	// LastUpdate is the source's part of its last update that was not a
	// preview; nil before the first.
	LastUpdate *SourceUpdate
}

// SourceUpdate is a source's part of an update: when it ran, its counts,
// and the update's error, if it failed.
type SourceUpdate struct {
	Started  time.Time   `json:"started"`
	Finished time.Time   `json:"finished"`
	Stats    SourceStats `json:"stats"`
	Error    string      `json:"error,omitempty"`
	// Stopped says the update was stopped (see UpdateOptions.Stop) before
	// it was done: Error says so, and the update did not fail.
	Stopped bool `json:"stopped,omitempty"`
}

// TargetStatus describes one root target or attachment as kept.
type TargetStatus struct {
	Kind string
	Key  string
	// Attachment says the target is an attachment of a container; Parent
	// is then the container's key.
	Attachment bool
	Parent     string
	// Exists says the target's setup was committed.
	Exists bool
	// Staged says a setup change was staged and not committed: an update
	// was interrupted during setup; the next one completes it.
	Staged    bool
	UpdatedAt time.Time
	// Hook is the state of the target's change hook, for a root target
	// that has one or whose outbox holds changes; nil otherwise.
	Hook *HookStatus `json:",omitempty"`
}

// HookStatus is the state of a target's change hook: the committed changes
// of its states not delivered yet.
type HookStatus struct {
	// Attached says the flow gives the target a hook; without one, the
	// changes wait for a flow that does.
	Attached bool `json:"attached"`
	// Pending counts the changes not delivered; Failing those of them
	// whose delivery failed at least once.
	Pending int64 `json:"pending"`
	Failing int64 `json:"failing"`
	// OldestAt is the commit time of the oldest change not delivered.
	OldestAt time.Time `json:"oldest_at,omitzero"`
	// Failure is the oldest failing change, if there is one.
	Failure *HookFailure `json:"failure,omitempty"`
}

// HookFailure is a change whose delivery to a hook keeps failing.
type HookFailure struct {
	// Key is the target state's; Source and Row name the row that made
	// the change.
	Key      string    `json:"key"`
	Source   string    `json:"source"`
	Row      string    `json:"row"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
	NextAt   time.Time `json:"next_at"`
}

// Outcome is what became of a source row in an update.
type Outcome string

// The outcomes of a row, as SourceStats counts them.
const (
	OutcomeAdded       Outcome = "added"
	OutcomeUpdated     Outcome = "updated"
	OutcomeReprocessed Outcome = "reprocessed"
	OutcomeUnchanged   Outcome = "unchanged"
	OutcomeDeleted     Outcome = "deleted"
	OutcomeFailed      Outcome = "failed"
)

// PassStart is told to an observer when an update begins.
type PassStart struct {
	Flow    string
	Started time.Time
	// Preview says the update writes nothing.
	Preview bool
}

// PassEnd is told to an observer when an update ends.
type PassEnd struct {
	Flow  string
	Stats UpdateStats
	// Err is the update's error, nil when it completed.
	Err error
	// Preview says the update wrote nothing, as its PassStart said.
	Preview bool
}

// RowDone is told to an observer for each source row an update finished
// with: written and committed, failed, or skipped unchanged.
type RowDone struct {
	Source  string
	Key     string
	Outcome Outcome
	// Message says why the row failed, for OutcomeFailed.
	Message string
}

// Fetch is told to an observer for each Get of a source row, once its
// retries are over.
type Fetch struct {
	Source string
	Key    string
	// Duration is the time the Get took, retries included.
	Duration time.Duration
	// Exists says the row was found; Err is the error that failed it.
	Exists bool
	Err    error
}

// Batch is told to an observer for each batch of rows written and
// committed.
type Batch struct {
	// Rows counts the batch's source rows, Failed those that failed.
	Rows   int
	Failed int
	// Targets are the target states written, per root target.
	Targets map[string]TargetStats
	// Duration is the time from the batch's precommit to its commit.
	Duration time.Duration
}

// StoreOp is told to an observer for each call the engine makes to its
// state store, once it returns: a retried operation is told once per try.
type StoreOp struct {
	// Op names the operation, one of a fixed set of short names:
	// "flow_get", "flow_find", "flow_drop", "lock" (taking the flow's
	// lock), "lock_check", "unlock", "source_ensure", "source_find",
	// "source_status", "source_notes_get", "source_notes_save",
	// "target_list", "target_stage", "target_commit", "lookup" (the state
	// of listed keys), "row_load", "row_scan", "row_count",
	// "row_failures", "row_find", "row_get", "row_page", "owner_find",
	// "owner_exists", "precommit", "commit", and the outbox of change
	// hooks' "outbox_take", "outbox_done", "outbox_retry" and
	// "outbox_status".
	Op string
	// Duration is the time the call took.
	Duration time.Duration
	// Err is the error the call failed with. An answer is not a failure:
	// Err is nil for a flow, source or row not found, and for a lock
	// refused because another update holds it.
	Err error
}

// RowState is everything Tidemark keeps for one source row: what it saw,
// what it wrote, and how its last update went.
type RowState struct {
	Source string
	// Key is the row's key as the state store keeps it: its JSON encoding.
	Key string
	// Ordinal is the row's ordinal when last committed; nil if the source
	// gives none.
	Ordinal *int64
	// ContentFingerprint identifies the content last processed;
	// LogicFingerprint the logic version that processed it, and
	// LogicCurrent says it is the flow's current one.
	ContentFingerprint []byte
	LogicFingerprint   []byte
	LogicCurrent       bool
	// ProcessedAt is when the row was last committed.
	ProcessedAt time.Time
	// Failure is the row's last failure, nil when its last update did not
	// fail.
	Failure *RowFailure
	// Staged says an update wrote, or was about to write, some of the
	// row's target states and did not commit: the next update redoes it.
	Staged bool
	// States are the target states the row declared, per its committed
	// tracking.
	States []DeclaredState
}

// DeclaredState is one target state a source row declared.
type DeclaredState struct {
	// Target is the root target's key (a table's is "backend:db/name").
	Target string
	// Key is the state's key within the target (a table row's primary
	// key, encoded; a file's name).
	Key string
	// Record is the handler's tracking record of the value written.
	Record []byte
	// Wrote says the row's own value may be the one in the target: false
	// when another row that declares the state wrote it last.
	Wrote bool
	// Containers, for a state in containers that source rows declare
	// (see tidemark.Nest), are their keys from the root's child down;
	// Attachment is the kind of an attachment of the innermost one; and
	// Nested is the state's key in the root, for Engine.Declarers (see
	// tidemark.NestedKey). All are empty for a child of the root itself.
	Containers []string
	Attachment string
	Nested     string
}

// RowRef names a source row.
type RowRef struct {
	Source string
	Key    string
}
