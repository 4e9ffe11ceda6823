package localfs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/localfs"
)

// A directory as a source: the Markdown files under it, drafts left out.
func Example() {
	dir, _ := os.MkdirTemp("", "notes")
	defer os.RemoveAll(dir)
	for name, text := range map[string]string{"a.md": "# A", "sub/b.md": "# B", "drafts/c.md": "# C", "d.txt": "D"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(text), 0o644)
	}
	src, err := localfs.New(dir, localfs.Options{Include: []string{"**/*.md"}, Exclude: []string{"drafts/**"}})
	if err != nil {
		panic(err)
	}
	defer src.Close()
	for l, err := range src.List(context.Background()) {
		if err != nil {
			panic(err)
		}
		f, _ := src.Get(context.Background(), l.Key)
		b, _ := f.Value.ReadAll()
		fmt.Println(l.Key, string(b))
	}
	var _ tidemark.Source[string, localfs.File] = src
	// Output:
	// a.md # A
	// sub/b.md # B
}
