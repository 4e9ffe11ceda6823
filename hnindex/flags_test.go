package hnindex_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/hnindex"
	"github.com/tidemark/tidemark/source/hackernews"
)

// Zero values of hnindex's own flags are refused with a message naming the
// flag, rather than replaced by the source's defaults.
func TestZeroFlagsAreRefused(t *testing.T) {
	t.Parallel()
	app := hnindex.App(func(o *hackernews.Options) { o.MaxElapsed = 200 * time.Millisecond })
	for _, flag := range []string{"--max-results", "--rate", "--concurrency"} {
		var out, errb bytes.Buffer
		code := cli.Run(t.Context(), app, []string{"update", "--log-level", "error", "--db", filepath.Join(t.TempDir(), "hn.db"),
			"--hn-url", "http://127.0.0.1:1/api/v1", flag, "0"}, cli.Env{Stdout: &out, Stderr: &errb})
		require.Equal(t, cli.ExitFatal, code)
		require.True(t, strings.Contains(errb.String(), flag), "%s 0 is not refused by name; stderr:\n%s", flag, errb.String())
	}
}
