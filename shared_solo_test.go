package tidemark_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
)

// TestSoloRefusesBesideASharedPass: an update that does not share (--solo)
// refuses to start while shared workers are in a pass, though they hold the
// flow's lock only while they write a batch: else it would fetch and write
// the pass's rows a second time beside them.
func TestSoloRefusesBesideASharedPass(t *testing.T) {
	forEachSharedBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		var slow atomic.Bool
		slow.Store(true)
		h.wrap = func(process tidemark.ProcessFunc[int, doc]) tidemark.ProcessFunc[int, doc] {
			return func(ctx context.Context, r *tidemark.Row, id int, d doc) error {
				if slow.Load() {
					time.Sleep(20 * time.Millisecond)
				}
				return process(ctx, r, id, d)
			}
		}
		h.fill(200)
		done := make(chan []error, 1)
		go func() { done <- h.workers(2, 5*time.Second) }()
		time.Sleep(300 * time.Millisecond) // the shared pass is under way

		solo := h.openOpts(h.src, h.opts) // Shared off: --solo
		select {
		case <-done:
			t.Fatal("the shared pass ended before the solo update started: no overlap tested")
		default:
		}
		st, err := solo.Update(t.Context(), tidemark.UpdateOptions{})
		var running bool
		select {
		case errs := <-done:
			done <- errs
		default:
			running = true
		}
		t.Logf("solo processed %d rows; shared pass still running when the solo update returned: %v", st.Sources["docs"].Added+st.Sources["docs"].Updated, running)
		slow.Store(false)
		errs := <-done
		t.Logf("solo update during the shared pass: %v; shared workers: %v", err, errs)
		for id, n := range h.src.GetsOf() {
			if n > 1 {
				t.Logf("doc %d fetched %d times in one pass", id, n)
				break
			}
		}
		h.expectDocs()
		require.True(t, errors.Is(err, tidemark.ErrFlowLocked), "the solo update should refuse to start while the shared pass runs; got %v", err)
	})
}
