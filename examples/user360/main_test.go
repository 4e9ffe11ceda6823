package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig returns a config for a database in a temporary directory.
func testConfig(t *testing.T) config {
	return config{
		DB:            filepath.Join(t.TempDir(), "user360.db"),
		Query:         "enterprise",
		Rate:          1000,
		Logger:        slog.New(slog.NewTextHandler(t.Output(), nil)),
		RetryDeadline: 5 * time.Second,
	}
}

// rows returns the rows of the users360 table in db, by id.
func rows(t *testing.T, db string) map[string]Row {
	t.Helper()
	d, err := sqlite.Open(t.Context(), "main", db)
	require.NoError(t, err)
	defer d.Close()
	out := make(map[string]Row)
	for r, err := range sqlite.DeclareTable[Row](tidemark.NewFlow("User360"), d, "users360").Rows(t.Context()) {
		require.NoError(t, err)
		out[r.ID] = r
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// The demo prints what it claims: 24 users × 3 documents, then none, then
// the one user edited; the search finds the edit; the table holds every
// user, with NULLs for the CRM's part of the user it does not know.
func TestRun(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, cfg))
	require.Equal(t, `== update 1: a new database
users: listed 24, fetched 24, added 24, updated 0, unchanged 0, deleted 0, failed 0; users360: 24 written, 0 deleted
  accounts  list 3  get 24
  billing   list 3  get 24
  crm       list 3  get 24  (1 not found)
== update 2: nothing changed
users: listed 24, fetched 0, added 0, updated 0, unchanged 24, deleted 0, failed 0; users360: 0 written, 0 deleted
  accounts  list 3  get  0
  billing   list 3  get  0
  crm       list 3  get  0
== update 3: billing moves u007 from team to enterprise, stamped by its clock, 3h behind the others
users: listed 24, fetched 1, added 0, updated 1, unchanged 23, deleted 0, failed 0; users360: 1 written, 0 deleted
  accounts  list 3  get  1
  billing   list 3  get  1
  crm       list 3  get  1
== search "enterprise"
u007  Grace Hopper · grace@compilernavyyard.example · plan <b>enterprise</b> · Compiler Navy Yard · Piloting the API with two teams.
u003  Barbara Liskov · barbara@substitutionsystems.example · plan business · Substitution Systems · Evaluating the <b>enterprise</b> tier for data residency in the EU.
u011  Frances Allen · frances@optimizingcompilers.example · plan business · Optimizing Compilers · Evaluating the <b>enterprise</b> tier for data residency in the EU.
u019  Tony Hoare · tony@quicksortpartners.example · plan business · Quicksort Partners · Evaluating the <b>enterprise</b> tier for data residency in the EU.
`, out.String())

	got := rows(t, cfg.DB)
	require.Len(t, got, 24)
	require.Equal(t, Row{
		ID: "u007", Name: "Grace Hopper", Email: "grace@compilernavyyard.example",
		Plan: ptr("enterprise"), Seats: ptr(40),
		Company: ptr("Compiler Navy Yard"), Owner: ptr("Maya (EMEA)"), Notes: ptr("Piloting the API with two teams."),
		SearchText: "Grace Hopper · grace@compilernavyyard.example · plan enterprise · Compiler Navy Yard · Piloting the API with two teams.",
	}, got["u007"])
	require.Equal(t, Row{
		ID: "u024", Name: "Hedy Lamarr", Email: "hedy@frequencyhoppingradio.example",
		Plan: ptr("team"), Seats: ptr(16),
		SearchText: "Hedy Lamarr · hedy@frequencyhoppingradio.example · plan team",
	}, got["u024"])

	// Run again on the same database: the fakes start from their seed, so
	// the first update finds u007's billing record back at its older
	// updated_at, and rewrites that row alone.
	out.Reset()
	require.NoError(t, run(t.Context(), &out, cfg))
	require.True(t, strings.HasPrefix(out.String(), "== update 1: "+cfg.DB+` holds a previous run's rows; the fakes start afresh, so u007's plan is back to team, with an older updated_at
users: listed 24, fetched 1, added 0, updated 1, unchanged 23, deleted 0, failed 0; users360: 1 written, 0 deleted
  accounts  list 3  get  1
  billing   list 3  get  1
  crm       list 3  get  1
== update 2: nothing changed
`), out.String())
}
