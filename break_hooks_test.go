package tidemark_test

// Attacks on change hooks (docs/hooks.md). Each TestBreak… fails on the
// code as it is; see the comment of each for the defect.
//
//	TIDEMARK_TEST_DATABASE_URL=... go test -race -run 'TestBreakHook' .

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// breakWorld is a flow of prices into a table, opened at will with or
// without a hook, whose hook records what it is told.
type breakWorld struct {
	t    *testing.T
	src  *tidemarktest.Source[string, price]
	db   *tidemarktest.DB
	opts tidemark.Options
	hookRecorder
}

func newBreakWorld(t *testing.T, backend string) *breakWorld {
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}
	w := &breakWorld{t: t, src: tidemarktest.NewSource[string, price](), db: tidemarktest.NewDB(), opts: opts}
	w.src.Set("z", price{"zucchini", 1}) // a row that stays: deleting a is no wholesale deletion
	return w
}

// open opens the flow; hooked says the table has its hook, withTable that
// the flow declares the table at all (else the rows go to another table).
func (w *breakWorld) open(hooked, withTable bool, opts ...tidemark.HookOption) *tidemark.Engine {
	f := tidemark.NewFlow("Prices")
	name := "prices"
	if !withTable {
		name = "elsewhere"
	}
	prices := tidemarktest.Table[price](f, w.db, name)
	tidemark.ForEach(tidemark.AddSource(f, "items", w.src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
		prices.Declare(r, target.Key(key), p)
		return nil
	})
	if hooked {
		tidemark.OnChange(prices, w.hook, opts...)
	}
	e, err := tidemark.Open(w.t.Context(), f, w.opts)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { e.Close() })
	return e
}

func (w *breakWorld) update(e *tidemark.Engine) {
	w.t.Helper()
	_, err := e.Update(w.t.Context(), tidemark.UpdateOptions{})
	require.NoError(w.t, err)
}

// take returns what the hook was told of a since the last take.
func (w *breakWorld) take() []tidemark.TargetChange[price] {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []tidemark.TargetChange[price]
	for _, c := range w.told {
		if c.Key == "a" {
			out = append(out, c)
		}
	}
	w.told = nil
	return out
}

func describeAll(cs []tidemark.TargetChange[price]) []string {
	var out []string
	for _, c := range cs {
		out = append(out, describeChange(c))
	}
	return out
}

// TestBreakHookIDRepeatsForAnotherChange: TargetChange.ID is promised
// "different for any other change", so that a receiver drops the changes
// whose ID it has seen. But Seq is only the count kept in the row's
// tracking: when the state leaves the tracking (the row stops declaring
// it, or the row is deleted; the hook is detached for a while; the target
// is dropped and declared again), the count starts again at 1, and the
// next change has the ID of the state's very first change. A receiver
// that dedupes by ID, as the docs say to, drops the new change: the
// re-created product is never told of.
func TestBreakHookIDRepeatsForAnotherChange(t *testing.T) {
	t.Run("RowDeletedAndAddedAgain", func(t *testing.T) {
		w := newBreakWorld(t, "sqlite")
		e := w.open(true, true)
		w.src.Set("a", price{"apple", 100})
		w.update(e)
		w.src.Delete("a")
		w.update(e)
		w.src.Set("a", price{"apple", 300})
		w.update(e)
		requireDistinctIDs(t, w.take())
	})
	t.Run("HookDetachedForAWhile", func(t *testing.T) {
		w := newBreakWorld(t, "sqlite")
		w.src.Set("a", price{"apple", 100})
		w.update(w.open(true, true))
		w.src.Set("a", price{"apple", 200})
		w.update(w.open(false, true)) // a release without the hook
		w.src.Set("a", price{"apple", 300})
		w.update(w.open(true, true))
		requireDistinctIDs(t, w.take())
	})
	t.Run("TargetDroppedAndDeclaredAgain", func(t *testing.T) {
		w := newBreakWorld(t, "sqlite")
		w.src.Set("a", price{"apple", 100})
		w.update(w.open(true, true))
		w.update(w.open(false, false)) // the table dropped
		w.src.Set("a", price{"apple", 300})
		w.update(w.open(true, true)) // and declared again
		requireDistinctIDs(t, w.take())
	})
}

func requireDistinctIDs(t *testing.T, told []tidemark.TargetChange[price]) {
	t.Helper()
	seen := make(map[string]string)
	for _, c := range told {
		d := describeChange(c)
		if first, ok := seen[c.ID()]; ok {
			t.Fatalf("two different changes have the same ID %s: %q and %q (told %v): a receiver deduping by ID drops the second",
				c.ID(), first, d, describeAll(told))
		}
		seen[c.ID()] = d
	}
}

// TestBreakHookChangeLostWhileItsStateWaits: the same Seq restart, in the
// outbox. The outbox keeps a change "once" by (target, source, row, key,
// seq), with ON CONFLICT DO NOTHING (SQL) or a dedupe hash (Redis). While
// the receiver is down, a product is created (seq 1), deleted (seq 2) and
// created again (seq 1 again): the commit of the new creation silently
// drops it, as a duplicate of the first. Once the receiver is back it is
// told "created 100", "deleted", and never "created 300", while the table
// holds 300 and the status says nothing is pending.
func TestBreakHookChangeLostWhileItsStateWaits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newBreakWorld(t, backend)
		e := w.open(true, true, tidemark.HookBackoff(func(int) time.Duration { return 20 * time.Millisecond }))
		down := errors.New("receiver down")
		w.setFail(func(tidemark.TargetChange[price]) error { return down })
		w.src.Set("a", price{"apple", 100})
		w.update(e)
		w.src.Delete("a")
		w.update(e)
		w.src.Set("a", price{"apple", 300})
		w.update(e)
		require.Equal(t, price{"apple", 300}, w.db.Rows("prices")["a"])

		w.setFail(nil)
		for range 3 {
			time.Sleep(30 * time.Millisecond)
			w.update(e)
		}
		got := describeAll(w.take())
		require.Equal(t, []string{"a: none -> 100", "a: 100 -> none", "a: none -> 300"}, got,
			"the hook must be told of the re-creation: the table holds 300")
	})
}

// TestBreakHookChangeLostAcrossADetachedHook: the same in another way. A
// change waits (receiver down) when a release drops the hook; docs/hooks.md:
// "A flow that drops a hook leaves the changes not delivered in the
// outbox". Meanwhile the row's tracking forgets the count. When the hook
// is back (the receiver still down), the state's next change is seq 1
// again, and the outbox drops it as a duplicate of the waiting one: the
// hook is told "created 100" and nothing more, while the table holds 300.
// (Had the receiver been up, the waiting change would have been told
// first, then "created 300" under the same ID: see
// TestBreakHookIDRepeatsForAnotherChange.)
func TestBreakHookChangeLostAcrossADetachedHook(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		w := newBreakWorld(t, backend)
		backoff := tidemark.HookBackoff(func(int) time.Duration { return 20 * time.Millisecond })
		w.setFail(func(tidemark.TargetChange[price]) error { return errors.New("receiver down") })
		w.src.Set("a", price{"apple", 100})
		w.update(w.open(true, true, backoff))
		w.src.Set("a", price{"apple", 200})
		w.update(w.open(false, true))
		w.src.Set("a", price{"apple", 300})
		e := w.open(true, true, backoff)
		w.update(e) // the receiver still down: the change of 300 is committed, behind the waiting one
		w.setFail(nil)
		for range 3 {
			time.Sleep(30 * time.Millisecond)
			w.update(e)
		}
		got := w.take()
		require.NotEmpty(t, got)
		last := got[len(got)-1]
		require.NotNil(t, last.New)
		require.Equal(t, 300, last.New.Cents, "the last change told must be the table's value; told %v", describeAll(got))
	})
}

// TestBreakHookTinyBackoffNeverEndsTheUpdate: docs/hooks.md: a change whose
// delivery fails "waits a backoff … and the next update (or, live, the
// next pass) tries again". But the deliverer loops, within the update,
// until nothing is due: with a backoff shorter than one round (a few ms,
// or 0), a hook that keeps failing is tried again and again, and the
// update never ends.
func TestBreakHookTinyBackoffNeverEndsTheUpdate(t *testing.T) {
	w := newBreakWorld(t, "sqlite")
	var attempts int
	w.setFail(func(tidemark.TargetChange[price]) error { attempts++; return errors.New("receiver down") })
	e := w.open(true, true, tidemark.HookBackoff(func(int) time.Duration { return 0 }))
	w.src.Set("a", price{"apple", 100})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := e.Update(ctx, tidemark.UpdateOptions{})
	w.mu.Lock()
	n := attempts
	w.mu.Unlock()
	require.NoError(t, err, "the update ends, the change waiting for the next (%d attempts)", n)
	require.LessOrEqual(t, n, 5, "one update tries a failing change once per delivery round (after each commit, and as it ends)")
}

// withIface is a value whose JSON does not decode back: an interface
// field.
type withIface struct {
	Name  string
	Label fmt.Stringer
}

type label string

func (l label) String() string { return string(l) }

// TestBreakHookValueThatDoesNotRoundTripIsNeverTold: the engine encodes
// the value to JSON for the hook, and decodes it back into V to tell it.
// A value that encodes but does not decode (an interface field) makes
// every delivery fail, forever, counted as the hook's failure: the hook is
// never called, and the state's later changes wait behind it for ever.
// The rows themselves succeed, so nothing but the hook's status says so.
func TestBreakHookValueThatDoesNotRoundTripIsNeverTold(t *testing.T) {
	opts := stateStore(t, "sqlite")
	src := tidemarktest.NewSource[string, withIface]()
	f := tidemark.NewFlow("Labels")
	labels := tidemarktest.Table[withIface](f, tidemarktest.NewDB(), "labels")
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, v withIface) error {
		labels.Declare(r, target.Key(key), v)
		return nil
	})
	var told []tidemark.TargetChange[withIface]
	tidemark.OnChange(labels, func(_ context.Context, c tidemark.TargetChange[withIface]) error {
		told = append(told, c)
		return nil
	}, tidemark.HookBackoff(func(int) time.Duration { return time.Millisecond }))
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err) // no word that the hook can never be told
	defer e.Close()
	src.Set("a", withIface{"apple", label("fruit")})
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	// Fixed: the row fails, saying why, rather than block its state's
	// changes in the outbox for ever.
	require.Len(t, st.Failures, 1)
	require.Contains(t, st.Failures[0].Message, "does not decode back from JSON")
	status, err := e.Status(t.Context(), 0)
	require.NoError(t, err)
	require.Zero(t, hookOf(t, status, "memory/labels").Pending, "nothing waits in the outbox")
	require.Empty(t, told)
}

// priceV2 is price after a release that changed Cents into a string.
type priceV2 struct {
	Name  string
	Cents string
}

// TestBreakHookTypeChangeBlocksEveryStateForever: a release changes the
// hooked type (a field int → string). The old values kept in the rows'
// tracking (and in the outbox) are JSON of the old type: every change's
// Old fails to decode into the new type, so every change of every state
// fails, forever, and each state's later changes wait behind it.
func TestBreakHookTypeChangeBlocksEveryStateForever(t *testing.T) {
	opts := stateStore(t, "sqlite")
	db := tidemarktest.NewDB()
	src := tidemarktest.NewSource[string, price]()
	src.Set("a", price{"apple", 100})
	{
		f := tidemark.NewFlow("Prices")
		prices := tidemarktest.Table[price](f, db, "prices")
		tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
			prices.Declare(r, target.Key(key), p)
			return nil
		})
		tidemark.OnChange(prices, func(context.Context, tidemark.TargetChange[price]) error { return nil })
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		e.Close()
	}
	f := tidemark.NewFlow("Prices", tidemark.LogicVersion("2"))
	prices := tidemarktest.Table[priceV2](f, db, "prices")
	tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
		prices.Declare(r, target.Key(key), priceV2{p.Name, fmt.Sprint(p.Cents)})
		return nil
	})
	var told []string
	tidemark.OnChange(prices, func(_ context.Context, c tidemark.TargetChange[priceV2]) error {
		told = append(told, fmt.Sprintf("%s: %v -> %v", c.Key, c.Old, c.New))
		return nil
	}, tidemark.HookBackoff(func(int) time.Duration { return time.Millisecond }))
	e, err := tidemark.Open(t.Context(), f, opts)
	require.NoError(t, err)
	defer e.Close()
	for range 3 {
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond)
	}
	status, err := e.Status(t.Context(), 0)
	require.NoError(t, err)
	if h := hookOf(t, status, "memory/prices"); h.Failure != nil {
		t.Logf("status: %d pending, failing %d times: %s", h.Pending, h.Failure.Attempts, h.Failure.Error)
	}
	// Fixed: the old value, kept as the old type, no longer decodes: it is
	// told as unknown, and the state is not held back.
	require.Equal(t, []string{"a: <nil> -> &{apple 100}"}, told)
}

// ratio is a value with a float.
type ratio struct {
	Name string
	R    float64
}

// TestBreakHookFailsRowsTheTargetTakes: the target takes NaN (the
// fingerprint has a NaN), but encoding/json does not: once a hook is
// attached, every row with a NaN fails, and its target state is no longer
// written. Attaching a hook, an observer, changes what the target gets.
func TestBreakHookFailsRowsTheTargetTakes(t *testing.T) {
	for _, hooked := range []bool{false, true} {
		t.Run(fmt.Sprintf("hooked=%v", hooked), func(t *testing.T) {
			db := tidemarktest.NewDB()
			src := tidemarktest.NewSource[string, ratio]()
			src.Set("a", ratio{"a", math.NaN()})
			f := tidemark.NewFlow("Ratios")
			ratios := tidemarktest.Table[ratio](f, db, "ratios")
			tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, v ratio) error {
				ratios.Declare(r, target.Key(key), v)
				return nil
			})
			if hooked {
				tidemark.OnChange(ratios, func(context.Context, tidemark.TargetChange[ratio]) error { return nil })
			}
			e, err := tidemark.Open(t.Context(), f, stateStore(t, "sqlite"))
			require.NoError(t, err)
			defer e.Close()
			st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			if !hooked {
				require.Empty(t, st.Failures)
				require.Len(t, db.Rows("ratios"), 1)
				return
			}
			// A value a hook cannot be told of fails its row, saying why
			// (docs/hooks.md): a change is never dropped unsaid.
			require.Len(t, st.Failures, 1)
			require.Contains(t, st.Failures[0].Message, "does not encode as JSON")
		})
	}
}

// TestBreakHookRetryableFailureHoldsEveryState: docs/hooks.md: "A failing
// hook holds its state only … other states' changes are delivered". An
// error marked Retryable is retried "at once, by the engine's retry
// policy" — in line, in the one loop that delivers every state's changes:
// with the default policy (up to 2 minutes per change) a receiver down for
// state a holds b's change for 2 minutes, and the update with it; each
// further change of a (or of any state whose receiver is down) adds 2
// minutes more.
func TestBreakHookRetryableFailureHoldsEveryState(t *testing.T) {
	w := newBreakWorld(t, "sqlite")
	w.opts.Retry = tidemark.RetryPolicy{} // the default policy
	var mu sync.Mutex
	var bTold bool
	w.setFail(func(c tidemark.TargetChange[price]) error {
		if c.Key == "a" {
			return errors.New("a's receiver: 503")
		}
		return nil
	})
	e := w.open(true, true, tidemark.HookBackoff(func(int) time.Duration { return time.Millisecond }))
	w.src.Set("a", price{"apple", 100})
	w.update(e) // a's change waits (a plain error: a backoff of 1 ms)
	time.Sleep(5 * time.Millisecond)

	w.setFail(func(c tidemark.TargetChange[price]) error {
		if c.Key == "a" {
			return tidemark.Retryable(errors.New("a's receiver: 503"))
		}
		if c.Key == "b" {
			mu.Lock()
			bTold = true
			mu.Unlock()
		}
		return nil
	})
	w.src.Set("b", price{"bread", 200})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	_, err := e.Update(ctx, tidemark.UpdateOptions{})
	mu.Lock()
	defer mu.Unlock()
	require.True(t, bTold, "b's change is told while a's receiver is down (update: %v)", err)
	require.NoError(t, err, "the update ends in time")
}

// TestBreakHookIDChangesWhenItsSourceIsRenamed: the ID hashes the source's
// name, which the deliverer looks up in the current flow at each delivery
// (the outbox keeps only the source's id). A change told once (the
// receiver acted, but its answer was lost: an error) is told again after a
// release that renames the source — as from "source 1", under another ID,
// so the receiver acts twice. The status names no source for it either.
func TestBreakHookIDChangesWhenItsSourceIsRenamed(t *testing.T) {
	opts := stateStore(t, "sqlite")
	db := tidemarktest.NewDB()
	src := tidemarktest.NewSource[string, price]()
	src.Set("a", price{"apple", 100})
	var ids []string
	var sources []string
	open := func(source string, fail bool) *tidemark.Engine {
		f := tidemark.NewFlow("Prices")
		prices := tidemarktest.Table[price](f, db, "prices")
		tidemark.ForEach(tidemark.AddSource(f, source, src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
			prices.Declare(r, target.Key(key), p)
			return nil
		})
		tidemark.OnChange(prices, func(_ context.Context, c tidemark.TargetChange[price]) error {
			if c.Source != "products" { // the waiting change, not the new row's
				ids, sources = append(ids, c.ID()), append(sources, c.Source)
			}
			if fail {
				return errors.New("timeout waiting for the receiver's answer") // it acted, though
			}
			return nil
		}, tidemark.HookBackoff(func(int) time.Duration { return time.Millisecond }))
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		t.Cleanup(func() { e.Close() })
		return e
	}
	_, err := open("items", true).Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	time.Sleep(5 * time.Millisecond)
	_, err = open("products", false).Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	t.Logf("deliveries of the change: sources %q, ids %q", sources, ids)
	require.GreaterOrEqual(t, len(ids), 2)
	for _, id := range ids[1:] {
		require.Equal(t, ids[0], id, "every delivery of the change has its ID (sources %q)", sources)
	}
}

// TestBreakHookChangeLostAcrossATargetRebuild: a destructive setup change
// (the table dropped and created again, KeySchema) while a change waits:
// the rows' tracking of the old table is void, every state is new to its
// row again, and the change of a (200) is seq 1 again.
func TestBreakHookChangeLostAcrossATargetRebuild(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		opts := stateStore(t, backend)
		db := tidemarktest.NewDB()
		src := tidemarktest.NewSource[string, price]()
		src.Set("a", price{"apple", 100})
		var mu sync.Mutex
		down := true
		var told []string
		open := func(keySchema string) *tidemark.Engine {
			f := tidemark.NewFlow("Prices")
			prices := tidemarktest.Table[price](f, db, "prices", tidemarktest.KeySchema(keySchema))
			tidemark.ForEach(tidemark.AddSource(f, "items", src), func(_ context.Context, r *tidemark.Row, key string, p price) error {
				prices.Declare(r, target.Key(key), p)
				return nil
			})
			tidemark.OnChange(prices, func(_ context.Context, c tidemark.TargetChange[price]) error {
				mu.Lock()
				defer mu.Unlock()
				if down {
					return errors.New("receiver down")
				}
				told = append(told, describeChange(c))
				return nil
			}, tidemark.HookBackoff(func(int) time.Duration { return time.Millisecond }))
			e, err := tidemark.Open(t.Context(), f, opts)
			require.NoError(t, err)
			t.Cleanup(func() { e.Close() })
			return e
		}
		_, err := open("k1").Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		src.Set("a", price{"apple", 200})
		e := open("k2")
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Equal(t, price{"apple", 200}, db.Rows("prices")["a"])
		mu.Lock()
		down = false
		mu.Unlock()
		for range 2 {
			time.Sleep(5 * time.Millisecond)
			_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
		}
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, told)
		require.Contains(t, told[len(told)-1], "-> 200", "the last change told is the table's value; told %q", told)
	})
}
