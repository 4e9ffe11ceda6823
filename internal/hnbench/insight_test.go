package hnbench

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		// status answers the i-th request (from 1).
		status      func(i int64) int
		conc, n     int
		wantErr     string
		wantPending bool
		wantErrors  int
	}{
		"all answered":       {status: func(int64) int { return 200 }, conc: 1, n: 40},
		"several clients":    {status: func(int64) int { return 200 }, conc: 4, n: 41},
		"a few failed":       {status: func(i int64) int { return map[bool]int{true: 503, false: 200}[i%10 == 0] }, conc: 2, n: 40, wantErrors: 4},
		"most failed":        {status: func(int64) int { return 500 }, conc: 2, n: 20, wantErr: "20 of 20 requests failed"},
		"not served yet":     {status: func(int64) int { return 404 }, conc: 1, n: 5, wantPending: true},
		"no request to make": {status: func(int64) int { return 200 }, conc: 1, n: 0},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				w.WriteHeader(tt.status(seen.Add(1)))
				w.Write([]byte(strings.Repeat("x", len(req.URL.Path))))
			}))
			defer srv.Close()
			b := &bench{}
			path := func(r *rand.Rand) string { return "/" + strconv.Itoa(10+r.IntN(90)) } // 3 bytes
			l, err := b.load(t.Context(), srv.Client(), srv.URL, "GET /{n}", path, tt.conc, tt.n, 0, 1)
			switch {
			case tt.wantPending:
				require.ErrorIs(t, err, errPending)
				return
			case tt.wantErr != "":
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.n, l.Requests)
			require.Equal(t, int64(tt.n), seen.Load())
			require.Equal(t, tt.wantErrors, l.Errors)
			require.Equal(t, tt.conc, l.Concurrency)
			if tt.n == 0 {
				return
			}
			require.Equal(t, int64(3), l.MeanBytes)
			require.Positive(t, l.P50)
			require.LessOrEqual(t, l.P50, l.P90)
			require.LessOrEqual(t, l.P90, l.P99)
			require.LessOrEqual(t, l.P99, l.Max)
			require.Positive(t, l.PerSecond)
			if tt.wantErrors > 0 {
				require.Equal(t, map[string]int{"200": tt.n - tt.wantErrors, "503": tt.wantErrors}, l.Status)
			} else {
				require.Nil(t, l.Status)
			}
		})
	}
}
