package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

type price struct {
	Name  string
	Cents int
}

// hookWorld is a flow of prices into a table whose hook records what it
// is told.
type hookWorld struct {
	t    *testing.T
	src  *tidemarktest.Source[string, price]
	db   *tidemarktest.DB
	opts tidemark.Options
	hookRecorder
}

// hookRecorder is a change hook that records what it is told.
type hookRecorder struct {
	mu sync.Mutex
	// fail, if set, fails the delivery of a change when it returns an
	// error.
	fail func(c tidemark.TargetChange[price]) error
	told []tidemark.TargetChange[price]
	// ids are the changes told, first to last, by key.
	ids map[target.Key][]tidemark.TargetChange[price]
}

func (h *hookRecorder) setFail(f func(c tidemark.TargetChange[price]) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = f
}

// hook is the change hook.
func (h *hookRecorder) hook(_ context.Context, c tidemark.TargetChange[price]) error {
	h.mu.Lock()
	fail := h.fail
	h.mu.Unlock()
	if fail != nil {
		if err := fail(c); err != nil {
			return err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.told = append(h.told, c)
	if h.ids == nil {
		h.ids = make(map[target.Key][]tidemark.TargetChange[price])
	}
	h.ids[c.Key] = append(h.ids[c.Key], c)
	return nil
}

func newHookWorld(t *testing.T, backend string) *hookWorld {
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}
	return &hookWorld{t: t, src: tidemarktest.NewSource[string, price](), db: tidemarktest.NewDB(), opts: opts}
}

func (w *hookWorld) open(opts ...tidemark.HookOption) *tidemark.Engine {
	return w.openWith(w.opts, opts...)
}

// openWith is open with engine options opts.
func (w *hookWorld) openWith(eo tidemark.Options, opts ...tidemark.HookOption) *tidemark.Engine {
	f := tidemark.NewFlow("Prices")
	prices := tidemarktest.Table[price](f, w.db, "prices")
	tidemark.ForEach(tidemark.AddSource(f, "items", w.src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
		prices.Declare(r, target.Key(key), p)
		return nil
	})
	tidemark.OnChange(prices, w.hook, opts...)
	e, err := tidemark.Open(w.t.Context(), f, eo)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { e.Close() })
	return e
}

func (w *hookWorld) update(e *tidemark.Engine, opts tidemark.UpdateOptions) *tidemarktype.UpdateStats {
	w.t.Helper()
	st, err := e.Update(w.t.Context(), opts)
	require.NoError(w.t, err)
	return st
}

// take returns what the hook was told since the last take, as "key:
// old -> new" lines.
func (w *hookWorld) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.told {
		out = append(out, describeChange(c))
	}
	w.told = nil
	return out
}

func describeChange(c tidemark.TargetChange[price]) string {
	v := func(p *price) string {
		if p == nil {
			return "none"
		}
		return fmt.Sprint(p.Cents)
	}
	return fmt.Sprintf("%s: %s -> %s", c.Key, v(c.Old), v(c.New))
}

func TestHookIsToldEachChangeOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newHookWorld(t, backend)
		w.src.Set("a", price{"apple", 100})
		w.src.Set("b", price{"bread", 250})
		e := w.open()
		st := w.update(e, tidemark.UpdateOptions{})
		got := w.take()
		slices.Sort(got)
		require.Equal(t, []string{"a: none -> 100", "b: none -> 250"}, got)
		require.Equal(t, int64(2), st.Targets["memory/prices"].Changes)
		require.Equal(t, int64(2), st.Targets["memory/prices"].Delivered)

		w.update(e, tidemark.UpdateOptions{})
		require.Empty(t, w.take(), "nothing changed: no call")
		w.src.Touch("a") // a new ordinal, the same value: fetched, not a change
		w.update(e, tidemark.UpdateOptions{})
		require.Empty(t, w.take(), "an identical poll: no call")
		for _, mode := range []tidemark.Mode{tidemark.ModeFullReprocess, tidemark.ModeReexport} {
			st = w.update(e, tidemark.UpdateOptions{Mode: mode})
			require.Empty(t, w.take(), "%v: the values are unchanged", mode)
			require.Zero(t, st.Targets["memory/prices"].Changes)
		}

		w.src.Set("a", price{"apple", 120})
		w.src.Set("c", price{"cheese", 900})
		w.src.Delete("b")
		w.update(e, tidemark.UpdateOptions{})
		got = w.take()
		slices.Sort(got)
		require.Equal(t, []string{"a: 100 -> 120", "b: 250 -> none", "c: none -> 900"}, got)

		// A row deleted and back: its next change is another, with a Seq
		// and an ID of its own.
		w.src.Set("b", price{"bread", 250})
		w.update(e, tidemark.UpdateOptions{})
		require.Equal(t, []string{"b: none -> 250"}, w.take())
		ids := make(map[string]bool)
		for key, cs := range w.ids {
			for i, c := range cs {
				require.False(t, ids[c.ID()], "%s: change %d has the ID of another", key, i)
				ids[c.ID()] = true
				if i > 0 {
					require.Greater(t, c.Seq, cs[i-1].Seq, "%s: Seq grows", key)
				}
			}
		}
		require.Len(t, ids, 6)

		// The same change told twice has the same ID; another has another.
		a := tidemark.TargetChange[price]{Target: "memory/prices", Key: "a", Source: "items", Row: `"a"`, Seq: 1764669000000000}
		b := a
		b.Seq = 3
		require.Equal(t, a.ID(), a.ID())
		require.NotEqual(t, a.ID(), b.ID())
		require.Len(t, a.ID(), 32)

		status, err := e.Status(t.Context(), 0)
		require.NoError(t, err)
		h := hookOf(t, status, "memory/prices")
		require.True(t, h.Attached)
		require.Zero(t, h.Pending)
	})
}

func hookOf(t *testing.T, st *tidemarktype.Status, key string) *tidemarktype.HookStatus {
	t.Helper()
	for _, tg := range st.Targets {
		if tg.Key == key && tg.Hook != nil {
			return tg.Hook
		}
	}
	t.Fatalf("target %s has no hook status in %+v", key, st.Targets)
	return nil
}

// TestAFailingHookRetriesAndHoldsItsStateOnly: a change whose delivery
// fails waits its backoff, and the state's next change waits behind it;
// other states' changes are delivered, and the status shows the failure.
func TestAFailingHookRetriesAndHoldsItsStateOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newHookWorld(t, backend)
		w.src.Set("a", price{"apple", 100})
		w.src.Set("b", price{"bread", 250})
		e := w.open(tidemark.HookBackoff(func(int) time.Duration { return 200 * time.Millisecond }))
		w.update(e, tidemark.UpdateOptions{})
		w.take()

		down := errors.New("webhook: 503 Service Unavailable")
		w.mu.Lock()
		w.fail = func(c tidemark.TargetChange[price]) error {
			if c.Key == "a" {
				return down
			}
			return nil
		}
		w.mu.Unlock()
		w.src.Set("a", price{"apple", 110})
		w.src.Set("b", price{"bread", 260})
		st := w.update(e, tidemark.UpdateOptions{})
		require.Equal(t, []string{"b: 250 -> 260"}, w.take(), "the other state's change goes on")
		require.Equal(t, int64(1), st.Targets["memory/prices"].DeliveryFailures)
		w.src.Set("a", price{"apple", 130})
		w.update(e, tidemark.UpdateOptions{})
		require.Empty(t, w.take(), "a's next change waits behind its first")

		status, err := e.Status(t.Context(), 0)
		require.NoError(t, err)
		h := hookOf(t, status, "memory/prices")
		require.Equal(t, int64(2), h.Pending)
		require.GreaterOrEqual(t, h.Failing, int64(1))
		require.NotNil(t, h.Failure)
		require.Equal(t, "a", h.Failure.Key)
		require.Equal(t, "items", h.Failure.Source)
		require.Contains(t, h.Failure.Error, "503")

		// The receiver is back: the next update, once the backoff passed,
		// tells a's changes in their order.
		w.mu.Lock()
		w.fail = nil
		w.mu.Unlock()
		time.Sleep(250 * time.Millisecond)
		w.update(e, tidemark.UpdateOptions{})
		require.Equal(t, []string{"a: 100 -> 110", "a: 110 -> 130"}, w.take())
		status, err = e.Status(t.Context(), 0)
		require.NoError(t, err)
		require.Zero(t, hookOf(t, status, "memory/prices").Pending)
	})
}

const (
	hookKill9State  = "TIDEMARK_HOOK_KILL9_STATE"
	hookKill9Schema = "TIDEMARK_HOOK_KILL9_SCHEMA"
)

// hookKill9Flow is the flow of TestHookKill9BetweenCommitAndDelivery and
// its helper process: prices into a hooked table, its state in opts.
func hookKill9Flow(t *testing.T, opts tidemark.Options, hook func(tidemark.TargetChange[price]) error) *tidemark.Engine {
	src := tidemarktest.NewSource[string, price]()
	for i := range 20 {
		src.Set(fmt.Sprintf("p%02d", i), price{Name: fmt.Sprintf("product %d", i), Cents: 100 + i})
	}
	f := tidemark.NewFlow("Prices")
	prices := tidemarktest.Table[price](f, tidemarktest.NewDB(), "prices")
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
		prices.Declare(r, target.Key(key), p)
		return nil
	})
	tidemark.OnChange(prices, func(_ context.Context, c tidemark.TargetChange[price]) error { return hook(c) })
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// TestHookKill9Helper is the process TestHookKill9BetweenCommitAndDelivery
// kills: its hook kills it, after the commit, before any change is told.
func TestHookKill9Helper(t *testing.T) {
	state := os.Getenv(hookKill9State)
	if state == "" {
		t.Skip("run by TestHookKill9BetweenCommitAndDelivery")
	}
	e := hookKill9Flow(t, tidemark.Options{StateStore: state, StateSchema: os.Getenv(hookKill9Schema)}, func(tidemark.TargetChange[price]) error {
		return syscall.Kill(os.Getpid(), syscall.SIGKILL)
	})
	_, _ = e.Update(t.Context(), tidemark.UpdateOptions{})
	time.Sleep(time.Second)
	t.Fatal("not killed")
}

// TestHookKill9BetweenCommitAndDelivery: a process killed after its commit
// and before its hook was told: the next update tells every change, once.
func TestHookKill9BetweenCommitAndDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		opts := stateStore(t, backend)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHookKill9Helper$", "-test.count=1")
		cmd.Env = append(os.Environ(), hookKill9State+"="+opts.StateStore, hookKill9Schema+"="+opts.StateSchema)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%s", out)
		require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal(), "killed by its hook: %s", out)
		if backend == "redis" {
			// The dead process's lock outlives it by its TTL (30 s): it ran out.
			ro, err := goredis.ParseURL(opts.StateStore)
			require.NoError(t, err)
			rdb := goredis.NewClient(ro)
			require.NoError(t, rdb.Del(t.Context(), "{"+opts.StateSchema+"}:lock:Prices").Err())
			require.NoError(t, rdb.Close())
		}

		var told []string
		e := hookKill9Flow(t, opts, func(c tidemark.TargetChange[price]) error {
			told = append(told, describeChange(c))
			return nil
		})
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		t.Logf("after the kill: %+v; told %d changes", st.Sources["items"], len(told))
		require.Len(t, told, 20, "%v", told)
		slices.Sort(told)
		for i, s := range told {
			require.Equal(t, fmt.Sprintf("p%02d: none -> %d", i, 100+i), s)
		}
		told = nil
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Empty(t, told, "delivered once")
	})
}

// TestSharedWorkersTellEachChangeOnce: workers sharing a pass share its
// changes' deliveries: each change is told once, by one of them.
func TestSharedWorkersTellEachChangeOnce(t *testing.T) {
	forEachSharedBackend(t, func(t *testing.T, backend string) {
		w := newHookWorld(t, backend)
		for i := range 60 {
			w.src.Set(fmt.Sprintf("k%02d", i), price{Cents: i})
		}
		run := func() {
			var wg sync.WaitGroup
			for i := range 3 {
				opts := w.opts
				opts.Shared = tidemark.SharedOptions{Enabled: true, Worker: fmt.Sprintf("w%d", i), LeaseTTL: 2 * time.Second, Poll: 5 * time.Millisecond}
				e := w.openWith(opts)
				wg.Go(func() {
					_, err := e.Update(t.Context(), tidemark.UpdateOptions{})
					require.NoError(t, err)
				})
			}
			wg.Wait()
		}
		run()
		got := w.take()
		require.Len(t, got, 60, "%v", got)
		slices.Sort(got)
		require.Equal(t, len(got), len(slices.Compact(slices.Clone(got))), "told twice: %v", got)
		for i := range 20 {
			w.src.Set(fmt.Sprintf("k%02d", i), price{Cents: 1000 + i})
		}
		run()
		got = w.take()
		slices.Sort(got)
		require.Len(t, got, 20, "%v", got)
		require.Equal(t, "k00: 0 -> 1000", got[0])
	})
}
