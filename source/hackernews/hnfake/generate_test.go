package hnfake_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	o := hnfake.GenerateOptions{Threads: 40, CommentsPerThread: 15, Depth: 4, Seed: 99, TextBytes: 150}
	a, b := hnfake.Generate(o).Threads(), hnfake.Generate(o).Threads()
	require.Empty(t, cmp.Diff(a, b))
	o.Seed++
	c := hnfake.Generate(o).Threads()
	require.NotEqual(t, a[0].Title+a[1].Title, c[0].Title+c[1].Title)
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	o := hnfake.GenerateOptions{Threads: 200, CommentsPerThread: 20, Depth: 3, Seed: 1, Start: start, TextBytes: 200}
	d := hnfake.Generate(o)
	require.Equal(t, 200, d.Len())
	require.Equal(t, 200*21, d.NumItems())
	threads := d.Threads()
	require.Equal(t, start, threads[0].CreatedAt, "Start is the newest thread")

	seen := map[int64]bool{}
	var textBytes, texts int
	var all strings.Builder
	asks, shows := 0, 0
	for _, th := range threads {
		require.False(t, seen[th.ID])
		seen[th.ID] = true
		require.GreaterOrEqual(t, th.ID, int64(hnfake.FirstGeneratedID))
		require.Equal(t, "story", th.Type)
		require.NotEmpty(t, th.Author)
		require.NotEmpty(t, th.Title)
		require.Positive(t, th.Points)
		require.True(t, th.URL != "" || th.Text != "", "a link or a text")
		require.True(t, utf8.ValidString(th.Title))
		asks += b2i(strings.HasPrefix(th.Title, "Ask HN: "))
		shows += b2i(strings.HasPrefix(th.Title, "Show HN: "))
		newest := th.CreatedAt
		comments := 0
		type item struct {
			n      *hnfake.Node
			depth  int
			parent int64
			at     time.Time
		}
		var stack []item
		for _, c := range th.Children {
			stack = append(stack, item{c, 1, th.ID, th.CreatedAt})
		}
		for len(stack) > 0 {
			it := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			comments++
			require.False(t, seen[it.n.ID], "ids are unique across threads and comments")
			seen[it.n.ID] = true
			require.LessOrEqual(t, it.depth, o.Depth)
			require.Greater(t, it.n.ID, it.parent, "a reply has a larger id than its parent")
			require.True(t, it.n.CreatedAt.After(it.at), "a reply comes after its parent")
			require.NotEmpty(t, it.n.Author)
			require.True(t, utf8.ValidString(it.n.Text))
			textBytes += len(it.n.Text)
			texts++
			all.WriteString(it.n.Text)
			if it.n.CreatedAt.After(newest) {
				newest = it.n.CreatedAt
			}
			for i, c := range it.n.Children {
				if i > 0 {
					require.Greater(t, c.ID, it.n.Children[i-1].ID, "replies in id order")
				}
				stack = append(stack, item{c, it.depth + 1, it.n.ID, it.n.CreatedAt})
			}
		}
		require.Equal(t, o.CommentsPerThread, comments)
		require.True(t, th.UpdatedAt.After(newest), "updated_at follows the newest comment")
	}
	require.InDelta(t, 20, asks, 12)
	require.InDelta(t, 20, shows, 12)
	mean := float64(textBytes) / float64(texts)
	require.InDelta(t, 200, mean, 40, "mean text length")
	for _, want := range []string{"<p>", `<a href="https:&#x2F;&#x2F;`, `" rel="nofollow">`, "<i>", "&#x27;", "&quot;", "&amp;", "&gt; ", "<pre><code>", "—", "🙂"} {
		require.Contains(t, all.String(), want)
	}
}

func TestGenerateDefaultsAndLimits(t *testing.T) {
	t.Parallel()
	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 3, CommentsPerThread: 50})
	require.Equal(t, time.Date(2026, 7, 9, 3, 48, 29, 0, time.UTC), d.Threads()[0].CreatedAt)
	require.Equal(t, 0, hnfake.Generate(hnfake.GenerateOptions{}).Len())
	flat := hnfake.Generate(hnfake.GenerateOptions{Threads: 2, CommentsPerThread: 30, Depth: 1})
	for _, th := range flat.Threads() {
		require.Len(t, th.Children, 30)
		for _, c := range th.Children {
			require.Empty(t, c.Children)
		}
	}
	require.PanicsWithValue(t, "hnfake: Generate: Threads must not be negative, got -1", func() {
		hnfake.Generate(hnfake.GenerateOptions{Threads: -1})
	})
	require.Panics(t, func() { hnfake.Generate(hnfake.GenerateOptions{CommentsPerThread: -1}) })
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
