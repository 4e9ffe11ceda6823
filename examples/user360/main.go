// Command user360 keeps a table of users, users360, assembled from three
// internal services — accounts, billing and a CRM, each its own JSON API
// with its own updated_at per user — and full-text searchable, in an
// embedded SQLite file. It starts fakes of the three services on loopback,
// updates the table, updates it again (nothing is fetched), changes one
// user's plan in billing, updates again (only that user is fetched and
// written), and searches; it prints what each service was asked.
//
//	go run ./examples/user360
//	go run ./examples/user360 -db /tmp/u.db -query 'sso OR residency'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
	"github.com/tidemark/tidemark/target/sqlite"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.DB, "db", "user360.db", "the SQLite file of the users360 table and of Tidemark's state")
	flag.StringVar(&cfg.Query, "query", "enterprise", "the full-text search to run at the end")
	flag.Float64Var(&cfg.Rate, "rate", 200, "requests per second to each service")
	flag.Parse()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "user360:", err)
		os.Exit(1)
	}
}

// config configures a run.
type config struct {
	DB     string  // the SQLite file: the table and Tidemark's state
	Query  string  // the search run at the end
	Rate   float64 // requests per second to each service
	Logger *slog.Logger
	// RetryDeadline bounds the retries of one request (default 2 minutes).
	RetryDeadline time.Duration
}

// Row is a row of the users360 table: one user as the three services know
// them. The billing and CRM columns are NULL where that service has no
// record of the user. SearchText, which the full-text index covers, holds
// the name, email, company, plan and CRM notes.
type Row struct {
	ID         string  `tidemark:"id,pk"`
	Name       string  `tidemark:"name"`
	Email      string  `tidemark:"email"`
	Plan       *string `tidemark:"plan"`
	Seats      *int    `tidemark:"seats"`
	Company    *string `tidemark:"company"`
	Owner      *string `tidemark:"account_owner"`
	Notes      *string `tidemark:"crm_notes"`
	SearchText string  `tidemark:"search_text"`
}

// toRow is the processing of one user.
func toRow(u User) Row {
	r := Row{ID: u.Account.ID, Name: u.Account.Name, Email: u.Account.Email}
	text := []string{u.Account.Name, u.Account.Email}
	if b := u.Billing; b != nil {
		r.Plan, r.Seats = &b.Plan, &b.Seats
		text = append(text, "plan "+b.Plan)
	}
	if c := u.CRM; c != nil {
		r.Company, r.Owner, r.Notes = &c.Company, &c.Owner, &c.Notes
		text = append(text, c.Company, c.Notes)
	}
	r.SearchText = strings.Join(text, " · ")
	return r
}

// run starts the fake services and walks through the demo, printing to
// out what each update did and what each service was asked.
func run(ctx context.Context, out io.Writer, cfg config) error {
	existed, err := tidemark.StateExists(ctx, tidemark.Options{StateStore: cfg.DB})
	if err != nil {
		return err
	}
	svcs := StartServices()
	defer svcs.Close()
	a, err := open(ctx, cfg, svcs)
	if err != nil {
		return err
	}
	defer a.Close()

	step := func(title string) error {
		fmt.Fprintln(out, "==", title)
		return a.update(ctx, out)
	}
	first := "update 1: a new database"
	if existed {
		first = "update 1: " + cfg.DB + " holds a previous run's rows; the fakes start afresh, so u007's plan is back to team, with an older updated_at"
	}
	if err := step(first); err != nil {
		return err
	}
	if err := step("update 2: nothing changed"); err != nil {
		return err
	}
	if err := svcs.Billing.Edit("u007", map[string]any{"plan": "enterprise", "seats": 40}); err != nil {
		return err
	}
	if err := step("update 3: billing moves u007 from team to enterprise, stamped by its clock, 3h behind the others"); err != nil {
		return err
	}
	fmt.Fprintf(out, "== search %q\n", cfg.Query)
	hits, err := a.users.Search(ctx, cfg.Query, 10)
	if err != nil {
		return fmt.Errorf("searching: %w", err)
	}
	for _, h := range hits {
		fmt.Fprintf(out, "%s  %s\n", h.Row.ID, h.Snippet)
	}
	return nil
}

// app is the flow opened on its database, with the fakes it reads.
type app struct {
	svcs      *Services
	db        *sqlite.DB
	users     *sqlite.Table[Row]
	source    *Source
	engine    *tidemark.Engine
	transport *http.Transport
}

// open declares the flow — the users source, the users360 table and its
// full-text index — and opens it on cfg.DB.
func open(ctx context.Context, cfg config, svcs *Services) (*app, error) {
	a := &app{svcs: svcs, transport: http.DefaultTransport.(*http.Transport).Clone()}
	client, err := httpsource.New(httpsource.Options{
		Name:              "user360",
		RequestsPerSecond: cfg.Rate,
		Burst:             10,
		MaxElapsed:        cfg.RetryDeadline,
		HTTPClient:        &http.Client{Transport: a.transport},
		Logger:            cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if a.db, err = sqlite.Open(ctx, "main", cfg.DB); err != nil {
		return nil, err
	}
	flow := tidemark.NewFlow("User360", tidemark.LogicVersion("1"))
	a.users = sqlite.DeclareTable[Row](flow, a.db, "users360")
	sqlite.FullText(a.users, "search_text")
	a.source = &Source{client: client, urls: URLs{Accounts: svcs.Accounts.URL(), Billing: svcs.Billing.URL(), CRM: svcs.CRM.URL()}}
	tidemark.ForEach(tidemark.AddSource(flow, "users", a.source), func(_ context.Context, r *tidemark.Row, _ string, u User) error {
		a.users.Declare(r, toRow(u))
		return nil
	})
	if a.engine, err = tidemark.Open(ctx, flow, tidemark.Options{StateStore: cfg.DB, Logger: cfg.Logger}); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the engine and the database.
func (a *app) Close() error {
	var err error
	if a.engine != nil {
		err = a.engine.Close()
	}
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	a.transport.CloseIdleConnections()
	return err
}

// update runs an update and prints its counts, then each service's.
func (a *app) update(ctx context.Context, out io.Writer) error {
	st, err := a.engine.Update(ctx, tidemark.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("updating: %w", err)
	}
	s, t := st.Sources["users"], st.Targets[string(a.users.Inner().Key())]
	fmt.Fprintf(out, "users: listed %d, fetched %d, added %d, updated %d, unchanged %d, deleted %d, failed %d; users360: %d written, %d deleted\n",
		s.Listed, s.Fetched, s.Added, s.Updated, s.Unchanged, s.Deleted, s.Errors, t.Upserts, t.Deletes)
	for _, f := range st.Failures {
		fmt.Fprintf(out, "  failed %s: %s\n", f.Key, f.Message)
	}
	for _, svc := range a.svcs.all() {
		c := svc.TakeCounts()
		fmt.Fprintf(out, "  %-8s  list %d  get %2d", svc.Name, c.Lists, c.Docs)
		if c.NotFound > 0 {
			fmt.Fprintf(out, "  (%d not found)", c.NotFound)
		}
		if c.Failed > 0 {
			fmt.Fprintf(out, "  (%d answered 503)", c.Failed)
		}
		fmt.Fprintln(out)
	}
	return nil
}
