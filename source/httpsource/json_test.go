package httpsource_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
)

func listJSON(t *testing.T, s *httpsource.JSONSource) ([]tidemark.Listed[string], error) {
	t.Helper()
	var out []tidemark.Listed[string]
	for l, err := range s.List(t.Context()) {
		if err != nil {
			return out, err
		}
		out = append(out, l)
	}
	return out, nil
}

// TestJSONPagers: a cursor in the body, page numbers, and ordinals as
// integers or RFC 3339 times; a listing that cannot be read is an error,
// never a short listing.
func TestJSONPagers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch r.URL.Path {
		case "/cursor":
			switch q.Get("after") {
			case "":
				fmt.Fprint(w, `{"items":[{"id":"a","v":1},{"id":"b","v":2}],"meta":{"next":"b"}}`)
			case "b":
				fmt.Fprint(w, `{"items":[{"id":"c","v":3}],"meta":{"next":null}}`)
			}
		case "/pages":
			n, _ := strconv.Atoi(q.Get("p"))
			if n < 3 {
				fmt.Fprintf(w, `[{"k":%d,"at":"2026-12-0%dT00:00:00Z"}]`, n, n+1)
				return
			}
			fmt.Fprint(w, `[]`)
		case "/loop":
			w.Header().Set("Link", `</loop>; rel="next"`)
			fmt.Fprint(w, `[]`)
		case "/notarray":
			fmt.Fprint(w, `{"items":{}}`)
		case "/nokey":
			fmt.Fprint(w, `[{"name":"x"}]`)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, httpsource.Options{RequestsPerSecond: 1000})
	src := func(o httpsource.JSONOptions) *httpsource.JSONSource {
		t.Helper()
		o.ItemURL = srv.URL + "/items/{key}"
		s, err := httpsource.NewJSONSource(c, o)
		require.NoError(t, err)
		return s
	}

	got, err := listJSON(t, src(httpsource.JSONOptions{ListURL: srv.URL + "/cursor", Items: "/items", Key: "/id", Ordinal: "/v", Pages: httpsource.Cursor("/meta/next", "after")}))
	require.NoError(t, err)
	require.Equal(t, []tidemark.Listed[string]{{Key: "a", Ordinal: 1}, {Key: "b", Ordinal: 2}, {Key: "c", Ordinal: 3}}, got)

	got, err = listJSON(t, src(httpsource.JSONOptions{ListURL: srv.URL + "/pages", Key: "/k", Ordinal: "/at", Pages: httpsource.PageNumber("p", 0)}))
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "2", got[2].Key)
	require.Equal(t, tidemark.Ordinal(1796256000000000), got[2].Ordinal, "2026-12-03 in µs")

	_, err = listJSON(t, src(httpsource.JSONOptions{ListURL: srv.URL + "/loop", Key: "/id"}))
	require.ErrorContains(t, err, "the pages loop")
	_, err = listJSON(t, src(httpsource.JSONOptions{ListURL: srv.URL + "/notarray", Items: "/items", Key: "/id"}))
	require.ErrorContains(t, err, `no array of items at "/items"`)
	_, err = listJSON(t, src(httpsource.JSONOptions{ListURL: srv.URL + "/nokey", Key: "/id"}))
	require.ErrorContains(t, err, `no key (a string or a number) at "/id"`)

	_, err = httpsource.NewJSONSource(c, httpsource.JSONOptions{ListURL: srv.URL, Key: "id", ItemURL: srv.URL + "/{key}"})
	require.ErrorContains(t, err, "not a JSON pointer")
	_, err = httpsource.NewJSONSource(c, httpsource.JSONOptions{ListURL: srv.URL, Key: "/id", ItemURL: srv.URL})
	require.ErrorContains(t, err, "has no {key}")
}
