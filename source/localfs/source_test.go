package localfs_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/localfs"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
	"github.com/tidemark/tidemark/tidemarktype"
)

// write writes files (relative slash paths) under dir.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
}

func list(t *testing.T, s *localfs.Source) []tidemark.Listed[string] {
	t.Helper()
	var out []tidemark.Listed[string]
	for l, err := range s.List(t.Context()) {
		require.NoError(t, err)
		out = append(out, l)
	}
	return out
}

func keys(ls []tidemark.Listed[string]) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Key)
	}
	return out
}

// TestListPatternsAndLinks: include and exclude patterns, ** at any depth,
// mtimes as ordinals, a link inside followed, a link out of the directory
// and a link to a directory left out.
func TestListPatternsAndLinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	write(t, outside, map[string]string{"secret.md": "no"})
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"a.md": "# A", "b.txt": "b", "notes/c.md": "# C", "notes/deep/d.md": "# D",
		"notes/drafts/e.md": "# E", "vendor/x.md": "x", "f.md.bak": "old",
	})
	require.NoError(t, os.Symlink("a.md", filepath.Join(dir, "alias.md")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.md"), filepath.Join(dir, "leak.md")))
	require.NoError(t, os.Symlink("notes", filepath.Join(dir, "loop")))
	mtime := time.Date(2026, 12, 2, 10, 0, 0, 123456000, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "a.md"), mtime, mtime))

	s, err := localfs.New(dir, localfs.Options{Include: []string{"**/*.md"}, Exclude: []string{"notes/drafts/**", "vendor/**"}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	got := list(t, s)
	require.Equal(t, []string{"a.md", "alias.md", "notes/c.md", "notes/deep/d.md"}, keys(got))
	require.GreaterOrEqual(t, got[0].Ordinal, tidemark.Ordinal(mtime.UnixMicro()), "the later of mtime and ctime")

	f, err := s.Get(t.Context(), "notes/c.md")
	require.NoError(t, err)
	require.True(t, f.Exists)
	sum := sha256.Sum256([]byte("# C"))
	require.Equal(t, sum[:], f.Fingerprint)
	b, err := f.Value.ReadAll()
	require.NoError(t, err)
	require.Equal(t, "# C", string(b))
	require.Equal(t, int64(3), f.Value.Size)

	for _, gone := range []string{"leak.md", "../" + filepath.Base(outside) + "/secret.md", "b.txt", "vendor/x.md", "nosuch.md", "notes", "/etc/passwd", "notes/../a.md", ""} {
		f, err := s.Get(t.Context(), gone)
		require.NoError(t, err, gone)
		require.False(t, f.Exists, "%q is no row", gone)
	}

	top, err := localfs.New(dir, localfs.Options{Include: []string{"*.md"}})
	require.NoError(t, err)
	t.Cleanup(func() { top.Close() })
	require.Equal(t, []string{"a.md", "alias.md"}, keys(list(t, top)), "* stays in its directory")

	_, err = localfs.New(dir, localfs.Options{Include: []string{"/abs"}})
	require.ErrorContains(t, err, "must be a relative")
	_, err = localfs.New(filepath.Join(dir, "a.md"), localfs.Options{})
	require.ErrorContains(t, err, "is not a directory")
}

// notes is a flow indexing the .md files of dir into a map, counting the
// files processed.
type notes struct {
	e         *tidemark.Engine
	mu        sync.Mutex
	processed map[string]int
}

// memIndex is an in-memory table of the notes' texts by path.
type memIndex struct{ db *tidemarktest.DB }

func newMemIndex() *memIndex { return &memIndex{db: tidemarktest.NewDB()} }

func (m *memIndex) snapshot() map[string]string {
	out := make(map[string]string)
	for k, v := range m.db.Rows("index") {
		out[string(k)] = v.(string)
	}
	return out
}

func (m *memIndex) get(key string) string { return m.snapshot()[key] }

func openNotes(t *testing.T, dir, state string, idx *memIndex) (*notes, *localfs.Source) {
	t.Helper()
	s, err := localfs.New(dir, localfs.Options{Include: []string{"**/*.md"}, Debounce: 30 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	n := &notes{processed: make(map[string]int)}
	f := tidemark.NewFlow("Notes")
	tgt := tidemarktest.Table[string](f, idx.db, "index")
	tidemark.ForEach(tidemark.AddSource(f, "notes", s), func(_ context.Context, r *tidemark.Row, key string, file localfs.File) error {
		b, err := file.ReadAll()
		if err != nil {
			return err
		}
		n.mu.Lock()
		n.processed[key]++
		n.mu.Unlock()
		tgt.Declare(r, target.Key(key), string(b))
		return nil
	})
	n.e, err = tidemark.Open(t.Context(), f, tidemark.Options{StateStore: state})
	require.NoError(t, err)
	t.Cleanup(func() { n.e.Close() })
	return n, s
}

// TestIncremental: a second update reads nothing; a file touched without
// a change is fetched (its mtime moved) but not processed; an edit is
// processed; a removal deletes.
func TestIncremental(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "one", "b.md": "two", "sub/c.md": "three"})
	idx := newMemIndex()
	n, _ := openNotes(t, dir, filepath.Join(t.TempDir(), "state.db"), idx)
	ctx := t.Context()

	st, err := n.e.Update(ctx, tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, st.Sources["notes"].Added)
	require.Equal(t, map[string]string{"a.md": "one", "b.md": "two", "sub/c.md": "three"}, idx.snapshot())

	st, err = n.e.Update(ctx, tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Zero(t, st.Sources["notes"].Fetched, "nothing changed: nothing read")

	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "a.md"), later, later))
	write(t, dir, map[string]string{"b.md": "TWO"})
	require.NoError(t, os.Remove(filepath.Join(dir, "sub/c.md")))
	st, err = n.e.Update(ctx, tidemark.UpdateOptions{Confirm: func(context.Context, tidemarktype.Deletions) (bool, error) { return true, nil }})
	require.NoError(t, err)
	s := st.Sources["notes"]
	require.EqualValues(t, 2, s.Fetched, "a.md (touched) and b.md (edited)")
	require.EqualValues(t, 1, s.Updated)
	require.EqualValues(t, 1, s.Deleted)
	require.Equal(t, 1, n.processed["a.md"], "a touched file is not processed again")
	require.Equal(t, 2, n.processed["b.md"])
	require.Equal(t, map[string]string{"a.md": "one", "b.md": "TWO"}, idx.snapshot())
}

// TestLiveLatency: with live mode running (its periodic listing an hour
// away), each of 20 edits reaches the target through the change stream
// within 1s; the median is logged.
func TestLiveLatency(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "v0"})
	idx := newMemIndex()
	n, _ := openNotes(t, dir, filepath.Join(t.TempDir(), "state.db"), idx)
	ctx := t.Context()
	stop := make(chan struct{})
	done := make(chan error, 1)
	first := make(chan struct{})
	go func() {
		var once bool
		done <- n.e.Live(ctx, tidemark.LiveOptions{Refresh: time.Hour, Stop: stop, OnPass: func(tidemark.Pass) {
			if !once {
				once = true
				close(first)
			}
		}})
	}()
	<-first
	var lat []time.Duration
	for i := 1; i <= 20; i++ {
		want := "v" + string(rune('a'+i))
		start := time.Now()
		write(t, dir, map[string]string{"a.md": want})
		require.Eventually(t, func() bool { return idx.get("a.md") == want }, 5*time.Second, time.Millisecond, "edit %d", i)
		lat = append(lat, time.Since(start))
	}
	close(stop)
	require.NoError(t, <-done)
	slices.Sort(lat)
	median := (lat[9] + lat[10]) / 2
	t.Logf("edit → target: median %s, min %s, max %s, over %d edits (debounce 30ms)", median.Round(time.Millisecond), lat[0].Round(time.Millisecond), lat[19].Round(time.Millisecond), len(lat))
	require.Less(t, lat[len(lat)-1], time.Second, "every edit within 1s")
}

// TestWatchNewDirectoryAndRemoval: files of a directory created while the
// watch runs are announced, a removed file is announced with no ordinal,
// and a file the patterns leave out is not announced.
func TestWatchNewDirectoryAndRemoval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "a"})
	s, err := localfs.New(dir, localfs.Options{Include: []string{"**/*.md"}, Debounce: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	changes := make(chan tidemark.Change[string], 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(c tidemark.Change[string]) error { changes <- c; return nil })
	}()
	next := func() tidemark.Change[string] {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no change announced")
		}
		return tidemark.Change[string]{}
	}
	time.Sleep(50 * time.Millisecond) // the watch is set up
	write(t, dir, map[string]string{"b.txt": "left out", "sub/deeper/x.md": "x"})
	c := next()
	require.Equal(t, "sub/deeper/x.md", c.Key)
	require.Positive(t, int64(c.Ordinal))

	require.NoError(t, os.Remove(filepath.Join(dir, "a.md")))
	c = next()
	require.Equal(t, tidemark.Change[string]{Key: "a.md", Ordinal: tidemark.NoOrdinal}, c)
	select {
	case c := <-changes:
		t.Fatalf("unexpected change %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
