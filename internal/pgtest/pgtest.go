// Package pgtest gives each test its own PostgreSQL schema.
//
// Tests find the server through the TIDEMARK_TEST_DATABASE_URL environment
// variable (see [EnvURL]), which `make test` (scripts/test.sh) sets, starting
// a throwaway server when none is running. Without it, [DefaultURL] is used.
//
// Each call to [Schema] or [Pool] creates a fresh, uniquely named schema and
// drops it (CASCADE) when the test finishes, so tests can run in parallel
// against one database without seeing each other's tables.
//
// When the server cannot be reached the test is skipped, unless the CI
// environment variable is true, in which case it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark/internal/testenv"
)

// EnvURL is the environment variable holding the base URL of the test
// PostgreSQL server.
const EnvURL = "TIDEMARK_TEST_DATABASE_URL"

// DefaultURL is the server used when EnvURL is unset or empty.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// SchemaPrefix starts the name of every schema created by Schema and Pool.
const SchemaPrefix = "tmtest_"

const (
	// probeTimeout bounds the reachability check made by URL.
	probeTimeout = 2 * time.Second
	// opTimeout bounds creating and dropping a schema.
	opTimeout = 30 * time.Second
	// maxIdentLen is PostgreSQL's identifier length limit (NAMEDATALEN-1).
	maxIdentLen = 63
	// suffixBytes random bytes, hex-encoded, end every schema name.
	suffixBytes = 8
)

// URL returns the base URL of the test PostgreSQL server: the value of
// EnvURL, or DefaultURL when that is unset. It checks that the server accepts
// a connection (with a short timeout); if not, it fails the test when the CI
// environment variable is true and skips it otherwise.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	if err := probe(t.Context(), u); err != nil {
		msg := fmt.Sprintf("pgtest: PostgreSQL at %s is not reachable: %v\n"+
			"Run `make test`, which uses or starts a PostgreSQL server, "+
			"or start one yourself and set %s to its URL.", testenv.Redact(u), err, EnvURL)
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return u
}

// Schema creates a new schema with a unique name derived from the test name,
// arranges for it to be dropped with CASCADE when the test and its subtests
// finish, and returns the base URL (as from URL) and the schema name. The
// name is a valid unquoted PostgreSQL identifier, so it can be used in SQL
// or a search_path as is.
func Schema(t testing.TB) (baseURL, schema string) {
	t.Helper()
	baseURL = URL(t)
	schema, err := schemaName(t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	if err := exec(ctx, baseURL, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := exec(ctx, baseURL, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return baseURL, schema
}

// Pool creates a new schema as Schema does and returns a connection pool for
// the base URL whose connections have search_path set to that schema, so
// unqualified table names refer to it. It also returns the schema name. The
// pool is closed when the test finishes, before the schema is dropped; the
// test must release every connection it acquires.
func Pool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	baseURL, schema := Schema(t)
	cfg, err := pgxpool.ParseConfig(baseURL)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", testenv.Redact(baseURL), err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: create pool: %v", err)
	}
	// Registered after Schema's cleanup, so it runs first (cleanups are LIFO).
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest: ping pool: %v", err)
	}
	return pool, schema
}

// probe connects to rawURL and runs a trivial query, within probeTimeout.
func probe(ctx context.Context, rawURL string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return exec(ctx, rawURL, "SELECT 1")
}

// exec opens a connection to rawURL, runs sql and closes the connection.
func exec(ctx context.Context, rawURL, sql string) (err error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	if deadline, ok := ctx.Deadline(); ok && cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = time.Until(deadline)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		if cerr := conn.Close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close connection: %w", cerr))
		}
	}()
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// schemaName returns SchemaPrefix, a slug of testName (lowercase ASCII
// letters, digits and underscores, truncated) and a random hex suffix,
// joined so the result is at most 63 bytes.
func schemaName(testName string) (string, error) {
	var b [suffixBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random schema suffix: %w", err)
	}
	suffix := hex.EncodeToString(b[:])
	maxSlug := maxIdentLen - len(SchemaPrefix) - len("_") - len(suffix)
	slug := testenv.Slug(testName, maxSlug)
	if slug == "" {
		return SchemaPrefix + suffix, nil
	}
	return SchemaPrefix + slug + "_" + suffix, nil
}

// Database creates a new database with a unique name derived from the test
// name, arranges for it to be dropped (closing any session still on it)
// when the test finishes, and returns its URL. It is for tests of programs
// that take only a URL, such as a command line's --db.
func Database(t testing.TB) string {
	t.Helper()
	baseURL := URL(t)
	name, err := schemaName(t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	if err := exec(ctx, baseURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := exec(ctx, baseURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", testenv.Redact(baseURL), err)
	}
	u.Path = "/" + name
	return u.String()
}
