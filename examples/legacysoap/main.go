// Command legacysoap gives a legacy system that is painful to query — an
// ERP's parts catalogue behind a SOAP 1.1 service, listed page by page and
// read one record per call, busy at times — a modern SQL table with
// full-text search, kept in sync incrementally: an update calls GetPart
// only for the parts whose LastModified moved.
//
//	go run ./examples/legacysoap
//
// It starts a fake of the service on loopback, updates the table (SQLite,
// with Tidemark's state in the same file) again and again while the fake
// changes and fails, and prints what each update did and what the fake
// was asked.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqltable"
)

func main() {
	db := flag.String("db", "", "the SQLite file of the table and of Tidemark's state (default: a temporary one)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := demo(ctx, os.Stdout, log, *db); err != nil {
		fmt.Fprintln(os.Stderr, "legacysoap:", err)
		os.Exit(1)
	}
}

// PartRow is a row of the parts table.
type PartRow struct {
	PartNo      string         `tidemark:"part_no,pk"`
	Description string         `tidemark:"description"`
	Category    string         `tidemark:"category"`
	Supplier    string         `tidemark:"supplier"`
	UnitPrice   string         `tidemark:"unit_price"` // "54.20 EUR"
	OnHand      int            `tidemark:"on_hand"`    // in all warehouses
	Stock       map[string]int `tidemark:"stock"`      // by warehouse, as JSON
	ModifiedAt  time.Time      `tidemark:"modified_at"`
}

// toRow flattens a part into its row.
func toRow(p Part) PartRow {
	r := PartRow{
		PartNo:      p.PartNo,
		Description: p.Description,
		Category:    p.Category,
		Supplier:    p.Supplier.Name,
		UnitPrice:   p.Price.Amount + " " + p.Price.Currency,
		Stock:       make(map[string]int, len(p.Stock)),
		ModifiedAt:  p.LastModified,
	}
	for _, b := range p.Stock {
		r.Stock[b.Warehouse] += b.Quantity
		r.OnHand += b.Quantity
	}
	return r
}

// app keeps the parts table in sync with a PartsService.
type app struct {
	client *Client
	db     *sqltable.DB
	parts  *sqltable.Table[PartRow]
	engine *tidemark.Engine
}

// openApp opens the table and state in the SQLite file dbPath, over the
// service o.URL. log may be nil.
func openApp(ctx context.Context, dbPath string, o ClientOptions, log *slog.Logger) (*app, error) {
	client, err := NewClient(o)
	if err != nil {
		return nil, err
	}
	db, err := sqltable.Open(ctx, "main", dbPath, sqltable.Options{})
	if err != nil {
		client.Close()
		return nil, err
	}
	flow := tidemark.NewFlow("LegacyParts", tidemark.LogicVersion("1"))
	parts := sqltable.Declare[PartRow](flow, db, "parts")
	sqltable.FullText(parts, "description", sqltable.FullTextOptions{})
	// A legacy service takes few calls at once.
	src := tidemark.AddSource(flow, "parts", NewSource(client, 10), tidemark.MaxInFlight(4))
	tidemark.ForEach(src, func(_ context.Context, r *tidemark.Row, _ string, p Part) error {
		parts.Declare(r, toRow(p))
		return nil
	})
	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: db.URL(), Logger: log})
	if err != nil {
		db.Close()
		client.Close()
		return nil, err
	}
	return &app{client: client, db: db, parts: parts, engine: engine}, nil
}

// Close closes the engine, the database and the client.
func (a *app) Close() error {
	err := a.engine.Close()
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	a.client.Close()
	return err
}

// rows returns the table's rows by part number.
func (a *app) rows(ctx context.Context) (map[string]PartRow, error) {
	rows := make(map[string]PartRow)
	for r, err := range a.parts.Rows(ctx) {
		if err != nil {
			return nil, err
		}
		rows[r.PartNo] = r
	}
	return rows, nil
}

// demo runs the fake ERP and updates the table as it changes and fails,
// printing to w what each update did and what the ERP was asked.
func demo(ctx context.Context, w io.Writer, log *slog.Logger, dbPath string) error {
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "legacysoap")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "parts.db")
	}
	erp := NewFake(seedParts())
	url, stop, err := erp.Start()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(w, "ERP: PartsService (SOAP 1.1) at %s, %d parts\n", url, len(erp.Parts()))

	a, err := openApp(ctx, dbPath, ClientOptions{URL: url, RequestsPerSecond: 500, Burst: 10, Backoff: 20 * time.Millisecond}, log)
	if err != nil {
		return err
	}
	defer a.Close()
	n := 0
	update := func() error {
		n++
		retries := a.client.Retries()
		st, err := a.engine.Update(ctx, tidemark.UpdateOptions{})
		if err != nil {
			return err
		}
		s, calls := st.Sources["parts"], erp.TakeCalls()
		counts := fmt.Sprintf("listed %d, fetched %d", s.Listed, s.Fetched)
		for _, c := range []struct {
			what string
			n    int64
		}{{"added", s.Added}, {"updated", s.Updated}, {"deleted", s.Deleted}, {"unchanged", s.Unchanged}, {"failed", s.Errors}} {
			if c.n > 0 {
				counts += fmt.Sprintf(", %s %d", c.what, c.n)
			}
		}
		fmt.Fprintf(w, "update %d: %-56s | ERP calls: ListParts %s, GetPart %s", n, counts, calls["ListParts"], calls["GetPart"])
		if r := a.client.Retries() - retries; r > 0 {
			fmt.Fprintf(w, "; the client retried %d", r)
		}
		fmt.Fprintln(w)
		for _, f := range st.Failures {
			fmt.Fprintf(w, "  failed %s: %s\n", f.Key, f.Message)
		}
		return nil
	}

	if err := update(); err != nil {
		return err
	}
	if err := update(); err != nil {
		return err
	}
	fmt.Fprintln(w, "ERP: P-1019 repriced")
	erp.Edit("P-1019", func(p *Part) { p.Price.Amount = "198.00" })
	if err := update(); err != nil {
		return err
	}
	fmt.Fprintln(w, "ERP: P-1021 restocked; the next 2 GetPart calls answer soap:Server.Busy")
	erp.Edit("P-1021", func(p *Part) { p.Stock[0].Quantity += 40 })
	erp.FailNext("GetPart", 2, busyFault())
	if err := update(); err != nil {
		return err
	}
	fmt.Fprintln(w, "ERP: P-1023 and P-1024 edited; P-1024's GetPart answer comes torn (malformed XML)")
	erp.Edit("P-1023", func(p *Part) { p.Description += ", magnetic piston" })
	erp.Edit("P-1024", func(p *Part) { p.Price.Amount = "49.90" })
	erp.Malform("P-1024", true)
	if err := update(); err != nil {
		return err
	}
	rows, err := a.rows(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  the table keeps P-1024's last good row: %s\n", rows["P-1024"].UnitPrice)
	fmt.Fprintln(w, "ERP: P-1024 mended")
	erp.Malform("P-1024", false)
	if err := update(); err != nil {
		return err
	}

	const query = "stainless steel"
	hits, err := a.parts.Search(ctx, query, 3)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "search %q, best 3:\n", query)
	for _, h := range hits {
		fmt.Fprintf(w, "  %s  %s\n", h.Row.PartNo, h.Snippet)
	}
	if rows, err = a.rows(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "the parts table: %d rows; P-1024 at %s\n", len(rows), rows["P-1024"].UnitPrice)
	return nil
}
