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

// fixture is the flow opened on a temporary database, against fresh fakes.
type fixture struct {
	svcs *Services
	app  *app
	out  bytes.Buffer
}

func setup(t *testing.T, cfg config) *fixture {
	t.Helper()
	f := &fixture{svcs: StartServices()}
	t.Cleanup(f.svcs.Close)
	var err error
	f.app, err = open(t.Context(), cfg, f.svcs)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.app.Close()) })
	return f
}

// update runs an update and returns what it printed.
func (f *fixture) update(t *testing.T) string {
	t.Helper()
	f.out.Reset()
	require.NoError(t, f.app.update(t.Context(), &f.out))
	return f.out.String()
}

// A service answering 503 is asked again, and the update completes.
func TestRetriesA5xx(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	f := setup(t, cfg)
	f.update(t)
	require.NoError(t, f.svcs.Billing.Edit("u007", map[string]any{"plan": "enterprise"}))
	f.svcs.Billing.FailNext(1)
	require.Equal(t, `users: listed 24, fetched 1, added 0, updated 1, unchanged 23, deleted 0, failed 0; users360: 1 written, 0 deleted
  accounts  list 3  get  1
  billing   list 4  get  1  (1 answered 503)
  crm       list 3  get  1
`, f.update(t))
	require.Equal(t, ptr("enterprise"), rows(t, cfg.DB)["u007"].Plan)
}

// A service that answers 503 past the retry deadline fails the listing:
// the update says so and deletes nothing; the next one converges.
func TestAnOutageDeletesNothing(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.RetryDeadline = 100 * time.Millisecond
	f := setup(t, cfg)
	f.update(t)
	require.NoError(t, f.svcs.CRM.Edit("u001", map[string]any{"notes": "Moved to the Lisbon office."}))
	f.svcs.CRM.FailNext(1000)
	err := f.app.update(t.Context(), &f.out)
	require.ErrorIs(t, err, tidemark.ErrListingIncomplete)
	require.ErrorContains(t, err, "HTTP 503")
	require.Len(t, rows(t, cfg.DB), 24)

	f.svcs.CRM.FailNext(0)
	f.svcs.CRM.TakeCounts()
	require.Contains(t, f.update(t), "fetched 1, added 0, updated 1")
	require.Equal(t, ptr("Moved to the Lisbon office."), rows(t, cfg.DB)["u001"].Notes)
}

// A record that disappears from billing — which no ordinal built from
// the updated_at values would notice, since it can only fall — empties
// the row's billing columns; a user gone from accounts leaves the table.
func TestRecordsThatDisappear(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	f := setup(t, cfg)
	f.update(t)
	f.svcs.Billing.Delete("u005")
	f.svcs.Accounts.Delete("u006")
	require.Equal(t, `users: listed 23, fetched 1, added 0, updated 1, unchanged 22, deleted 1, failed 0; users360: 1 written, 1 deleted
  accounts  list 3  get  1
  billing   list 3  get  1  (1 not found)
  crm       list 3  get  1
`, f.update(t))
	got := rows(t, cfg.DB)
	require.NotContains(t, got, "u006")
	require.Nil(t, got["u005"].Plan)
	require.Equal(t, ptr("Literate Press"), got["u005"].Company)
}

// The demo's edit is one that max(updated_at) would miss: billing stamps
// it earlier than u007's accounts record.
func TestTheEditIsOlderThanTheAccount(t *testing.T) {
	t.Parallel()
	f := setup(t, testConfig(t))
	require.NoError(t, f.svcs.Billing.Edit("u007", map[string]any{"plan": "enterprise"}))
	u, err := f.app.source.Get(t.Context(), "u007")
	require.NoError(t, err)
	require.True(t, u.Value.Billing.UpdatedAt.Before(u.Value.Account.UpdatedAt),
		"billing %s, accounts %s", u.Value.Billing.UpdatedAt, u.Value.Account.UpdatedAt)
}
