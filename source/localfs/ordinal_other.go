//go:build !linux

package localfs

import (
	"io/fs"

	"github.com/tidemark/tidemark"
)

// ordinalOf is a file's ordinal: its mtime in µs. (On Linux, the later of
// its mtime and ctime: see ordinal_unix.go.)
func ordinalOf(fi fs.FileInfo) tidemark.Ordinal {
	return tidemark.Ordinal(fi.ModTime().UnixMicro())
}
