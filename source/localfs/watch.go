package localfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tidemark/tidemark"
)

// Watch implements tidemark.Watcher: it announces each file of the
// directory that is created, written, removed or renamed, once its events
// have been quiet for Options.Debounce, with its mtime as ordinal (none
// when it is gone). It watches every directory of the tree that the
// patterns may reach into, and those created while it runs. It returns
// when ctx ends, or when the event stream fails (its queue overflowed):
// live mode restarts it, and its periodic listing catches what was missed.
func (s *Source) Watch(ctx context.Context, notify func(tidemark.Change[string]) error) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("localfs: watching %s: %w", s.dir, err)
	}
	defer w.Close()
	pending := make(map[string]time.Time)
	// addTree watches the directory rel and those under it; with announce,
	// it announces the files in them too (a directory moved in whole).
	addTree := func(rel string, announce bool) error {
		return fs.WalkDir(s.root.FS(), rel, func(name string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				if name == rel {
					return err
				}
				return nil // gone meanwhile, or unreadable: the listing says so
			case d.IsDir():
				if name != "." && !s.mayHold(name) {
					return fs.SkipDir
				}
				if err := w.Add(filepath.Join(s.dir, filepath.FromSlash(name))); err != nil {
					return err
				}
			case announce && s.matches(name):
				pending[name] = time.Now()
			}
			return nil
		})
	}
	if err := addTree(".", false); err != nil {
		return fmt.Errorf("localfs: watching %s: %w", s.dir, err)
	}
	tick := time.NewTicker(max(s.debounce/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("localfs: the watch ended")
			}
			return fmt.Errorf("localfs: watching %s: %w", s.dir, err)
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("localfs: the watch ended")
			}
			rel, err := filepath.Rel(s.dir, ev.Name)
			if err != nil {
				continue
			}
			rel = filepath.ToSlash(rel)
			if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
				continue
			}
			if ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
				// A directory moved or removed: its watches would go on
				// reporting under its old path. They go; the new path's
				// Create watches it again, and the listing finds what
				// left with the old one.
				for _, p := range w.WatchList() {
					if p == ev.Name || strings.HasPrefix(p, ev.Name+string(filepath.Separator)) {
						_ = w.Remove(p)
					}
				}
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := s.root.Lstat(filepath.FromSlash(rel)); err == nil && fi.IsDir() {
					if s.mayHold(rel) {
						_ = addTree(rel, true) // what it misses, the listing finds
					}
					continue
				}
			}
			if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write|fsnotify.Create|fsnotify.Remove|fsnotify.Rename) {
				continue // the bytes did not move
			}
			if s.matches(rel) && path.Clean(rel) == rel {
				pending[rel] = time.Now()
			}
		case now := <-tick.C:
			for key, at := range pending {
				if now.Sub(at) < s.debounce {
					continue
				}
				delete(pending, key)
				ord := tidemark.NoOrdinal
				if fi, err := s.root.Stat(filepath.FromSlash(key)); err == nil && fi.Mode().IsRegular() {
					ord = ordinalOf(fi)
				}
				if err := notify(tidemark.Change[string]{Key: key, Ordinal: ord}); err != nil {
					return err
				}
			}
		}
	}
}
