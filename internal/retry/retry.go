// Package retry retries operations that fail transiently, with jittered
// exponential backoff under a deadline, honouring a wait the failure asks
// for (an HTTP 429's Retry-After).
//
// An error is transient when it, or an error it wraps, has a method
// Retryable() bool that returns true. Mark and MarkAfter wrap an error so;
// tidemark.Retryable and tidemark.RetryAfter are the public faces of them.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// retryable is the interface an error implements to say a retry may fix it.
type retryable interface {
	Retryable() bool
}

// waiter is the optional interface of a retryable error that knows how long
// to wait before the next attempt.
type waiter interface {
	RetryAfter() time.Duration
}

// Error marks Err as transient.
type Error struct {
	Err error
	// After is the wait the failure asked for; 0 lets the backoff decide.
	After time.Duration
}

// Error returns the wrapped error's message.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports true.
func (e *Error) Retryable() bool { return true }

// RetryAfter returns the wait the failure asked for.
func (e *Error) RetryAfter() time.Duration { return e.After }

// Mark wraps err as transient; nil stays nil.
func Mark(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err}
}

// MarkAfter wraps err as transient, asking to wait d before the next try.
func MarkAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, After: d}
}

// Is reports whether err is transient. A context's cancellation or deadline
// never is: retrying cannot outlive the context.
func Is(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var r retryable
	return errors.As(err, &r) && r.Retryable()
}

// After returns the wait a transient err asked for, or 0.
func After(err error) time.Duration {
	var w waiter
	if errors.As(err, &w) {
		return max(w.RetryAfter(), 0)
	}
	return 0
}

// Policy says how to retry.
type Policy struct {
	// Initial is the first backoff; each next one is Multiplier times
	// longer, up to Max. The wait is drawn uniformly from [b/2, b] (jitter).
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	// MaxElapsed bounds the time spent retrying, from the first attempt:
	// no attempt starts after it. 0 means no bound.
	MaxElapsed time.Duration
	// MaxAttempts bounds the number of attempts; 0 means no bound.
	MaxAttempts int
}

// DefaultPolicy is the policy the engine uses unless told otherwise: from
// 100ms doubling to 30s, for at most 2 minutes.
func DefaultPolicy() Policy {
	return Policy{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, MaxElapsed: 2 * time.Minute}
}

// Validate checks the policy's fields.
func (p Policy) Validate() error {
	switch {
	case p.Initial <= 0:
		return fmt.Errorf("retry: Initial must be positive, got %s", p.Initial)
	case p.Max < p.Initial:
		return fmt.Errorf("retry: Max (%s) must be at least Initial (%s)", p.Max, p.Initial)
	case p.Multiplier < 1:
		return fmt.Errorf("retry: Multiplier must be at least 1, got %g", p.Multiplier)
	case p.MaxElapsed < 0 || p.MaxAttempts < 0:
		return fmt.Errorf("retry: MaxElapsed and MaxAttempts must not be negative")
	}
	return nil
}

// Retrying describes a failed attempt that is about to be retried.
type Retrying struct {
	// Attempt is the failed attempt's number, from 1.
	Attempt int
	// Err is the failed attempt's error.
	Err error
	// Wait is how long Do waits before the next attempt: the backoff's
	// jittered wait, or longer when the failure asked for it.
	Wait time.Duration
}

// Do calls op until it succeeds, fails with an error that is not transient,
// the policy gives up or ctx ends. onRetry, if not nil, is called before each
// wait with the failed attempt's number (from 1) and error. The error
// returned is op's last error, wrapped with the attempt count when retries
// were given up.
func Do(ctx context.Context, p Policy, op func(ctx context.Context) error, onRetry func(attempt int, err error)) error {
	var notify func(Retrying)
	if onRetry != nil {
		notify = func(r Retrying) { onRetry(r.Attempt, r.Err) }
	}
	return DoNotify(ctx, p, op, notify)
}

// DoNotify is Do with a callback that is told the wait too: notify, if not
// nil, is called before each wait.
func DoNotify(ctx context.Context, p Policy, op func(ctx context.Context) error, notify func(Retrying)) error {
	start := time.Now()
	backoff := p.Initial
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || !Is(err) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if asked := After(err); asked > wait {
			wait = asked
		}
		if p.MaxElapsed > 0 && time.Since(start)+wait > p.MaxElapsed {
			return fmt.Errorf("giving up after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Millisecond), err)
		}
		if notify != nil {
			notify(Retrying{Attempt: attempt, Err: err, Wait: wait})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(time.Duration(float64(backoff)*p.Multiplier), p.Max)
	}
}
