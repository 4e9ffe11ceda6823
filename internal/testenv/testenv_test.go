package testenv

import "testing"

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"TestThing/sub_Case-2": "testthing_sub_case_2",
		"__x__":                "x",
		"Ärger":                "rger",
		"":                     "",
	} {
		if got := Slug(in, 40); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Slug("abcdef_ghi", 7); got != "abcdef" {
		t.Errorf("Slug cut = %q, want abcdef", got)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact("postgres://u:secret@h/db"); got != "postgres://u:xxxxx@h/db" {
		t.Errorf("Redact = %q", got)
	}
	if got := Redact("redis://127.0.0.1:6379/0"); got != "redis://127.0.0.1:6379/0" {
		t.Errorf("Redact = %q", got)
	}
}
