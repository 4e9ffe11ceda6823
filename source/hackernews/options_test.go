package hackernews

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()

	o := Options{}.withDefaults()
	require.NoError(t, o.validate())
	require.Equal(t, "https://hn.algolia.com/api/v1", o.BaseURL)
	require.Equal(t, "story", o.Tag)
	require.Equal(t, 500, o.MaxResults)
	require.Equal(t, 500, o.HitsPerPage)
	require.Equal(t, 2.0, o.RequestsPerSecond)
	require.Equal(t, 4, o.Burst)
	require.Equal(t, 8, o.Concurrency)
	require.Equal(t, 30*time.Second, o.Timeout)
	require.Equal(t, 2*time.Minute, o.MaxElapsed)
	require.NotNil(t, o.HTTPClient)
	require.NotNil(t, o.Logger)

	require.Equal(t, 1000, Options{MaxResults: 5000}.withDefaults().HitsPerPage)
	require.Equal(t, "http://x/api", Options{BaseURL: "http://x/api/"}.withDefaults().BaseURL)

	// Two sources never share a client.
	require.NotSame(t, Options{}.withDefaults().HTTPClient, Options{}.withDefaults().HTTPClient)

}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		opts Options
		want string
	}{
		"BaseURL scheme":        {Options{BaseURL: "ftp://x"}, `hackernews: BaseURL must be an http or https URL, got "ftp://x"`},
		"BaseURL relative":      {Options{BaseURL: "hn.algolia.com/api/v1"}, `hackernews: BaseURL must be an http or https URL, got "hn.algolia.com/api/v1"`},
		"BaseURL no host":       {Options{BaseURL: "http:///api"}, `hackernews: BaseURL must name a host, got "http:///api"`},
		"BaseURL query":         {Options{BaseURL: "http://x/api?a=1"}, `hackernews: BaseURL must have no query or fragment, got "http://x/api?a=1"`},
		"BaseURL not a URL":     {Options{BaseURL: "http://x y/%zz"}, `hackernews: BaseURL "http://x y/%zz" is not a URL`},
		"MaxResults negative":   {Options{MaxResults: -1}, "hackernews: MaxResults must be between 1 and 1000000, got -1"},
		"MaxResults too big":    {Options{MaxResults: 1_000_001}, "hackernews: MaxResults must be between 1 and 1000000, got 1000001"},
		"HitsPerPage too big":   {Options{HitsPerPage: 1001}, "hackernews: HitsPerPage must be between 1 and 1000, got 1001"},
		"HitsPerPage negative":  {Options{HitsPerPage: -5}, "hackernews: HitsPerPage must be between 1 and 1000, got -5"},
		"RequestsPerSecond":     {Options{RequestsPerSecond: -1}, "hackernews: RequestsPerSecond must be positive, got -1"},
		"RequestsPerSecond NaN": {Options{RequestsPerSecond: math.NaN()}, "hackernews: RequestsPerSecond must be positive, got NaN"},
		"Burst":                 {Options{Burst: -1}, "hackernews: Burst must be at least 1, got -1"},
		"Concurrency":           {Options{Concurrency: -2}, "hackernews: Concurrency must be at least 1, got -2"},
		"Timeout":               {Options{Timeout: -time.Second}, "hackernews: Timeout must not be negative, got -1s"},
		"MaxElapsed":            {Options{MaxElapsed: -time.Second}, "hackernews: MaxElapsed must not be negative, got -1s"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.opts)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
