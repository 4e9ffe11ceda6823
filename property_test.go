package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// The property: after any sequence of source inserts, updates, touches and
// deletes, logic-version bumps, target schema changes, and crashes at any
// phase of an update, one clean update leaves the targets equal to a build
// from scratch of the final source — no orphan, no missing row, no stale
// value — and the update after it has nothing to do.

// propItem is a row of the property test's source. Claims are states that
// move between rows: a claim is declared by whichever rows hold it, with a
// value that rows of the same Val%3 share. Folders are directories of a
// tree that rows declare and that move between rows like claims; in each,
// a row declares a directory of its own, with a file and a tag.
type propItem struct {
	Val     int
	Links   []int
	Claims  []int
	Folders []int
}

// propClaim is a state of the claims table.
type propClaim struct {
	N    int
	Note string
}

type propNode struct {
	ID  int
	Val int
}

// propLink is declared by both of its ends, each with its own note: the
// value in the target must be the note of a row that declares it now.
type propLink struct {
	A, B int
	Note string
}

var errCrash = errors.New("simulated crash")

// propWorld is the part of the property test that survives crashes: the
// source, the target database, and the state store location.
type propWorld struct {
	t         *testing.T
	src       *tidemarktest.Source[int, propItem]
	db        *tidemarktest.DB
	tree      *tidemarktest.Tree
	opts      tidemark.Options
	logic     int
	schema    int
	keySchema int
}

// propProcess declares a node per row (unless its value is a multiple of 7)
// and a link per linked row, keyed by the unordered pair, so that a link is
// declared by both of its ends and must stay while either declares it.
//
// In the tree, each folder c of a row is a directory dc, remade empty when
// the logic version changes parity (a destructive change), holding a file
// n with the row's Val%3 (shared by every row that holds the folder) and a
// directory r<id> of the row's own, with a file v and a tag.
func propProcess(logic int, nodes *tidemark.Target[propNode], links *tidemark.Target[propLink], claims *tidemark.Target[propClaim], tree *tidemark.Target[tidemarktest.Node]) tidemark.ProcessFunc[int, propItem] {
	return func(_ context.Context, r *tidemark.Row, id int, it propItem) error {
		declareFolders(r, tree, logic, id, it)
		for _, c := range it.Claims {
			claims.Declare(r, target.Key(fmt.Sprintf("c%d", c)), propClaim{N: c, Note: fmt.Sprint(it.Val % 3)})
		}
		if it.Val%7 != 0 {
			nodes.Declare(r, target.Key(strconv.Itoa(id)), propNode{ID: id, Val: it.Val + 1000*logic})
		}
		for _, l := range it.Links {
			a, b := min(id, l), max(id, l)
			links.Declare(r, target.Key(fmt.Sprintf("%d-%d", a, b)), propLink{A: a, B: b, Note: fmt.Sprintf("by %d at %d", id, it.Val)})
		}
		return nil
	}
}

// declareFolders declares row id's folders in the tree: for each folder c
// a directory dc with a file n, and in it a directory r<id> of the row's
// own, with a file v and a tag.
func declareFolders(r *tidemark.Row, tree *tidemark.Target[tidemarktest.Node], logic, id int, it propItem) {
	for _, c := range it.Folders {
		d := tidemark.Nest[tidemarktest.Node](r, tree, target.Key(fmt.Sprintf("d%d", c)), tidemarktest.Node{Dir: true, Epoch: logic % 2})
		d.Declare(r, "n", tidemarktest.Node{Text: fmt.Sprint(it.Val % 3)})
		own := tidemark.Nest[tidemarktest.Node](r, d, target.Key(fmt.Sprintf("r%d", id)), tidemarktest.Node{Dir: true})
		own.Declare(r, "v", tidemarktest.Node{Text: fmt.Sprint(it.Val)})
		tidemark.Attach(own, "tag", "t", fmt.Sprint(it.Val%2))
	}
}

func (w *propWorld) open(opts tidemark.Options) *tidemark.Engine {
	f := tidemark.NewFlow("Prop", tidemark.LogicVersion(strconv.Itoa(w.logic)))
	nodes := tidemarktest.Table[propNode](f, w.db, "nodes", tidemarktest.Schema(strconv.Itoa(w.schema)), tidemarktest.KeySchema(strconv.Itoa(w.keySchema)))
	links := tidemarktest.Table[propLink](f, w.db, "links")
	claims := tidemarktest.Table[propClaim](f, w.db, "claims")
	tree := tidemarktest.TreeRoot(f, w.tree, "t")
	tidemark.ForEach(tidemark.AddSource(f, "items", w.src, tidemark.MaxInFlight(3)), propProcess(w.logic, nodes, links, claims, tree))
	e, err := tidemark.Open(w.t.Context(), f, opts)
	require.NoError(w.t, err)
	return e
}

// mutate applies a few random changes to the source.
func (w *propWorld) mutate(rng *rand.Rand) {
	const keys = 24
	for range 1 + rng.IntN(8) {
		id := rng.IntN(keys)
		switch op := rng.IntN(10); {
		case op < 4: // insert or update
			it := propItem{Val: rng.IntN(50)}
			for range rng.IntN(3) {
				if l := rng.IntN(keys); l != id && !slices.Contains(it.Links, l) {
					it.Links = append(it.Links, l)
				}
			}
			w.src.Set(id, it)
		case op < 6:
			w.src.Touch(id)
		case op < 7:
			w.move(rng, keys, func(it *propItem) *[]int { return &it.Claims })
		case op < 8:
			w.move(rng, keys, func(it *propItem) *[]int { return &it.Folders })
		default:
			w.src.Delete(id)
		}
	}
	switch r := rng.IntN(20); {
	case r == 0:
		w.logic++
	case r == 1:
		w.schema++ // lossy
	case r == 2:
		w.keySchema++ // destructive
	}
}

// move moves a claim or folder (as field picks) from one row to another
// (which may hold it already), or gives a row a new one.
func (w *propWorld) move(rng *rand.Rand, keys int, field func(*propItem) *[]int) {
	from, to := rng.IntN(keys), rng.IntN(keys)
	dst, ok := w.src.Value(to)
	if !ok {
		return
	}
	c := rng.IntN(6)
	if src, ok := w.src.Value(from); ok && len(*field(&src)) > 0 {
		list := field(&src)
		i := rng.IntN(len(*list))
		c = (*list)[i]
		*list = slices.Delete(slices.Clone(*list), i, i+1)
		w.src.Set(from, src)
		if from == to {
			dst = src
		}
	}
	if list := field(&dst); !slices.Contains(*list, c) {
		*list = append(slices.Clone(*list), c)
	}
	w.src.Set(to, dst)
}

// crashPoint is where an update is made to crash.
type crashPoint int

const (
	crashNone crashPoint = iota
	crashSetup
	crashPrecommit
	crashMidApply
	crashBeforeCommit
)

func (c crashPoint) String() string {
	return [...]string{"none", "setup", "precommit", "mid-apply", "before-commit"}[c]
}

// crashingUpdate runs an update that crashes at point, in the batch-th
// batch, and reports whether it did crash.
func (w *propWorld) crashingUpdate(rng *rand.Rand, point crashPoint) bool {
	opts := w.crashOptions(rng, point, w.opts)
	e := w.open(opts)
	defer e.Close()
	_, err := e.Update(w.t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	w.db.Heal()
	w.tree.Heal()
	if err != nil {
		require.ErrorIs(w.t, err, errCrash, "only the injected crash may fail the update")
		return true
	}
	return false
}

// crashOptions returns opts with faults that crash an update at point, in
// the batch-th batch.
func (w *propWorld) crashOptions(rng *rand.Rand, point crashPoint, opts tidemark.Options) tidemark.Options {
	opts.Batch = tidemark.BatchOptions{MaxRows: 1 + rng.IntN(6)}
	batch := 1 + rng.IntN(3)
	var n atomic.Int32
	hook := func(context.Context) error {
		if n.Add(1) == int32(batch) {
			return errCrash
		}
		return nil
	}
	switch point {
	case crashSetup:
		w.db.FailSetup(tidemark.Retryable(errCrash))
	case crashPrecommit:
		opts.Faults.BeforePrecommit = hook
	case crashBeforeCommit:
		opts.Faults.BeforeCommit = hook
	case crashMidApply:
		// Let a few actions through, then the database goes away: retries
		// are exhausted and the update stops mid-batch.
		inTree := rng.IntN(2) == 0
		opts.Faults.BeforeApply = func(context.Context) error {
			if n.Add(1) == int32(batch) {
				if inTree {
					w.tree.FailAfter(rng.IntN(4), tidemark.Retryable(errCrash))
				} else {
					w.db.FailAfter(rng.IntN(4), tidemark.Retryable(errCrash))
				}
			}
			return nil
		}
	}
	return opts
}

// scratch builds the final source from scratch into a fresh database and
// state store.
func (w *propWorld) scratch(backend string) (*tidemarktest.DB, *tidemarktest.Tree) {
	fresh := &propWorld{t: w.t, src: w.src, db: tidemarktest.NewDB(), tree: tidemarktest.NewTree(), opts: stateStore(w.t, backend), logic: w.logic, schema: w.schema, keySchema: w.keySchema}
	e := fresh.open(fresh.opts)
	defer e.Close()
	_, err := e.Update(w.t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	require.NoError(w.t, err)
	return fresh.db, fresh.tree
}

// expectedTree computes the tree from the source: each node's path with the
// values its declarers declare (a directory's is "dir" and its tags).
func (w *propWorld) expectedTree() map[string][]string {
	out := map[string][]string{"t": {"dir"}}
	for _, id := range w.src.Keys() {
		it, _ := w.src.Value(id)
		for _, c := range it.Folders {
			d := fmt.Sprintf("t/d%d", c)
			out[d] = []string{"dir"}
			out[d+"/n"] = append(out[d+"/n"], fmt.Sprint(it.Val%3))
			own := fmt.Sprintf("%s/r%d", d, id)
			out[own] = []string{fmt.Sprintf("dir #t=%d", it.Val%2)}
			out[own+"/v"] = []string{fmt.Sprint(it.Val)}
		}
	}
	return out
}

// requireTree checks that a tree holds exactly the expected nodes, each with
// the value of one of its declarers.
func requireTree(t *testing.T, want map[string][]string, got map[string]string) {
	t.Helper()
	require.ElementsMatch(t, slices.Collect(maps.Keys(want)), slices.Collect(maps.Keys(got)), "tree paths")
	for p, v := range got {
		require.Contains(t, want[p], v, "%s holds a value no current declarer declares", p)
	}
}

// expected computes the target tables straight from the source: the nodes,
// and for each link and claim the values its declarers declare.
func (w *propWorld) expected() (nodes map[target.Key]any, links, claims map[target.Key][]any) {
	nodes, links, claims = map[target.Key]any{}, map[target.Key][]any{}, map[target.Key][]any{}
	for _, id := range w.src.Keys() {
		it, _ := w.src.Value(id)
		for _, c := range it.Claims {
			k := target.Key(fmt.Sprintf("c%d", c))
			claims[k] = append(claims[k], propClaim{N: c, Note: fmt.Sprint(it.Val % 3)})
		}
		if it.Val%7 != 0 {
			nodes[target.Key(strconv.Itoa(id))] = propNode{ID: id, Val: it.Val + 1000*w.logic}
		}
		for _, l := range it.Links {
			a, b := min(id, l), max(id, l)
			k := target.Key(fmt.Sprintf("%d-%d", a, b))
			links[k] = append(links[k], propLink{A: a, B: b, Note: fmt.Sprintf("by %d at %d", id, it.Val)})
		}
	}
	return nodes, links, claims
}

// requireLinks checks that the links table holds exactly the declared
// links, each with the value of one of its current declarers.
func requireLinks(t *testing.T, want map[target.Key][]any, got map[target.Key]any) {
	t.Helper()
	require.ElementsMatch(t, sortedKeys(want), sortedKeys(got), "link keys")
	for k, v := range got {
		require.Contains(t, want[k], v, "link %s holds a value no current declarer declares", k)
	}
}

// converges checks that one clean update with opts brings the targets to
// what the source declares, as a build from scratch does, and that the
// update after it has nothing to do. It returns the tree's nodes.
func (w *propWorld) converges(backend string, opts tidemark.Options) int {
	t := w.t
	t.Helper()
	// One clean update converges. An update alone refuses to run while
	// crashed shared workers' leases last (a few hundred ms here).
	e := w.open(opts)
	st, err := e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	for wait := time.Now().Add(10 * time.Second); errors.Is(err, tidemark.ErrFlowLocked) && !opts.Shared.Enabled && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
		st, err = e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	}
	require.NoError(t, err)
	require.Zero(t, st.Failed(), "%v", st.Failures)
	e.Close()
	wantNodes, wantLinks, wantClaims := w.expected()
	require.Equal(t, wantNodes, orEmpty(w.db.Rows("nodes")), "nodes")
	requireLinks(t, wantLinks, orEmpty(w.db.Rows("links")))
	requireLinks(t, wantClaims, orEmpty(w.db.Rows("claims")))
	wantTree := w.expectedTree()
	requireTree(t, wantTree, w.tree.Snapshot())
	// A build from scratch has the same rows; a link declared by
	// both ends may hold either end's value.
	scratch, scratchTree := w.scratch(backend)
	require.Equal(t, orEmpty(scratch.Rows("nodes")), orEmpty(w.db.Rows("nodes")), "nodes against a build from scratch")
	requireLinks(t, wantLinks, orEmpty(scratch.Rows("links")))
	requireLinks(t, wantClaims, orEmpty(scratch.Rows("claims")))
	requireTree(t, wantTree, scratchTree.Snapshot())

	// And then there is nothing left to do.
	w.src.ResetCounts()
	w.db.ResetCounts()
	w.tree.ResetLog()
	e = w.open(opts)
	st, err = e.Update(t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
	require.NoError(t, err)
	e.Close()
	require.Zero(t, w.src.Gets(), "a converged state fetches nothing")
	require.Equal(t, tidemarktest.Counts{}, w.db.Counts(), "a converged state writes nothing")
	require.Empty(t, w.tree.Log(), "a converged state writes nothing to the tree")
	require.Empty(t, st.Setup)
	return len(wantTree)
}

// propertySeed is the seed of a property test's first iteration:
// TIDEMARK_PROPERTY_SEED, else the time.
func propertySeed(t *testing.T) uint64 {
	if s := os.Getenv("TIDEMARK_PROPERTY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return v
	}
	return uint64(time.Now().UnixNano())
}

// newPropWorld returns an empty world on a fresh state store of backend,
// retrying faults briefly.
func newPropWorld(t *testing.T, backend string) *propWorld {
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxAttempts: 2}
	return &propWorld{t: t, src: tidemarktest.NewSource[int, propItem](), db: tidemarktest.NewDB(), tree: tidemarktest.NewTree(), opts: opts, logic: 1}
}

func propertyIterations(t *testing.T) int {
	n := 25
	if s := os.Getenv("TIDEMARK_PROPERTY_ITERATIONS"); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, "TIDEMARK_PROPERTY_ITERATIONS")
		n = v
	}
	if testing.Short() {
		n = min(n, 5)
	}
	return n
}

func TestPropertyConvergesAfterCrashes(t *testing.T) {
	t.Parallel()
	iterations := propertyIterations(t)
	seed := propertySeed(t)
	t.Logf("seed %d (TIDEMARK_PROPERTY_SEED), %d iterations per backend (TIDEMARK_PROPERTY_ITERATIONS)", seed, iterations)

	forEachBackend(t, func(t *testing.T, backend string) {
		var crashes [5]int
		var steps, treeNodes int
		for i := range iterations {
			iterSeed := seed + uint64(i)
			ok := t.Run(fmt.Sprintf("iteration-%d-seed-%d", i, iterSeed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(iterSeed, 0x7715))
				w := newPropWorld(t, backend)
				for range 6 + rng.IntN(8) {
					w.mutate(rng)
					point := crashNone
					if rng.IntN(10) < 6 {
						point = crashPoint(1 + rng.IntN(4))
					}
					crashed := w.crashingUpdate(rng, point)
					if crashed {
						crashes[point]++
					}
					if os.Getenv("TIDEMARK_PROPERTY_VERBOSE") != "" {
						t.Logf("step: logic %d schema %d key %d crash %s (crashed %v); nodes %v; tree %v", w.logic, w.schema, w.keySchema, point, crashed, sortedKeys(w.db.Rows("nodes")), w.tree.Snapshot())
						for _, id := range w.src.Keys() {
							v, _ := w.src.Value(id)
							t.Logf("   src %d: %+v", id, v)
						}
					}
					steps++
				}

				treeNodes += w.converges(backend, w.opts)
			})
			if !ok {
				break
			}
		}
		t.Logf("%s: %d iterations, %d updates, %d tree nodes at the end, crashes: setup %d, precommit %d, mid-apply %d, before-commit %d",
			backend, iterations, steps, treeNodes, crashes[crashSetup], crashes[crashPrecommit], crashes[crashMidApply], crashes[crashBeforeCommit])
	})
}

// sharedUpdates runs n shared workers at once, each crashing at a point
// drawn for it (or not), and returns how many crashed.
func (w *propWorld) sharedUpdates(rng *rand.Rand, n int) int {
	type run struct {
		e   *tidemark.Engine
		err error
	}
	runs := make([]*run, n)
	for i := range runs {
		point := crashNone
		if rng.IntN(10) < 5 {
			point = crashPoint(2 + rng.IntN(3)) // no setup crash: the database is everyone's
		}
		opts := w.crashOptions(rng, point, w.opts)
		opts.Shared = tidemark.SharedOptions{Enabled: true, Worker: fmt.Sprintf("w%d", i), LeaseTTL: 300 * time.Millisecond, Poll: 2 * time.Millisecond}
		runs[i] = &run{e: w.open(opts)}
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			_, r.err = r.e.Update(w.t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
		})
	}
	wg.Wait()
	w.db.Heal()
	w.tree.Heal()
	crashed := 0
	for _, r := range runs {
		r.e.Close()
		if r.err != nil {
			require.ErrorIs(w.t, r.err, errCrash, "only the injected crashes may fail an update")
			crashed++
		}
	}
	return crashed
}

// The property with several workers sharing each update, some of them
// crashing: one clean update then converges, shared or alone.
func TestPropertySharedWorkersConverge(t *testing.T) {
	t.Parallel()
	iterations := max(1, propertyIterations(t)/3)
	seed := propertySeed(t)
	t.Logf("seed %d (TIDEMARK_PROPERTY_SEED), %d iterations per backend", seed, iterations)
	forEachSharedBackend(t, func(t *testing.T, backend string) {
		var updates, crashes int
		for i := range iterations {
			iterSeed := seed + uint64(i)
			ok := t.Run(fmt.Sprintf("iteration-%d-seed-%d", i, iterSeed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(iterSeed, 0x5eed))
				w := newPropWorld(t, backend)
				for range 4 + rng.IntN(5) {
					w.mutate(rng)
					crashes += w.sharedUpdates(rng, 2+rng.IntN(3))
					updates++
				}
				final := w.opts
				if rng.IntN(2) == 0 {
					final.Shared = tidemark.SharedOptions{Enabled: true, LeaseTTL: 300 * time.Millisecond, Poll: 2 * time.Millisecond}
				}
				w.converges(backend, final)
			})
			if !ok {
				break
			}
		}
		t.Logf("%s: %d iterations, %d shared updates, %d workers crashed", backend, iterations, updates, crashes)
	})
}
