package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

var errFlaky = errors.New("flaky")

func TestIs(t *testing.T) {
	t.Parallel()

	require.False(t, Is(nil))
	require.False(t, Is(errFlaky))
	require.True(t, Is(Mark(errFlaky)))
	require.True(t, Is(fmt.Errorf("wrapped: %w", Mark(errFlaky))))
	require.False(t, Is(Mark(context.Canceled)), "a cancelled context is never retried")
	require.ErrorIs(t, Mark(errFlaky), errFlaky)
	require.Equal(t, 3*time.Second, After(fmt.Errorf("x: %w", MarkAfter(errFlaky, 3*time.Second))))
	require.Zero(t, After(errFlaky))
	require.NoError(t, Mark(nil))
}

func TestDoBacksOffWithJitter(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		p := Policy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, MaxElapsed: time.Hour}
		var times []time.Duration
		start := time.Now()
		calls := 0
		err := Do(t.Context(), p, func(context.Context) error {
			times = append(times, time.Since(start))
			calls++
			if calls < 6 {
				return Mark(errFlaky)
			}
			return nil
		}, nil)
		require.NoError(t, err)
		require.Len(t, times, 6)
		// Waits are drawn from [b/2, b] with b = 1s, 2s, 4s, 4s, 4s.
		bounds := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
		for i, b := range bounds {
			gap := times[i+1] - times[i]
			require.GreaterOrEqual(t, gap, b/2, "wait %d", i)
			require.LessOrEqual(t, gap, b, "wait %d", i)
		}
	})
}

func TestDoHonoursRetryAfter(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		p := Policy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxElapsed: time.Hour}
		start := time.Now()
		calls := 0
		err := Do(t.Context(), p, func(context.Context) error {
			calls++
			if calls == 1 {
				return MarkAfter(errFlaky, 7*time.Second)
			}
			return nil
		}, nil)
		require.NoError(t, err)
		require.Equal(t, 7*time.Second, time.Since(start))
	})
}

func TestDoGivesUp(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		p := Policy{Initial: time.Second, Max: time.Second, Multiplier: 1, MaxElapsed: 10 * time.Second}
		calls := 0
		var retries []int
		err := Do(t.Context(), p, func(context.Context) error {
			calls++
			return Mark(errFlaky)
		}, func(attempt int, err error) { retries = append(retries, attempt) })
		require.ErrorIs(t, err, errFlaky)
		require.Contains(t, err.Error(), "giving up")
		require.GreaterOrEqual(t, calls, 10)
		require.LessOrEqual(t, calls, 21)
		require.Len(t, retries, calls-1)

		calls = 0
		err = Do(t.Context(), Policy{Initial: time.Second, Max: time.Second, Multiplier: 1, MaxAttempts: 3}, func(context.Context) error {
			calls++
			return Mark(errFlaky)
		}, nil)
		require.ErrorIs(t, err, errFlaky)
		require.Equal(t, 3, calls)
	})
}

func TestDoStopsOnPermanentErrorAndCancel(t *testing.T) {
	t.Parallel()

	calls := 0
	err := Do(t.Context(), DefaultPolicy(), func(context.Context) error {
		calls++
		return errFlaky
	}, nil)
	require.ErrorIs(t, err, errFlaky)
	require.Equal(t, 1, calls)

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		err := Do(ctx, Policy{Initial: time.Second, Max: time.Second, Multiplier: 1}, func(context.Context) error {
			return Mark(errFlaky)
		}, nil)
		require.ErrorIs(t, err, errFlaky)
		require.ErrorIs(t, ctx.Err(), context.Canceled)
	})
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()

	require.NoError(t, DefaultPolicy().Validate())
	require.ErrorContains(t, Policy{}.Validate(), "Initial must be positive")
	require.ErrorContains(t, Policy{Initial: 2, Max: 1, Multiplier: 1}.Validate(), "at least Initial")
	require.ErrorContains(t, Policy{Initial: 1, Max: 1, Multiplier: 0.5}.Validate(), "Multiplier")
}

// DoNotify tells each retry's attempt, error and wait, and then waits
// exactly that long.
func TestDoNotifyTellsTheWait(t *testing.T) {
	t.Parallel()

	synctest.Test(t, func(t *testing.T) {
		p := Policy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, MaxElapsed: time.Hour}
		var (
			told  []Retrying
			times []time.Time
		)
		calls := 0
		err := DoNotify(t.Context(), p, func(context.Context) error {
			times = append(times, time.Now())
			calls++
			switch calls {
			case 1, 2:
				return Mark(errFlaky)
			case 3:
				return MarkAfter(errFlaky, time.Minute)
			}
			return nil
		}, func(r Retrying) { told = append(told, r) })
		require.NoError(t, err)
		require.Len(t, told, 3)
		for i, r := range told {
			require.Equal(t, i+1, r.Attempt)
			require.ErrorIs(t, r.Err, errFlaky)
			require.Equal(t, times[i+1].Sub(times[i]), r.Wait, "retry %d waited as told", i+1)
		}
		require.Equal(t, time.Minute, told[2].Wait, "the wait asked for")
	})
}
