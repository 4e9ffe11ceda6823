package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/httpsource"
	"github.com/tidemark/tidemark/target/sqltable"
)

// Product is a product as the price list's API answers GET
// /products/{sku}. The listing, GET /products, gives each product's SKU
// and version, a number that grows whenever the product is edited.
type Product struct {
	SKU      string `json:"sku"`
	Name     string `json:"name"`
	Cents    int64  `json:"price_cents"`
	Currency string `json:"currency"`
	Version  int64  `json:"version"`
}

// Price is a row of the prices table: a product's current price. It leaves
// out the product's version, so that a product edited without a new price
// or name (re-published) writes nothing and is no change.
type Price struct {
	SKU      string `tidemark:"sku,pk"`
	Name     string `tidemark:"name"`
	Cents    int64  `tidemark:"price_cents"`
	Currency string `tidemark:"currency"`
}

// Alert is what the webhook is sent when a price moves by more than the
// threshold. Every delivery of one change sends the same body, and the
// change's ID as its Idempotency-Key header.
type Alert struct {
	SKU      string    `json:"sku"`
	Name     string    `json:"name"`
	OldCents int64     `json:"old_cents"`
	NewCents int64     `json:"new_cents"`
	Currency string    `json:"currency"`
	Percent  float64   `json:"move_percent"` // +12.0 for a rise of 12%
	At       time.Time `json:"at"`           // when the new price was committed
}

// watchConfig configures a watcher.
type watchConfig struct {
	DB    string // the SQLite file of the prices table
	State string // the SQLite file of Tidemark's state; "" for DB
	// ListURL is the price list's listing (GET /products), WebhookURL
	// where alerts are posted.
	ListURL, WebhookURL string
	// Threshold is the move, in percent either way, past which a price
	// change is alerted (5: a move of more than 5%).
	Threshold float64
	// Backoff is the wait after an alert's first failed delivery,
	// doubling with each failure after it, at most 32 times as long.
	Backoff time.Duration
	// Webhook sends the alerts; by default a client with a 10-second
	// timeout and a transport of its own.
	Webhook *http.Client
	Logger  *slog.Logger
}

// watcher keeps the prices table in sync with the price list and alerts
// the webhook of the moves past the threshold.
type watcher struct {
	db        *sqltable.DB
	prices    *sqltable.Table[Price]
	engine    *tidemark.Engine
	transport *http.Transport // the price list client's
	webhook   *http.Client
}

// openWatcher declares the flow — the price list's products, the prices
// table and its change hook — and opens it on cfg.DB and cfg.State.
func openWatcher(ctx context.Context, cfg watchConfig) (*watcher, error) {
	w := &watcher{transport: http.DefaultTransport.(*http.Transport).Clone(), webhook: cfg.Webhook}
	if w.webhook == nil {
		w.webhook = &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	client, err := httpsource.New(httpsource.Options{
		Name:              "pricewatch",
		RequestsPerSecond: 100,
		Burst:             20,
		HTTPClient:        &http.Client{Transport: w.transport},
		Logger:            cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	// The listing gives each product's version as its ordinal: a product
	// whose version did not move is not asked for. The listing itself is
	// asked with the ETag it last answered with: a poll that finds nothing
	// changed costs a 304 and no body.
	products, err := httpsource.NewJSONSource(client, httpsource.JSONOptions{
		ListURL: cfg.ListURL,
		Items:   "/products",
		Key:     "/sku",
		Ordinal: "/version",
		ItemURL: cfg.ListURL + "/{key}",
	})
	if err != nil {
		return nil, err
	}
	if w.db, err = sqltable.Open(ctx, "main", cfg.DB, sqltable.Options{}); err != nil {
		return nil, err
	}

	flow := tidemark.NewFlow("PriceWatch", tidemark.LogicVersion("1"))
	w.prices = sqltable.Declare[Price](flow, w.db, "prices")
	tidemark.ForEach(tidemark.AddSource(flow, "products", products), func(ctx context.Context, r *tidemark.Row, sku string, it httpsource.Item) error {
		var p Product
		if err := it.Decode(ctx, &p); err != nil {
			return fmt.Errorf("decoding product %s: %w", sku, err)
		}
		w.prices.Declare(r, Price{SKU: p.SKU, Name: p.Name, Cents: p.Cents, Currency: p.Currency})
		return nil
	})
	hook := &Webhook{URL: cfg.WebhookURL, Client: w.webhook}
	sqltable.OnChange(w.prices, alertOnMove(hook, cfg.Threshold), tidemark.HookBackoff(func(n int) time.Duration {
		return cfg.Backoff << min(n-1, 5)
	}))

	state := cfg.State
	if state == "" {
		state = cfg.DB
	}
	if w.engine, err = tidemark.Open(ctx, flow, tidemark.Options{StateStore: state, Logger: cfg.Logger}); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close closes the engine and the database.
func (w *watcher) Close() error {
	var err error
	if w.engine != nil {
		err = w.engine.Close()
	}
	if cerr := w.db.Close(); err == nil {
		err = cerr
	}
	w.transport.CloseIdleConnections()
	w.webhook.CloseIdleConnections()
	return err
}

// undelivered returns the number of changes of the prices table its hook
// was not told of yet: those waiting for their backoff after a failed
// delivery.
func (w *watcher) undelivered(ctx context.Context) (int64, error) {
	st, err := w.engine.Status(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("reading the flow's status: %w", err)
	}
	var n int64
	for _, t := range st.Targets {
		if t.Hook != nil {
			n += t.Hook.Pending
		}
	}
	return n, nil
}

// alertOnMove returns the prices table's change hook: it posts an Alert to
// the webhook when a price moves by more than threshold percent, either
// way. A product new to the list, one gone from it, or one whose name
// alone changed is no alert.
//
// The hook is told of each change at least once: again after a failed
// post (its error makes the change wait its backoff, the other products'
// changes go on), and again after a crash between the commit and the
// post's answer. Each delivery of a change carries the same c.ID(), which
// the webhook's receiver keeps to drop the alerts it already has.
func alertOnMove(hook *Webhook, threshold float64) func(context.Context, tidemark.TargetChange[Price]) error {
	return func(ctx context.Context, c tidemark.TargetChange[Price]) error {
		if c.Old == nil || c.New == nil {
			return nil
		}
		old, now := c.Old.Cents, c.New.Cents
		if math.Abs(float64(now-old))*100 <= threshold*float64(old) {
			return nil // within the threshold (or unchanged): the table alone moves
		}
		a := Alert{SKU: c.New.SKU, Name: c.New.Name, OldCents: old, NewCents: now, Currency: c.New.Currency, At: c.At.UTC()}
		if old != 0 {
			a.Percent = math.Round(float64(now-old)*1000/float64(old)) / 10
		}
		return hook.Post(ctx, c.ID(), c.Attempt, a)
	}
}

// Webhook posts alerts to a URL.
type Webhook struct {
	URL    string
	Client *http.Client
}

// Post posts a as JSON with id as its Idempotency-Key header, and attempt
// (the delivery's count, from 1) as its Delivery-Attempt header. It returns
// an error unless the webhook answers 2xx.
func (w *Webhook) Post(ctx context.Context, id string, attempt int, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding the alert for %s: %w", a.SKU, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("posting the alert for %s: %w", a.SKU, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	req.Header.Set("Delivery-Attempt", strconv.Itoa(attempt))
	resp, err := w.Client.Do(req)
	if err != nil {
		return fmt.Errorf("posting the alert for %s: %w", a.SKU, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting the alert for %s: the webhook answered %s", a.SKU, resp.Status)
	}
	return nil
}
