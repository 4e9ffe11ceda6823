package table

import (
	"context"

	"github.com/tidemark/tidemark"
)

// OnChange attaches hook to the table t: hook is told of each committed
// change of one of its rows, with the row before and after as T (see
// tidemark.OnChange for when and how often). The rows are kept as JSON of
// T in the state store, to tell the row before: a hooked table costs about
// its size once more there.
func OnChange[T any](t *Target[T], hook func(ctx context.Context, c tidemark.TargetChange[T]) error, opts ...tidemark.HookOption) {
	tidemark.OnChangeAs(t.inner, func(v Values) (T, error) {
		var row T
		err := t.schema.Set(&row, v)
		return row, err
	}, hook, opts...)
}
