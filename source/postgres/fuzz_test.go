package postgres

import (
	"encoding/json"
	"testing"
)

// FuzzKeyArgs: a key from outside (a notification's payload, a command
// line) is decoded into as many texts as there are key columns, or
// refused; it never panics, and what it accepts encodes back to the same
// texts.
func FuzzKeyArgs(f *testing.F) {
	for _, k := range []string{`["x", "1"]`, `["y\"", "1"]`, `[null, "1"]`, `["a"]`, `x`, ``, `["a","b","c"]`} {
		f.Add(k)
	}
	s := &Source{o: Options{Key: []string{"a", "b"}}}
	f.Fuzz(func(t *testing.T, key string) {
		args, ok := s.keyArgs(key)
		if !ok {
			return
		}
		if len(args) != 2 {
			t.Fatalf("%q: %d args for 2 key columns", key, len(args))
		}
		texts := []string{args[0].(string), args[1].(string)}
		var back []string
		b, _ := json.Marshal(texts)
		if err := json.Unmarshal(b, &back); err != nil || back[0] != texts[0] || back[1] != texts[1] {
			t.Fatalf("%q: %v does not round-trip", key, texts)
		}
	})
}
