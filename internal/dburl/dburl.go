// Package dburl tells what a database address given by a user names — a
// SQLite file, a PostgreSQL database or, for a state store, a Redis
// database — and keeps its password out of what is printed.
//
// A PostgreSQL database is named by a postgres:// or postgresql:// URL
// (the scheme in any case) or by a libpq keyword/value string
// ("host=… dbname=…"); a Redis database by a redis:// or rediss:// URL.
// Anything else without a URL scheme is a SQLite file path, taken
// literally: `?`, `#` and `%` are part of the file's name.
package dburl

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// IsPostgres reports whether raw names a PostgreSQL database.
func IsPostgres(raw string) bool {
	return isPostgresURL(raw) || isKeywords(raw)
}

func isPostgresURL(raw string) bool {
	l := strings.ToLower(raw)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// libpqKeywords are the connection parameters that start a keyword/value
// string; a file path is not taken for one unless its first word is one
// of them followed by "=".
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "sslmode": true, "application_name": true, "connect_timeout": true,
	"service": true, "options": true, "target_session_attrs": true, "sslrootcert": true,
}

// IsRedis reports whether raw names a Redis database: a redis:// or
// rediss:// URL, the scheme in any case.
func IsRedis(raw string) bool {
	l := strings.ToLower(raw)
	return strings.HasPrefix(l, "redis://") || strings.HasPrefix(l, "rediss://")
}

// isURL reports whether raw is a URL of a database this package knows,
// which may carry a password in its user info.
func isURL(raw string) bool { return isPostgresURL(raw) || IsRedis(raw) }

var keywordStart = regexp.MustCompile(`^\s*([a-z_]+)\s*=`)

func isKeywords(raw string) bool {
	m := keywordStart.FindStringSubmatch(raw)
	return m != nil && libpqKeywords[m[1]]
}

var schemeStart = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// Check refuses an address that names neither a PostgreSQL database nor a
// SQLite file: an empty one, or a URL of another scheme (mysql://…), which
// would otherwise become a file of that name. It checks the address of a
// database of tables; CheckState checks a state store's.
func Check(raw string) error { return check(raw, false) }

// CheckState is Check for the address of a state store, which may name a
// Redis database too.
func CheckState(raw string) error { return check(raw, true) }

// check is Check, accepting a Redis URL when redis is set.
func check(raw string, redis bool) error {
	urls := "a postgres:// URL"
	if redis {
		urls = "a postgres:// or redis:// URL"
	}
	switch {
	case strings.TrimSpace(raw) == "":
		return errors.New("empty: give a SQLite file path or " + urls)
	case raw == ":memory:" || strings.HasPrefix(raw, "file::memory:"):
		return errors.New("an in-memory SQLite database keeps nothing: give a file path or " + urls)
	case (isPostgresURL(raw) || redis && IsRedis(raw)) && strings.ContainsAny(userPassword(raw), "@/?#"):
		// Taken apart differently by each parser, and by pgx in a way
		// that quotes pieces of the password in its errors.
		return errors.New("the URL's password holds an @, /, ? or # that is not %-escaped: write them as %40, %2F, %3F, %23")
	case IsPostgres(raw), redis && IsRedis(raw):
		return nil
	case schemeStart.MatchString(raw):
		scheme, _, _ := strings.Cut(raw, "://")
		return fmt.Errorf("a %s:// URL is not supported: give a SQLite file path or %s", scheme, urls)
	}
	return nil
}

// Normalize returns a PostgreSQL or Redis URL with its scheme in lower
// case, as pgx and go-redis take it. Other addresses are returned as they
// are.
func Normalize(raw string) string {
	if isURL(raw) {
		scheme, rest, _ := strings.Cut(raw, "://")
		return strings.ToLower(scheme) + "://" + rest
	}
	return raw
}

var keywordPassword = regexp.MustCompile(`(?i)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|(?:[^\s\\]|\\.)+)`)

// Redact returns raw with its password, if any, replaced by "redacted".
func Redact(raw string) string {
	switch {
	case isURL(raw):
		out := raw
		if pw := userPassword(raw); pw != "" {
			scheme, rest, _ := strings.Cut(raw, "://")
			user, _, _ := strings.Cut(userInfo(rest), ":")
			out = strings.ToLower(scheme) + "://" + user + ":redacted@" + rest[len(userInfo(rest))+1:]
		}
		if q := queryPassword(out); q != "" {
			out = strings.Replace(out, "="+q, "=redacted", 1)
		}
		return out
	case isKeywords(raw):
		return keywordPassword.ReplaceAllString(raw, "${1}redacted")
	}
	return raw
}

// userInfo returns the user info of a URL's text after "://": what stands
// before its last "@", so that a password holding an unescaped "/", "?",
// "#" or "@" is found whole (a query holding an "@" makes it too long,
// which only hides more); "" without an "@".
func userInfo(rest string) string {
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return ""
	}
	return rest[:i]
}

// userPassword returns the password in a URL's user info, as written.
func userPassword(raw string) string {
	_, rest, _ := strings.Cut(raw, "://")
	_, pw, _ := strings.Cut(userInfo(rest), ":")
	return pw
}

// queryPassword returns the password parameter of a URL's query, as
// written.
func queryPassword(raw string) string {
	_, query, ok := strings.Cut(raw, "?")
	if !ok {
		return ""
	}
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if strings.HasSuffix(strings.ToLower(k), "password") { // sslpassword too
			return v
		}
	}
	return ""
}

// password returns the password raw carries, if any.
func password(raw string) string {
	switch {
	case isURL(raw):
		if pw := userPassword(raw); pw != "" {
			return pw
		}
		if q := queryPassword(raw); q != "" {
			if v, err := url.QueryUnescape(q); err == nil {
				return v
			}
			return q
		}
		return ""
	case isKeywords(raw):
		if m := keywordPassword.FindStringSubmatch(raw); m != nil {
			pw := strings.Trim(m[2], "'")
			return strings.ReplaceAll(pw, `\`, "")
		}
	}
	return ""
}

// RedactError returns err with the password of raw, wherever its message
// quotes it, replaced by "redacted"; errors.Is and errors.As see through
// it. An error that does not quote the password is returned as it is.
func RedactError(raw string, err error) error {
	pw := password(raw)
	if err == nil || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return &redacted{msg: strings.ReplaceAll(err.Error(), pw, "redacted"), err: err}
}

// RedactText returns text with the password of the database URL raw (see
// Redact), wherever it appears, replaced by "redacted".
func RedactText(raw, text string) string {
	pw := password(raw)
	if pw == "" {
		return text
	}
	if u, err := url.PathUnescape(pw); err == nil && u != pw && u != "" {
		text = strings.ReplaceAll(text, u, "redacted")
	}
	return strings.ReplaceAll(text, pw, "redacted")
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
