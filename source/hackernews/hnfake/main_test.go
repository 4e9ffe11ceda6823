package hnfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a started fake with its own HTTP client.
type fixture struct {
	srv    *hnfake.Server
	base   string // ".../api/v1"
	client *http.Client
}

func setup(t *testing.T, d *hnfake.Dataset) *fixture {
	t.Helper()
	srv, base := hnfake.Start(t, d)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &fixture{srv: srv, base: base, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // from reading the body
}

func (f *fixture) get(t *testing.T, path string) response {
	t.Helper()
	resp, err := f.client.Get(f.base + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// listing is a decoded search_by_date body.
type listing struct {
	Hits []struct {
		ObjectID    string   `json:"objectID"`
		CreatedAtI  int64    `json:"created_at_i"`
		UpdatedAt   string   `json:"updated_at"`
		Title       string   `json:"title"`
		NumComments int      `json:"num_comments"`
		Children    []int64  `json:"children"`
		Tags        []string `json:"_tags"`
	} `json:"hits"`
	HitsPerPage int `json:"hitsPerPage"`
	NbHits      int `json:"nbHits"`
	NbPages     int `json:"nbPages"`
	Page        int `json:"page"`
}

func (f *fixture) search(t *testing.T, params url.Values) listing {
	t.Helper()
	r := f.get(t, "/search_by_date?"+params.Encode())
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"))
	var l listing
	require.NoError(t, json.Unmarshal(r.body, &l))
	return l
}

func (l listing) ids(t *testing.T) []int64 {
	out := make([]int64, len(l.Hits))
	for i, h := range l.Hits {
		id, err := strconv.ParseInt(h.ObjectID, 10, 64)
		require.NoError(t, err)
		out[i] = id
	}
	return out
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
