package httpsource

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewPolicy(t *testing.T) {
	t.Parallel()

	c, err := New(Options{})
	require.NoError(t, err)
	require.Equal(t, 250*time.Millisecond, c.policy.Initial)
	require.Equal(t, 30*time.Second, c.policy.Max)
	require.NoError(t, c.policy.Validate())
	c, err = New(Options{MaxElapsed: time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, c.policy.Validate())
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 7, 9, 3, 50, 14, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                                 0,
		"0":                                0,
		"-3":                               0,
		"7":                                7 * time.Second,
		" 120 ":                            2 * time.Minute,
		"99999999999":                      24 * time.Hour,
		"Thu, 09 Jul 2026 03:51:14 GMT":    time.Minute,
		"Thu, 09 Jul 2026 03:50:00 GMT":    0, // in the past
		"Thursday, 09-Jul-26 03:50:44 GMT": 30 * time.Second,
		"soon":                             0,
	} {
		require.Equal(t, want, RetryAfter(in, now), "Retry-After %q", in)
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()

	require.Equal(t, "a b c", snippet(strings.NewReader("  a\n\tb  c \n")))
	require.Equal(t, strings.Repeat("é", 100)+"…", snippet(strings.NewReader(strings.Repeat("é", 300))), "cut at 200 bytes, on a rune")
	require.Equal(t, "\uFFFDx", snippet(strings.NewReader("\xffx")))
}
