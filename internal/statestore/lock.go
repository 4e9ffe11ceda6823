package statestore

import (
	"fmt"
	"os"
	"time"
)

// LockHolder says who holds a flow's lock: the process and its host, and since when.
type LockHolder struct {
	// PID is the holding process's id; 0 when unknown.
	PID int
	// Host is the holding process's host name; empty when unknown.
	Host string
	// Since is when the lock was taken; zero when unknown.
	Since time.Time
}

// ThisProcess is the holder a driver records when this process takes a
// lock at since: os.Getpid() on os.Hostname(), the host left empty when
// the system cannot name it.
func ThisProcess(since time.Time) LockHolder {
	host, err := os.Hostname()
	if err != nil {
		host = "" // unknown, as documented on LockHolder
	}
	return LockHolder{PID: os.Getpid(), Host: host, Since: since}
}

// LockedError is the error of FlowLock when another process (or another
// lock in this one) holds the flow's lock; it matches ErrLocked with
// errors.Is.
type LockedError struct {
	Flow string
	// Holder is who holds the lock; zero when unknown, as when the holder
	// has not recorded itself yet.
	Holder LockHolder
}

// Error says which flow is locked and, when known, by whom:
// "flow F is locked by pid N on host H since T", T in RFC 3339, UTC.
func (e *LockedError) Error() string {
	h := e.Holder
	if h.PID == 0 {
		return fmt.Sprintf("flow %s is locked by another update", e.Flow)
	}
	msg := fmt.Sprintf("flow %s is locked by pid %d", e.Flow, h.PID)
	if h.Host != "" {
		msg += " on host " + h.Host
	}
	if !h.Since.IsZero() {
		msg += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return msg
}

// Is reports whether target is ErrLocked, so that errors.Is(err, ErrLocked)
// holds for a *LockedError.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
