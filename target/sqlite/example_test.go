package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqlite"
	"github.com/tidemark/tidemark/tidemarktest"
)

// Post is a source row: a blog post.
type Post struct {
	Title     string
	Body      string
	Tags      []string
	Published time.Time
}

// PostRow is a row of the posts table: the struct's tags give the columns.
type PostRow struct {
	Slug      string    `tidemark:"slug,pk"`
	Title     string    `tidemark:"title"`
	Body      string    `tidemark:"body"`
	Tags      []string  `tidemark:"tags"` // stored as JSON
	Published time.Time `tidemark:"published_at"`
	Draft     *string   `tidemark:"draft_note"` // a pointer: nullable
}

func posts() *tidemarktest.Source[string, Post] {
	src := tidemarktest.NewSource[string, Post]()
	day := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	src.Set("incremental-indexing", Post{Title: "Incremental indexing", Body: "Fetch only what changed, write only what changed.", Tags: []string{"sync"}, Published: day})
	src.Set("two-phase", Post{Title: "Two-phase writes", Body: "Stage the keys, write the rows, commit: a crash changes nothing.", Tags: []string{"crash", "sync"}, Published: day.AddDate(0, 0, 7)})
	src.Set("fts", Post{Title: "Full-text search", Body: "Search the posts with words, phrases and exclusions; a crash never breaks the index.", Tags: []string{"search"}, Published: day.AddDate(0, 0, 14)})
	return src
}

// Declare a table from a Go struct and keep it in sync with a source.
func ExampleDeclareTable() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tidemark-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.db")

	db, err := sqlite.Open(ctx, "main", path) // the tables' database: here the state store's file too
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	flow := tidemark.NewFlow("Blog")
	table := sqlite.DeclareTable[PostRow](flow, db, "posts")
	tidemark.ForEach(tidemark.AddSource(flow, "posts", posts()), func(_ context.Context, r *tidemark.Row, slug string, p Post) error {
		table.Declare(r, PostRow{Slug: slug, Title: p.Title, Body: p.Body, Tags: p.Tags, Published: p.Published})
		return nil
	})
	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
		log.Fatal(err)
	}

	for row, err := range table.Rows(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(row.Slug, row.Published.Format(time.DateOnly), row.Tags)
	}
	// Output:
	// fts 2026-11-15 [search]
	// incremental-indexing 2026-11-01 [sync]
	// two-phase 2026-11-08 [crash sync]
}

// Keep a full-text index of a column and search it.
func ExampleFullText() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tidemark-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.db")
	db, err := sqlite.Open(ctx, "main", path)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	flow := tidemark.NewFlow("Blog")
	table := sqlite.DeclareTable[PostRow](flow, db, "posts")
	sqlite.FullText(table, "body")
	tidemark.ForEach(tidemark.AddSource(flow, "posts", posts()), func(_ context.Context, r *tidemark.Row, slug string, p Post) error {
		table.Declare(r, PostRow{Slug: slug, Title: p.Title, Body: p.Body, Tags: p.Tags, Published: p.Published})
		return nil
	})
	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: path})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
		log.Fatal(err)
	}

	for _, q := range []string{"crash", `crash -index`, `"write only"`} {
		hits, err := table.Search(ctx, q, 10)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s:\n", q)
		for _, h := range hits {
			fmt.Printf("  %s: %s\n", h.Row.Slug, h.Snippet)
		}
	}
	// Output:
	// crash:
	//   two-phase: Stage the keys, write the rows, commit: a <b>crash</b> changes nothing.
	//   fts: Search the posts with words, phrases and exclusions; a <b>crash</b> never breaks the index.
	// crash -index:
	//   two-phase: Stage the keys, write the rows, commit: a <b>crash</b> changes nothing.
	// "write only":
	//   incremental-indexing: Fetch only what changed, <b>write only</b> what changed.
}
