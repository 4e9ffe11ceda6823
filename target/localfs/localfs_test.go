package localfs_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/target/localfs"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// files is a source row of the test flows: the files it declares, by name.
type files map[string]string

// fixture is a source, a state store and a directory that outlive the
// engines a test opens one after another, as a real app's would.
type fixture struct {
	t *testing.T
	// base is a scratch directory holding dir and nothing else.
	base string
	// dir is the target directory; it does not exist at first.
	dir   string
	opts  tidemark.Options
	src   *tidemarktest.Source[string, files]
	ops   *opCounter
	logic string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	return &fixture{
		t:    t,
		base: base,
		dir:  filepath.Join(base, "out"),
		opts: tidemark.Options{
			StateStore: filepath.Join(t.TempDir(), "state.db"),
			Retry:      tidemark.RetryPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, MaxAttempts: 2},
		},
		src:   tidemarktest.NewSource[string, files](),
		ops:   &opCounter{},
		logic: "1",
	}
}

// declareAll is the standard processing function: every file of the row.
func declareAll(site *tidemark.Target[localfs.File]) tidemark.ProcessFunc[string, files] {
	return func(_ context.Context, r *tidemark.Row, _ string, fs files) error {
		for name, content := range fs {
			site.Declare(r, target.Key(name), localfs.File{Content: []byte(content)})
		}
		return nil
	}
}

// flow returns the standard flow writing to dir, counting file operations
// unless opts set other hooks.
func (f *fixture) flow(dir string, opts ...localfs.Option) *tidemark.Flow {
	fl := tidemark.NewFlow("Site", tidemark.LogicVersion(f.logic))
	site := localfs.Directory(fl, dir, append([]localfs.Option{localfs.WithHooks(f.ops.hook, nil)}, opts...)...)
	tidemark.ForEach(tidemark.AddSource(fl, "pages", f.src, tidemark.MaxInFlight(4)), declareAll(site))
	return fl
}

// run opens an engine on fl, runs one update and closes the engine.
func (f *fixture) run(fl *tidemark.Flow, uo tidemark.UpdateOptions) (*tidemarktype.UpdateStats, error) {
	f.t.Helper()
	e, err := tidemark.Open(f.t.Context(), fl, f.opts)
	require.NoError(f.t, err)
	defer func() { require.NoError(f.t, e.Close()) }()
	return e.Update(f.t.Context(), uo)
}

// update runs one update of the standard flow, which must succeed with no
// failed row. Deletions are confirmed: the tests delete every row on
// purpose.
func (f *fixture) update(opts ...localfs.Option) *tidemarktype.UpdateStats {
	f.t.Helper()
	confirm := func(context.Context, tidemarktype.Deletions) (bool, error) { return true, nil }
	st, err := f.run(f.flow(f.dir, opts...), tidemark.UpdateOptions{Confirm: confirm})
	require.NoError(f.t, err)
	require.Empty(f.t, st.Failures)
	return st
}

// opCounter counts file operations by "op name".
type opCounter struct {
	mu  sync.Mutex
	ops map[string]int
}

func (c *opCounter) hook(op, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ops == nil {
		c.ops = make(map[string]int)
	}
	c.ops[op+" "+name]++
	return nil
}

// take returns the operations counted and resets the count.
func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = nil
	if ops == nil {
		ops = map[string]int{}
	}
	return ops
}

// tree returns what dir holds, by slash-separated path: a file's content,
// "/" for a directory, "-> target" for a symbolic link. The marker file at
// the top is left out; see hasMarker.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "." || rel == localfs.MarkerFile:
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + link
		case d.IsDir():
			out[rel] = "/"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

func hasMarker(t *testing.T, dir string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(dir, localfs.MarkerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	require.NoError(t, err)
	return true
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o755))
	require.NoError(t, os.WriteFile(name, []byte(content), 0o644))
}

func stat(t *testing.T, name string) os.FileInfo {
	t.Helper()
	fi, err := os.Lstat(name)
	require.NoError(t, err)
	return fi
}

func rowErrorKeys(st *tidemarktype.UpdateStats) []string {
	var keys []string
	for _, e := range st.Failures {
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	return keys
}

// A first update creates the directory with its marker and writes every
// file; a later one rewrites changed files only.
func TestCreateAndUpdate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.src.Set("a", files{"a.html": "A1"})
	f.src.Set("b", files{"sub/b.html": "B1"})

	st := f.update()
	require.Equal(t, map[string]string{"a.html": "A1", "sub": "/", "sub/b.html": "B1"}, tree(t, f.dir))
	require.True(t, hasMarker(t, f.dir))
	require.Equal(t, map[string]int{"write a.html": 1, "write sub/b.html": 1}, f.ops.take())
	require.Equal(t, tidemarktype.TargetStats{Upserts: 2}, st.Targets["localfs:"+f.dir])
	require.Equal(t, os.FileMode(0o644), stat(t, filepath.Join(f.dir, "a.html")).Mode().Perm())

	before := stat(t, filepath.Join(f.dir, "sub", "b.html"))
	f.src.Set("a", files{"a.html": "A2"})
	// b is processed again, but its one existing file did not change.
	f.src.Set("b", files{"sub/b.html": "B1", "sub/c.html": "C1"})
	f.update()
	require.Equal(t, map[string]string{"a.html": "A2", "sub": "/", "sub/b.html": "B1", "sub/c.html": "C1"}, tree(t, f.dir))
	require.Equal(t, map[string]int{"write a.html": 1, "write sub/c.html": 1}, f.ops.take())
	after := stat(t, filepath.Join(f.dir, "sub", "b.html"))
	require.True(t, os.SameFile(before, after), "an unchanged file must not be replaced")
	require.Equal(t, before.ModTime(), after.ModTime())

	// Reprocessing everything still writes nothing unchanged; a reexport
	// writes everything.
	_, err := f.run(f.flow(f.dir), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
	require.NoError(t, err)
	require.Empty(t, f.ops.take())
	_, err = f.run(f.flow(f.dir), tidemark.UpdateOptions{Mode: tidemark.ModeReexport})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"write a.html": 1, "write sub/b.html": 1, "write sub/c.html": 1}, f.ops.take())
}

// The key of a directory is its absolute, cleaned path.
func TestDirectoryKey(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	fl := tidemark.NewFlow("Site")
	site := localfs.Directory(fl, filepath.Join(base, "x", "..", "out")+string(filepath.Separator))
	require.Equal(t, target.Key("localfs:"+filepath.Join(base, "out")), site.Key())
}

// A directory with no path is a mistake Open reports.
func TestEmptyPathFailsOpen(t *testing.T) {
	t.Parallel()
	fl := tidemark.NewFlow("Site")
	site := localfs.Directory(fl, "")
	tidemark.ForEach(tidemark.AddSource(fl, "pages", tidemarktest.NewSource[string, files]()), declareAll(site))
	_, err := tidemark.Open(t.Context(), fl, tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")})
	require.ErrorContains(t, err, "localfs: a directory target needs a path")
}

// A preview writes nothing, not even the directory.
func TestPreviewWritesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.src.Set("a", files{"a.html": "A"})
	st, err := f.run(f.flow(f.dir), tidemark.UpdateOptions{Preview: true})
	require.NoError(t, err)
	require.Len(t, st.Setup, 1)
	require.Equal(t, "create", st.Setup[0].Change)
	require.NoDirExists(t, f.dir)
	require.Empty(t, f.ops.take())
}

// A source row deleted takes its files with it, and the subdirectories they
// leave empty, never the directory itself.
func TestDeleteRemovesEmptyParents(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.src.Set("x", files{"deep/er/x.html": "X"})
	f.src.Set("y", files{"deep/y.html": "Y"})
	f.update()
	require.Equal(t, map[string]string{"deep": "/", "deep/er": "/", "deep/er/x.html": "X", "deep/y.html": "Y"}, tree(t, f.dir))
	f.ops.take()

	f.src.Delete("x")
	st := f.update()
	require.Equal(t, int64(1), st.Sources["pages"].Deleted)
	require.Equal(t, map[string]string{"deep": "/", "deep/y.html": "Y"}, tree(t, f.dir))
	require.Equal(t, map[string]int{"delete deep/er/x.html": 1}, f.ops.take())

	f.src.Delete("y")
	f.update()
	require.Empty(t, tree(t, f.dir))
	require.DirExists(t, f.dir)
	require.True(t, hasMarker(t, f.dir))

	// A file already gone is no error.
	f.src.Set("z", files{"z/z.html": "Z"})
	f.update()
	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "z")))
	f.src.Delete("z")
	f.update()
	require.Empty(t, tree(t, f.dir))
}

// Files the processing function no longer declares are deleted.
func TestStaleFilesRemoved(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.src.Set("a", files{"a": "A"})
	f.src.Set("b", files{"b": "B"})
	flow := func(logic string, withText bool) *tidemark.Flow {
		fl := tidemark.NewFlow("Site", tidemark.LogicVersion(logic))
		site := localfs.Directory(fl, f.dir, localfs.WithHooks(f.ops.hook, nil))
		tidemark.ForEach(tidemark.AddSource(fl, "pages", f.src), func(_ context.Context, r *tidemark.Row, key string, fs files) error {
			for name, content := range fs {
				site.Declare(r, target.Key("html/"+name+".html"), localfs.File{Content: []byte("<p>" + content)})
				if withText {
					site.Declare(r, target.Key("text/"+name+".txt"), localfs.File{Content: []byte(content)})
				}
			}
			return nil
		})
		return fl
	}
	_, err := f.run(flow("1", true), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"html": "/", "html/a.html": "<p>A", "html/b.html": "<p>B",
		"text": "/", "text/a.txt": "A", "text/b.txt": "B",
	}, tree(t, f.dir))
	f.ops.take()

	st, err := f.run(flow("2", false), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Sources["pages"].Reprocessed)
	require.Equal(t, map[string]string{"html": "/", "html/a.html": "<p>A", "html/b.html": "<p>B"}, tree(t, f.dir))
	require.Equal(t, map[string]int{"delete text/a.txt": 1, "delete text/b.txt": 1}, f.ops.take())
}

// A file renamed is written under its new name and deleted under the old
// one, in the same batch; a file may become a directory and back.
func TestRename(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.src.Set("a", files{"old/name.html": "N"})
	f.update()

	f.src.Set("a", files{"new/name.html": "N"})
	f.update()
	require.Equal(t, map[string]string{"new": "/", "new/name.html": "N"}, tree(t, f.dir))
	require.Equal(t, map[string]int{"write old/name.html": 1, "delete old/name.html": 1, "write new/name.html": 1}, f.ops.take())

	f.src.Set("a", files{"new": "file"})
	f.update()
	require.Equal(t, map[string]string{"new": "file"}, tree(t, f.dir))

	f.src.Set("a", files{"new/name.html": "dir again"})
	f.update()
	require.Equal(t, map[string]string{"new": "/", "new/name.html": "dir again"}, tree(t, f.dir))
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		name string
		ok   bool
	}{
		"plain":            {name: "index.html", ok: true},
		"nested":           {name: "a/b/c.html", ok: true},
		"dotfile":          {name: ".htaccess", ok: true},
		"dots in name":     {name: "a..b/c...d", ok: true},
		"nested marker":    {name: "sub/" + localfs.MarkerFile, ok: true},
		"unicode":          {name: "café/naïve.html", ok: true},
		"empty":            {name: ""},
		"absolute":         {name: "/etc/passwd"},
		"parent":           {name: "../x"},
		"parent inside":    {name: "a/../b"},
		"parent at end":    {name: "a/.."},
		"only parent":      {name: ".."},
		"dot":              {name: "."},
		"dot element":      {name: "a/./b"},
		"leading dot":      {name: "./a"},
		"empty element":    {name: "a//b"},
		"trailing slash":   {name: "a/"},
		"backslash":        {name: `a\b`},
		"backslash parent": {name: `..\x`},
		"nul":              {name: "a\x00b"},
		"marker":           {name: localfs.MarkerFile},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := localfs.CheckName(tt.name)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, localfs.ErrInvalidName)
			}
		})
	}
}

// A key that is not a local, clean path fails its row only, and nothing is
// written outside the directory.
func TestInvalidNamesFailTheirRowOnly(t *testing.T) {
	t.Parallel()
	f := setup(t)
	bad := map[string]string{
		"bad-abs":       "/tmp/evil",
		"bad-abs-base":  filepath.Join(f.base, "evil"),
		"bad-backslash": `..\evil`,
		"bad-dot":       ".",
		"bad-dotdot":    "../evil",
		"bad-empty":     "",
		"bad-inner":     "a/../../evil",
		"bad-marker":    localfs.MarkerFile,
		"bad-nul":       "evil\x00",
		"bad-slash":     "a/",
	}
	for key, name := range bad {
		f.src.Set(key, files{name: "evil"})
	}
	f.src.Set("good", files{"good.html": "good"})

	st, err := f.run(f.flow(f.dir), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(len(bad)), st.Sources["pages"].Errors)
	var want []string
	for key := range bad {
		want = append(want, fmt.Sprintf("%q", key))
	}
	slices.Sort(want)
	require.Equal(t, want, rowErrorKeys(st))
	for _, e := range st.Failures {
		require.Contains(t, e.Message, "invalid file name")
	}
	require.Equal(t, map[string]string{"good.html": "good"}, tree(t, f.dir))
	entries, err := os.ReadDir(f.base)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the target directory is in its parent")

	// Fixed, the rows go through.
	for key := range bad {
		f.src.Set(key, files{strings.TrimPrefix(key, "bad-") + ".html": "fixed"})
	}
	f.update()
	require.Len(t, tree(t, f.dir), len(bad)+1)
}

// Symbolic links are followed only where they stay in the directory; a key
// naming a link replaces the link, not its target.
func TestSymlinks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	outside := filepath.Join(f.base, "outside")
	writeFile(t, filepath.Join(outside, "secret.txt"), "keep")
	require.NoError(t, os.MkdirAll(filepath.Join(f.dir, "real"), 0o755))
	for link, to := range map[string]string{
		"escape":    filepath.Join("..", "outside"),
		"absolute":  outside,
		"absinside": filepath.Join(f.dir, "real"),
		"leaf.html": filepath.Join("..", "outside", "secret.txt"),
		"inside":    "real",
	} {
		require.NoError(t, os.Symlink(to, filepath.Join(f.dir, link)))
	}
	f.src.Set("escape", files{"escape/evil.html": "evil"})
	f.src.Set("escape-deep", files{"escape/sub/evil.html": "evil"})
	f.src.Set("absolute", files{"absolute/evil.html": "evil"})
	f.src.Set("absinside", files{"absinside/x.html": "x"})
	f.src.Set("leaf", files{"leaf.html": "replaced"})
	f.src.Set("inside", files{"inside/ok.html": "ok"})

	st, err := f.run(f.flow(f.dir), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{`"absinside"`, `"absolute"`, `"escape"`, `"escape-deep"`}, rowErrorKeys(st))
	for _, e := range st.Failures {
		require.Contains(t, e.Message, "localfs: write")
	}
	require.Equal(t, map[string]string{"secret.txt": "keep"}, tree(t, outside))
	require.Equal(t, map[string]string{
		"escape":       "-> " + filepath.Join("..", "outside"),
		"absolute":     "-> " + outside,
		"absinside":    "-> " + filepath.Join(f.dir, "real"),
		"leaf.html":    "replaced",
		"inside":       "-> real",
		"real":         "/",
		"real/ok.html": "ok",
	}, tree(t, f.dir))
	require.False(t, hasMarker(t, f.dir))

	// Deleting through a link removes the file, never the link.
	for _, key := range []string{"escape", "escape-deep", "absolute", "absinside", "inside"} {
		f.src.Delete(key)
	}
	f.update()
	require.Equal(t, "-> real", tree(t, f.dir)["inside"])
	require.NotContains(t, tree(t, f.dir), "real/ok.html")
}

// A write replaces the file by a rename: an existing file is never
// truncated in place, and no temporary file is left behind.
func TestAtomicReplace(t *testing.T) {
	t.Parallel()
	f := setup(t)
	page := filepath.Join(f.dir, "page.html")
	writeFile(t, page, "old")
	link := filepath.Join(f.base, "hardlink")
	require.NoError(t, os.Link(page, link))
	before := stat(t, page)

	f.src.Set("p", files{"page.html": "new"})
	f.update()
	require.Equal(t, map[string]string{"page.html": "new"}, tree(t, f.dir))
	old, err := os.ReadFile(link)
	require.NoError(t, err)
	require.Equal(t, "old", string(old), "the old file must be replaced, not overwritten")
	require.False(t, os.SameFile(before, stat(t, page)))

	for i := range 5 {
		f.src.Set("p", files{"page.html": fmt.Sprint("v", i), "sub/more.html": fmt.Sprint("m", i)})
		f.update(localfs.WithoutSync())
	}
	require.Equal(t, map[string]string{"page.html": "v4", "sub": "/", "sub/more.html": "m4"}, tree(t, f.dir))
}

// A file's mode is part of its state.
func TestMode(t *testing.T) {
	t.Parallel()
	f := setup(t)
	mode := os.FileMode(0o600)
	fl := func() *tidemark.Flow {
		fl := tidemark.NewFlow("Site")
		site := localfs.Directory(fl, f.dir, localfs.WithHooks(f.ops.hook, nil))
		tidemark.ForEach(tidemark.AddSource(fl, "pages", f.src), func(_ context.Context, r *tidemark.Row, _ string, fs files) error {
			for name, content := range fs {
				site.Declare(r, target.Key(name), localfs.File{Content: []byte(content), Mode: mode})
			}
			return nil
		})
		return fl
	}
	f.src.Set("a", files{"a.sh": "echo"})
	_, err := f.run(fl(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), stat(t, filepath.Join(f.dir, "a.sh")).Mode().Perm())
	f.ops.take()

	mode = 0o750
	st, err := f.run(fl(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
	require.NoError(t, err)
	require.Empty(t, st.Failures)
	require.Equal(t, os.FileMode(0o750), stat(t, filepath.Join(f.dir, "a.sh")).Mode().Perm())
	require.Equal(t, map[string]int{"write a.sh": 1}, f.ops.take())

	mode = fs.ModeSetuid | 0o755
	st, err = f.run(fl(), tidemark.UpdateOptions{Mode: tidemark.ModeFullReprocess})
	require.NoError(t, err)
	require.Equal(t, []string{`"a"`}, rowErrorKeys(st))
	require.Equal(t, os.FileMode(0o750), stat(t, filepath.Join(f.dir, "a.sh")).Mode().Perm())
}

// Dropping a directory removes it if Tidemark created it, and leaves it with
// its files otherwise.
func TestDrop(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		// existing makes the directory, with a file of its own, before the
		// first update.
		existing bool
		// drop drops the directory; it returns the new target directory,
		// if any.
		drop func(t *testing.T, f *fixture) string
	}{
		"Engine.Drop":                             {drop: engineDrop},
		"Engine.Drop of an existing directory":    {existing: true, drop: engineDrop},
		"no longer declared":                      {drop: undeclare},
		"no longer declared, existing directory":  {existing: true, drop: undeclare},
		"path changed":                            {drop: moveTo("moved")},
		"path changed from an existing directory": {existing: true, drop: moveTo("moved")},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			if tt.existing {
				writeFile(t, filepath.Join(f.dir, "mine.txt"), "mine")
			}
			f.src.Set("a", files{"a.html": "A", "sub/b.html": "B"})
			f.update()
			require.Equal(t, !tt.existing, hasMarker(t, f.dir))

			moved := tt.drop(t, f)
			if tt.existing {
				require.Equal(t, map[string]string{"mine.txt": "mine", "a.html": "A", "sub": "/", "sub/b.html": "B"}, tree(t, f.dir))
			} else {
				require.NoDirExists(t, f.dir)
				require.DirExists(t, f.base)
			}
			if moved != "" {
				require.Equal(t, map[string]string{"a.html": "A", "sub": "/", "sub/b.html": "B"}, tree(t, moved))
				require.True(t, hasMarker(t, moved))
			}
		})
	}
}

func engineDrop(t *testing.T, f *fixture) string {
	e, err := tidemark.Open(t.Context(), f.flow(f.dir), f.opts)
	require.NoError(t, err)
	defer e.Close()
	changes, err := e.Drop(t.Context())
	require.NoError(t, err)
	require.Len(t, changes, 1)
	require.Equal(t, "drop", changes[0].Change)
	return ""
}

func undeclare(t *testing.T, f *fixture) string {
	fl := tidemark.NewFlow("Site")
	localfs.Register(fl)
	tidemark.ForEach(tidemark.AddSource(fl, "pages", f.src), func(context.Context, *tidemark.Row, string, files) error { return nil })
	st, err := f.run(fl, tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Len(t, st.Setup, 1)
	require.Equal(t, "drop", st.Setup[0].Change)
	return ""
}

func moveTo(name string) func(t *testing.T, f *fixture) string {
	return func(t *testing.T, f *fixture) string {
		moved := filepath.Join(f.base, name)
		st, err := f.run(f.flow(moved), tidemark.UpdateOptions{})
		require.NoError(t, err)
		require.Empty(t, st.Failures)
		return moved
	}
}

// A file the sink cannot write fails its row only; the row is retried
// next update and converges once the cause is gone. Nothing temporary is
// left behind.
func TestFailedWriteRetried(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// A non-empty directory where a file should go: the rename fails.
	writeFile(t, filepath.Join(f.dir, "b.html", "in-the-way"), "x")
	f.src.Set("a", files{"a.html": "A"})
	f.src.Set("b", files{"b.html": "B"})
	f.src.Set("c", files{"c/c.html": "C"})

	st, err := f.run(f.flow(f.dir), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{`"b"`}, rowErrorKeys(st))
	require.Contains(t, st.Failures[0].Message, "b.html")
	require.Equal(t, map[string]string{"a.html": "A", "b.html": "/", "b.html/in-the-way": "x", "c": "/", "c/c.html": "C"}, tree(t, f.dir))

	require.NoError(t, os.RemoveAll(filepath.Join(f.dir, "b.html")))
	st = f.update()
	require.Equal(t, int64(1), st.Sources["pages"].Added)
	require.Equal(t, map[string]string{"a.html": "A", "b.html": "B", "c": "/", "c/c.html": "C"}, tree(t, f.dir))
}

// An update that stops between writing files and committing them (a
// transient fault that outlasts its retries, as a crash would) leaves the
// next update to converge: the directory then holds exactly what the flow
// declares, and the update after that writes nothing.
func TestInterruptedUpdateConverges(t *testing.T) {
	t.Parallel()
	crash := errors.New("simulated crash")
	want := map[string]string{"a.html": "A2", "c2": "/", "c2/c.html": "C1", "d.html": "D1"}
	tests := map[string]struct {
		crashing localfs.Option
		// applied says every file action landed before the crash.
		applied bool
	}{
		"after the writes": {
			crashing: localfs.WithHooks(nil, func() error { return tidemark.Retryable(crash) }),
			applied:  true,
		},
		"amid the writes": {
			crashing: localfs.WithHooks(func(op, name string) error {
				if name == "d.html" {
					return tidemark.Retryable(crash)
				}
				return nil
			}, nil),
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			f.src.Set("a", files{"a.html": "A1"})
			f.src.Set("b", files{"b.html": "B1"})
			f.src.Set("c", files{"c.html": "C1"})
			f.update()

			f.src.Set("a", files{"a.html": "A2"})
			f.src.Delete("b")
			f.src.Set("c", files{"c2/c.html": "C1"})
			f.src.Set("d", files{"d.html": "D1"})
			_, err := f.run(f.flow(f.dir, tt.crashing), tidemark.UpdateOptions{})
			require.ErrorIs(t, err, crash)
			if tt.applied {
				// The changed rows' files were written, but not committed;
				// the deleted row's file goes in the pass after the commits.
				require.Equal(t, map[string]string{"a.html": "A2", "b.html": "B1", "c2": "/", "c2/c.html": "C1", "d.html": "D1"}, tree(t, f.dir))
			} else {
				require.NotContains(t, tree(t, f.dir), "d.html")
			}

			f.update()
			require.Equal(t, want, tree(t, f.dir))
			require.True(t, hasMarker(t, f.dir))
			f.ops.take()
			st := f.update()
			require.Empty(t, f.ops.take())
			require.Equal(t, int64(3), st.Sources["pages"].Unchanged)
		})
	}
}

// The sink applies the files of many rows in one call.
func TestBatchesSpanRows(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var mu sync.Mutex
	var batches int
	count := localfs.WithHooks(nil, func() error {
		mu.Lock()
		defer mu.Unlock()
		batches++
		return nil
	})
	want := make(map[string]string)
	for i := range 50 {
		name := fmt.Sprintf("p/%02d.html", i)
		f.src.Set(fmt.Sprint(i), files{name: fmt.Sprint(i)})
		want[name] = fmt.Sprint(i)
	}
	f.update(count)
	want["p"] = "/"
	require.Equal(t, want, tree(t, f.dir))
	mu.Lock()
	defer mu.Unlock()
	require.Less(t, batches, 50)
	require.Equal(t, slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(tree(t, f.dir))))
}
