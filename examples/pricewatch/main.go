// Command pricewatch watches a public price list that has no webhooks —
// a JSON API, polled — keeps a prices table (SQLite) in step with it, and
// acts only on real changes: a change hook on the table posts an alert to
// a webhook when a price moves by more than 5%, either way.
//
//	go run ./examples/pricewatch
//	go run ./examples/pricewatch -db prices.db -threshold 10
//
// It starts a fake price list and a fake webhook receiver on loopback,
// watches the list in live mode (a poll every 200ms), changes the list
// between polls — nothing, a product re-published, a price up 3%, one up
// 12% and one down 8% while the webhook fails, a product removed and one
// added — and prints, step by step, what it polled, what it wrote and
// what the webhook received.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/tidemarktype"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.DB, "db", "", "the SQLite file of the prices table (default: one in a temporary directory, removed at the end)")
	flag.StringVar(&cfg.State, "state", "", "the SQLite file of Tidemark's state (default: the -db file)")
	flag.DurationVar(&cfg.Refresh, "refresh", 200*time.Millisecond, "how often the price list is polled")
	flag.Float64Var(&cfg.Threshold, "threshold", 5, "alert on a price move of more than this many percent, either way")
	flag.DurationVar(&cfg.Backoff, "backoff", 100*time.Millisecond, "the wait after an alert's first failed post, doubling after each failure")
	flag.Parse()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pricewatch:", err)
		os.Exit(1)
	}
}

// config configures the demo.
type config struct {
	DB, State string // see watchConfig; DB "" for a temporary file
	Refresh   time.Duration
	Threshold float64
	Backoff   time.Duration
	Logger    *slog.Logger
}

// step is a step of the demo: a change to the fakes, then the polls that
// see it.
type step struct {
	title string
	do    func(*PriceList, *Receiver) error
}

// script is the demo's steps.
func script() []step {
	return []step{
		{"the first sync", nil},
		{"an identical poll", nil},
		{"another identical poll", nil},
		{"P-1005 re-published: a new version, the same price", func(l *PriceList, _ *Receiver) error { return l.Republish("P-1005") }},
		{"P-1009 +3%: a small move", func(l *PriceList, _ *Receiver) error { return l.Move("P-1009", 3) }},
		{"P-1017 +12%, P-1023 -8%; the webhook answers 503 to P-1023's next 2 posts", func(l *PriceList, r *Receiver) error {
			r.FailNext("P-1023", 2)
			if err := l.Move("P-1017", 12); err != nil {
				return err
			}
			return l.Move("P-1023", -8)
		}},
		{"P-1030 removed, P-1037 added", func(l *PriceList, _ *Receiver) error {
			l.Remove("P-1030")
			l.Add(Product{SKU: "P-1037", Name: "Cupping spoons, 2", Cents: 1490, Currency: "EUR"})
			return nil
		}},
	}
}

// run starts the fakes, watches the price list in live mode through the
// script's steps, printing to out what each step polled, wrote and
// alerted, and then what the table and the receiver hold.
func run(ctx context.Context, out io.Writer, cfg config) error {
	if cfg.DB == "" {
		dir, err := os.MkdirTemp("", "pricewatch")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DB = filepath.Join(dir, "pricewatch.db")
	}
	state := cmp.Or(cfg.State, cfg.DB)
	existed, err := tidemark.StateExists(ctx, tidemark.Options{StateStore: state})
	if err != nil {
		return err
	}
	d := &demo{out: out, steps: script(), list: NewPriceList(seedProducts()), receiver: NewReceiver()}
	defer d.list.Close()
	defer d.receiver.Close()
	d.watcher, err = openWatcher(ctx, watchConfig{DB: cfg.DB, State: cfg.State, ListURL: d.list.URL(), WebhookURL: d.receiver.URL(),
		Threshold: cfg.Threshold, Backoff: cfg.Backoff, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	defer d.watcher.Close()
	fmt.Fprintf(out, "watching %s every %s; moves over %g%% are posted to %s\n", d.list.URL(), cfg.Refresh, cfg.Threshold, d.receiver.URL())
	if existed {
		// A version is an ordinal, which only grows: versions lower than
		// the state saw are taken for the products it has already.
		fmt.Fprintf(out, "note: %s holds a previous run's state; the fake list starts afresh at version 1, which Tidemark takes for products it has seen\n", state)
	}

	stop := make(chan struct{})
	var failed error
	err = d.watcher.engine.Live(ctx, tidemark.LiveOptions{Refresh: cfg.Refresh, Stop: stop, OnPass: func(p tidemark.Pass) {
		if failed != nil {
			return
		}
		var last bool
		if last, failed = d.onPass(ctx, p); last || failed != nil {
			close(stop)
		}
	}})
	if err = cmp.Or(err, failed); err != nil {
		return err
	}

	rows, err := d.watcher.rows(ctx)
	if err != nil {
		return err
	}
	_, gone := rows["P-1030"]
	fmt.Fprintf(out, "prices: %d rows, P-1030 gone: %t, P-1037 at %s; P-1009 at %s, P-1017 at %s, P-1023 at %s\n", len(rows), !gone,
		money(rows["P-1037"].Cents), money(rows["P-1009"].Cents), money(rows["P-1017"].Cents), money(rows["P-1023"].Cents))
	var alerts []string
	for _, a := range d.receiver.Alerts() {
		alerts = append(alerts, fmt.Sprintf("%s %+.1f%%", a.SKU, a.Percent))
	}
	fmt.Fprintf(out, "receiver: %d alerts kept (%s), %d posts answered 503, %d duplicates dropped\n",
		len(alerts), strings.Join(alerts, ", "), d.refused, d.receiver.Duplicates())
	return nil
}

// demo is a run of the script.
type demo struct {
	out      io.Writer
	steps    []step
	list     *PriceList
	receiver *Receiver
	watcher  *watcher

	i       int    // the step running
	rep     report // its passes so far
	refused int    // posts answered 503, over the steps
}

// onPass is told of each pass, before the next starts. A step ends with
// the first pass after its change that leaves no alert undelivered: onPass
// prints it and makes the next step's change; last says the script is
// done.
func (d *demo) onPass(ctx context.Context, p tidemark.Pass) (last bool, err error) {
	if p.Err != nil {
		return false, fmt.Errorf("pass %d: %w", p.N, p.Err)
	}
	d.rep.add(p.Stats, d.list.TakePolls(), d.receiver.TakePosts())
	if n, err := d.watcher.undelivered(ctx); err != nil || n > 0 {
		return false, err
	}
	d.rep.print(d.out, d.i+1, d.steps[d.i].title)
	for _, post := range d.rep.posts {
		if post.Outcome == "503" {
			d.refused++
		}
	}
	d.rep = report{}
	if d.i++; d.i == len(d.steps) {
		return true, nil
	}
	if do := d.steps[d.i].do; do != nil {
		return false, do(d.list, d.receiver)
	}
	return false, nil
}

// rows returns the prices table by SKU.
func (w *watcher) rows(ctx context.Context) (map[string]Price, error) {
	rows := make(map[string]Price)
	for r, err := range w.prices.Rows(ctx) {
		if err != nil {
			return nil, fmt.Errorf("reading the prices table: %w", err)
		}
		rows[r.SKU] = r
	}
	return rows, nil
}

// report sums up the passes of a step: the first pass, which sees the
// step's change, and those after it while an alert waits its backoff.
type report struct {
	passes int
	first  Polls                    // what the first pass asked the price list
	later  Polls                    // what the others asked
	table  tidemarktype.TargetStats // the prices table's, over the passes
	// laterWrites counts the rows the passes after the first wrote.
	laterWrites int64
	posts       []Post
}

func (r *report) add(st *tidemarktype.UpdateStats, polls Polls, posts []Post) {
	r.passes++
	if r.passes == 1 {
		r.first = polls
	} else {
		r.later.List += polls.List
		r.later.ListNotModified += polls.ListNotModified
		r.later.Products += polls.Products
	}
	for _, t := range st.Targets { // the prices table: the flow's one target
		if r.passes > 1 {
			r.laterWrites += t.Upserts + t.Deletes
		}
		r.table.Upserts += t.Upserts
		r.table.Deletes += t.Deletes
		r.table.Changes += t.Changes
		r.table.Delivered += t.Delivered
		r.table.DeliveryFailures += t.DeliveryFailures
	}
	r.posts = append(r.posts, posts...)
}

// outcome says what the receiver did with a post.
func outcome(p Post) string {
	switch p.Outcome {
	case "kept", "duplicate":
		return "200, " + p.Outcome
	}
	return p.Outcome
}

func (r *report) print(out io.Writer, n int, title string) {
	fmt.Fprintf(out, "%d. %s\n", n, title)
	list := "200"
	if r.first.List == 0 {
		list = "304"
	}
	fmt.Fprintf(out, "   polled   list %s, %s fetched\n", list, plural(r.first.Products, "product"))
	switch t := r.table; {
	case t == tidemarktype.TargetStats{}:
		fmt.Fprintln(out, "   wrote    nothing; the hook was told of nothing")
	default:
		fmt.Fprintf(out, "   wrote    prices: %s, %s; the hook told of %s, %d delivered", plural(t.Upserts, "upsert"), plural(t.Deletes, "delete"), plural(t.Changes, "change"), t.Delivered)
		if t.DeliveryFailures > 0 {
			fmt.Fprintf(out, ", %s failed", plural(t.DeliveryFailures, "delivery"))
		}
		fmt.Fprintln(out)
	}
	if len(r.posts) == 0 {
		fmt.Fprintln(out, "   alerted  nothing")
	}
	// By attempt, then SKU: the alerts of one pass are posted in the order
	// their rows committed, which concurrent fetches may change.
	slices.SortStableFunc(r.posts, func(a, b Post) int {
		return cmp.Or(cmp.Compare(a.Attempt, b.Attempt), cmp.Compare(a.Alert.SKU, b.Alert.SKU))
	})
	for i, p := range r.posts {
		a, head := p.Alert, "alerted "
		if i > 0 {
			head = "        "
		}
		move := fmt.Sprintf("%s %s -> %s %s (%+.1f%%)", a.SKU, money(a.OldCents), money(a.NewCents), a.Currency, a.Percent)
		fmt.Fprintf(out, "   %s %-36s attempt %d: %s\n", head, move, p.Attempt, outcome(p))
	}
	if r.passes > 1 {
		fmt.Fprint(out, "   then     polls while an alert waited its backoff: ")
		if r.later.List == 0 && r.later.Products == 0 && r.laterWrites == 0 {
			fmt.Fprintln(out, "list 304, nothing written")
		} else {
			fmt.Fprintf(out, "%+v, %d rows written\n", r.later, r.laterWrites)
		}
	}
}

// plural returns "1 product", "2 products".
func plural[N int | int64](n N, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// money formats cents as 12.50.
func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }
