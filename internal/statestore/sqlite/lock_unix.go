//go:build unix

package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/tidemark/tidemark/internal/statestore"
)

// maxLockTries bounds the attempts to lock a lock file: an attempt fails
// only when a releaser removed the file between its opening and its
// locking, so many failures in a row mean something else is removing it.
const maxLockTries = 100

// lockFile takes an exclusive, non-blocking flock on the file at path,
// creating it, and writes holder into it; the returned function releases
// it. The kernel releases the flock when the file is closed or the
// process dies.
//
// A release removes the file, while still holding the flock, so that none
// stays beside the database. A locker that opened the file before its
// removal gets the flock of a file no longer at path: it sees that the
// file it locked is not the one at path, and tries again. A process killed
// with the lock held leaves the file behind, harmless: the next locker
// takes it over and its release removes it.
func lockFile(path, flow string, holder statestore.LockHolder) (func(), error) {
	for range maxLockTries {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("opening the lock file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			if errors.Is(err, syscall.EWOULDBLOCK) {
				h := readHolder(f)
				f.Close()
				return nil, &statestore.LockedError{Flow: flow, Holder: h}
			}
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		linked, err := isLinked(f, path)
		if err != nil {
			unlock(f)
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !linked {
			unlock(f)
			continue
		}
		if err := writeHolder(f, holder); err != nil {
			release(f, path)
			return nil, fmt.Errorf("locking %s: recording the holder: %w", path, err)
		}
		return func() { release(f, path) }, nil
	}
	return nil, fmt.Errorf("locking %s: the lock file was removed under %d attempts in a row", path, maxLockTries)
}

// isLinked reports whether f, locked, is still the file at path: a
// releaser may have removed it, or removed it and another locker created a
// new one, since f was opened.
func isLinked(f *os.File, path string) (bool, error) {
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	named, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, named), nil
}

// release removes the lock file, if it is still the one at path, while
// holding its flock; then unlocks and closes it.
func release(f *os.File, path string) {
	if linked, err := isLinked(f, path); err == nil && linked {
		// A file left behind is harmless: the next locker takes it over.
		_ = os.Remove(path)
	}
	unlock(f)
}

// unlock unlocks and closes f.
func unlock(f *os.File) {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// maxHolderSize bounds what is read of a lock file's holder record.
const maxHolderSize = 4096

// writeHolder replaces the content of the locked file f with holder, as
// JSON.
func writeHolder(f *os.File, holder statestore.LockHolder) error {
	b, err := json.Marshal(holder)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(append(b, '\n'), 0)
	return err
}

// readHolder returns the holder recorded in the lock file f; zero when
// the file holds no complete record, as when its holder has not written
// it yet.
func readHolder(f *os.File) statestore.LockHolder {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxHolderSize))
	if err != nil {
		return statestore.LockHolder{}
	}
	var h statestore.LockHolder
	if err := json.Unmarshal(b, &h); err != nil {
		return statestore.LockHolder{}
	}
	return h
}
