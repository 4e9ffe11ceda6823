// Package localfs is a Tidemark source over a directory: each regular file
// under it whose path matches the include patterns (and no exclude
// pattern) is a row, keyed by its path relative to the directory, with
// slashes.
//
// A row's ordinal is the file's modification time in microseconds (on
// Linux the later of its mtime and ctime, which moves on every change and
// cannot be set back: a file replaced by an older copy is read again), so
// an update opens only the files whose times moved; Get then fingerprints
// the bytes (SHA-256, streamed), so a file touched without a change is
// not processed again. The value is a File, which the processing function
// reads or opens: a large file is streamed, never held whole by the
// source.
//
// The directory is opened once, by New, as an os.Root (a path through a
// symbolic link that a deploy later switches keeps naming the directory it
// named then: open a new Source after the switch): a symbolic link is followed only
// to a file inside it, never out of it, and a link to a directory is not
// walked (no loops). A key that names a path outside the directory, or
// one the patterns leave out, is gone; so is anything but a regular file
// (a named pipe is never opened). A file whose name is not UTF-8 is never
// a row. A directory that cannot be read fails the listing, which then
// deletes nothing.
//
// In live mode the source's change stream (tidemark.Watcher) comes from
// fsnotify, over every directory of the tree, debounced (Options.Debounce):
// an edited file reaches its targets within a fraction of a second, while
// the periodic listing still catches what events miss (a full queue, a
// directory renamed in from elsewhere).
//
// Patterns are slash-separated paths with path.Match's syntax in each
// segment, where a segment "**" matches any number of directories:
// "**/*.md", "docs/**", "*.txt" (top level only).
package localfs
