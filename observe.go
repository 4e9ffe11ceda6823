package tidemark

import (
	"context"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/tidemarktype"
)

// Options.Observer is told what the engine does as it happens, in the style
// of pgx's tracers: a value that implements any of the small interfaces
// below, found by type assertion when the engine opens. An engine without
// an observer pays nothing for the seam. Methods are called from the
// engine's goroutines, several at once; they must be quick and must not
// block (hand the event to a channel or a counter). Metrics and live
// progress are written on it.

// PassObserver is told when each update (a pass over the sources) begins
// and ends.
type PassObserver interface {
	PassStarted(ctx context.Context, p tidemarktype.PassStart)
	PassFinished(ctx context.Context, p tidemarktype.PassEnd)
}

// RowObserver is told what became of each source row an update handled:
// every row written, failed or found unchanged.
type RowObserver interface {
	RowDone(ctx context.Context, r tidemarktype.RowDone)
}

// FetchObserver is told of each Get of a source row.
type FetchObserver interface {
	Fetched(ctx context.Context, f tidemarktype.Fetch)
}

// BatchObserver is told of each batch of rows written and committed.
type BatchObserver interface {
	BatchWritten(ctx context.Context, b tidemarktype.Batch)
}

// StoreObserver is told of each call the engine makes to its state store,
// with its duration and error: lookups of listed keys, precommits,
// commits, lock checks and the rest (tidemarktype.StoreOp names them).
// The engine times its state store only when its observer is one.
type StoreObserver interface {
	StoreOp(ctx context.Context, op tidemarktype.StoreOp)
}

// observers finds which of the observer interfaces o implements.
func observers(o any) engine.Observers {
	var obs engine.Observers
	if p, ok := o.(PassObserver); ok {
		obs.PassStarted, obs.PassFinished = p.PassStarted, p.PassFinished
	}
	if r, ok := o.(RowObserver); ok {
		obs.RowDone = r.RowDone
	}
	if f, ok := o.(FetchObserver); ok {
		obs.Fetched = f.Fetched
	}
	if b, ok := o.(BatchObserver); ok {
		obs.BatchWritten = b.BatchWritten
	}
	if s, ok := o.(StoreObserver); ok {
		obs.StoreOp = s.StoreOp
	}
	return obs
}

// JoinObservers returns an observer that tells each of obs, in order, what
// it implements of the observer interfaces; nil values are skipped. Use it
// to set several observers as Options.Observer (metrics and a live
// display, say).
func JoinObservers(obs ...any) any {
	var j joined
	for _, o := range obs {
		if o != nil {
			j = append(j, o)
		}
	}
	switch len(j) {
	case 0:
		return nil
	case 1:
		return j[0]
	}
	for _, o := range j {
		if _, ok := o.(StoreObserver); ok {
			return joinedStore{j}
		}
	}
	return j
}

// joined is the observer JoinObservers returns.
type joined []any

func (j joined) PassStarted(ctx context.Context, p tidemarktype.PassStart) {
	for _, o := range j {
		if po, ok := o.(PassObserver); ok {
			po.PassStarted(ctx, p)
		}
	}
}

func (j joined) PassFinished(ctx context.Context, p tidemarktype.PassEnd) {
	for _, o := range j {
		if po, ok := o.(PassObserver); ok {
			po.PassFinished(ctx, p)
		}
	}
}

func (j joined) RowDone(ctx context.Context, r tidemarktype.RowDone) {
	for _, o := range j {
		if ro, ok := o.(RowObserver); ok {
			ro.RowDone(ctx, r)
		}
	}
}

func (j joined) Fetched(ctx context.Context, f tidemarktype.Fetch) {
	for _, o := range j {
		if fo, ok := o.(FetchObserver); ok {
			fo.Fetched(ctx, f)
		}
	}
}

func (j joined) BatchWritten(ctx context.Context, b tidemarktype.Batch) {
	for _, o := range j {
		if bo, ok := o.(BatchObserver); ok {
			bo.BatchWritten(ctx, b)
		}
	}
}

// joinedStore is the observer JoinObservers returns when one of the
// observers is a StoreObserver: joined alone is not one, so that an engine
// whose observers do not ask for store timings does not time its store.
type joinedStore struct{ joined }

func (j joinedStore) StoreOp(ctx context.Context, op tidemarktype.StoreOp) {
	for _, o := range j.joined {
		if so, ok := o.(StoreObserver); ok {
			so.StoreOp(ctx, op)
		}
	}
}
