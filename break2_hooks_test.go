package tidemark_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
)

// TestBreakHookHundredFailingStatesStarveTheOthers: docs/hooks.md promises
// "A failing hook holds its state only ... other states' changes are
// delivered". The deliverer takes 100 due changes in id order and ends a
// drain on a round with no success; once 100 failing states are due again
// (a short HookBackoff, or simply a long enough gap between drains), every
// drain takes those same 100 first, fails them all and stops: no other
// state's change is ever delivered.
func TestBreakHookHundredFailingStatesStarveTheOthers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newHookWorld(t, backend)
		for i := range 100 {
			w.src.Set(fmt.Sprintf("bad%03d", i), price{"x", i})
		}
		w.setFail(func(c tidemark.TargetChange[price]) error {
			if strings.HasPrefix(string(c.Key), "bad") {
				return errors.New("receiver rejects it")
			}
			return nil
		})
		e := w.open(tidemark.HookBackoff(func(int) time.Duration { return 0 }))
		w.update(e, tidemark.UpdateOptions{})
		require.Empty(t, w.take())

		time.Sleep(20 * time.Millisecond)
		w.src.Set("good", price{"good", 1})
		w.update(e, tidemark.UpdateOptions{})
		time.Sleep(20 * time.Millisecond)
		w.update(e, tidemark.UpdateOptions{})
		require.Equal(t, []string{"good: none -> 1"}, w.take(), "a healthy state's change is delivered while 100 others fail")
	})
}
