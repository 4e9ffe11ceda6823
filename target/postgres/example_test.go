package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/postgres"
	"github.com/tidemark/tidemark/tidemarktest"
)

// Message is a row of the messages table.
type Message struct {
	ID       string  `tidemark:"id,pk"`
	ThreadID string  `tidemark:"thread_id"`
	ParentID *string `tidemark:"parent_id"`
	Text     string  `tidemark:"text"`
}

// Declare a PostgreSQL table with a full-text index and an index of your
// own, keep it in sync, and search it. (Not run: it needs a server.)
func ExampleDeclareTable() {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL") // postgres://…
	db, err := postgres.Connect(ctx, "main", url, postgres.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	src := tidemarktest.NewSource[string, string]()
	src.Set("1", "Rust or Go for a sync engine?")

	flow := tidemark.NewFlow("Messages")
	messages := postgres.DeclareTable[Message](flow, db, "messages")
	postgres.FullText(messages, "text", "english")
	postgres.SQLCommand(messages, "by_thread",
		`CREATE INDEX IF NOT EXISTS messages_by_thread ON {{table}} (thread_id)`,
		`DROP INDEX IF EXISTS {{schema}}.messages_by_thread`)
	tidemark.ForEach(tidemark.AddSource(flow, "threads", src), func(_ context.Context, r *tidemark.Row, id, text string) error {
		messages.Declare(r, Message{ID: id, ThreadID: id, Text: text})
		return nil
	})

	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: url})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	if _, err := engine.Update(ctx, tidemark.UpdateOptions{}); err != nil {
		log.Fatal(err)
	}
	hits, err := messages.Search(ctx, "sync engine", 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hits {
		fmt.Println(h.Row.ID, h.Score, h.Snippet)
	}
}
