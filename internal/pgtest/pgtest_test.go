package pgtest

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// validIdent matches a lowercase unquoted PostgreSQL identifier.
var validIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// connect opens a connection to the base URL, closed at cleanup.
func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), URL(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// schemaExists reports whether the named schema exists.
func schemaExists(t *testing.T, conn *pgx.Conn, schema string) bool {
	t.Helper()
	var n int
	err := conn.QueryRow(t.Context(),
		`SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, schema).Scan(&n)
	require.NoError(t, err)
	return n == 1
}

func TestSchemaName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"",
		"TestX",
		"TestFoo/sub_test#01",
		"Test/ÜnïCödé/日本語",
		"___",
		strings.Repeat("TestVeryLongName/", 20),
	} {
		got, err := schemaName(name)
		require.NoError(t, err)
		require.LessOrEqual(t, len(got), maxIdentLen, "name %q -> %q", name, got)
		require.Regexp(t, validIdent, got, "name %q", name)
		require.True(t, strings.HasPrefix(got, SchemaPrefix), got)
		require.NotContains(t, got, "__", "name %q -> %q", name, got)
	}
	got, err := schemaName("TestFoo/Bar-Baz")
	require.NoError(t, err)
	require.Regexp(t, `^tmtest_testfoo_bar_baz_[0-9a-f]{16}$`, got)
}

func TestSchemaCreatedAndDropped(t *testing.T) {
	t.Parallel()
	conn := connect(t)

	var schema string
	t.Run("sub", func(t *testing.T) {
		var baseURL string
		baseURL, schema = Schema(t)
		require.NotEmpty(t, baseURL)
		require.Regexp(t, validIdent, schema)
		require.LessOrEqual(t, len(schema), maxIdentLen)
		require.True(t, strings.HasPrefix(schema, SchemaPrefix+"testschemacreatedanddropped_sub_"), schema)
		require.True(t, schemaExists(t, conn, schema), "schema %s should exist", schema)
	})
	require.NotEmpty(t, schema)
	require.False(t, schemaExists(t, conn, schema), "schema %s should be dropped after the subtest", schema)
}

func TestSchemaUnique(t *testing.T) {
	t.Parallel()
	_, a := Schema(t)
	_, b := Schema(t)
	require.NotEqual(t, a, b)
	conn := connect(t)
	require.True(t, schemaExists(t, conn, a))
	require.True(t, schemaExists(t, conn, b))
}

func TestPoolSearchPath(t *testing.T) {
	t.Parallel()
	pool, schema := Pool(t)

	var current string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&current))
	require.Equal(t, schema, current)

	_, err := pool.Exec(t.Context(), `CREATE TABLE widgets (id int PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = pool.Exec(t.Context(), `INSERT INTO widgets (id) VALUES (1)`)
	require.NoError(t, err)

	// Look the table up from an independent connection, not via the pool's
	// search_path.
	conn := connect(t)
	var n int
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'widgets'`,
		schema).Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT count(*) FROM `+pgx.Identifier{schema, "widgets"}.Sanitize()).Scan(&n))
	require.Equal(t, 1, n)
}
