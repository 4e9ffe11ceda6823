package hnfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// Each fault kind happens at about its rate and has its shape.
func TestFaults(t *testing.T) {
	t.Parallel()
	const n = 300
	tests := map[string]struct {
		faults hnfake.Faults
		check  func(t *testing.T, r response) bool // reports whether r is the fault
	}{
		"429": {
			faults: hnfake.Faults{Rate429: 0.3, RetryAfter: 1500 * time.Millisecond},
			check: func(t *testing.T, r response) bool {
				if r.status != http.StatusTooManyRequests {
					return false
				}
				require.Equal(t, "2", r.header.Get("Retry-After"))
				require.JSONEq(t, `{"status":429,"error":"Too Many Requests"}`, string(r.body))
				return true
			},
		},
		"500": {
			faults: hnfake.Faults{Rate500: 0.3},
			check: func(t *testing.T, r response) bool {
				if r.status != http.StatusInternalServerError {
					return false
				}
				require.JSONEq(t, `{"status":500,"error":"Internal Server Error"}`, string(r.body))
				return true
			},
		},
		"truncated": {
			faults: hnfake.Faults{RateTruncated: 0.3},
			check: func(t *testing.T, r response) bool {
				if r.err == nil {
					return false
				}
				require.ErrorIs(t, r.err, io.ErrUnexpectedEOF)
				require.Equal(t, http.StatusOK, r.status)
				return true
			},
		},
		"malformed": {
			faults: hnfake.Faults{RateMalformed: 0.3},
			check: func(t *testing.T, r response) bool {
				require.NoError(t, r.err)
				require.Equal(t, http.StatusOK, r.status)
				var v any
				return json.Unmarshal(r.body, &v) != nil
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := hnfake.Generate(hnfake.GenerateOptions{Threads: 10, CommentsPerThread: 2, Seed: 1, TextBytes: 50})
			id := d.Threads()[0].ID
			f := setup(t, d)
			tt.faults.Seed = 42
			f.srv.SetFaults(tt.faults)
			faults := 0
			for i := range n {
				path := "/search_by_date?tags=story"
				if i%2 == 1 {
					path = "/items/" + itoa(id)
				}
				r := f.get(t, path)
				if tt.check(t, r) {
					faults++
					continue
				}
				require.NoError(t, r.err)
				require.Equal(t, http.StatusOK, r.status)
				require.True(t, json.Valid(r.body))
			}
			require.InDelta(t, 0.3*n, faults, 0.1*n, "faults at about the rate")
			c := f.srv.Requests()
			require.Equal(t, int64(faults), c.Faults)
			require.Equal(t, int64(n/2), c.Listing)
			require.Equal(t, int64(n/2), c.Items)
			require.Equal(t, int64(n/2), c.ItemsByID[id])
		})
	}
}

// The same seed gives the same faults; Items and Listing choose the endpoint.
func TestFaultsSeedAndScope(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 3, Seed: 1})
	id := d.Threads()[0].ID
	f := setup(t, d)
	statuses := func() []int {
		var out []int
		for range 40 {
			out = append(out, f.get(t, "/items/"+itoa(id)).status)
		}
		return out
	}
	f.srv.SetFaults(hnfake.Faults{Rate500: 0.5, Seed: 7})
	first := statuses()
	f.srv.SetFaults(hnfake.Faults{Rate500: 0.5, Seed: 7})
	require.Equal(t, first, statuses())
	require.Contains(t, first, 500)
	require.Contains(t, first, 200)

	f.srv.SetFaults(hnfake.Faults{Rate500: 1, Items: true})
	require.Equal(t, http.StatusOK, f.get(t, "/search_by_date").status)
	require.Equal(t, http.StatusInternalServerError, f.get(t, "/items/"+itoa(id)).status)
	f.srv.SetFaults(hnfake.Faults{Rate500: 1, Listing: true})
	require.Equal(t, http.StatusInternalServerError, f.get(t, "/search_by_date").status)
	require.Equal(t, http.StatusOK, f.get(t, "/items/"+itoa(id)).status)
	resp, err := f.client.Get(strings.TrimSuffix(f.base, "/api/v1") + "/healthz")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, "faults never touch the rest")
	f.srv.SetFaults(hnfake.Faults{})
	require.Equal(t, http.StatusOK, f.get(t, "/search_by_date").status)
}

func TestFaultsValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		f   hnfake.Faults
		err string
	}{
		"zero":     {f: hnfake.Faults{}},
		"all":      {f: hnfake.Faults{Rate429: 0.25, Rate500: 0.25, RateTruncated: 0.25, RateMalformed: 0.25}},
		"negative": {f: hnfake.Faults{Rate500: -0.1}, err: "Rate500 must be between 0 and 1"},
		"above 1":  {f: hnfake.Faults{RateTruncated: 1.5}, err: "RateTruncated must be between 0 and 1"},
		"sum":      {f: hnfake.Faults{Rate429: 0.6, RateMalformed: 0.6}, err: "add up to at most 1"},
		"latency":  {f: hnfake.Faults{Latency: -time.Second}, err: "must not be negative"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := tt.f.Validate()
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.err)
			require.Panics(t, func() { hnfake.NewServer(hnfake.NewDataset()).SetFaults(tt.f) })
		})
	}
}

func TestFaultsJSON(t *testing.T) {
	t.Parallel()
	f := hnfake.Faults{Latency: 250 * time.Millisecond, Rate429: 0.1, RetryAfter: 2 * time.Second, RateMalformed: 0.2, Items: true, Seed: 3}
	b, err := json.Marshal(f)
	require.NoError(t, err)
	require.JSONEq(t, `{"latency":"250ms","rate_429":0.1,"retry_after":"2s","rate_500":0,"rate_truncated":0,"rate_malformed":0.2,"items":true,"listing":false,"seed":3}`, string(b))
	var back hnfake.Faults
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, f, back)
	require.NoError(t, json.Unmarshal([]byte(`{"latency":1000000,"rate_500":0.5}`), &back))
	require.Equal(t, hnfake.Faults{Latency: time.Millisecond, Rate500: 0.5}, back)
	require.Error(t, json.Unmarshal([]byte(`{"latency":"soon"}`), &back))
	require.Error(t, json.Unmarshal([]byte(`{"retry_after":true}`), &back))
}

// Latency delays the answer by exactly its value, and gives up when the
// request is cancelled (with synctest's clock, so no real waiting).
func TestLatency(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		d := hnfake.Generate(hnfake.GenerateOptions{Threads: 3, Seed: 1})
		s := hnfake.NewServer(d)
		s.SetFaults(hnfake.Faults{Latency: 1500 * time.Millisecond})
		h := s.Handler()

		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/search_by_date", nil))
		require.Equal(t, 1500*time.Millisecond, time.Since(start))
		require.Equal(t, http.StatusOK, rec.Code)
		require.True(t, json.Valid(rec.Body.Bytes()))

		ctx, cancel := context.WithCancel(t.Context())
		start = time.Now()
		go func() {
			time.Sleep(200 * time.Millisecond)
			cancel()
		}()
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/items/1", nil).WithContext(ctx))
		require.Equal(t, 200*time.Millisecond, time.Since(start))
		require.Zero(t, rec.Body.Len(), "no answer to a gone client")
		require.True(t, errors.Is(ctx.Err(), context.Canceled))
		require.Equal(t, int64(1), s.Requests().Items, "counted all the same")
	})
}
