package hackernews_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/source/hackernews"
)

func TestDescribeOptions(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		opts hackernews.Options
		want map[string]string
	}{
		"defaults": {
			want: map[string]string{"api": "https://hn.algolia.com/api/v1", "tag": "story", "max_results": "500"},
		},
		"set": {
			opts: hackernews.Options{BaseURL: "http://u:secret@127.0.0.1:8081/api/v1/", Tag: "(story,poll)", MaxResults: 1_000_000, HitsPerPage: 10, Concurrency: 2},
			want: map[string]string{"api": "http://127.0.0.1:8081/api/v1", "tag": "(story,poll)", "max_results": "1000000"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := hackernews.New(tt.opts)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, src.DescribeOptions()); diff != "" {
				t.Fatalf("DescribeOptions (-want +got):\n%s", diff)
			}
		})
	}
}
