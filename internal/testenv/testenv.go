// Package testenv holds what the test helpers of the databases (pgtest,
// redistest) share: whether tests run under CI, a slug of a test's name for
// the names they make, and URLs with their passwords hidden.
package testenv

import (
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Slug lowercases s, turns each run of characters other than ASCII
// letters and digits into one underscore, trims underscores from both ends,
// and truncates the result to at most maxLen bytes.
func Slug(s string, maxLen int) string {
	var sb strings.Builder
	underscore := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if underscore && sb.Len() > 0 {
				sb.WriteByte('_')
			}
			underscore = false
			sb.WriteRune(r)
			continue
		}
		underscore = true
	}
	slug := sb.String()
	if len(slug) > maxLen {
		slug = slug[:maxLen]
	}
	return strings.TrimRight(slug, "_")
}

// InCI reports whether the CI environment variable is true (e.g. "true" or
// "1"), as CI systems set it.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Redact hides any password in rawURL so it can be shown in messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	return u.Redacted()
}
