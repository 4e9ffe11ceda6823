package httpsource

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// resolve returns the value at the JSON pointer ptr (RFC 6901: "/data/0/id";
// "" for the whole document) in doc, as decoded with UseNumber; ok is false
// when there is none.
func resolve(doc any, ptr string) (any, bool) {
	if ptr == "" {
		return doc, true
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) || tok != strconv.Itoa(i) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// checkPointer checks a JSON pointer's syntax.
func checkPointer(what, ptr string) error {
	if ptr != "" && !strings.HasPrefix(ptr, "/") {
		return fmt.Errorf("httpsource: %s %q is not a JSON pointer: it must be empty or start with /", what, ptr)
	}
	return nil
}

// scalarText returns a key's text: a string as it is, a number as written;
// ok is false for anything else (null, an object).
func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case json.Number:
		return v.String(), true
	}
	return "", false
}
