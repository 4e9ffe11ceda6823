package localfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// Kind is the kind of the directory targets, as the state store and setup
// plans name it.
const Kind = "localfs.directory"

// MarkerFile is the name of the file Tidemark writes in a directory it
// creates. Only a directory holding it is removed when it is dropped, and no
// key may name it.
const MarkerFile = ".tidemark-directory"

// DefaultMode is the permission of a file whose File.Mode is zero.
const DefaultMode fs.FileMode = 0o644

// dirMode is the permission of the directories Tidemark creates, before the
// umask.
const dirMode fs.FileMode = 0o755

// keyPrefix starts the persistent key of every directory.
const keyPrefix = "localfs:"

// markerContent is what the marker file says.
const markerContent = "This directory was created by Tidemark. It is removed, with everything in it,\n" +
	"when the flow that declares it drops it. Delete this file to keep it.\n"

// ErrInvalidName is matched (with errors.Is) by the error of a key that is
// not a local, clean, slash-separated file name; see the package
// documentation for the rules.
var ErrInvalidName = errors.New("localfs: invalid file name")

// File is the desired state of one file in a directory.
type File struct {
	// Content is the file's whole content.
	Content []byte
	// Mode holds the file's permission bits; zero means DefaultMode. Other
	// bits (a directory, setuid) fail the row.
	Mode fs.FileMode
}

// Option configures a directory target.
type Option func(*options)

type options struct {
	noSync bool
	hooks  hooks
}

// hooks let tests observe and fail file operations.
type hooks struct {
	// beforeFile is called before each write ("write") or deletion
	// ("delete") of a file; an error fails the batch there.
	beforeFile func(op, name string) error
	// afterBatch is called once a batch is applied; an error fails it, as
	// a crash between the writes and their commit would.
	afterBatch func() error
}

// WithoutSync skips syncing files and directories to stable storage. Writes
// stay atomic for readers, but after a power failure the directory may be
// older than what the state store committed (a crash of the process alone
// loses nothing). For output that is cheap to rebuild.
func WithoutSync() Option {
	return func(o *options) { o.noSync = true }
}

// dirSpec is the setup state of a directory, and its tracking record as
// JSON.
type dirSpec struct {
	Path string `json:"path"`
}

// Directory declares the directory dir as a target of f, whose children
// are files keyed by their slash-separated path relative to it. See the
// package documentation for what is created, written and removed.
//
// An empty dir, or one that cannot be made absolute, makes tidemark.Open
// fail for f.
func Directory(f *tidemark.Flow, dir string, opts ...Option) *tidemark.Target[File] {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	h := newDirHandler(o)
	var abs string
	if dir == "" {
		f.AddError(errors.New("localfs: a directory target needs a path"))
	} else if p, err := filepath.Abs(dir); err != nil {
		f.AddError(fmt.Errorf("localfs: directory %q: %w", dir, err))
	} else {
		abs = p
	}
	key := target.Key("")
	if abs != "" {
		key = dirKey(abs)
	}
	return tidemark.DeclareContainer[dirSpec, File](f, Kind, key, h, dirSpec{Path: abs})
}

// Register lets f drop the directories its earlier versions declared when
// it declares no Directory itself any more (a flow that declares one needs
// no call). Without it, such a directory is left, with a warning, when the
// flow stops declaring it, and Engine.Drop refuses to run.
func Register(f *tidemark.Flow) {
	tidemark.RegisterHandler[dirSpec](f, Kind, newDirHandler(options{}))
}

func dirKey(abs string) target.Key { return target.Key(keyPrefix + abs) }

// dirHandler reconciles directories. Its container sink creates and drops
// them and hands out the handler of their files, whose sink writes them.
type dirHandler struct {
	dirSink  *target.ContainerSinkFunc[dirAction]
	fileSink *target.SinkFunc[fileAction]
	opts     options
}

func newDirHandler(o options) *dirHandler {
	h := &dirHandler{opts: o}
	h.dirSink = target.NewContainerSink(h.applyDirs)
	h.fileSink = target.NewSink(h.applyFiles)
	return h
}

// dirOp is what to do to a directory.
type dirOp uint8

const (
	dirKeep   dirOp = iota // unchanged: only hand out the file handler
	dirCreate              // create it if missing
	dirDrop                // remove it if Tidemark created it
)

type dirAction struct {
	op   dirOp
	path string
}

func (a dirAction) String() string {
	switch a.op {
	case dirCreate:
		return "create directory " + a.path
	case dirDrop:
		return "drop directory " + a.path + " (if Tidemark created it)"
	default:
		return "keep directory " + a.path
	}
}

// Reconcile implements target.Handler for directories. The record is the
// spec as JSON; the path is also in the key, which is all a drop needs.
func (h *dirHandler) Reconcile(key target.Key, desired *dirSpec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	if desired == nil {
		p, ok := strings.CutPrefix(string(key), keyPrefix)
		if !ok || !filepath.IsAbs(p) {
			return nil, fmt.Errorf("localfs: %q is not the key of a directory", key)
		}
		if len(prev) == 0 && !prevMayBeMissing {
			return nil, nil
		}
		return &target.Reconciled{Action: target.DoContainer(h.dirSink, dirAction{op: dirDrop, path: p})}, nil
	}
	if desired.Path == "" || !filepath.IsAbs(desired.Path) || key != dirKey(desired.Path) {
		return nil, fmt.Errorf("localfs: directory %q: the path must be absolute and match the key %q", desired.Path, key)
	}
	rec, err := json.Marshal(desired)
	if err != nil {
		return nil, fmt.Errorf("localfs: encoding the spec of %s: %w", desired.Path, err)
	}
	op := dirCreate
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		op = dirKeep
	}
	return &target.Reconciled{Action: target.DoContainer(h.dirSink, dirAction{op: op, path: desired.Path}), Record: rec}, nil
}

// applyDirs applies directory actions. A keep does no I/O: previews apply
// it to get the file handler.
func (h *dirHandler) applyDirs(ctx context.Context, actions []dirAction) ([]target.Erased, error) {
	children := make([]target.Erased, len(actions))
	for i, a := range actions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch a.op {
		case dirDrop:
			if err := dropDir(a.path); err != nil {
				return nil, fmt.Errorf("localfs: dropping directory %s: %w", a.path, err)
			}
			continue
		case dirCreate:
			if err := h.createDir(a.path); err != nil {
				return nil, fmt.Errorf("localfs: creating directory %s: %w", a.path, err)
			}
		}
		children[i] = target.Erase[File](&fileHandler{dir: a.path, sink: h.fileSink})
	}
	return children, nil
}

// createDir makes sure dir exists. When it does not, it is created under a
// temporary name with its marker, then renamed into place, so that it never
// exists without the marker.
func (h *dirHandler) createDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s exists and is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, dirMode); err != nil {
		return err
	}
	tmp, err := mkdirTemp(parent, filepath.Base(dir))
	if err != nil {
		return err
	}
	if err := h.writeMarker(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Made by someone else meanwhile: use it, unmarked.
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	if h.opts.noSync {
		return nil
	}
	return syncDir(parent)
}

func (h *dirHandler) writeMarker(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, MarkerFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, DefaultMode)
	if err != nil {
		return err
	}
	_, err = f.WriteString(markerContent)
	if err == nil && !h.opts.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !h.opts.noSync {
		err = syncDir(dir)
	}
	return err
}

// mkdirTemp creates a new directory in parent named after base, with
// dirMode (os.MkdirTemp would make it private).
func mkdirTemp(parent, base string) (string, error) {
	for range 100 {
		p := filepath.Join(parent, tempName(base))
		err := os.Mkdir(p, dirMode)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free temporary name for %s in %s", base, parent)
}

// tempName returns ".base.tmp-" and a random suffix, base shortened so the
// name stays within common file name limits.
func tempName(base string) string {
	const maxBase = 128
	if len(base) > maxBase {
		base = base[:maxBase]
		for !utf8.ValidString(base) {
			base = base[:len(base)-1]
		}
	}
	return "." + base + ".tmp-" + strconv.FormatUint(rand.Uint64(), 36)
}

// dropDir removes dir and everything in it if it holds the marker, and
// leaves it otherwise.
func dropDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil // not a directory Tidemark made
	}
	m, err := os.Lstat(filepath.Join(dir, MarkerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !m.Mode().IsRegular() {
		return nil
	}
	return os.RemoveAll(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileHandler reconciles the files of one directory; a file's record is the
// fingerprint of its content and effective mode.
type fileHandler struct {
	dir  string
	sink *target.SinkFunc[fileAction]
}

// fileAction writes a file (content non-nil) or deletes it.
type fileAction struct {
	dir     string
	name    string
	content []byte // nil: delete
	mode    fs.FileMode
}

func (a fileAction) String() string {
	if a.content == nil {
		return "delete " + a.name
	}
	return "write " + a.name
}

// fileRecord is what a file's record fingerprints.
type fileRecord struct {
	Content []byte
	Mode    fs.FileMode
}

// Reconcile implements target.Handler for files.
func (h *fileHandler) Reconcile(key target.Key, desired *File, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	name := string(key)
	if err := checkName(name); err != nil {
		return nil, err
	}
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.sink, fileAction{dir: h.dir, name: name})}, nil
	}
	mode := desired.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("localfs: file %q: mode %v has bits other than the permissions", name, desired.Mode)
	}
	content := desired.Content
	if content == nil {
		content = []byte{} // nil means delete in an action
	}
	rec, err := target.Fingerprint(fileRecord{Content: content, Mode: mode})
	if err != nil {
		return nil, fmt.Errorf("localfs: fingerprinting %q: %w", name, err)
	}
	if target.Unchanged(rec, prev, prevMayBeMissing) {
		return nil, nil
	}
	return &target.Reconciled{
		Action: target.Do(h.sink, fileAction{dir: h.dir, name: name, content: content, mode: mode}),
		Record: rec,
	}, nil
}

// checkName reports whether name is a key a file may have.
func checkName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case strings.ContainsRune(name, 0):
		return bad("contains a NUL byte")
	case strings.Contains(name, `\`):
		return bad("contains a backslash; separate directories with /")
	case path.IsAbs(name) || filepath.IsAbs(name):
		return bad("absolute; keys are relative to the directory")
	case slices.Contains(strings.Split(name, "/"), ".."):
		return bad(`has a ".." element`)
	case path.Clean(name) != name || name == ".":
		return bad(`not clean (a "." or empty element, or a trailing slash)`)
	case !filepath.IsLocal(filepath.FromSlash(name)):
		return bad("not a local file name on this system")
	case name == MarkerFile:
		return bad("reserved for Tidemark's marker file")
	}
	return nil
}

// applyFiles applies a batch of file actions, deletions first, then
// writes. Every operation goes through an os.Root on its directory.
func (h *dirHandler) applyFiles(ctx context.Context, actions []fileAction) error {
	b := &batch{opts: h.opts, roots: make(map[string]*os.Root), dirty: make(map[string]map[string]bool)}
	defer b.close()
	ordered := make([]fileAction, 0, len(actions))
	for _, a := range actions {
		if a.content == nil {
			ordered = append(ordered, a)
		}
	}
	for _, a := range actions {
		if a.content != nil {
			ordered = append(ordered, a)
		}
	}
	for _, a := range ordered {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := "write"
		if a.content == nil {
			op = "delete"
		}
		if hook := h.opts.hooks.beforeFile; hook != nil {
			if err := hook(op, a.name); err != nil {
				return fmt.Errorf("localfs: %s %s in %s: %w", op, a.name, a.dir, err)
			}
		}
		var err error
		if a.content == nil {
			err = b.remove(a)
		} else {
			err = b.write(a)
		}
		if err != nil {
			return fmt.Errorf("localfs: %s %s in %s: %w", op, a.name, a.dir, err)
		}
	}
	if err := b.sync(); err != nil {
		return fmt.Errorf("localfs: %w", err)
	}
	if hook := h.opts.hooks.afterBatch; hook != nil {
		if err := hook(); err != nil {
			return fmt.Errorf("localfs: %w", err)
		}
	}
	return nil
}

// batch holds what one applyFiles call opened and touched.
type batch struct {
	opts  options
	roots map[string]*os.Root
	// dirty holds, per directory, the subdirectories (relative, "." for
	// itself) whose entries changed and must be synced.
	dirty map[string]map[string]bool
}

func (b *batch) close() {
	for _, r := range b.roots {
		r.Close()
	}
}

// root returns the os.Root of dir, creating dir if create is set and it is
// missing (removed outside Tidemark since it was set up). It returns nil
// when dir is missing and create is not set.
func (b *batch) root(dir string, create bool) (*os.Root, error) {
	if r, ok := b.roots[dir]; ok {
		return r, nil
	}
	r, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, nil
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, err
		}
		r, err = os.OpenRoot(dir)
	}
	if err != nil {
		return nil, err
	}
	b.roots[dir] = r
	return r, nil
}

func (b *batch) touched(dir, sub string) {
	if b.opts.noSync {
		return
	}
	if b.dirty[dir] == nil {
		b.dirty[dir] = make(map[string]bool)
	}
	b.dirty[dir][sub] = true
}

// write writes a file atomically: a synced temporary file renamed over it.
func (b *batch) write(a fileAction) error {
	r, err := b.root(a.dir, true)
	if err != nil {
		return err
	}
	sub := path.Dir(a.name)
	if sub != "." {
		if err := r.MkdirAll(filepath.FromSlash(sub), dirMode); err != nil {
			return err
		}
	}
	var (
		tmp string
		f   *os.File
	)
	for range 100 {
		tmp = path.Join(sub, tempName(path.Base(a.name)))
		f, err = r.OpenFile(filepath.FromSlash(tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, a.mode)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	_, err = f.Write(a.content)
	if err == nil {
		err = f.Chmod(a.mode) // whatever the umask
	}
	if err == nil && !b.opts.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(filepath.FromSlash(tmp), filepath.FromSlash(a.name))
	}
	if err != nil {
		r.Remove(filepath.FromSlash(tmp))
		return err
	}
	// The new subdirectories' entries in their parents must be synced too.
	for d := sub; ; d = path.Dir(d) {
		b.touched(a.dir, d)
		if d == "." {
			break
		}
	}
	return nil
}

// remove deletes a file, if it exists, and then the subdirectories it
// leaves empty.
func (b *batch) remove(a fileAction) error {
	r, err := b.root(a.dir, false)
	if err != nil || r == nil {
		return err // a missing directory holds no file
	}
	reachable, err := reachable(r, path.Dir(a.name))
	if err != nil {
		return err
	}
	if reachable {
		name := filepath.FromSlash(a.name)
		fi, err := r.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case fi.IsDir():
			// Not a file Tidemark wrote: leave it.
			return nil
		default:
			if err := r.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			b.touched(a.dir, path.Dir(a.name))
		}
	}
	for d := path.Dir(a.name); d != "."; d = path.Dir(d) {
		fi, err := r.Lstat(filepath.FromSlash(d))
		if err != nil || !fi.IsDir() {
			// Missing, or a symbolic link: not Tidemark's to remove.
			break
		}
		if err := r.Remove(filepath.FromSlash(d)); err != nil {
			break // not empty
		}
		b.touched(a.dir, path.Dir(d))
	}
	return nil
}

// reachable reports whether the subdirectory sub of r exists and can be
// reached without leaving r. A path through a missing directory, a file, or
// a symbolic link that is dangling, absolute or leads out of r holds no file
// Tidemark wrote, since writes never go that way.
func reachable(r *os.Root, sub string) (bool, error) {
	if sub == "." {
		return true, nil
	}
	var prefix string
	for elem := range strings.SplitSeq(sub, "/") {
		prefix = path.Join(prefix, elem)
		fi, err := r.Lstat(filepath.FromSlash(prefix))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err != nil:
			return false, err
		case fi.Mode()&fs.ModeSymlink != 0:
			if fi, err = r.Stat(filepath.FromSlash(prefix)); err != nil || !fi.IsDir() {
				return false, nil
			}
		case !fi.IsDir():
			return false, nil
		}
	}
	return true, nil
}

// sync syncs the directories whose entries the batch changed.
func (b *batch) sync() error {
	for dir, subs := range b.dirty {
		r, err := b.root(dir, false)
		if err != nil {
			return err
		}
		if r == nil {
			continue
		}
		for sub := range subs {
			d, err := r.Open(filepath.FromSlash(sub))
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed later in the batch
			}
			if err != nil {
				return fmt.Errorf("syncing %s in %s: %w", sub, dir, err)
			}
			err = d.Sync()
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("syncing %s in %s: %w", sub, dir, err)
			}
		}
	}
	return nil
}
