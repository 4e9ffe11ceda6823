// Package dburl tells what a database address given by a user names — a
// SQLite file or a PostgreSQL database — and keeps its password out of
// what is printed.
//
// A PostgreSQL database is named by a postgres:// or postgresql:// URL
// (the scheme in any case) or by a libpq keyword/value string
// ("host=… dbname=…"). Anything else without a URL scheme is a SQLite file
// path, taken literally: `?`, `#` and `%` are part of the file's name.
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

var keywordStart = regexp.MustCompile(`^\s*([a-z_]+)\s*=`)

func isKeywords(raw string) bool {
	m := keywordStart.FindStringSubmatch(raw)
	return m != nil && libpqKeywords[m[1]]
}

var schemeStart = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// Check refuses an address that names neither a PostgreSQL database nor a
// SQLite file: an empty one, or a URL of another scheme (mysql://…), which
// would otherwise become a file of that name.
func Check(raw string) error {
	switch {
	case strings.TrimSpace(raw) == "":
		return errors.New("empty: give a SQLite file path or a postgres:// URL")
	case IsPostgres(raw):
		return nil
	case schemeStart.MatchString(raw):
		scheme, _, _ := strings.Cut(raw, "://")
		return fmt.Errorf("a %s:// URL is not supported: give a SQLite file path or a postgres:// URL", scheme)
	}
	return nil
}

// Normalize returns a PostgreSQL address as pgx takes it: a URL's scheme
// in lower case. Other addresses are returned as they are.
func Normalize(raw string) string {
	if isPostgresURL(raw) {
		scheme, rest, _ := strings.Cut(raw, "://")
		return strings.ToLower(scheme) + "://" + rest
	}
	return raw
}

var keywordPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact returns raw with its password, if any, replaced by "redacted".
func Redact(raw string) string {
	switch {
	case isPostgresURL(raw):
		u, err := url.Parse(Normalize(raw))
		if err != nil {
			return "(an unparsable postgres:// URL)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "redacted")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "redacted")
			u.RawQuery = q.Encode()
		}
		return u.String()
	case isKeywords(raw):
		return keywordPassword.ReplaceAllString(raw, "${1}redacted")
	}
	return raw
}

// password returns the password raw carries, if any.
func password(raw string) string {
	switch {
	case isPostgresURL(raw):
		u, err := url.Parse(Normalize(raw))
		if err != nil {
			// Unparsable: hide whatever stands between the user and the host.
			_, rest, _ := strings.Cut(raw, "://")
			if userinfo, _, ok := strings.Cut(rest, "@"); ok {
				if _, pw, ok := strings.Cut(userinfo, ":"); ok {
					return pw
				}
			}
			return ""
		}
		if pw, ok := u.User.Password(); ok {
			return pw
		}
		return u.Query().Get("password")
	case isKeywords(raw):
		if m := keywordPassword.FindStringSubmatch(raw); m != nil {
			return strings.Trim(m[2], "'")
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

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
