package engine

import (
	"context"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
)

// Status is what the state store knows of a flow.
type Status struct {
	Sources []SourceStatus
	Targets []TargetStatus
}

// SourceStatus describes the rows kept for one source.
type SourceStatus struct {
	Name            string
	Rows            int64
	Failing         int64
	LastProcessedAt time.Time
	// Failures are the most recently failed rows, up to the limit asked.
	Failures []statestore.RowError
}

// TargetStatus describes one root target or attachment as kept.
type TargetStatus struct {
	Kind string
	Key  string
	// Attachment says the target is an attachment of a container.
	Attachment bool
	// Exists says the target's setup was committed.
	Exists bool
	// Staged says a setup change was staged and not committed: an update
	// was interrupted during setup.
	Staged    bool
	UpdatedAt time.Time
}

// Status reports the flow's state, listing at most failures failed rows per
// source. It writes nothing.
func (e *Engine) Status(ctx context.Context, failures int) (Status, error) {
	var st Status
	for _, src := range e.flow.Sources {
		var (
			ss   statestore.SourceStatus
			errs []statestore.RowError
		)
		id, err := e.sourceID(ctx, src.Name, true)
		if err != nil {
			return st, err
		}
		err = e.do(ctx, "source status", func(ctx context.Context) (err error) {
			if id == 0 {
				return nil // never updated
			}
			if ss, err = e.store.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: id}); err != nil {
				return err
			}
			if failures > 0 {
				errs, err = e.store.RowErrors(ctx, statestore.RowErrorsParams{SourceID: id, Limit: failures})
			}
			return err
		})
		if err != nil {
			return st, err
		}
		st.Sources = append(st.Sources, SourceStatus{Name: src.Name, Rows: ss.Rows, Failing: ss.Failing, LastProcessedAt: ss.LastProcessedAt, Failures: errs})
	}
	stored, err := e.listTargets(ctx)
	if err != nil {
		return st, err
	}
	for _, t := range stored {
		st.Targets = append(st.Targets, TargetStatus{Kind: t.Kind, Key: t.Key, Attachment: t.ParentID != 0, Exists: t.Exists, Staged: len(t.Staged) > 0, UpdatedAt: t.UpdatedAt})
	}
	return st, nil
}
