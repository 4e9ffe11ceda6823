package tidemark

import (
	"errors"
	"fmt"
	"time"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/tidemarktype"
)

// ErrStopped is matched (with errors.Is) by the error of an update stopped
// with UpdateOptions.Stop: what was processed is committed, and the rest is
// left for the next update.
var ErrStopped = engine.ErrStopped

// ErrListingIncomplete is matched (with errors.Is) by the error of an update
// in which a source's listing failed or ended early: that source's rows were
// updated as listed, and none was deleted. The error holds a *ListingError
// per such source.
var ErrListingIncomplete = engine.ErrListingIncomplete

// ErrFlowLocked is matched (with errors.Is) by the error of an Update,
// Setup or Drop refused because another process or engine is updating the
// same flow in the same state store. The lock is released when that update
// ends or its process dies; previews, plans and status need no lock.
var ErrFlowLocked = engine.ErrFlowLocked

// ErrDeletionsHeld is matched (with errors.Is) by the error of an update
// that kept rows its listing left out because deleting them needed a
// confirmation (see UpdateOptions.Confirm).
var ErrDeletionsHeld = tidemarktype.ErrDeletionsHeld

// ErrLockLost is matched (with errors.Is) by the error of an update, setup
// or drop whose lock went while it ran — its PostgreSQL session ended, as
// when the server restarts — and was taken by another process meanwhile:
// it stopped before writing again. What it committed stands; run it again.
var ErrLockLost = engine.ErrLockLost

// ErrBadKey is matched (with errors.Is) by the error of Row or Rows given
// a key that is not one of the source's: not valid UTF-8, or not of the
// key's type.
var ErrBadKey = errors.New("is not a key")

// ErrNotFound is matched (with errors.Is) by the error of Row or Declarers
// for a source row or target state that is not kept.
var ErrNotFound = engine.ErrNotFound

// ListingError says a source's listing failed or ended early, so that no
// row of it was deleted; the rows listed before were updated. Match it with
// errors.As; it also matches ErrListingIncomplete with errors.Is.
type ListingError struct {
	// Source is the source's name.
	Source string
	// Err is why the listing ended: the source's error, or ErrStopped.
	Err error
}

// Error says which source's listing failed and that nothing was deleted.
func (e *ListingError) Error() string {
	return fmt.Sprintf("listing source %s failed; nothing was deleted from it: %v", e.Source, e.Err)
}

// Unwrap returns the listing's error.
func (e *ListingError) Unwrap() error { return e.Err }

// Is matches ErrListingIncomplete.
func (e *ListingError) Is(target error) bool { return target == ErrListingIncomplete }

// publicError turns the engine's listing errors in err, alone or joined,
// into ListingErrors.
func publicError(err error) error {
	if le, ok := err.(*engine.ListingError); ok {
		return &ListingError{Source: le.Source, Err: le.Err}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok && errors.Is(err, engine.ErrListingIncomplete) {
		errs := joined.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = publicError(e)
		}
		return errors.Join(out...)
	}
	return err
}

// Retryable marks err as transient: Tidemark retries the call that returned
// it with jittered exponential backoff. Sources and sinks use it for
// timeouts, dropped connections and 5xx responses. Nil stays nil.
func Retryable(err error) error { return retry.Mark(err) }

// RetryAfter marks err as transient and asks to wait at least d before the
// next attempt, as an HTTP 429's Retry-After does.
func RetryAfter(err error, d time.Duration) error { return retry.MarkAfter(err, d) }

// IsRetryable reports whether err is marked transient: by Retryable or
// RetryAfter, or by any error in its chain with a method Retryable() bool
// that returns true. A cancelled context never is.
func IsRetryable(err error) bool { return retry.Is(err) }
