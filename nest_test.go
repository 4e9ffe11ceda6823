package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// The tests of this file declare containers from source rows, nested: a
// row's layout is directories, files and tags in a tidemarktest.Tree,
// which refuses every write out of order (a file in a missing directory, a
// directory removed while it holds anything).

// layout is what one source row declares in the tree, by path below the
// top-level directory "t".
type layout struct {
	// Dirs are directories, each after its parent.
	Dirs []string
	// Files are leaves, by path, with their text.
	Files map[string]string
	// Tags are attachments of directories: "dir#name" → value.
	Tags map[string]string
	// Epochs remake directories: changing one is destructive.
	Epochs map[string]int
}

// forest is a source of layouts, a tree and a state store.
type forest struct {
	t    *testing.T
	src  *tidemarktest.Source[int, layout]
	tree *tidemarktest.Tree
	opts tidemark.Options
	// epoch is added to every directory's epoch, with the logic version:
	// changing it remakes every directory, and every row is processed.
	epoch int
}

func newForest(t *testing.T, backend string) *forest {
	opts := stateStore(t, backend)
	opts.Retry = tidemark.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2, MaxAttempts: 3}
	return &forest{t: t, src: tidemarktest.NewSource[int, layout](), tree: tidemarktest.NewTree(), opts: opts}
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// declareLayout declares a layout in the tree under root.
func declareLayout(r *tidemark.Row, root *tidemark.Target[tidemarktest.Node], l layout, epoch int) error {
	dirs := map[string]*tidemark.Target[tidemarktest.Node]{"": root}
	for _, d := range l.Dirs {
		parent, name := splitPath(d)
		if dirs[parent] == nil {
			return fmt.Errorf("layout: %s comes before its parent", d)
		}
		dirs[d] = tidemark.Nest[tidemarktest.Node](r, dirs[parent], target.Key(name), tidemarktest.Node{Dir: true, Epoch: l.Epochs[d] + epoch})
	}
	for _, p := range slices.Sorted(maps.Keys(l.Files)) {
		parent, name := splitPath(p)
		if dirs[parent] == nil {
			return fmt.Errorf("layout: file %s is in no declared directory", p)
		}
		dirs[parent].Declare(r, target.Key(name), tidemarktest.Node{Text: l.Files[p]})
	}
	for _, tag := range slices.Sorted(maps.Keys(l.Tags)) {
		dir, name, _ := strings.Cut(tag, "#")
		if dirs[dir] == nil {
			return fmt.Errorf("layout: tag %s is on no declared directory", tag)
		}
		tidemark.Attach(dirs[dir], "tag", target.Key(name), l.Tags[tag])
	}
	return nil
}

// update runs one update of the forest's flow, with the tree's log reset.
func (f *forest) update() (*tidemarktype.UpdateStats, error) {
	f.t.Helper()
	return f.updateLast(-1)
}

// updateLast runs one update like f.update, in which row last is processed
// 200ms after the others: it comes last in their batch, or, with
// MaxRows: 1, is in flight while the other rows' batches are written.
func (f *forest) updateLast(last int) (*tidemarktype.UpdateStats, error) {
	f.t.Helper()
	f.tree.ResetLog()
	f.src.ResetCounts()
	e := f.openDelaying(last)
	defer e.Close()
	return e.Update(f.t.Context(), tidemark.UpdateOptions{Confirm: confirmAll})
}

// open opens an engine on the forest's flow.
func (f *forest) open() *tidemark.Engine {
	f.t.Helper()
	return f.openDelaying(-1)
}

// openDelaying opens an engine on the forest's flow in which row last, if
// any, is processed 200ms late.
func (f *forest) openDelaying(last int) *tidemark.Engine {
	f.t.Helper()
	fl := tidemark.NewFlow("Forest", tidemark.LogicVersion(fmt.Sprint(f.epoch)))
	root := tidemarktest.TreeRoot(fl, f.tree, "t")
	tidemark.ForEach(tidemark.AddSource(fl, "layouts", f.src, tidemark.MaxInFlight(4)), func(_ context.Context, r *tidemark.Row, id int, l layout) error {
		if id == last {
			time.Sleep(200 * time.Millisecond)
		}
		return declareLayout(r, root, l, f.epoch)
	})
	e, err := tidemark.Open(f.t.Context(), fl, f.opts)
	require.NoError(f.t, err)
	return e
}

func (f *forest) mustUpdate() *tidemarktype.UpdateStats {
	f.t.Helper()
	st, err := f.update()
	require.NoError(f.t, err)
	require.Zero(f.t, st.Failed(), "%v", st.Failures)
	return st
}

// want is the tree the source's layouts declare.
func (f *forest) want() map[string]string {
	out := map[string]string{"t": "dir"}
	tags := make(map[string]map[string]string)
	for _, id := range f.src.Keys() {
		l, _ := f.src.Value(id)
		for _, d := range l.Dirs {
			out["t/"+d] = "dir"
		}
		for p, text := range l.Files {
			out["t/"+p] = text
		}
		for tag, v := range l.Tags {
			dir, name, _ := strings.Cut(tag, "#")
			if tags["t/"+dir] == nil {
				tags["t/"+dir] = make(map[string]string)
			}
			tags["t/"+dir][name] = v
		}
	}
	for dir, ts := range tags {
		for _, name := range slices.Sorted(maps.Keys(ts)) {
			out[dir] += " #" + name + "=" + ts[name]
		}
	}
	return out
}

func (f *forest) expect() {
	f.t.Helper()
	require.Equal(f.t, f.want(), f.tree.Snapshot())
}

// rank returns the position of each logged change, to check its order.
func rank(log []string) map[string]int {
	out := make(map[string]int, len(log))
	for i, l := range log {
		out[l] = i
	}
	return out
}

// TestRowContainersNested: a row declares directories two deep, with files
// and a tag. They are made outermost first, before what is in them; an
// update with nothing changed writes nothing; and when the row goes, the
// files go first, then the tag, then the directories, innermost first.
func TestRowContainersNested(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"a", "a/b"}, Files: map[string]string{"a/f": "F", "a/b/g": "G"}, Tags: map[string]string{"a/b#x": "1"}})
		f.src.Set(2, layout{Files: map[string]string{"top": "T"}})
		f.mustUpdate()
		f.expect()
		r := rank(f.tree.Log())
		require.Less(t, r["mkdir t/a"], r["mkdir t/a/b"])
		require.Less(t, r["mkdir t/a/b"], r["tag t/a/b x"])
		require.Less(t, r["tag t/a/b x"], r["write t/a/b/g"])
		require.Less(t, r["mkdir t/a"], r["write t/a/f"])

		f.mustUpdate()
		require.Empty(t, f.tree.Log(), "nothing changed")

		// The row keeps a/b but drops a's file and changes the tag.
		f.src.Set(1, layout{Dirs: []string{"a", "a/b"}, Files: map[string]string{"a/b/g": "G2"}, Tags: map[string]string{"a/b#x": "2"}})
		f.mustUpdate()
		f.expect()
		require.ElementsMatch(t, []string{"rm t/a/f", "write t/a/b/g", "tag t/a/b x"}, f.tree.Log())

		f.src.Delete(1)
		st := f.mustUpdate()
		f.expect()
		require.EqualValues(t, 1, st.Sources["layouts"].Deleted)
		log := f.tree.Log()
		require.Equal(t, []string{"rm t/a/b/g", "untag t/a/b x", "rmdir t/a/b", "rmdir t/a"}, log)
	})
}

// TestRowContainerSharedByRows: a directory two rows declare lives while
// either does; each row's files go with that row.
func TestRowContainerSharedByRows(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2"}})
		f.mustUpdate()
		f.expect()

		f.src.Delete(1)
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"rm t/s/one"}, f.tree.Log())

		f.src.Delete(2)
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"rm t/s/two", "rmdir t/s"}, f.tree.Log())
	})
}

// TestRowContainerMoves: a directory and its files that one row stops
// declaring and another starts declaring, unchanged, move without a write;
// moved with a changed file, that file alone is written.
func TestRowContainerMoves(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"m", "m/n"}, Files: map[string]string{"m/n/f": "F", "m/g": "G"}})
		f.src.Set(2, layout{Files: map[string]string{"other": "O"}})
		f.mustUpdate()

		f.src.Set(1, layout{})
		f.src.Set(2, layout{Dirs: []string{"m", "m/n"}, Files: map[string]string{"m/n/f": "F", "m/g": "G", "other": "O"}})
		f.mustUpdate()
		f.expect()
		require.Empty(t, f.tree.Log(), "an unchanged move writes nothing")

		f.src.Set(2, layout{Files: map[string]string{"other": "O"}})
		f.src.Set(3, layout{Dirs: []string{"m", "m/n"}, Files: map[string]string{"m/n/f": "F2", "m/g": "G"}})
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"write t/m/n/f"}, f.tree.Log())

		f.src.Delete(3)
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"rm t/m/g", "rm t/m/n/f", "rmdir t/m/n", "rmdir t/m"}, sortedPhases(f.tree.Log()))
	})
}

// sortedPhases sorts a log within each run of changes of one kind, whose
// order the engine leaves free.
func sortedPhases(log []string) []string {
	out := slices.Clone(log)
	kind := func(s string) string { k, _, _ := strings.Cut(s, " "); return k }
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && kind(out[j]) == kind(out[i]) {
			j++
		}
		if kind(out[i]) != "rmdir" {
			slices.Sort(out[i:j])
		}
		i = j
	}
	return out
}

// TestRowContainerRemadeEmpty: a directory made again empty (a destructive
// change) has every file in it written again, and those no longer declared
// are not removed: they went with it.
func TestRowContainerRemadeEmpty(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"d", "d/e"}, Files: map[string]string{"d/keep": "K", "d/drop": "D", "d/e/deep": "X"}, Tags: map[string]string{"d/e#t": "v"}})
		f.mustUpdate()

		f.src.Set(1, layout{Dirs: []string{"d", "d/e"}, Files: map[string]string{"d/keep": "K", "d/e/deep": "X"}, Tags: map[string]string{"d/e#t": "v"}, Epochs: map[string]int{"d": 1}})
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"mkdir t/d", "mkdir t/d/e", "tag t/d/e t", "write t/d/e/deep", "write t/d/keep"}, sortedPhases(f.tree.Log()))
	})
}

// TestRowContainerFailures: a directory that cannot be made fails its row,
// with nothing in it written; other rows go on; once the fault heals the
// next update converges. A crash between making a directory and writing
// its files converges too.
func TestRowContainerFailures(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"bad"}, Files: map[string]string{"bad/f": "F"}, Tags: map[string]string{"bad#t": "v"}})
		f.src.Set(2, layout{Dirs: []string{"good"}, Files: map[string]string{"good/f": "F"}})
		f.tree.FailPath("t/bad", errors.New("permission denied"))
		st, err := f.update()
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed())
		require.Contains(t, st.Failures[0].Message, "permission denied")
		require.Equal(t, map[string]string{"t": "dir", "t/good": "dir", "t/good/f": "F"}, f.tree.Snapshot())

		f.tree.Heal()
		f.mustUpdate()
		f.expect()

		// A transient fault writing a file outlasts the retries: the
		// update stops after its directory was made.
		f.src.Set(3, layout{Dirs: []string{"c", "c/d"}, Files: map[string]string{"c/d/f": "F"}})
		f.tree.FailPath("t/c/d/f", tidemark.Retryable(errors.New("disk busy")))
		_, err = f.update()
		require.Error(t, err)
		require.Contains(t, f.tree.Snapshot(), "t/c/d")
		require.NotContains(t, f.tree.Snapshot(), "t/c/d/f")

		// The row is given up before it is written again: the directories
		// made must go, innermost first.
		f.tree.Heal()
		f.src.Delete(3)
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"rmdir t/c/d", "rmdir t/c"}, f.tree.Log())
	})
}

// TestRowContainerMistakes: declaring in a container another row declared,
// nesting in a target whose handler makes no containers, and a key that
// starts with a NUL byte each fail the row, with a clear error.
func TestRowContainerMistakes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		opts := stateStore(t, backend)
		db := tidemarktest.NewDB()
		tree := tidemarktest.NewTree()
		src := tidemarktest.NewSource[int, string]()
		src.Set(1, "other row")
		src.Set(2, "not a container")
		src.Set(3, "nul")
		src.Set(4, "fine")
		fl := tidemark.NewFlow("Mistakes")
		root := tidemarktest.TreeRoot(fl, tree, "t")
		tbl := tidemarktest.Table[tidemarktest.Node](fl, db, "plain")
		var stolen atomic.Pointer[tidemark.Target[tidemarktest.Node]]
		tidemark.ForEach(tidemark.AddSource(fl, "rows", src, tidemark.MaxInFlight(1)), func(_ context.Context, r *tidemark.Row, id int, what string) error {
			switch what {
			case "other row":
				if s := stolen.Load(); s != nil {
					s.Declare(r, "x", tidemarktest.Node{Text: "x"})
				}
			case "not a container":
				in := tidemark.Nest[tidemarktest.Node](r, tbl, "row", tidemarktest.Node{Dir: true})
				in.Declare(r, "child", tidemarktest.Node{Text: "c"})
			case "nul":
				root.Declare(r, "\x00evil", tidemarktest.Node{Text: "x"})
			case "fine":
				stolen.Store(tidemark.Nest[tidemarktest.Node](r, root, "d", tidemarktest.Node{Dir: true}))
			}
			return nil
		})
		e, err := tidemark.Open(t.Context(), fl, opts)
		require.NoError(t, err)
		defer e.Close()
		// Rows run one at a time in key order, so row 1 sees no container
		// yet; run twice so that it sees row 4's.
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
		require.NoError(t, err)
		msgs := make(map[string]string)
		for _, fl := range st.Failures {
			msgs[fl.Key] = fl.Message
		}
		require.Contains(t, msgs["1"], "another source row declared")
		require.Contains(t, msgs["2"], "not a container")
		require.Contains(t, msgs["3"], "reserved")
		require.NotContains(t, msgs, "4")
		require.Equal(t, map[string]string{"t": "dir", "t/d": "dir"}, tree.Snapshot())
	})
}

// TestRowContainerLineage: the read API shows the states a row declared in
// its containers with their path, and finds the row from such a state.
func TestRowContainerLineage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"a", "a/b"}, Files: map[string]string{"a/b/g": "G"}, Tags: map[string]string{"a/b#x": "1"}})
		f.src.Set(2, layout{Dirs: []string{"a"}, Files: map[string]string{"a/h": "H"}})
		f.mustUpdate()
		e := f.open()
		defer e.Close()

		row, err := e.Row(t.Context(), "layouts", "1")
		require.NoError(t, err)
		type state struct {
			containers []string
			attachment string
			key        string
		}
		var got []state
		for _, s := range row.States {
			require.Equal(t, "tree/t", s.Target)
			got = append(got, state{s.Containers, s.Attachment, s.Key})
		}
		require.ElementsMatch(t, []state{{nil, "", "a"}, {[]string{"a"}, "", "b"}, {[]string{"a", "b"}, "", "g"}, {[]string{"a", "b"}, "tag", "x"}}, got)

		refs, err := e.Declarers(t.Context(), "tree/t", tidemark.NestedKey([]target.Key{"a", "b"}, "g"))
		require.NoError(t, err)
		require.Equal(t, []tidemarktype.RowRef{{Source: "layouts", Key: "1"}}, refs)
		refs, err = e.Declarers(t.Context(), "tree/t", "a")
		require.NoError(t, err)
		require.ElementsMatch(t, []tidemarktype.RowRef{{Source: "layouts", Key: "1"}, {Source: "layouts", Key: "2"}}, refs)
		_, err = e.Declarers(t.Context(), "tree/t", tidemark.NestedKey([]target.Key{"a"}, "g"))
		require.ErrorIs(t, err, tidemark.ErrNotFound)
	})
}

// TestRowContainerRemadeForEveryRow: a directory that rows in two batches
// declare is remade (every row is processed again, in its own batch): each
// row's files in it are written again, whichever batch remade it, and then
// nothing is left to do. A crash after the remake, before its commit,
// converges too: the other row was marked first.
func TestRowContainerRemadeForEveryRow(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		for i := range 4 {
			f.src.Set(i, layout{Dirs: []string{"s", fmt.Sprintf("s/r%d", i)}, Files: map[string]string{fmt.Sprintf("s/r%d/f", i): "F", "s/f": "shared"}})
		}
		f.mustUpdate()
		f.expect()

		f.epoch = 1
		f.mustUpdate()
		f.expect()
		f.mustUpdate()
		require.Empty(t, f.tree.Log(), "nothing left to do")

		// Crash after the first batch's remake was applied.
		f.epoch = 2
		f.opts.Faults = crashAt("before commit")
		_, err := f.update()
		require.ErrorIs(t, err, errCrash)
		f.opts.Faults = tidemark.FaultHooks{}
		f.mustUpdate()
		f.expect()
		f.mustUpdate()
		require.Empty(t, f.tree.Log(), "nothing left to do")
	})
}

// The tests below are regressions found by review, each failing before
// its fix.

// TestRegressionNestDirBecomesLeaf: a directory that becomes a file is
// written once what was in it is gone.
func TestRegressionNestDirBecomesLeaf(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"x"}, Files: map[string]string{"x/f": "F"}, Tags: map[string]string{"x#t": "v"}})
		f.mustUpdate()
		f.src.Set(1, layout{Files: map[string]string{"x": "now a file"}})
		f.mustUpdate()
		f.expect()
		require.Equal(t, []string{"rm t/x/f", "untag t/x t", "write t/x"}, f.tree.Log())
	})
}

// TestRegressionNestLeafToDirCrashThenDelete: a file that became a
// directory in an update that crashed is known as a container from its
// staged record.
func TestRegressionNestLeafToDirCrashThenDelete(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"deleted", "leaf again"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, backend string) {
				f := newForest(t, backend)
				f.src.Set(1, layout{Files: map[string]string{"x": "leaf"}})
				f.mustUpdate()
				f.src.Set(1, layout{Dirs: []string{"x"}, Files: map[string]string{"x/f": "F"}})
				f.opts.Faults = crashAt("before commit")
				_, err := f.update()
				require.ErrorIs(t, err, errCrash)
				f.opts.Faults = tidemark.FaultHooks{}
				if end == "deleted" {
					f.src.Delete(1)
				} else {
					f.src.Set(1, layout{Files: map[string]string{"x": "leaf"}})
				}
				f.mustUpdate()
				f.expect()
				f.mustUpdate()
				require.Empty(t, f.tree.Log())
			})
		})
	}
}

// TestRegressionNestRemakeLosesInFlightRowsFiles: a row in flight while
// another row's batch remakes a directory they share writes its files in
// it again.
func TestRegressionNestRemakeLosesInFlightRowsFiles(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		f.src.Set(0, layout{Dirs: []string{"s"}, Files: map[string]string{"s/zero": "0"}})
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1", "x": "a"}})
		f.mustUpdate()
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1", "x": "a"}, Epochs: map[string]int{"s": 1}})
		f.mustUpdate()
		f.expect()
		f.src.Set(0, layout{Dirs: []string{"s"}, Files: map[string]string{"s/zero": "0"}, Epochs: map[string]int{"s": 1}})
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1", "x": "b"}, Epochs: map[string]int{"s": 1}})
		st, err := f.updateLast(1)
		require.NoError(t, err)
		require.Zero(t, st.Failed())
		f.expect()
		f.mustUpdate()
		require.Empty(t, f.tree.Log())
	})
}

// TestRegressionNestRewriteRemakeKeepsOwnChildren: a directory a row
// writes again because another row stopped declaring it, remade, has the
// row's own files written again.
func TestRegressionNestRewriteRemakeKeepsOwnChildren(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2"}})
		f.mustUpdate()
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}, Epochs: map[string]int{"s": 1}})
		f.mustUpdate()
		f.expect()
		f.src.Set(1, layout{Files: map[string]string{"other": "o"}})
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2", "s/three": "3"}})
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestSharedContainerWinnerFails: when the row whose write
// of a new shared directory wins fails, the other row's write of it is
// applied before that row's files.
func TestRegressionNestSharedContainerWinnerFails(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Dirs: []string{"s", "bad"}, Files: map[string]string{"s/two": "2"}})
		f.tree.FailPath("t/bad", errors.New("permission denied"))
		st, err := f.updateLast(2)
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "only row 2 fails: %v", st.Failures)
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestStandbyRemakeKeepsChildren: a standing-by remake of a
// directory, applied because the winning row failed, comes before the
// files of the rows that did not fail.
func TestRegressionNestStandbyRemakeKeepsChildren(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2"}})
		f.mustUpdate()
		f.epoch = 1
		f.tree.FailPath("t/s/two", errors.New("permission denied"))
		st, err := f.updateLast(2)
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "%v", st.Failures)
		require.Contains(t, f.tree.Snapshot(), "t/s/one", "row 1 succeeded")
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestRevivedContainerDelete: a deletion cancelled by a row
// that then failed after writing into the container is not applied.
func TestRegressionNestRevivedContainerDelete(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Files: map[string]string{"x": "x"}})
		f.mustUpdate()
		f.src.Set(1, layout{})
		f.src.Set(2, layout{Dirs: []string{"s", "s/sub"}, Files: map[string]string{"x": "x"}, Tags: map[string]string{"s/sub#t": "v"}})
		f.tree.FailPath("t/s/sub#t", errors.New("permission denied"))
		st, err := f.update()
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "only row 2 fails: %v", st.Failures)
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
		f.src.Delete(2)
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestSharedDeleteOtherRowFails: of two rows dropping a
// shared directory, one failing keeps the directory, and the other row
// does not fail.
func TestRegressionNestSharedDeleteOtherRowFails(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2"}})
		f.mustUpdate()
		f.src.Set(1, layout{Files: map[string]string{"a": "a"}})
		f.src.Set(2, layout{Files: map[string]string{"b": "b"}})
		f.tree.FailPath("t/s/two", errors.New("permission denied"))
		st, err := f.updateLast(2)
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "only row 2 fails: %v", st.Failures)
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestAttachMistakes: an attachment without a kind, and an
// attachment of a root declared while processing a row, fail the row.
func TestRegressionNestAttachMistakes(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		tree := tidemarktest.NewTree()
		src := tidemarktest.NewSource[int, string]()
		src.Set(1, "no kind")
		src.Set(2, "root")
		fl := tidemark.NewFlow("AttachMistakes")
		root := tidemarktest.TreeRoot(fl, tree, "t")
		tidemark.ForEach(tidemark.AddSource(fl, "rows", src), func(_ context.Context, r *tidemark.Row, _ int, what string) error {
			switch what {
			case "no kind":
				d := tidemark.Nest[tidemarktest.Node](r, root, "d", tidemarktest.Node{Dir: true})
				tidemark.Attach(d, "", "k", tidemarktest.Node{Text: "attached"})
			case "root":
				tidemark.Attach(root, "tag", "k", what)
			}
			return nil
		})
		e, err := tidemark.Open(t.Context(), fl, stateStore(t, backend))
		require.NoError(t, err)
		defer e.Close()
		for range 2 {
			st, err := e.Update(t.Context(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
			require.NoError(t, err)
			msgs := make(map[string]string)
			for _, fl := range st.Failures {
				msgs[fl.Key] = fl.Message
			}
			require.Contains(t, msgs["1"], "kind")
			require.Contains(t, msgs["2"], "while building the flow")
		}
		require.Equal(t, map[string]string{"t": "dir"}, tree.Snapshot())
	})
}

// TestRegressionFlatKeysStartingWithNUL: in a target whose handler makes
// no containers, keys may start with a NUL byte, as before row containers.
func TestRegressionFlatKeysStartingWithNUL(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		h := newHarness(t, backend)
		keys := []target.Key{"\x00\x00\x00\x01", "\x00c\x01a\x01b"}
		var which atomic.Int32
		h.process = nil
		h.src.Set(1, doc{Title: "one"})
		h.src.Set(2, doc{Title: "two"})
		f := func() *tidemark.Engine {
			fl := tidemark.NewFlow("NUL")
			tbl := tidemarktest.Table[docRow](fl, h.db, "t")
			tidemark.ForEach(tidemark.AddSource(fl, "docs", h.src), func(_ context.Context, r *tidemark.Row, id int, d doc) error {
				k := keys[id-1]
				if which.Load() == 1 {
					k = target.Key(d.Title)
				}
				tbl.Declare(r, k, docRow{ID: id, Title: d.Title})
				return nil
			})
			e, err := tidemark.Open(t.Context(), fl, h.opts)
			require.NoError(t, err)
			return e
		}
		e := f()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Zero(t, st.Failed(), "%v", st.Failures)
		e.Close()
		require.ElementsMatch(t, []string{string(keys[0]), string(keys[1])}, sortedKeys(h.db.Rows("t")))
		which.Store(1)
		e = f()
		defer e.Close()
		st, err = e.Update(t.Context(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
		require.NoError(t, err)
		require.Zero(t, st.Failed(), "%v", st.Failures)
		require.ElementsMatch(t, []string{"one", "two"}, sortedKeys(h.db.Rows("t")))
	})
}

// writtenTwice returns the changes a log holds more than once.
func writtenTwice(log []string) []string {
	seen := map[string]int{}
	var out []string
	for _, l := range log {
		if seen[l]++; seen[l] == 2 {
			out = append(out, l)
		}
	}
	return out
}

// TestRegressionNestLeafAdoptsOtherRowsDir: a file that takes over a
// directory another row drops is written after that directory's files go.
func TestRegressionNestLeafAdoptsOtherRowsDir(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"x"}, Files: map[string]string{"x/f": "F"}})
		f.src.Set(2, layout{Files: map[string]string{"y": "y"}})
		f.mustUpdate()
		f.src.Set(1, layout{})
		f.src.Set(2, layout{Files: map[string]string{"x": "leaf", "y": "y"}})
		st, err := f.updateLast(1)
		require.NoError(t, err)
		require.Zero(t, st.Failed(), "%v", st.Failures)
		f.expect()
	})
}

// TestRegressionNestReviveSkipOrphansDir: a row that failed after writing
// elsewhere than in a container does not keep that container alive.
func TestRegressionNestReviveSkipOrphansDir(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Files: map[string]string{"x": "x"}})
		f.mustUpdate()
		f.src.Set(1, layout{})
		f.src.Set(2, layout{Dirs: []string{"s", "other"}, Files: map[string]string{"x": "x", "bad": "b"}})
		f.tree.FailPath("t/bad", errors.New("permission denied"))
		st, err := f.update()
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "%v", st.Failures)
		f.tree.Heal()
		f.src.Set(2, layout{Files: map[string]string{"x": "x"}})
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestRevivedDeleteMeetsStagedChild: a container is not
// deleted for a row while a failed row's staged tracking holds a state in
// it.
func TestRegressionNestRevivedDeleteMeetsStagedChild(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.src.Set(2, layout{Files: map[string]string{"x": "x"}})
		f.mustUpdate()
		f.src.Set(1, layout{})
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2", "x": "x"}})
		f.opts.Faults = crashAt("before commit")
		_, err := f.update()
		require.ErrorIs(t, err, errCrash)
		f.opts.Faults = tidemark.FaultHooks{}
		f.src.Set(2, layout{Dirs: []string{"s"}, Files: map[string]string{"s/two": "2", "x": "x2"}})
		f.tree.FailPath("t/x", errors.New("permission denied"))
		st, err := f.update()
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "only row 2 fails: %v", st.Failures)
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
	})
}

// TestRegressionNestDropAfterRemakeWritesOnce: a row dropping a directory
// another row remade in an earlier batch does not have that row write its
// files again.
func TestRegressionNestDropAfterRemakeWritesOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.mustUpdate()
		f.src.Set(0, layout{Dirs: []string{"s"}, Files: map[string]string{"s/zero": "0"}})
		f.mustUpdate()
		f.src.Set(0, layout{Dirs: []string{"s"}, Files: map[string]string{"s/zero": "0"}, Epochs: map[string]int{"s": 1}})
		f.src.Set(1, layout{Files: map[string]string{"other": "o"}})
		st, err := f.updateLast(1)
		require.NoError(t, err)
		require.Zero(t, st.Failed(), "%v", st.Failures)
		f.expect()
		require.Empty(t, writtenTwice(f.tree.Log()), "log %v", f.tree.Log())
	})
}

// TestRegressionNestRemadeSharedChildWrittenOnce: a shared file in a
// directory remade once in an update is written once, not once per batch.
func TestRegressionNestRemadeSharedChildWrittenOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		for i := range 4 {
			f.src.Set(i, layout{Dirs: []string{"s", fmt.Sprintf("s/r%d", i)}, Files: map[string]string{fmt.Sprintf("s/r%d/f", i): "F", "s/f": "shared"}})
		}
		f.mustUpdate()
		f.epoch = 1
		f.mustUpdate()
		f.expect()
		require.Empty(t, writtenTwice(f.tree.Log()), "log %v", f.tree.Log())
	})
}

// TestRegressionNestStagedChildOfAnotherRowsContainer: a row whose write
// in a directory another row wrote was cut short, and which then drops it,
// still knows the directory, and removes its file.
func TestRegressionNestStagedChildOfAnotherRowsContainer(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.src.Set(1, layout{Dirs: []string{"s"}, Files: map[string]string{"s/one": "1"}})
		f.mustUpdate()
		f.src.Set(2, layout{Dirs: []string{"s", "s/r2"}, Files: map[string]string{"s/two": "2", "s/r2/v": "v"}})
		f.opts.Faults = crashAt("before commit")
		_, err := f.update()
		require.ErrorIs(t, err, errCrash)
		f.opts.Faults = tidemark.FaultHooks{}
		f.src.Set(2, layout{Files: map[string]string{"x": "x"}})
		f.mustUpdate()
		f.expect()
		f.mustUpdate()
		require.Empty(t, f.tree.Log())
	})
}

// TestRegressionNestFailedRowsTagBlocksOtherRowsRmdir: a row that fails
// after writing in a directory another row owns keeps that directory when,
// in a later batch, the other row drops it.
func TestRegressionNestFailedRowsTagBlocksOtherRowsRmdir(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		f := newForest(t, backend)
		f.opts.Batch = tidemark.BatchOptions{MaxRows: 1}
		f.src.Set(3, layout{Dirs: []string{"d"}})
		f.mustUpdate()
		f.src.Set(0, layout{Dirs: []string{"d", "d/sub"}, Tags: map[string]string{"d#x": "v"}, Files: map[string]string{"bad": "b"}})
		f.src.Delete(3)
		f.tree.FailPath("t/bad", errors.New("permission denied"))
		st, err := f.updateLast(3)
		require.NoError(t, err)
		require.EqualValues(t, 1, st.Failed(), "only row 0 fails: %v", st.Failures)
		f.tree.Heal()
		f.mustUpdate()
		f.expect()
		f.src.Delete(0)
		f.mustUpdate()
		f.expect()
	})
}
