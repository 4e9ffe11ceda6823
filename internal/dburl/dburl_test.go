package dburl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKinds(t *testing.T) {
	t.Parallel()
	for raw, pg := range map[string]bool{
		"postgres://u@h/db":                   true,
		"POSTGRES://u:pw@h/db":                true,
		"PostgreSQL://h/db":                   true,
		"host=127.0.0.1 dbname=x password=pw": true,
		"  dbname = x":                        true,
		"hnindex.db":                          false,
		"we?ird#na%me.db":                     false,
		"a=b.db":                              false,
		"/tmp/x.db":                           false,
	} {
		require.Equal(t, pg, IsPostgres(raw), raw)
		require.NoError(t, Check(raw), raw)
	}
	require.EqualError(t, Check("mysql://u:pw@h/db"), "a mysql:// URL is not supported: give a SQLite file path or a postgres:// URL")
	require.EqualError(t, Check(""), "empty: give a SQLite file path or a postgres:// URL")
	for _, raw := range []string{"postgres://u:SEC?RET@h/db", "postgres://u:SEC#RET@h/db", "postgres://u:SEC@RET@h/db", "postgres://u:SEC/RET@h/db"} {
		require.EqualError(t, Check(raw), "the URL's password holds an @, /, ? or # that is not %-escaped: write them as %40, %2F, %3F, %23", raw)
	}
	require.NoError(t, Check("postgres://u:SEC%40RET@h/db?x=1"))
	require.EqualError(t, Check(":memory:"), "an in-memory SQLite database keeps nothing: give a file path or a postgres:// URL")
	require.Equal(t, "postgres://u:pw@h/db", Normalize("POSTGRES://u:pw@h/db"))
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"POSTGRES://user:s3cret@h:5432/db":                     "postgres://user:redacted@h:5432/db",
		"postgres://h/db?password=s3cret&sslmode=x":            "postgres://h/db?password=redacted&sslmode=x",
		"host=h password=s3cret dbname=d":                      "host=h password=redacted dbname=d",
		"host=h password='s3 cret' dbname=d":                   "host=h password=redacted dbname=d",
		"notes.db":                                             "notes.db",
		"host=h dbname=x PASSWORD=s3cret sslmode=x":            "host=h dbname=x PASSWORD=redacted sslmode=x",
		`host=h password=pa\ ss dbname=x`:                      "host=h password=redacted dbname=x",
		"postgres://postgres:123/x@127.0.0.1/db?sslmode=bogus": "postgres://postgres:redacted@127.0.0.1/db?sslmode=bogus",
		"postgres://postgres:SEC?RETPW@127.0.0.1:5432/db":      "postgres://postgres:redacted@127.0.0.1:5432/db",
		"postgres://postgres:SEC#RETPW@127.0.0.1:5432/db":      "postgres://postgres:redacted@127.0.0.1:5432/db",
		"postgres://postgres:SECRET@PW@127.0.0.1:5432/db":      "postgres://postgres:redacted@127.0.0.1:5432/db",
		"postgres://h/db?pass%77ord=OTHERPW":                   "postgres://h/db?pass%77ord=redacted",
		"postgres://h/db?sslpassword=OTHERPW":                  "postgres://h/db?sslpassword=redacted",
		"postgres://u:pa:ss@h/db?sslmode=disable":              "postgres://u:redacted@h/db?sslmode=disable",
		"postgres://h/db":                                      "postgres://h/db",
	} {
		require.Equal(t, want, Redact(raw), raw)
	}
	base := errors.New("cannot parse `POSTGRES://user:s3cret@h/db`: failed")
	err := RedactError("POSTGRES://user:s3cret@h/db", fmt.Errorf("opening: %w", base))
	require.NotContains(t, err.Error(), "s3cret")
	require.ErrorIs(t, err, base)
	require.Contains(t, RedactError("host=h password='s3 cret'", errors.New("x s3 cret y")).Error(), "x redacted y")
	require.NotContains(t, RedactError("postgres://postgres:123/x@h/db", errors.New("bad 123/x here")).Error(), "123/x")
	require.NotContains(t, RedactError(`host=h password=pa\ ss`, errors.New("pa ss leaked")).Error(), "pa ss")
	plain := errors.New("no password here")
	require.Same(t, plain, RedactError("postgres://u:pw1@h/db", plain))
}

func TestRedis(t *testing.T) {
	t.Parallel()
	for raw, redis := range map[string]bool{
		"redis://127.0.0.1:6379/0":              true,
		"REDIS://u:pw@h:6379/2?prefix=app":      true,
		"rediss://:pw@h/0":                      true,
		"redis.db":                              false,
		"postgres://h/db":                       false,
		"redisx://h/0":                          false,
		"host=h dbname=redis://x password=pw":   false,
		"/var/lib/redis://not-a-scheme-here.db": false,
	} {
		require.Equal(t, redis, IsRedis(raw), raw)
		if redis {
			require.NoError(t, CheckState(raw), raw)
			require.EqualError(t, Check(raw), fmt.Sprintf("a %s:// URL is not supported: give a SQLite file path or a postgres:// URL", raw[:strings.Index(raw, ":")]),
				"a database of tables is not in Redis: %s", raw)
		}
	}
	require.NoError(t, CheckState("postgres://h/db"))
	require.NoError(t, CheckState("state.db"))
	require.EqualError(t, CheckState("mysql://u:pw@h/db"), "a mysql:// URL is not supported: give a SQLite file path or a postgres:// or redis:// URL")
	require.EqualError(t, CheckState(""), "empty: give a SQLite file path or a postgres:// or redis:// URL")
	require.EqualError(t, CheckState(":memory:"), "an in-memory SQLite database keeps nothing: give a file path or a postgres:// or redis:// URL")
	require.EqualError(t, CheckState("redis://u:SEC/RET@h/0"), "the URL's password holds an @, /, ? or # that is not %-escaped: write them as %40, %2F, %3F, %23")
	require.Equal(t, "redis://h:6379/0", Normalize("Redis://h:6379/0"))

	for raw, want := range map[string]string{
		"redis://default:s3cret@h:6379/0":          "redis://default:redacted@h:6379/0",
		"REDIS://:s3cret@h:6379/0?prefix=app":      "redis://:redacted@h:6379/0?prefix=app",
		"rediss://u:s3cret@h/1":                    "rediss://u:redacted@h/1",
		"redis://h:6379/0":                         "redis://h:6379/0",
		"redis://u@h:6379/0":                       "redis://u@h:6379/0",
		"redis://u:SEC%40RET@h:6379/0?prefix=s3cr": "redis://u:redacted@h:6379/0?prefix=s3cr",
	} {
		require.Equal(t, want, Redact(raw), raw)
	}
	err := RedactError("redis://:s3cret@h:6379/0", fmt.Errorf("opening: %w", errors.New("dial redis://:s3cret@h:6379/0: refused")))
	require.NotContains(t, err.Error(), "s3cret")
	require.Equal(t, "dial redacted", RedactText("redis://u:s3cret@h/0", "dial s3cret"))
}
