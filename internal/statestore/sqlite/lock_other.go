//go:build !unix

package sqlite

import (
	"sync"

	"github.com/tidemark/tidemark/internal/statestore"
)

// heldLocks keeps the lock files held by this process, where there is no
// flock: updates are kept apart within one process only.
var (
	heldMu    sync.Mutex
	heldLocks = map[string]bool{}
)

func lockFile(path string) (func(), error) {
	heldMu.Lock()
	defer heldMu.Unlock()
	if heldLocks[path] {
		return nil, statestore.ErrLocked
	}
	heldLocks[path] = true
	return func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		delete(heldLocks, path)
	}, nil
}
