package tidemark_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// The tests of this file come from a review that tried to break ownership
// moves and shared states; each failed before its fix.

// slowGet makes the source's Get of id slow, so that its row lands in a
// later batch than the others.
func slowGet(c *claims, id int) {
	c.src.OnGet(func(k int) {
		if k == id {
			time.Sleep(300 * time.Millisecond)
		}
	})
}

// TestRegressionRewriteMarkSurvivesAFailure: rows 1 and 2 declare k, row
// 1's value is the one in the target. Row 1 stops declaring k while row 2,
// in a later batch, changes, and then fails (or the update crashes): row 2
// must still know its value may not be the one in the target, else k keeps
// the value of a row that no longer declares it.
func TestRegressionRewriteMarkSurvivesAFailure(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"row fails", "crash"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, backend string) {
				c := newClaims(t, backend)
				c.opts.Batch = tidemark.BatchOptions{MaxRows: 1, MaxDelay: time.Millisecond}
				c.src.Set(1, doc{Title: "one"})
				c.src.Set(2, doc{Title: "two", Tags: []string{"k"}})
				c.mustUpdate()
				c.src.Set(1, doc{Title: "one", Tags: []string{"k"}})
				c.mustUpdate()
				require.Equal(t, claimRow{Tag: "k", Note: "one"}, c.db.Rows("claims")["k"])

				c.src.Set(1, doc{Title: "one"})
				slowGet(c, 2)
				switch how {
				case "row fails":
					c.src.Set(2, doc{Title: "two", Tags: []string{"k", "poison"}})
					c.db.FailRow("poison", errors.New("refused"))
					st, err := c.update()
					require.NoError(t, err)
					require.Equal(t, int64(1), st.Failed())
				case "crash":
					c.src.Set(2, doc{Title: "two", Tags: []string{"k", "x"}})
					var applies atomic.Int32
					c.opts.Faults = tidemark.FaultHooks{BeforeApply: func(context.Context) error {
						if applies.Add(1) == 2 {
							return errCrash
						}
						return nil
					}}
					_, err := c.update()
					require.ErrorIs(t, err, errCrash)
					c.opts.Faults = tidemark.FaultHooks{}
				}
				c.db.Heal()
				c.src.OnGet(nil)
				c.mustUpdate()
				c.expect()
			})
		})
	}
}

// TestRegressionMaxActionsBoundsDeferredDeclarations: declarations left to
// the writer (in a table some row owns states of) count towards MaxActions.
func TestRegressionMaxActionsBoundsDeferredDeclarations(t *testing.T) {
	t.Parallel()
	for _, owned := range []bool{false, true} {
		t.Run(fmt.Sprintf("owned=%v", owned), func(t *testing.T) {
			t.Parallel()
			c := newClaims(t, "sqlite")
			c.opts.Batch = tidemark.BatchOptions{MaxActions: 4, MaxDelay: time.Second}
			if owned {
				c.src.Set(100, doc{Title: "seed", Tags: []string{"seed"}})
				c.mustUpdate()
			}
			for i := range 10 {
				c.src.Set(i, doc{Title: "t", Tags: []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)}})
			}
			c.mustUpdate()
			c.expect()
			require.GreaterOrEqual(t, c.db.Counts().Applies, 5, "20 actions, at most 4 a batch: %+v", c.db.Counts())
		})
	}
}

// TestRegressionAdoptSeesAStaleVersion: rows 1 and 3 declare k, row 1's
// value is in the target. Row 1 stops declaring k in one batch, row 2
// starts in a later one: row 2's handler must be told that row 1's version
// may be there.
func TestRegressionAdoptSeesAStaleVersion(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		c := newClaims(t, backend)
		c.opts.Batch = tidemark.BatchOptions{MaxRows: 1, MaxDelay: time.Millisecond}
		c.src.Set(1, doc{Title: "one"})
		c.src.Set(2, doc{Title: "three"})
		c.src.Set(3, doc{Title: "three", Tags: []string{"k"}})
		c.mustUpdate()
		c.src.Set(1, doc{Title: "one", Tags: []string{"k"}})
		c.mustUpdate()
		require.Equal(t, claimRow{Tag: "k", Note: "one"}, c.db.Rows("claims")["k"])

		c.src.Set(1, doc{Title: "one"})
		c.src.Set(2, doc{Title: "three", Tags: []string{"k"}})
		slowGet(c, 2)
		c.mustUpdate()
		c.expect()
		one := rowRecord(t, claimRow{Tag: "k", Note: "one"})
		got := c.upserts("k")
		require.NotEmpty(t, got)
		for _, r := range got {
			require.True(t, slices.ContainsFunc(r.Prev, func(p target.Record) bool { return string(p) == string(one) }),
				"row 1's value is in the target: prev must list it (got %x, may be missing %v)", r.Prev, r.PrevMayBeMissing)
		}
	})
}
