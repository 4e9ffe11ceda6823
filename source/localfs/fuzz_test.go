package localfs

import (
	"path"
	"strings"
	"testing"
)

// FuzzPattern: any pattern either fails to parse or matches without
// panicking; without "**", it matches as path.Match does segment by
// segment.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{{"**/*.md", "a/b/c.md"}, {"docs/**", "docs"}, {"*.txt", "a.txt"}, {"[", "x"}, {"a/**/b/**", "a/b"}, {"**", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, p, name string) {
		pat, err := parsePattern(p)
		if err != nil {
			return
		}
		got := pat.match(name)
		_ = pat.mayHold(name)
		if strings.Contains(p, "**") {
			return
		}
		ps, ns := strings.Split(p, "/"), strings.Split(name, "/")
		want := len(ps) == len(ns)
		for i := 0; want && i < len(ps); i++ {
			ok, _ := path.Match(ps[i], ns[i])
			want = ok
		}
		if got != want {
			t.Fatalf("pattern %q, name %q: match %v, path.Match by segment %v", p, name, got, want)
		}
	})
}
