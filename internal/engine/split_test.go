package engine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSplitByRow(t *testing.T) {
	t.Parallel()
	// actionsOf makes, for each count, a row with that many actions.
	actionsOf := func(counts ...int) []*plannedAction {
		var out []*plannedAction
		for _, c := range counts {
			r := &rowResult{}
			for range c {
				out = append(out, &plannedAction{row: r})
			}
		}
		return out
	}
	tests := map[string]struct {
		counts []int
		n      int
		sizes  []int
	}{
		"one row stays whole":        {counts: []int{10}, n: 4, sizes: []int{10}},
		"even rows":                  {counts: []int{2, 2, 2, 2}, n: 2, sizes: []int{4, 4}},
		"more parts than rows":       {counts: []int{3, 1}, n: 8, sizes: []int{3, 1}},
		"a big row first":            {counts: []int{9, 1, 1, 1}, n: 2, sizes: []int{9, 3}},
		"a big row last":             {counts: []int{1, 1, 1, 9}, n: 3, sizes: []int{2, 1, 9}},
		"every part gets a row":      {counts: []int{1, 1, 1, 1, 1, 1}, n: 3, sizes: []int{2, 2, 2}},
		"no split":                   {counts: []int{1, 2, 3}, n: 1, sizes: []int{6}},
		"rows of one action, 4 ways": {counts: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, n: 4, sizes: []int{3, 3, 3, 1}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			actions := actionsOf(tt.counts...)
			parts := splitByRow(actions, tt.n)
			var sizes []int
			partOf := make(map[*rowResult]int)
			var n int
			for i, p := range parts {
				sizes = append(sizes, len(p))
				for _, a := range p {
					if j, ok := partOf[a.row]; ok {
						require.Equal(t, j, i, "a row's actions are in one part")
					}
					partOf[a.row] = i
					require.Same(t, actions[n], a, "the order of actions is kept")
					n++
				}
			}
			require.Equal(t, tt.sizes, sizes)
		})
	}
}
