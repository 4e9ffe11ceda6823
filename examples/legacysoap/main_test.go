package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo prints what the README says it does.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, demo(t.Context(), &out, nil, filepath.Join(t.TempDir(), "parts.db")))
	got := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(out.String(), "127.0.0.1:PORT")
	want := `ERP: PartsService (SOAP 1.1) at http://127.0.0.1:PORT/erp/PartsService, 36 parts
update 1: listed 36, fetched 36, added 36                          | ERP calls: ListParts 4, GetPart 36
update 2: listed 36, fetched 0, unchanged 36                       | ERP calls: ListParts 4, GetPart 0
ERP: P-1019 repriced
update 3: listed 36, fetched 1, updated 1, unchanged 35            | ERP calls: ListParts 4, GetPart 1
ERP: P-1021 restocked; the next 2 GetPart calls answer soap:Server.Busy
update 4: listed 36, fetched 1, updated 1, unchanged 35            | ERP calls: ListParts 4, GetPart 3 (2 faulted); the client retried 2
ERP: P-1023 and P-1024 edited; P-1024's GetPart answer comes torn (malformed XML)
update 5: listed 36, fetched 2, updated 1, unchanged 34, failed 1  | ERP calls: ListParts 4, GetPart 2
  failed "P-1024": fetching: GetPart P-1024: malformed answer: XML syntax error on line 2: unexpected EOF
  the table keeps P-1024's last good row: 54.20 EUR
ERP: P-1024 mended
update 6: listed 36, fetched 1, updated 1, unchanged 35            | ERP calls: ListParts 4, GetPart 1
search "stainless steel", best 3:
  P-1004  Flat washer M10, A4 <b>stainless</b> <b>steel</b>, DIN 125
  P-1008  Deep groove ball bearing 6205-ZZ, <b>stainless</b> <b>steel</b>, shielded
  P-1034  Roller chain 08B-1 simplex, 5 m, <b>stainless</b> <b>steel</b>
the parts table: 36 rows; P-1024 at 49.90 EUR
`
	require.Empty(t, cmp.Diff(want, got))
}

// setup starts a fake ERP and opens the app on it in a temporary
// directory; the client gives up on a call after 3 attempts.
func setup(t *testing.T) (*app, *Fake) {
	t.Helper()
	erp := NewFake(seedParts())
	url, stop, err := erp.Start()
	require.NoError(t, err)
	t.Cleanup(func() { stop() })
	a, err := openApp(t.Context(), filepath.Join(t.TempDir(), "parts.db"),
		ClientOptions{URL: url, RequestsPerSecond: 1000, Burst: 50, MaxAttempts: 3, Backoff: time.Millisecond}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	return a, erp
}

// update runs an update that must succeed.
func update(t *testing.T, a *app) tidemarktype.SourceStats {
	t.Helper()
	st, err := a.engine.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	return st.Sources["parts"]
}

// requireRows checks that the table holds want: erp's parts, with the
// rows of keep as they are.
func requireRows(t *testing.T, a *app, erp *Fake, keep ...PartRow) {
	t.Helper()
	want := make(map[string]PartRow)
	for no, p := range erp.Parts() {
		want[no] = toRow(p)
	}
	for _, r := range keep {
		want[r.PartNo] = r
	}
	got, err := a.rows(t.Context())
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(want, got))
}

func TestOnlyChangedPartsAreFetched(t *testing.T) {
	t.Parallel()
	a, erp := setup(t)

	require.Equal(t, int64(36), update(t, a).Added)
	require.Equal(t, map[string]Calls{"ListParts": {Requests: 4}, "GetPart": {Requests: 36}}, erp.TakeCalls())
	requireRows(t, a, erp)

	require.Equal(t, int64(36), update(t, a).Unchanged)
	require.Equal(t, map[string]Calls{"ListParts": {Requests: 4}}, erp.TakeCalls())

	erp.Edit("P-1010", func(p *Part) { p.Description = "Tapered roller bearing 30206 J2/Q, for gearbox output shafts" })
	require.Equal(t, int64(1), update(t, a).Updated)
	require.Equal(t, map[string]Calls{"ListParts": {Requests: 4}, "GetPart": {Requests: 1}}, erp.TakeCalls())
	requireRows(t, a, erp)

	hits, err := a.parts.Search(t.Context(), "tapered gearbox", 10)
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, "P-1010", hits[0].Row.PartNo)
	require.Equal(t, "<b>Tapered</b> roller bearing 30206 J2/Q, for <b>gearbox</b> output shafts", hits[0].Snippet)
}

func TestBusyFault(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		busy      int
		wantCalls Calls
		wantErr   string
	}{
		"retried, then answered": {busy: 2, wantCalls: Calls{Requests: 3, Faults: 2}},
		"persisting":             {busy: 3, wantCalls: Calls{Requests: 3, Faults: 3}, wantErr: "fetching: GetPart P-1021: giving up after 3 attempts: SOAP fault soap:Server.Busy: ERP busy (MRP run in progress), try again later"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, erp := setup(t)
			update(t, a)
			old := toRow(erp.Parts()["P-1021"])
			erp.TakeCalls()

			erp.Edit("P-1021", func(p *Part) { p.Stock[0].Quantity += 40 })
			erp.FailNext("GetPart", tc.busy, busyFault())
			st, err := a.engine.Update(t.Context(), tidemark.UpdateOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.wantCalls, erp.TakeCalls()["GetPart"])
			if tc.wantErr == "" {
				require.Equal(t, int64(1), st.Sources["parts"].Updated)
				requireRows(t, a, erp)
				return
			}
			require.Equal(t, []tidemarktype.RowFailure{{Source: "parts", Key: `"P-1021"`, Message: tc.wantErr}}, st.Failures)
			requireRows(t, a, erp, old)
		})
	}
}

// Malformed XML in one GetPart answer fails that row alone: the others
// are written, and the table keeps its last good value until the ERP
// answers well.
func TestMalformedPartIsARowError(t *testing.T) {
	t.Parallel()
	a, erp := setup(t)
	update(t, a)
	old := toRow(erp.Parts()["P-1024"])

	erp.Edit("P-1023", func(p *Part) { p.Description += ", magnetic piston" })
	erp.Edit("P-1024", func(p *Part) { p.Price.Amount = "49.90" })
	erp.Malform("P-1024", true)
	st, err := a.engine.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Sources["parts"].Updated)
	require.Equal(t, []tidemarktype.RowFailure{{Source: "parts", Key: `"P-1024"`,
		Message: "fetching: GetPart P-1024: malformed answer: XML syntax error on line 2: unexpected EOF"}}, st.Failures)
	requireRows(t, a, erp, old)

	erp.Malform("P-1024", false)
	erp.TakeCalls()
	require.Equal(t, int64(1), update(t, a).Updated)
	require.Equal(t, Calls{Requests: 1}, erp.TakeCalls()["GetPart"])
	requireRows(t, a, erp)
}

// A listing that fails deletes nothing, not even a part it would have
// found gone; the next complete one does.
func TestFailingListingDeletesNothing(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		breakIt, mend func(*Fake)
		wantErr       string
	}{
		"a malformed page": {
			breakIt: func(erp *Fake) { erp.BreakPage(2) },
			mend:    func(erp *Fake) { erp.BreakPage(0) },
			wantErr: "ListParts page 2: malformed answer: XML syntax error on line 2: unexpected EOF",
		},
		"a busy fault that persists": {
			breakIt: func(erp *Fake) { erp.FailNext("ListParts", 3, busyFault()) },
			mend:    func(*Fake) {},
			wantErr: "ListParts page 1: giving up after 3 attempts: SOAP fault soap:Server.Busy",
		},
		"another fault": {
			breakIt: func(erp *Fake) {
				erp.FailNext("ListParts", 1, Fault{FaultCode: "soap:Server", FaultString: "ORA-01555: snapshot too old"})
			},
			mend:    func(*Fake) {},
			wantErr: "ListParts page 1: SOAP fault soap:Server: ORA-01555: snapshot too old",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, erp := setup(t)
			update(t, a)
			gone := toRow(erp.Parts()["P-1036"])
			erp.Delete("P-1036")

			tc.breakIt(erp)
			_, err := a.engine.Update(t.Context(), tidemark.UpdateOptions{})
			require.ErrorIs(t, err, tidemark.ErrListingIncomplete)
			require.ErrorContains(t, err, tc.wantErr)
			requireRows(t, a, erp, gone)

			tc.mend(erp)
			require.Equal(t, int64(1), update(t, a).Deleted)
			requireRows(t, a, erp)
		})
	}
}

// Each answer of GetPart maps to a row's fate, as the README's table says.
func TestGetFaults(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		partNo     string
		fault      *Fault // the first call's, from the ERP
		proxy503   bool   // the first call meets a proxy's 503 page instead
		malformed  bool
		wantExists bool
		wantErr    string
		wantCalls  int64
	}{
		"an answer":                     {wantExists: true, wantCalls: 1},
		"busy, then an answer":          {fault: &Fault{FaultCode: "soap:Server.Busy", FaultString: "busy"}, wantExists: true, wantCalls: 2},
		"a proxy's 503, then an answer": {proxy503: true, wantExists: true, wantCalls: 2},
		"no such part":                  {partNo: "P-0000", wantCalls: 1},
		"a client fault":                {fault: &Fault{FaultCode: "soap:Client", FaultString: "PartNo too long"}, wantErr: "GetPart P-1001: SOAP fault soap:Client: PartNo too long", wantCalls: 1},
		"a server fault":                {fault: &Fault{FaultCode: "soap:Server", FaultString: "ORA-00060: deadlock detected"}, wantErr: "GetPart P-1001: SOAP fault soap:Server: ORA-00060: deadlock detected", wantCalls: 1},
		"malformed XML":                 {malformed: true, wantErr: "GetPart P-1001: malformed answer: XML syntax error on line 2: unexpected EOF", wantCalls: 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			erp := NewFake(seedParts())
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 && tc.proxy503 {
					http.Error(w, "<html><body>503 Service Unavailable</body></html>", http.StatusServiceUnavailable)
					return
				}
				erp.ServeHTTP(w, r)
			}))
			defer srv.Close()
			c, err := NewClient(ClientOptions{URL: srv.URL, RequestsPerSecond: 1000, Backoff: time.Millisecond})
			require.NoError(t, err)
			defer c.Close()
			if tc.fault != nil {
				erp.FailNext("GetPart", 1, *tc.fault)
			}
			if tc.partNo == "" {
				tc.partNo = "P-1001"
			}
			erp.Malform(tc.partNo, tc.malformed)

			got, err := NewSource(c, 10).Get(t.Context(), tc.partNo)
			require.Equal(t, tc.wantCalls, calls.Load())
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				require.False(t, tidemark.IsRetryable(err))
				if tc.fault != nil {
					var f *Fault
					require.True(t, errors.As(err, &f))
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantExists, got.Exists)
			if tc.wantExists {
				require.Empty(t, cmp.Diff(erp.Parts()[tc.partNo], got.Value))
			}
		})
	}
}
