package tidemark

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktype"
)

// The read API: what the state store knows of each source row and target
// state, for inspection (a UI, `show`). It writes nothing and takes no lock,
// so it runs beside updates; each call is one or a few indexed lookups.

// RowsOptions page a source's rows.
type RowsOptions struct {
	// After is the key after which the page starts, as Row takes keys
	// (RowState.Key, or a string key's bare text); empty for the first
	// page.
	After string
	// Limit bounds the page: default 100, at most 10,000.
	Limit int
	// Failed keeps only the rows whose last update failed.
	Failed bool
}

// Rows returns a page of the rows kept for source, in key order, each
// with the target states it declared. An empty page is the end.
func (e *Engine) Rows(ctx context.Context, source string, opts RowsOptions) ([]tidemarktype.RowState, error) {
	switch {
	case opts.Limit == 0:
		opts.Limit = 100
	case opts.Limit < 0 || opts.Limit > 10_000:
		return nil, fmt.Errorf("tidemark: RowsOptions.Limit must be between 1 and 10000, got %d", opts.Limit)
	}
	if !utf8.ValidString(opts.After) || strings.ContainsRune(opts.After, 0) {
		return nil, fmt.Errorf("tidemark: RowsOptions.After %q %w: keys are valid UTF-8 without NUL", opts.After, ErrBadKey)
	}
	if opts.After != "" {
		after, err := e.flow.parseKey(source, opts.After)
		if err != nil {
			return nil, fmt.Errorf("tidemark: RowsOptions.After: %w", err)
		}
		opts.After = after
	}
	return e.eng.RowStates(ctx, engine.RowsParams{Source: source, After: opts.After, Limit: opts.Limit, Failed: opts.Failed})
}

// Row returns what is kept for one row of source: its ordinal, content and
// logic fingerprints, when it was processed, its last failure, and every
// target state it declared. key is the key's JSON encoding (as
// RowState.Key gives it) or, for a string key, its bare text. A row not
// kept is an error matching ErrNotFound.
func (e *Engine) Row(ctx context.Context, source, key string) (*tidemarktype.RowState, error) {
	k, err := e.flow.parseKey(source, key)
	if err != nil {
		return nil, err
	}
	st, err := e.eng.RowState(ctx, source, k)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Declarers returns the source rows that declare the state key of the
// target targetKey (as Target.Key and TargetInfo give it): the reverse of
// Row's lineage. A state no row declares is an error matching
// ErrNotFound. A state in containers that source rows declare (see Nest) is
// named by NestedKey, as DeclaredState.Nested gives it.
func (e *Engine) Declarers(ctx context.Context, targetKey string, key target.Key) ([]tidemarktype.RowRef, error) {
	return e.eng.Declarers(ctx, targetKey, key)
}

// NestedKey returns the key that names, in the read API, the state key in
// the containers declared by source rows (see Nest): containers holds their
// keys from the root target's child down. With no containers it is key.
func NestedKey(containers []target.Key, key target.Key) target.Key {
	return engine.NestedKey(containers, "", key)
}
