package tidemark

import (
	"context"
	"iter"
	"math"
)

// Ordinal is a number that grows whenever a source row changes, such as its
// update time in Unix microseconds. Tidemark skips fetching a row whose
// stored ordinal is at least the listed one.
type Ordinal int64

// NoOrdinal marks a row whose ordinal is unknown; such a row is fetched on
// every update (unless a cheap fingerprint says it is unchanged).
const NoOrdinal Ordinal = math.MinInt64

// Listed is one row as a source lists it: its key, its ordinal and,
// optionally, a cheap fingerprint of its content (an ETag).
type Listed[K comparable] struct {
	Key     K
	Ordinal Ordinal
	// Fingerprint, when set, must equal the Fingerprint that Get returns for
	// the same content; a match skips the Get.
	Fingerprint []byte
}

// Fetched is one row as Get returns it.
type Fetched[V any] struct {
	// Exists is false when the row is gone; Value is then ignored.
	Exists bool
	Value  V
	// Ordinal is the ordinal of the fetched value; NoOrdinal (or zero) to
	// keep the listed one.
	Ordinal Ordinal
	// Fingerprint is a cheap fingerprint of the content; when nil Tidemark
	// fingerprints Value itself.
	Fingerprint []byte
}

// Source is where a flow's rows come from: something that can list its keys
// cheaply and get one row's value.
//
// List streams every key once, with its ordinal; it must not hold the whole
// listing in memory. An error yielded ends the listing, which then counts as
// incomplete: the rows listed so far are updated, and none is deleted. Get
// fetches one row, returning Fetched.Exists false when the row is gone.
// Errors that a retry may fix should be marked with Retryable or RetryAfter;
// Tidemark retries them with backoff, and records any other error against
// the row, which is retried on the next update while the others go on.
// Both methods are called from many goroutines at once.
type Source[K comparable, V any] interface {
	List(ctx context.Context) iter.Seq2[Listed[K], error]
	Get(ctx context.Context, key K) (Fetched[V], error)
}

// OptionsDescriber is implemented by a source whose options decide which
// rows it lists, such as a filter or a bound on their number. The engine
// keeps the description of each update's options; when it changed, the
// rows the listing leaves out are deleted only once confirmed (see
// UpdateOptions.Confirm), since a mistyped option would otherwise empty
// the targets. The options are described once, when the engine is opened.
type OptionsDescriber interface {
	// DescribeOptions returns the options by name, as they are shown to
	// people: `{"tag": "story", "max_results": "500"}`.
	DescribeOptions() map[string]string
}

// OrdinalProvider is implemented by a source that can say whether its listed
// ordinals are trustworthy. A source that is not an OrdinalProvider is
// trusted when it lists ordinals other than NoOrdinal.
type OrdinalProvider interface {
	ProvidesOrdinal() bool
}

// SourceDropper is implemented by a source that installs something of its
// own where its data lives (a trigger for its change stream): Engine.Drop
// calls DropSource once the flow's targets and state are dropped, to
// remove it.
type SourceDropper interface {
	DropSource(ctx context.Context) error
}

// Change is one row change announced by a source's change stream.
type Change[K comparable] struct {
	Key     K
	Ordinal Ordinal
}

// Watcher is implemented by a source with a change stream, used in live
// mode besides the periodic listing. Watch calls notify for each change
// until ctx ends or the stream fails; an error from notify ends it.
type Watcher[K comparable] interface {
	Watch(ctx context.Context, notify func(Change[K]) error) error
}
