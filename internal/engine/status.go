package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/tidemarktype"
)

// The status types are tidemarktype's.
type (
	// Status is what the state store knows of a flow.
	Status = tidemarktype.Status
	// SourceStatus describes the rows kept for one source.
	SourceStatus = tidemarktype.SourceStatus
	// TargetStatus describes one root target or attachment as kept.
	TargetStatus = tidemarktype.TargetStatus
)

// FailingRows returns the number of rows whose last update failed, by
// source: one indexed count per source, however many rows it has.
func (e *Engine) FailingRows(ctx context.Context) (map[string]int64, error) {
	out := make(map[string]int64, len(e.flow.Sources))
	for _, src := range e.flow.Sources {
		id, err := e.sourceID(ctx, src.Name, true)
		if err != nil {
			return nil, err
		}
		var ss statestore.SourceStatus
		if id != 0 {
			err = e.do(ctx, "count the failing rows", func(ctx context.Context) (err error) {
				ss, err = e.store.SourceStatus(ctx, statestore.SourceStatusParams{SourceID: id, FailingOnly: true})
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		out[src.Name] = ss.Failing
	}
	return out, nil
}

// Status reports the flow's state, listing at most failures failed rows per
// source. It writes nothing.
func (e *Engine) Status(ctx context.Context, failures int) (Status, error) {
	st := Status{Flow: e.flow.Name}
	for _, src := range e.flow.Sources {
		var (
			ss    statestore.SourceStatus
			errs  []statestore.RowFailure
			notes statestore.SourceNotes
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
				if errs, err = e.store.RowFailures(ctx, statestore.RowFailuresParams{SourceID: id, Limit: failures}); err != nil {
					return err
				}
			}
			notes, err = e.store.SourceNotesGet(ctx, statestore.SourceStatusParams{SourceID: id})
			return err
		})
		if err != nil {
			return st, err
		}
		status := SourceStatus{Name: src.Name, Options: maps.Clone(src.Options), Rows: ss.Rows, Failing: ss.Failing, LastProcessedAt: ss.LastProcessedAt}
		if notes.LastUpdate != nil {
			var u tidemarktype.SourceUpdate
			if err := json.Unmarshal(notes.LastUpdate, &u); err != nil {
				return st, fmt.Errorf("source %s: decoding its last update: %w", src.Name, err)
			}
			status.LastUpdate = &u
		}
		for _, f := range errs {
			status.Failures = append(status.Failures, RowFailure{Source: src.Name, Key: f.Key, Message: f.Message, Count: f.Count, At: f.At})
		}
		st.Sources = append(st.Sources, status)
	}
	stored, err := e.listTargets(ctx)
	if err != nil {
		return st, err
	}
	keys := make(map[int64]string, len(stored))
	for _, t := range stored {
		keys[t.ID] = t.Key
	}
	hooks, err := e.hookStatus(ctx, stored)
	if err != nil {
		return st, err
	}
	for _, t := range stored {
		st.Targets = append(st.Targets, TargetStatus{Kind: t.Kind, Key: t.Key, Attachment: t.ParentID != 0, Parent: keys[t.ParentID],
			Exists: t.Exists, Staged: len(t.Staged) > 0, UpdatedAt: t.UpdatedAt, Hook: hooks[t.ID]})
	}
	return st, nil
}

// hookStatus returns the state of the change hooks of the stored root
// targets that have a hook or changes in the outbox, by target id.
func (e *Engine) hookStatus(ctx context.Context, stored []statestore.Target) (map[int64]*tidemarktype.HookStatus, error) {
	out := make(map[int64]*tidemarktype.HookStatus)
	var ids []int64
	for _, t := range stored {
		if t.ParentID != 0 {
			continue
		}
		ids = append(ids, t.ID)
		for _, r := range e.flow.Roots {
			if string(r.Key) == t.Key && r.Kind == t.Kind && r.Hook != nil {
				out[t.ID] = &tidemarktype.HookStatus{Attached: true}
			}
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	var pending []statestore.OutboxStatus
	if err := e.do(ctx, "outbox status", func(ctx context.Context) (err error) {
		pending, err = e.store.OutboxStatus(ctx, statestore.OutboxStatusParams{TargetIDs: ids})
		return err
	}); err != nil {
		return nil, err
	}
	names, err := e.sourceNames(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range pending {
		h := out[p.TargetID]
		if h == nil {
			h = &tidemarktype.HookStatus{}
			out[p.TargetID] = h
		}
		h.Pending, h.Failing, h.OldestAt = p.Pending, p.Failing, p.OldestAt
		if f := p.Failed; f != nil {
			h.Failure = &tidemarktype.HookFailure{Key: f.Key, Source: names[f.SourceID], Row: f.RowKey, Attempts: f.Attempts, Error: f.LastError, NextAt: f.NextAt}
		}
	}
	return out, nil
}
