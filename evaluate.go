package tidemark

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/target"
)

// EvaluateOptions choose the rows Evaluate runs the processing function on.
type EvaluateOptions struct {
	// Source is the source whose rows are evaluated; "" means every source.
	Source string
	// Keys, when set, are the keys evaluated (with Source set): each the
	// key's JSON encoding or, for a string key, its bare text. Otherwise
	// the source's listing is.
	Keys []string
	// Limit bounds the rows evaluated per source; 0 means no bound.
	Limit int
}

// Evaluated is one source row as the processing function sees it.
type Evaluated struct {
	Source string
	// Key is the row's key, JSON-encoded.
	Key string
	// Exists is false for a row the source says is gone.
	Exists bool
	// Declared are the target states the processing function declared.
	Declared []Declared
	// Err is why the row could not be fetched or processed.
	Err error
}

// Declared is a target state declared by a processing function.
type Declared struct {
	// Target is the key of the target (a table, a directory) the state
	// belongs to, as Status and UpdateStats name it.
	Target string
	// Containers, for a state in containers the row declared (see Nest),
	// are their keys from the target's child down; Attachment is the kind
	// of an attachment of the innermost one.
	Containers []target.Key
	Attachment string
	Key        target.Key
	Value      any
}

// Evaluate lists (or takes the given keys of) the flow's sources, fetches
// each row, runs the processing function on it and calls fn with what it
// declared. It writes nothing, neither to targets nor to the state store:
// it is for seeing what a flow would produce. An error from fn stops it.
func (e *Engine) Evaluate(ctx context.Context, opts EvaluateOptions, fn func(Evaluated) error) error {
	if len(opts.Keys) > 0 && opts.Source == "" {
		return errors.New("tidemark: EvaluateOptions.Keys needs a Source")
	}
	p := engine.EvaluateParams{Source: opts.Source, Limit: opts.Limit}
	for _, arg := range opts.Keys {
		key, err := e.flow.parseKey(opts.Source, arg)
		if err != nil {
			return err
		}
		p.Keys = append(p.Keys, key)
	}
	roots := e.flow.rootKeys()
	return e.eng.Evaluate(ctx, p, func(ev engine.Evaluated) error {
		out := Evaluated{Source: ev.Source, Key: ev.Key, Exists: ev.Exists, Err: ev.Err}
		if ev.Decls != nil {
			out.Declared = make([]Declared, len(ev.Decls))
			for i, d := range ev.Decls {
				out.Declared[i] = declaredOf(d, roots)
			}
		}
		return fn(out)
	})
}

func declaredOf(d engine.Decl, roots []string) Declared {
	name := fmt.Sprint(d.Root)
	if d.Root >= 0 && d.Root < len(roots) {
		name = roots[d.Root]
	}
	v := d.Value
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		v = rv.Elem().Interface() // the engine holds declared values by pointer
	}
	return Declared{Target: name, Containers: d.Path, Attachment: d.Attach, Key: d.Key, Value: v}
}

// rootKeys returns the keys of the flow's targets, by index.
func (f *Flow) rootKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, len(f.roots))
	for i, r := range f.roots {
		keys[i] = string(r.Key)
	}
	return keys
}
