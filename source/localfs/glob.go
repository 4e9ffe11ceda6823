package localfs

import (
	"fmt"
	"path"
	"strings"
)

// pattern is a parsed glob: its segments, "**" matching any number of
// directories.
type pattern []string

func parsePattern(p string) (pattern, error) {
	if p == "" || strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("localfs: pattern %q must be a relative, slash-separated path", p)
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return nil, fmt.Errorf("localfs: pattern %q has an empty, . or .. segment", p)
		}
		if s == "**" {
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			return nil, fmt.Errorf("localfs: pattern %q: %w", p, err)
		}
	}
	return segs, nil
}

// match reports whether the slash-separated relative path name matches.
func (p pattern) match(name string) bool {
	return matchSegs(p, strings.Split(name, "/"))
}

func matchSegs(p []string, name []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			// Collapse runs of **, then try every split.
			for len(p) > 1 && p[1] == "**" {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(p[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(p[0], name[0]); !ok {
			return false
		}
		p, name = p[1:], name[1:]
	}
	return len(name) == 0
}

// mayHold reports whether a file under directory dir (a relative slash
// path, "." for the root) may match: the walk skips a directory no pattern
// reaches into.
func (p pattern) mayHold(dir string) bool {
	if dir == "." {
		return true
	}
	segs := strings.Split(dir, "/")
	for i, s := range p {
		if s == "**" {
			return true
		}
		if i >= len(segs) {
			return true
		}
		if ok, _ := path.Match(s, segs[i]); !ok {
			return false
		}
	}
	return false // the pattern ends before the directory does
}
