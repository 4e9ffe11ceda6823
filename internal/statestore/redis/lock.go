package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
)

// lockReleaseTimeout bounds Release's deletion of the lock's key.
const lockReleaseTimeout = 10 * time.Second

// errReleased is the cause of a heartbeat stopped by Release.
var errReleased = errors.New("the lock was released")

// FlowLock implements statestore.Store with a key per flow, P:lock:<flow>,
// taken only if absent and holding a random token with the holder, that
// expires after Config.LockTTL unless renewed. A heartbeat renews it every
// third of the TTL for as long as the key holds the token; Check renews it
// too. A holder that dies stops renewing it, and the lock is free again
// once its TTL has run out: until then FlowLock refuses the flow, naming
// the holder that died.
func (s *Store) FlowLock(ctx context.Context, p statestore.FlowLockParams) (statestore.Lock, error) {
	token := rand.Text()
	h := statestore.ThisProcess(time.Now())
	list, err := s.runList(ctx, s.sc.lockTake, p.Flow, token, h.PID, h.Host, micros(h.Since), s.lockTTL.Milliseconds())
	if err == nil && len(list) == 0 {
		err = errors.New("empty reply")
	}
	if err != nil {
		// The lock may have been taken, its answer lost: give it back,
		// if the server answers, rather than leave it to its TTL.
		l := &lock{s: s, flow: p.Flow, token: token}
		l.delete(ctx)
		return nil, fmt.Errorf("locking flow %s: %w", p.Flow, err)
	}
	d := decoder{list: list}
	if d.int() != 1 {
		held := statestore.LockHolder{PID: int(d.int()), Host: d.string(), Since: d.time()}
		if d.err != nil {
			held = statestore.LockHolder{} // unknown, as documented on LockHolder
		}
		return nil, &statestore.LockedError{Flow: p.Flow, Holder: held}
	}
	hbCtx, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	l := &lock{s: s, flow: p.Flow, token: token, stop: stop, done: make(chan struct{})}
	go l.heartbeat(hbCtx)
	return l, nil
}

// lock is a flow's lock held by a token.
type lock struct {
	s     *Store
	flow  string
	token string

	stop    context.CancelCauseFunc
	done    chan struct{} // closed when the heartbeat has stopped
	release sync.Once

	mu sync.Mutex
	// lost is set once the key no longer holds the token: it expired, or
	// another holder has it.
	lost error
}

// heartbeat renews the lock every third of its TTL until ctx ends or the
// lock is lost. A renewal that fails (the server cannot be reached) is
// tried again at the next tick: the lock is lost only if its key no
// longer holds the token, which Check then says.
func (l *lock) heartbeat(ctx context.Context) {
	defer close(l.done)
	every := l.s.lockTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		held, err := l.renew(rctx)
		cancel()
		if err == nil && !held {
			l.markLost()
			return
		}
	}
}

// renew extends the lock's TTL if its key still holds the token, and says
// whether it does.
func (l *lock) renew(ctx context.Context) (bool, error) {
	v, err := l.s.run(ctx, l.s.sc.lockRenew, l.flow, l.token, l.s.lockTTL.Milliseconds())
	if err != nil {
		return false, err
	}
	n, err := replyInt(v)
	return n == 1, err
}

func (l *lock) markLost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = fmt.Errorf("flow %s: %w: its key expired (the lock was not renewed for %s) or was deleted, and another may hold it now",
			l.flow, statestore.ErrLockLost, l.s.lockTTL)
	}
	return l.lost
}

// Check implements statestore.Lock: it asks the server whether the lock's
// key still holds the token, renewing it if so. A lock whose key expired
// (its holder could not renew it for a TTL) or was deleted (as by a
// restart of a server that keeps nothing on disk) is lost. A server that
// cannot be reached gives a retryable error.
func (l *lock) Check(ctx context.Context) error {
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	held, err := l.renew(ctx)
	if err != nil {
		return fmt.Errorf("checking the lock of flow %s: %w", l.flow, err)
	}
	if !held {
		return l.markLost()
	}
	return nil
}

// Release implements statestore.Lock: it stops the heartbeat and deletes
// the lock's key if it still holds the token.
func (l *lock) Release() {
	l.release.Do(func() {
		l.stopHeartbeat()
		l.delete(context.Background())
	})
}

// stopHeartbeat stops renewing the lock, as a holder that died would.
func (l *lock) stopHeartbeat() {
	l.stop(errReleased)
	<-l.done
}

// delete deletes the lock's key if it holds the token, at best: a key
// left behind expires.
func (l *lock) delete(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockReleaseTimeout)
	defer cancel()
	_, _ = l.s.run(ctx, l.s.sc.lockRelease, l.flow, l.token) // best effort, as documented
}
