package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/tidemarktest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	t.Parallel()
	src := tidemarktest.NewSource[string, string]()
	src.Set("a", "the quick brown fox")
	src.Set("b", "a lazy <dog>")
	app, _ := notesApp(src)
	db := filepath.Join(t.TempDir(), "n.db")
	require.Equal(t, 0, run(t, app, cli.Env{}, "update", "--db", db).code)

	s := startServer(t, app, cli.Env{}, "--db", db, "--live", "--refresh", "50ms")
	base := s.base

	code, body := get(t, base+"/api/search?q=fox")
	require.Equal(t, http.StatusOK, code, body)
	var hits []hit
	require.NoError(t, json.Unmarshal([]byte(body), &hits))
	require.Len(t, hits, 1)
	require.Equal(t, "a", hits[0].ID)

	code, body = get(t, base+"/api/search?q=")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"error"`)
	code, _ = get(t, base+"/api/search?q=fox&limit=0")
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = get(t, base+"/api/nope?q=fox")
	require.Equal(t, http.StatusNotFound, code)

	// A query's cost is bounded: repeated terms count once, too many
	// distinct ones are the asker's fault.
	code, body = get(t, base+"/api/search?q="+strings.Repeat("fox+", 2000))
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"id":"a"`)
	var words []string
	for i := range 65 {
		words = append(words, "w"+strings.Repeat("x", i))
	}
	code, body = get(t, base+"/api/search?q="+strings.Join(words, "+OR+"))
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "at most 64 are allowed")

	code, body = get(t, base+"/?q="+strings.Join(words, "+OR+"))
	require.Equal(t, http.StatusBadRequest, code, "the page says the asker's fault too")
	require.Contains(t, body, "at most 64 are allowed")

	code, body = get(t, base+"/?q=dog")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "a lazy &lt;<mark>dog</mark>&gt;", "results are shown, escaped, with their matches marked")
	require.Contains(t, body, "results 1 to 1 of 1")

	// --live: a change in the source shows up in the search while serving.
	src.Set("c", "a fox in the henhouse")
	require.Eventually(t, func() bool {
		_, body := get(t, base+"/api/search?q=henhouse")
		return strings.Contains(body, `"id":"c"`)
	}, 10*time.Second, 20*time.Millisecond)

	require.Equal(t, 0, s.close(t), s.errb.String())
	require.Contains(t, s.out.String(), "stopped")
}
