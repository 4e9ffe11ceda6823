package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/pgtest"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktest"
)

type doc struct {
	ID   string `tidemark:"id,pk"`
	Body string `tidemark:"body"`
}

// distinctWords returns n bytes of words that are all different: the
// densest text for a tsvector.
func distinctWords(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "w%xq ", i*7919)
	}
	return b.String()[:n]
}

// TestFullTextOfAHugeText writes a row of 3 MB of distinct words, past
// tsvector's 1 MB, into a table whose index was set up before the bound
// (as older versions did): the next update rebuilds the index with the
// bound, writes the row, and a word near its start is found.
func TestFullTextOfAHugeText(t *testing.T) {
	t.Parallel()
	url, schema := pgtest.Schema(t)
	db, err := Connect(t.Context(), "main", url, Options{Schema: schema})
	require.NoError(t, err)
	defer db.Close()
	src := tidemarktest.NewSource[string, string]()
	src.Set("small", "a small document")
	update := func(spec FullTextSpec) (*Table[doc], error) {
		f := tidemark.NewFlow("Docs")
		tbl := DeclareTable[doc](f, db, "docs")
		table.AttachFullText(tbl.Target, "postgres", fullTextKind, "body", spec)
		tbl.fullText = &spec
		tidemark.ForEach(tidemark.AddSource(f, "docs", src), func(_ context.Context, r *tidemark.Row, k, v string) error {
			tbl.Declare(r, doc{ID: k, Body: v})
			return nil
		})
		e, err := tidemark.Open(t.Context(), f, tidemark.Options{StateStore: url, StateSchema: schema})
		require.NoError(t, err)
		defer e.Close()
		st, err := e.Update(t.Context(), tidemark.UpdateOptions{})
		require.NoError(t, err)
		for _, f := range st.Failures {
			return tbl, errors.New(f.Message)
		}
		return tbl, nil
	}
	expression := func() string {
		var expr string
		require.NoError(t, db.pool.QueryRow(t.Context(), `SELECT generation_expression FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = 'docs' AND column_name = 'body_tsv'`, schema).Scan(&expr))
		return expr
	}

	_, err = update(FullTextSpec{Column: "body", Language: "english"})
	require.NoError(t, err)
	require.Equal(t, "to_tsvector('english'::regconfig, COALESCE(body, ''::text))", expression(), "the index of older versions")

	huge := "needle " + distinctWords(3<<20)
	src.Set("huge", huge)
	_, err = update(FullTextSpec{Column: "body", Language: "english"})
	require.ErrorContains(t, err, "string is too long for tsvector", "what older versions did")

	tbl, err := update(FullTextSpec{Column: "body", Language: "english", MaxChars: FullTextMaxChars})
	require.NoError(t, err)
	require.Equal(t, "to_tsvector('english'::regconfig, COALESCE(\"left\"(body, 100000), ''::text))", expression())
	var size int
	require.NoError(t, db.pool.QueryRow(t.Context(), `SELECT octet_length(body) FROM `+tbl.QualifiedName()+` WHERE id = 'huge'`).Scan(&size))
	require.Equal(t, len(huge), size, "the whole text is kept")
	for _, q := range []string{"needle", strings.Fields(huge)[1000]} {
		hits, err := tbl.Search(t.Context(), q, 10)
		require.NoError(t, err)
		require.Len(t, hits, 1, q)
		require.Equal(t, "huge", hits[0].Row.ID)
		require.Contains(t, hits[0].Snippet, table.HighlightStart+q+table.HighlightEnd)
	}
	hits, err := tbl.Search(t.Context(), strings.Fields(huge)[len(strings.Fields(huge))-2], 10)
	require.NoError(t, err)
	require.Empty(t, hits, "a word past the bound is not indexed")
	hits, err = tbl.Search(t.Context(), "small", 10)
	require.NoError(t, err)
	require.Len(t, hits, 1)
}

// TestFullTextBoundFitsTheDensestText checks FullTextMaxChars against the
// densest text measured: two-letter hyphenated words of distinct 4-byte
// letters.
func TestFullTextBoundFitsTheDensestText(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.Pool(t)
	var b strings.Builder
	for c := rune(0x20000); b.Len() < 4*FullTextMaxChars*2; c += 2 {
		b.WriteString(string(c) + "-" + string(c+1) + " ")
	}
	var n, lexemes, size int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT length($1), length(v), pg_column_size(v)
		FROM to_tsvector('english', left($1, $2)) AS v`, b.String(), FullTextMaxChars).Scan(&n, &lexemes, &size))
	require.Greater(t, n, FullTextMaxChars)
	require.Greater(t, lexemes, 74000, "a word and its two parts from each 4 characters")
	require.Less(t, size, 1100000, "lexemes and positions under 1 MB, with 4 bytes of entry each")
}

// TestSearchStopsTheServer checks that a read past its context's deadline
// is stopped by the server, not only abandoned by the client.
func TestSearchStopsTheServer(t *testing.T) {
	t.Parallel()
	url, schema := pgtest.Schema(t)
	db, err := Connect(t.Context(), "main", url+"&application_name=tmstop"+schema, Options{Schema: schema})
	require.NoError(t, err)
	defer db.Close()
	ctx, cancel := table.WithSearchTimeout(t.Context())
	defer cancel()
	ctx, cancelSooner := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelSooner()
	start := time.Now()
	err = timedRead(ctx, db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_sleep(30)`)
		return err
	})
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Eventually(t, func() bool {
		var running int
		require.NoError(t, db.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()`, "tmstop"+schema).Scan(&running))
		return running == 0
	}, 2*time.Second, 20*time.Millisecond, "the server stopped the query")
}
