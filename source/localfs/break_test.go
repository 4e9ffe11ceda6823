package localfs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/localfs"
)

// TestBreakListedKeyGetSaysGone: a file whose name holds a backslash or
// bytes that are not UTF-8 (both legal on Linux) was listed, but Get said
// the key is gone: the row was never indexed, and a file renamed to such a
// name was deleted from the targets while still there. Now a backslash is
// a character like another, and a name that is not UTF-8 is never a row:
// every key listed is one Get finds.
func TestBreakListedKeyGetSaysGone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{`back\slash.md`, "caf\xe9.md"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("text"), 0o644))
	}
	s, err := localfs.New(dir, localfs.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	listed := keys(list(t, s))
	require.Equal(t, []string{`back\slash.md`}, listed, "a name that is not UTF-8 is no key")
	var gone []string
	for _, key := range listed {
		f, err := s.Get(t.Context(), key)
		require.NoError(t, err)
		if !f.Exists {
			gone = append(gone, key)
		}
	}
	require.Empty(t, gone, "List yields these keys but Get says they are gone")
}

// TestBreakMtimeBackwards: a file replaced by one with an older mtime
// (cp -p, mv of a backup, tar x, rsync -t, git stash pop of an old
// checkout) has new bytes, but its listed ordinal is below the stored one:
// the engine skips the Get, and the target keeps the old text for ever.
func TestBreakMtimeBackwards(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, map[string]string{"a.md": "current"})
	idx := newMemIndex()
	n, _ := openNotes(t, dir, filepath.Join(t.TempDir(), "state.db"), idx)
	ctx := t.Context()
	_, err := n.e.Update(ctx, tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, "current", idx.get("a.md"))

	// Restore last week's version, keeping its mtime (cp -p backup/a.md .).
	backup := filepath.Join(t.TempDir(), "a.md")
	require.NoError(t, os.WriteFile(backup, []byte("restored from backup"), 0o644))
	old := time.Now().Add(-7 * 24 * time.Hour)
	require.NoError(t, os.Chtimes(backup, old, old))
	require.NoError(t, os.Rename(backup, filepath.Join(dir, "a.md")))

	for range 2 {
		_, err = n.e.Update(ctx, tidemark.UpdateOptions{})
		require.NoError(t, err)
	}
	require.Equal(t, "restored from backup", idx.get("a.md"), "the file's bytes changed; the target must follow")
}

// TestBreakUnreadableDirectoryShortListing: a subdirectory that cannot be
// read (its mode changed by a deploy, a backup tool, a umask mistake) is
// skipped with a warning, and the listing ends without error: every file
// under it is deleted from the targets although nothing was removed.
// Root reads everything, so the listing runs in a child process as nobody.
func TestBreakUnreadableDirectoryShortListing(t *testing.T) {
	if dir := os.Getenv("LOCALFS_BREAK_CHILD_DIR"); dir != "" {
		s, err := localfs.New(dir, localfs.Options{})
		require.NoError(t, err)
		defer s.Close()
		require.NoError(t, os.Chmod(filepath.Join(dir, "sub"), 0o000))
		var got []string
		var lerr error
		for l, err := range s.List(context.Background()) {
			if err != nil {
				lerr = err
				break
			}
			got = append(got, l.Key)
		}
		t.Logf("listed %q, error %v", got, lerr)
		if lerr == nil {
			require.Contains(t, got, "sub/b.md", "a listing without error must name every file")
		}
		return
	}
	base, err := os.MkdirTemp("", "localfs-break")
	require.NoError(t, err)
	t.Cleanup(func() { os.Chmod(filepath.Join(base, "dir", "sub"), 0o755); os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	dir := filepath.Join(base, "dir")
	write(t, dir, map[string]string{"a.md": "a", "sub/b.md": "b"})
	exe, err := os.Executable()
	require.NoError(t, err)
	bin := filepath.Join(base, "test.bin")
	data, err := os.ReadFile(exe)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "-test.run=^TestBreakUnreadableDirectoryShortListing$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCALFS_BREAK_CHILD_DIR="+dir)
	if os.Getuid() == 0 {
		for _, p := range []string{dir, filepath.Join(dir, "a.md"), filepath.Join(dir, "sub"), filepath.Join(dir, "sub", "b.md")} {
			require.NoError(t, os.Chown(p, 65534, 65534))
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	require.NoError(t, err, "the child's listing")
}

// TestBreakGetFIFOHangs: a named pipe where a file was (mkfifo, or a
// file replaced by one between the listing and the Get; the watcher
// announces its creation) makes Get block in open(2) for ever, deaf to
// its context: the update or live pass never ends.
func TestBreakGetFIFOHangs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "x.md"), 0o644))
	s, err := localfs.New(dir, localfs.Options{})
	require.NoError(t, err)
	t.Cleanup(func() {
		// Unblock the stuck open so the test binary can exit.
		if w, err := os.OpenFile(filepath.Join(dir, "x.md"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		s.Close()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, "x.md")
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Get of a FIFO is still blocked 1.8s after its context ended")
	}
}

// TestBreakWatchRenamedDirectory: after `mv d e`, a file edited in e/sub
// is announced under its old path d/sub (fsnotify keeps the old path of
// the subdirectory's watch, and Watch's Add of e/sub gets that watch
// back): the edit of e/sub/x.md never reaches the targets in live mode,
// and a change of a key that does not exist is announced instead.
func TestBreakWatchRenamedDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, map[string]string{"d/sub/x.md": "x"})
	s, err := localfs.New(dir, localfs.Options{Include: []string{"**/*.md"}, Debounce: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	changes := make(chan tidemark.Change[string], 64)
	go s.Watch(ctx, func(c tidemark.Change[string]) error { changes <- c; return nil })
	time.Sleep(100 * time.Millisecond) // the watch is set up
	require.NoError(t, os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "e")))
	time.Sleep(300 * time.Millisecond) // the rename's announcements
	for len(changes) > 0 {
		t.Logf("after the rename: %+v", <-changes)
	}
	write(t, dir, map[string]string{"e/sub/x.md": "edited"})
	var got []string
	deadline := time.After(2 * time.Second)
	for {
		select {
		case c := <-changes:
			got = append(got, c.Key)
			if c.Key == "e/sub/x.md" {
				return
			}
		case <-deadline:
			t.Fatalf("the edit of e/sub/x.md was announced as %q", got)
		}
	}
}
