package engine

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Evaluated is one source row as Evaluate found it.
type Evaluated struct {
	Source string
	Key    string
	// Exists is false for a row the source says is gone.
	Exists bool
	// Decls are the target states the processing function declared.
	Decls []Decl
	// Err is why the row could not be fetched or processed.
	Err error
}

// EvaluateParams choose the rows Evaluate runs the processing function on.
type EvaluateParams struct {
	// Source is the source whose rows are evaluated; "" means every one.
	Source string
	// Keys, when set, are the keys evaluated (as the store keeps them),
	// with Source set; otherwise the source's listing is.
	Keys []string
	// Limit bounds the rows evaluated per source; 0 means no bound.
	Limit int
}

// Evaluate fetches rows and runs the processing function on each, as an
// update does — Gets retried under the retry policy, a panic failing the
// row alone — and calls fn with what each declared. It writes nothing. An
// error from fn, or a listing that fails, stops it.
func (e *Engine) Evaluate(ctx context.Context, p EvaluateParams, fn func(Evaluated) error) error {
	found := false
	for _, src := range e.flow.Sources {
		if p.Source != "" && src.Name != p.Source {
			continue
		}
		found = true
		if err := e.evaluateSource(ctx, src, p, fn); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("flow %s has no source %q", e.flow.Name, p.Source)
	}
	return nil
}

func (e *Engine) evaluateSource(ctx context.Context, src *Source, p EvaluateParams, fn func(Evaluated) error) error {
	if len(p.Keys) > 0 {
		for i, key := range p.Keys {
			if p.Limit > 0 && i >= p.Limit {
				break
			}
			if err := fn(e.evaluateRow(ctx, src, key)); err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	for l, err := range src.Impl.List(ctx) {
		if err != nil {
			return fmt.Errorf("listing source %s: %w", src.Name, err)
		}
		if p.Limit > 0 && n >= p.Limit {
			break
		}
		n++
		ev := Evaluated{Source: src.Name, Key: l.Key, Err: l.Invalid}
		if l.Invalid == nil {
			ev = e.evaluateRow(ctx, src, l.Key)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// evaluateRow fetches and processes one row.
func (e *Engine) evaluateRow(ctx context.Context, src *Source, key string) (ev Evaluated) {
	ev = Evaluated{Source: src.Name, Key: key}
	defer func() {
		if p := recover(); p != nil {
			e.log.ErrorContext(ctx, "a panic while evaluating a row", "source", src.Name, "key", key, "panic", p, "stack", string(debug.Stack()))
			ev.Exists, ev.Decls, ev.Err = false, nil, fmt.Errorf("panic: %v", p)
		}
	}()
	var fetched Fetched
	if err := e.do(ctx, "get "+key, func(ctx context.Context) (err error) {
		fetched, err = src.Impl.Get(ctx, key)
		return err
	}); err != nil {
		ev.Err = fmt.Errorf("fetching: %w", err)
		return ev
	}
	if !fetched.Exists {
		return ev
	}
	ev.Exists = true
	decls, err := src.Impl.Process(ctx, key, fetched.Value)
	if err != nil {
		ev.Err = fmt.Errorf("processing: %w", err)
		return ev
	}
	ev.Decls = decls
	return ev
}
