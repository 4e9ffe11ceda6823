package localfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark"
)

// DefaultDebounce is Options.Debounce's default.
const DefaultDebounce = 100 * time.Millisecond

// Options configure a Source.
type Options struct {
	// Include lists the patterns of the files listed; by default every
	// file ("**").
	Include []string
	// Exclude lists patterns of files left out, even if included.
	Exclude []string
	// Debounce is how long a file's events must be quiet before the change
	// stream announces it: an editor's save is several events. Default
	// DefaultDebounce.
	Debounce time.Duration
	// Logger receives a warning for each entry the listing skips (a link
	// out of the directory, an unreadable directory); by default nothing
	// is logged.
	Logger *slog.Logger
}

// File is a row's value: a regular file of the directory.
type File struct {
	// Path is the file's key: its path relative to the directory, with
	// slashes.
	Path    string
	Size    int64
	ModTime time.Time
	root    *os.Root
}

// Open opens the file for reading, inside the directory.
func (f File) Open() (io.ReadCloser, error) {
	if f.root == nil {
		return nil, errors.New("localfs: the File belongs to no Source")
	}
	return f.root.Open(filepath.FromSlash(f.Path))
}

// ReadAll reads the whole file.
func (f File) ReadAll() ([]byte, error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Source lists and reads the files of a directory. Close releases it.
type Source struct {
	dir      string // absolute
	root     *os.Root
	include  []pattern
	exclude  []pattern
	debounce time.Duration
	log      *slog.Logger
	desc     map[string]string
}

var (
	_ tidemark.Source[string, File] = (*Source)(nil)
	_ tidemark.Watcher[string]      = (*Source)(nil)
	_ tidemark.OptionsDescriber     = (*Source)(nil)
)

// New returns a Source over the directory dir.
func New(dir string, o Options) (*Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("localfs: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("localfs: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("localfs: %s is not a directory", dir)
	}
	s := &Source{dir: abs, debounce: o.Debounce, log: o.Logger}
	if s.debounce <= 0 {
		s.debounce = DefaultDebounce
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if len(o.Include) == 0 {
		o.Include = []string{"**"}
	}
	for _, list := range []struct {
		in  []string
		out *[]pattern
	}{{o.Include, &s.include}, {o.Exclude, &s.exclude}} {
		for _, p := range list.in {
			pat, err := parsePattern(p)
			if err != nil {
				return nil, err
			}
			*list.out = append(*list.out, pat)
		}
	}
	s.desc = map[string]string{"dir": abs, "include": strings.Join(o.Include, ","), "exclude": strings.Join(o.Exclude, ",")}
	if s.root, err = os.OpenRoot(abs); err != nil {
		return nil, fmt.Errorf("localfs: %w", err)
	}
	return s, nil
}

// Close releases the directory.
func (s *Source) Close() error { return s.root.Close() }

// DescribeOptions implements tidemark.OptionsDescriber: a changed
// directory or pattern asks before deleting what it leaves out.
func (s *Source) DescribeOptions() map[string]string { return s.desc }

// ProvidesOrdinal says the listed mtimes are ordinals.
func (s *Source) ProvidesOrdinal() bool { return true }

// matches reports whether the file at the relative slash path name is a
// row.
func (s *Source) matches(name string) bool {
	in := false
	for _, p := range s.include {
		if p.match(name) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range s.exclude {
		if p.match(name) {
			return false
		}
	}
	return true
}

// mayHold reports whether the walk enters the directory dir.
func (s *Source) mayHold(dir string) bool {
	for _, p := range s.exclude {
		if len(p) > 0 && p[len(p)-1] == "**" && pattern(p[:len(p)-1]).match(dir) {
			return false // everything under it is excluded
		}
	}
	for _, p := range s.include {
		if p.mayHold(dir) {
			return true
		}
	}
	return false
}

// List walks the directory, yielding each file that matches with its mtime
// in microseconds as ordinal, in lexical order. An entry it cannot read is
// skipped with a warning (a link out of the directory, a file removed
// meanwhile); the directory itself failing is the listing's error.
func (s *Source) List(ctx context.Context) iter.Seq2[tidemark.Listed[string], error] {
	return func(yield func(tidemark.Listed[string], error) bool) {
		stopped := errors.New("stopped")
		err := fs.WalkDir(s.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && name != "." {
					return nil // removed while listed: gone
				}
				// An unreadable directory ends the listing as
				// incomplete: what is under it must not be deleted.
				return err
			}
			if !utf8.ValidString(name) {
				// A key is text: such a file is never a row, in the
				// listing as in Get.
				s.log.WarnContext(ctx, "localfs: skipping a file whose name is not UTF-8", "path", strings.ToValidUTF8(name, "\ufffd"))
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				if name != "." && !s.mayHold(name) {
					return fs.SkipDir
				}
				return nil
			}
			if !s.matches(name) {
				return nil
			}
			fi, err := s.stat(name)
			if err != nil {
				s.log.WarnContext(ctx, "localfs: skipping a file", "path", name, "err", err)
				return nil
			}
			if fi == nil {
				return nil
			}
			if !yield(tidemark.Listed[string]{Key: name, Ordinal: ordinalOf(fi)}, nil) {
				return stopped
			}
			return nil
		})
		if err != nil && err != stopped {
			yield(tidemark.Listed[string]{}, fmt.Errorf("localfs: listing %s: %w", s.dir, err))
		}
	}
}

// stat returns the file info of a regular file, following a symbolic link
// inside the directory; nil for anything else (a directory, a device, a
// link to a directory), and an error for a link out of the directory.
func (s *Source) stat(name string) (fs.FileInfo, error) {
	fi, err := s.root.Stat(filepath.FromSlash(name)) // follows links, never out
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	return fi, nil
}

// Get reads the file key: its size, mtime (as the ordinal) and the SHA-256
// of its bytes (as the fingerprint), streamed. A key that is no file of
// the directory, or that the patterns leave out, is gone.
func (s *Source) Get(ctx context.Context, key string) (tidemark.Fetched[File], error) {
	if !fs.ValidPath(key) || key == "." || !utf8.ValidString(key) || !s.matches(key) {
		return tidemark.Fetched[File]{}, nil
	}
	name := filepath.FromSlash(key)
	// Only a regular file is opened: opening a named pipe would block.
	if fi, err := s.root.Stat(name); err == nil && !fi.Mode().IsRegular() {
		return tidemark.Fetched[File]{}, nil
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tidemark.Fetched[File]{}, nil
	case err != nil:
		var perr *fs.PathError
		if errors.As(err, &perr) && strings.Contains(perr.Err.Error(), "escapes") {
			return tidemark.Fetched[File]{}, nil // a link out of the directory: not a row
		}
		return tidemark.Fetched[File]{}, fmt.Errorf("localfs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return tidemark.Fetched[File]{}, fmt.Errorf("localfs: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return tidemark.Fetched[File]{}, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return tidemark.Fetched[File]{}, fmt.Errorf("localfs: reading %s: %w", key, err)
	}
	return tidemark.Fetched[File]{
		Exists:      true,
		Value:       File{Path: key, Size: fi.Size(), ModTime: fi.ModTime(), root: s.root},
		Ordinal:     ordinalOf(fi),
		Fingerprint: h.Sum(nil),
	}, nil
}

// ctxReader stops reading once ctx ends: a huge file's hashing gives way
// to a cancelled update.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
