//go:build linux

package localfs

import (
	"io/fs"
	"syscall"
	"time"

	"github.com/tidemark/tidemark"
)

// ordinalOf is a file's ordinal: the later of its mtime and its ctime, in
// µs. The ctime moves on every change of the file, and cannot be set: a
// file replaced by an older copy (cp -p, a backup restored, tar x) has an
// older mtime, but a new ctime.
func ordinalOf(fi fs.FileInfo) tidemark.Ordinal {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); c.After(t) {
			t = c
		}
	}
	return tidemark.Ordinal(t.UnixMicro())
}
