// Package hnindex is Tidemark's first application: it keeps the recent
// HackerNews threads, with their whole comment trees, in a full-text
// searchable table, hn_messages, updating only what changed.
//
// The flow, HackerNewsIndex, has one source, threads (the HackerNews
// source of package source/hackernews), and declares one row per thread
// and per comment. App gives the command line (cmd/hnindex is a thin main
// around it); NewFlow builds the flow for programs of their own.
package hnindex

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/source/hackernews"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/target/table"
)

// Names the flow keeps its state under; changing them orphans that state.
const (
	FlowName   = "HackerNewsIndex"
	SourceName = "threads"
	TableName  = "hn_messages"
)

// Content types of a message.
const (
	TypeThread  = "thread"
	TypeComment = "comment"
)

// Message is a row of hn_messages: a thread or a comment.
type Message struct {
	ID       string  `tidemark:"id,pk"`
	ThreadID string  `tidemark:"thread_id"`
	ParentID *string `tidemark:"parent_id"`
	// ContentType is TypeThread or TypeComment.
	ContentType string  `tidemark:"content_type"`
	Author      *string `tidemark:"author"`
	// Text is plain text: for a thread its title, then a blank line and
	// its own text if it has one; for a comment its text.
	Text      string     `tidemark:"text"`
	URL       *string    `tidemark:"url"`
	CreatedAt *time.Time `tidemark:"created_at"`
}

// Messages returns the rows a thread produces: the thread's, then one per
// comment, in the thread's order.
func Messages(t hackernews.Thread) []Message {
	out := make([]Message, 0, 1+len(t.Comments))
	text := t.Title
	if body := hackernews.PlainText(t.Text); body != "" {
		text += "\n\n" + body
	}
	out = append(out, Message{ID: t.ID, ThreadID: t.ID, ContentType: TypeThread, Author: optional(t.Author),
		Text: text, URL: optional(t.URL), CreatedAt: optionalTime(t.CreatedAt)})
	for _, c := range t.Comments {
		out = append(out, Message{ID: c.ID, ThreadID: t.ID, ParentID: optional(c.ParentID), ContentType: TypeComment,
			Author: optional(c.Author), Text: hackernews.PlainText(c.Text), CreatedAt: optionalTime(c.CreatedAt)})
	}
	return out
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Result is one search result, as `search --json` prints it.
type Result struct {
	ID          string     `json:"id"`
	ThreadID    string     `json:"thread_id"`
	ContentType string     `json:"content_type"`
	Author      *string    `json:"author"`
	Text        string     `json:"text"`
	URL         *string    `json:"url"`
	CreatedAt   *time.Time `json:"created_at"`
	Score       float64    `json:"score"`
	// Snippet is the text around the matches, which are between <b> and
	// </b>; it is not part of the JSON output.
	Snippet string `json:"-"`
}

// Results are search results, best first.
type Results []Result

// WriteText prints the results for people: a line per result with its
// score, kind, id and author, then its highlighted snippet.
func (rs Results) WriteText(w io.Writer) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no results")
		return err
	}
	for i, r := range rs {
		author := "[deleted]"
		if r.Author != nil {
			author = *r.Author
		}
		link := ItemURL(r.ID)
		snippet := strings.NewReplacer(table.HighlightStart, "*", table.HighlightEnd, "*", "\n", " ").Replace(r.Snippet)
		if _, err := fmt.Fprintf(w, "%2d. [%.3f] %s by %s  %s\n    %s\n", i+1, r.Score, r.ContentType, author, link, snippet); err != nil {
			return err
		}
	}
	return nil
}

// Flow is the HackerNewsIndex flow with its table.
type Flow struct {
	*tidemark.Flow
	messages *sqltable.Table[Message]
}

// Rows streams the rows of hn_messages, by id.
func (f *Flow) Rows(ctx context.Context) iter.Seq2[Message, error] { return f.messages.Rows(ctx) }

// SearchPage runs a full-text query over the messages for a page of its
// results, best first, with the number of results in all; each result's
// About links it to its row of hn_messages and to the item on HackerNews.
func (f *Flow) SearchPage(ctx context.Context, query string, opts table.SearchOptions) (tidemark.QueryPage, error) {
	page, err := f.messages.SearchPage(ctx, query, opts)
	if err != nil {
		return tidemark.QueryPage{}, err
	}
	out := tidemark.QueryPage{Items: results(page.Hits), Total: page.Total, TotalCapped: page.TotalCapped,
		About: make([]tidemark.QueryItem, len(page.Hits))}
	for i, h := range page.Hits {
		out.About[i] = tidemark.QueryItem{Snippet: h.Snippet, Target: TableName, Key: h.Row.ID, Link: ItemURL(h.Row.ID)}
	}
	return out, nil
}

// ItemURL is the address of a HackerNews item.
func ItemURL(id string) string { return "https://news.ycombinator.com/item?id=" + id }

// Search runs a full-text query over the messages, best first.
func (f *Flow) Search(ctx context.Context, query string, limit int) (Results, error) {
	hits, err := f.messages.Search(ctx, query, limit)
	if err != nil {
		return nil, err
	}
	return results(hits), nil
}

func results(hits []table.Hit[Message]) Results {
	out := make(Results, len(hits))
	for i, h := range hits {
		m := h.Row
		out[i] = Result{ID: m.ID, ThreadID: m.ThreadID, ContentType: m.ContentType, Author: m.Author, Text: m.Text,
			URL: m.URL, CreatedAt: m.CreatedAt, Score: h.Score, Snippet: h.Snippet}
	}
	return out
}

// NewFlow builds the HackerNewsIndex flow: threads from src into the
// hn_messages table of db (a SQLite or PostgreSQL database), with
// full-text search on text in English and a "search" query handler.
func NewFlow(src tidemark.Source[string, hackernews.Thread], db *sqltable.DB) (*Flow, error) {
	if db == nil {
		return nil, fmt.Errorf("hnindex: no database")
	}
	f := &Flow{Flow: tidemark.NewFlow(FlowName)}
	f.messages = sqltable.Declare[Message](f.Flow, db, TableName)
	sqltable.FullText(f.messages, "text", sqltable.FullTextOptions{Language: "english", NewestFirst: "created_at"})
	threads := tidemark.AddSource(f.Flow, SourceName, src, tidemark.MaxInFlight(8))
	tidemark.ForEach(threads, func(_ context.Context, r *tidemark.Row, _ string, t hackernews.Thread) error {
		for _, m := range Messages(t) {
			f.messages.Declare(r, m)
		}
		return nil
	})
	f.QueryHandler("search", func(ctx context.Context, q tidemark.Query) (any, error) {
		if q.Limit == 0 {
			q.Limit = 20
		}
		return f.SearchPage(ctx, q.Text, table.SearchOptions{Limit: q.Limit, Offset: q.Offset})
	})
	return f, nil
}

// App returns the hnindex command line. configure, when not nil, adjusts
// the source's options after the flags are read (tests use it to inject an
// HTTP client or a shorter retry deadline).
func App(configure func(*hackernews.Options)) cli.App {
	var o hackernews.Options
	return cli.App{
		Name:      "hnindex",
		Short:     "Keep recent HackerNews threads and their comments in a full-text searchable table",
		DefaultDB: "hnindex.db",
		Env:       map[string]string{"db": "TIDEMARK_DATABASE_URL", "state": "TIDEMARK_STATE_URL", "hn-url": "HN_API_URL"},
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.BaseURL, "hn-url", "https://hn.algolia.com/api/v1", "the HackerNews (Algolia) API")
			fs.StringVar(&o.Tag, "tag", "story", `the kind of threads listed (story, ask_hn, show_hn, poll, …); "all" or "" for every kind`)
			fs.IntVar(&o.MaxResults, "max-results", 500, "how many of the most recent threads to keep")
			fs.Float64Var(&o.RequestsPerSecond, "rate", 2, "requests per second to the API, at most")
			fs.IntVar(&o.Concurrency, "concurrency", 8, "requests in flight at once, at most")
			fs.DurationVar(&o.MaxElapsed, "retry-deadline", hackernews.DefaultMaxElapsed, "how long to retry a failing request before giving up")
		},
		Validate: func() error { return validateFlags(o) },
		Flow: func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error) {
			opts := o
			if strings.TrimSpace(opts.Tag) == "" {
				opts.Tag = hackernews.AllTags
			}
			if configure != nil {
				configure(&opts)
			}
			if opts.Logger == nil {
				opts.Logger = cli.Logger(ctx)
			}
			src, err := hackernews.New(opts)
			if err != nil {
				return nil, err
			}
			f, err := NewFlow(src, db)
			if err != nil {
				return nil, err
			}
			return f.Flow, nil
		},
	}
}

// validateFlags checks hnindex's flags, naming them in its errors.
func validateFlags(o hackernews.Options) error {
	switch {
	case o.MaxResults < 1 || o.MaxResults > 1_000_000:
		return fmt.Errorf("--max-results must be between 1 and 1000000, got %d", o.MaxResults)
	case !(o.RequestsPerSecond > 0):
		return fmt.Errorf("--rate must be more than 0 requests per second, got %v", o.RequestsPerSecond)
	case o.Concurrency < 1:
		return fmt.Errorf("--concurrency must be at least 1, got %d", o.Concurrency)
	case o.MaxElapsed <= 0:
		return fmt.Errorf("--retry-deadline must be positive, got %s", o.MaxElapsed)
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--hn-url must be an http:// or https:// URL, got %q", o.BaseURL)
	}
	return nil
}
