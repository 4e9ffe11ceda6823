package tidemark_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
	"github.com/tidemark/tidemark/tidemarktest"
)

// A destructive change recreates the table; its attachments (an index) are
// gone with it, but their setup state is unchanged, so they are never
// created again.
func TestRegressionDestructiveChangeLosesAttachments(t *testing.T) {
	db := tidemarktest.NewDB()
	src := tidemarktest.NewSource[int, doc]()
	src.Set(1, doc{Title: "a"})
	opts := tidemark.Options{StateStore: filepath.Join(t.TempDir(), "state.db")}
	run := func(keySchema string) {
		f := tidemark.NewFlow("Idx", tidemark.LogicVersion("1"))
		docs := tidemarktest.Table[docRow](f, db, "docs", tidemarktest.KeySchema(keySchema))
		tidemarktest.Index(docs, "by_title", "Title")
		tidemark.ForEach(tidemark.AddSource(f, "docs", src), func(_ context.Context, r *tidemark.Row, id int, d doc) error {
			docs.Declare(r, target.Key(fmt.Sprint(id)), docRow{ID: id, Title: d.Title})
			return nil
		})
		e, err := tidemark.Open(t.Context(), f, opts)
		require.NoError(t, err)
		defer e.Close()
		_, err = e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
	}
	run("1")
	require.Contains(t, db.Indexes("docs"), target.Key("by_title"))
	run("2") // primary key change: drop and recreate
	require.Len(t, db.Rows("docs"), 1, "rows re-exported")
	require.Contains(t, db.Indexes("docs"), target.Key("by_title"), "the index must exist on the recreated table")
}
