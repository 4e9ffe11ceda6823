//go:build !unix

package sqlite

import (
	"sync"

	"github.com/tidemark/tidemark/internal/statestore"
)

// heldLocks keeps the holders of the lock files held by this process,
// where there is no flock: updates are kept apart within one process only,
// and no file is created.
var (
	heldMu    sync.Mutex
	heldLocks = map[string]statestore.LockHolder{}
)

func lockFile(path, flow string, holder statestore.LockHolder) (func(), error) {
	heldMu.Lock()
	defer heldMu.Unlock()
	if h, ok := heldLocks[path]; ok {
		return nil, &statestore.LockedError{Flow: flow, Holder: h}
	}
	heldLocks[path] = holder
	return func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		delete(heldLocks, path)
	}, nil
}
