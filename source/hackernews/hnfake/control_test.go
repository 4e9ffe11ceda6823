package hnfake_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// TestControlEndpointsAnswer: every listed control endpoint is served, and
// another method on its path answers 405 with the listed methods.
func TestControlEndpointsAnswer(t *testing.T) {
	t.Parallel()
	endpoints := hnfake.ControlEndpoints()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: len(endpoints), CommentsPerThread: 1, Seed: 1})
	h := hnfake.NewServer(d).Handler()
	threads := d.Threads()
	allow := map[string][]string{}
	for i, e := range endpoints {
		// A thread of its own: a deleted one is not there to hide.
		query := strings.NewReplacer("[&depth=D]", "", "N", strconv.FormatInt(threads[i].ID, 10), "M", "1")
		require.NotEmpty(t, e.Doc, "%s %s", e.Method, e.Path)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(e.Method, e.Path+query.Replace(e.Query), strings.NewReader("{}")))
		require.Contains(t, []int{http.StatusOK, http.StatusNoContent}, rec.Code, "%s %s: %s", e.Method, e.Path, rec.Body)
		allow[e.Path] = append(allow[e.Path], e.Method)
	}
	for path, methods := range allow {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", path, nil))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code, path)
		require.Equal(t, strings.Join(methods, ", "), rec.Header().Get("Allow"), path)
	}
}

// TestControlEndpointsAreListed: no control path is written in the
// package's code but the prefix of controlRoutes, where every endpoint is
// registered with its doc; one registered elsewhere would be missing from
// ControlEndpoints, and so from hnfake -h.
func TestControlEndpointsAreListed(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			if strings.Contains(v, "/_fake/") && v != "/_fake/" {
				t.Errorf("%s: control path %q: register control endpoints in controlRoutes, with their doc", fset.Position(lit.Pos()), v)
			}
			return true
		})
	}
}
