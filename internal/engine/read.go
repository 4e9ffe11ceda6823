package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// ErrNotFound says a source row or target state is not kept.
var ErrNotFound = errors.New("not found")

// RowsParams page a source's rows for RowStates.
type RowsParams struct {
	Source string
	After  string
	Limit  int
	Failed bool
}

// RowStates returns a page of a source's rows in key order, after the key
// After, with their target states. It writes nothing.
func (e *Engine) RowStates(ctx context.Context, p RowsParams) ([]tidemarktype.RowState, error) {
	id, err := e.knownSource(ctx, p.Source)
	if err != nil || id == 0 {
		return nil, err
	}
	var rows []statestore.RowInfo
	if err := e.do(ctx, "page rows", func(ctx context.Context) (err error) {
		rows, err = e.store.RowPage(ctx, statestore.RowPageParams{SourceID: id, After: p.After, Limit: p.Limit, Failed: p.Failed})
		return err
	}); err != nil {
		return nil, err
	}
	return e.rowStates(ctx, rows, map[int64]string{id: p.Source})
}

// RowState returns one source row, by its key as the store keeps it;
// ErrNotFound when the source has no such row. It writes nothing.
func (e *Engine) RowState(ctx context.Context, source, key string) (tidemarktype.RowState, error) {
	id, err := e.knownSource(ctx, source)
	if err != nil {
		return tidemarktype.RowState{}, err
	}
	if id == 0 {
		return tidemarktype.RowState{}, fmt.Errorf("source %s, row %s: %w", source, key, ErrNotFound)
	}
	var row statestore.RowInfo
	err = e.do(ctx, "find row", func(ctx context.Context) (err error) {
		row, err = e.store.RowFind(ctx, statestore.RowFindParams{SourceID: id, Key: key})
		return err
	})
	if errors.Is(err, statestore.ErrNotFound) {
		return tidemarktype.RowState{}, fmt.Errorf("source %s, row %s: %w", source, key, ErrNotFound)
	}
	if err != nil {
		return tidemarktype.RowState{}, err
	}
	states, err := e.rowStates(ctx, []statestore.RowInfo{row}, map[int64]string{id: source})
	if err != nil {
		return tidemarktype.RowState{}, err
	}
	return states[0], nil
}

// Declarers returns the source rows whose committed tracking declares the
// state key of the root target rootKey: its reverse lineage. A state no
// row declares is ErrNotFound. It writes nothing.
func (e *Engine) Declarers(ctx context.Context, rootKey string, key target.Key) ([]tidemarktype.RowRef, error) {
	stored, err := e.listTargets(ctx)
	if err != nil {
		return nil, err
	}
	var rootID int64
	for _, t := range stored {
		if t.ParentID == 0 && t.Key == rootKey && t.Exists {
			rootID = t.ID
		}
	}
	if rootID == 0 {
		if e.flow.root(rootKey) == nil {
			return nil, fmt.Errorf("flow %s has no target %s", e.flow.Name, rootKey)
		}
		return nil, fmt.Errorf("target %s, key %s: %w (the target is not set up)", rootKey, key, ErrNotFound)
	}
	var owners []statestore.Owner
	if err := e.do(ctx, "find owners", func(ctx context.Context) (err error) {
		owners, err = e.store.OwnerFind(ctx, statestore.OwnerFindParams{Keys: []statestore.OwnerKey{ownerKey(trackKey{rootID, key})}})
		return err
	}); err != nil {
		return nil, err
	}
	ids := make([]int64, len(owners))
	for i, o := range owners {
		ids[i] = o.RowID
	}
	var rows []statestore.RowInfo
	if len(ids) > 0 {
		if err := e.do(ctx, "get rows", func(ctx context.Context) (err error) {
			rows, err = e.store.RowGet(ctx, statestore.RowGetParams{IDs: ids})
			return err
		}); err != nil {
			return nil, err
		}
	}
	names, err := e.sourceNames(ctx)
	if err != nil {
		return nil, err
	}
	// Ownership is by a 128-bit hash of the key, as the engine's own
	// decisions are: the owners are the declarers.
	out := make([]tidemarktype.RowRef, 0, len(rows))
	for _, r := range rows {
		out = append(out, tidemarktype.RowRef{Source: names[r.SourceID], Key: r.Key})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("target %s, key %s: %w", rootKey, key, ErrNotFound)
	}
	return out, nil
}

// knownSource returns the id of a source of the flow, 0 if it was never
// updated; an error for a source the flow does not have.
func (e *Engine) knownSource(ctx context.Context, name string) (int64, error) {
	for _, s := range e.flow.Sources {
		if s.Name == name {
			return e.sourceID(ctx, name, true)
		}
	}
	return 0, fmt.Errorf("flow %s has no source %q", e.flow.Name, name)
}

// sourceNames maps the ids of the flow's sources to their names.
func (e *Engine) sourceNames(ctx context.Context) (map[int64]string, error) {
	names := make(map[int64]string, len(e.flow.Sources))
	for _, s := range e.flow.Sources {
		id, err := e.sourceID(ctx, s.Name, true)
		if err != nil {
			return nil, err
		}
		if id != 0 {
			names[id] = s.Name
		}
	}
	return names, nil
}

// rowStates turns rows as kept into RowStates.
func (e *Engine) rowStates(ctx context.Context, rows []statestore.RowInfo, sources map[int64]string) ([]tidemarktype.RowState, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	stored, err := e.listTargets(ctx)
	if err != nil {
		return nil, err
	}
	roots := make(map[int64]statestore.Target)
	for _, t := range stored {
		if t.ParentID == 0 {
			roots[t.ID] = t
		}
	}
	out := make([]tidemarktype.RowState, len(rows))
	for i, r := range rows {
		st := tidemarktype.RowState{Source: sources[r.SourceID], Key: r.Key, Ordinal: r.Ordinal, ContentFingerprint: r.ContentFP,
			LogicFingerprint: r.LogicFP, LogicCurrent: r.LogicFP != nil && bytes.Equal(r.LogicFP, e.logicFP),
			ProcessedAt: r.ProcessedAt, Staged: len(r.Staged) > 0}
		if r.Error != "" {
			st.Failure = &tidemarktype.RowFailure{Source: st.Source, Key: r.Key, Message: r.Error, Count: r.ErrorCount, At: r.ErrorAt}
		}
		sections, err := statestore.DecodeSections(r.Tracking)
		if err != nil {
			return nil, fmt.Errorf("row %s: %w", r.Key, err)
		}
		for _, s := range sections {
			t, ok := roots[s.TargetID]
			if !ok || s.Gen < t.DestroyedGen {
				continue // the target, or its children, went since
			}
			for _, en := range s.Entries {
				ds := tidemarktype.DeclaredState{Target: t.Key, Key: en.Key, Record: en.Record, Wrote: en.Wrote}
				if n, err := splitKey(target.Key(en.Key)); err == nil && n.depth() > 0 {
					ds.Key, ds.Attachment, ds.Nested = string(n.key), n.attach, en.Key
					for _, p := range n.path {
						ds.Containers = append(ds.Containers, string(p))
					}
				}
				st.States = append(st.States, ds)
			}
		}
		out[i] = st
	}
	return out, nil
}

// NestedKey returns the key under which a root's section tracks a state in
// the row containers path (see nest.go); attach names an attachment's kind.
func NestedKey(path []target.Key, attach string, key target.Key) target.Key {
	return nestedKey(path, attach, key)
}
