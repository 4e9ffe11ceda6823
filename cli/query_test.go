package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/target/table"
)

// A handler's []table.Hit[T] prints readably without a formatter of its
// own: a numbered line per hit with its score and short fields, then its
// snippet with the matches between *.
func TestWriteRecordsOfHits(t *testing.T) {
	t.Parallel()
	type message struct {
		ID     string     `json:"id"`
		Author *string    `json:"author"`
		Text   string     `json:"text"`
		At     *time.Time `json:"created_at"`
	}
	alice := "alice"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	long := "Rust is a systems language; this comment about it goes on well past sixty characters."
	hits := []table.Hit[message]{
		{Row: message{ID: "1", Author: &alice, Text: long, At: &at}, Score: 2.5, Snippet: "<b>Rust</b> is a systems language"},
		{Row: message{ID: "2", Text: "rust again"}, Score: 1},
	}
	var b bytes.Buffer
	require.NoError(t, writeRecords(&b, hits))
	require.Equal(t, ` 1. [2.500] author: alice  created_at: 2026-01-02T03:04:05Z  id: 1
    *Rust* is a systems language
 2. [1.000] id: 2  text: rust again
`, b.String())

	b.Reset()
	require.NoError(t, writeRecords(&b, []table.Hit[message]{}))
	require.Equal(t, "no results\n", b.String())
}
