package cli

import "testing"

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":           "postgres://u:redacted@h:5432/db",
		"postgres://u@h/db?password=secret&x=1":   "postgres://u@h/db?password=redacted&x=1",
		"postgres://h/db":                         "postgres://h/db",
		"hnindex.db":                              "hnindex.db",
		"postgres://u:pa:ss@h/db?sslmode=disable": "postgres://u:redacted@h/db?sslmode=disable",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
