package statestore

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLockedError(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("x", 3600))
	for name, tt := range map[string]struct {
		holder LockHolder
		want   string
	}{
		"known":   {LockHolder{PID: 42, Host: "box", Since: since}, "flow F is locked by pid 42 on host box since 2026-03-04T04:06:07Z"},
		"no host": {LockHolder{PID: 42, Since: since}, "flow F is locked by pid 42 since 2026-03-04T04:06:07Z"},
		"no time": {LockHolder{PID: 42, Host: "box"}, "flow F is locked by pid 42 on host box"},
		"unknown": {LockHolder{}, "flow F is locked by another update"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var err error = &LockedError{Flow: "F", Holder: tt.holder}
			require.EqualError(t, err, tt.want)
			wrapped := fmt.Errorf("locking: %w", err)
			require.ErrorIs(t, wrapped, ErrLocked)
			require.NotErrorIs(t, wrapped, ErrLockLost)
			var le *LockedError
			require.True(t, errors.As(wrapped, &le))
			require.Equal(t, tt.holder, le.Holder)
		})
	}
}

func TestThisProcess(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	require.NoError(t, err)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.Equal(t, LockHolder{PID: os.Getpid(), Host: host, Since: since}, ThisProcess(since))
}
