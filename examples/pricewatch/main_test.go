package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/sqltable"
	"github.com/tidemark/tidemark/tidemarktype"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo prints what the README says it does, and leaves the table it
// claims.
func TestDemo(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "pricewatch.db")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, config{DB: db, Refresh: 200 * time.Millisecond, Threshold: 5,
		Backoff: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}))
	got := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(out.String(), "127.0.0.1:PORT")
	want := `watching http://127.0.0.1:PORT/products every 200ms; moves over 5% are posted to http://127.0.0.1:PORT/alerts
1. the first sync
   polled   list 200, 36 products fetched
   wrote    prices: 36 upserts, 0 deletes; the hook told of 36 changes, 36 delivered
   alerted  nothing
2. an identical poll
   polled   list 304, 0 products fetched
   wrote    nothing; the hook was told of nothing
   alerted  nothing
3. another identical poll
   polled   list 304, 0 products fetched
   wrote    nothing; the hook was told of nothing
   alerted  nothing
4. P-1005 re-published: a new version, the same price
   polled   list 200, 1 product fetched
   wrote    nothing; the hook was told of nothing
   alerted  nothing
5. P-1009 +3%: a small move
   polled   list 200, 1 product fetched
   wrote    prices: 1 upsert, 0 deletes; the hook told of 1 change, 1 delivered
   alerted  nothing
6. P-1017 +12%, P-1023 -8%; the webhook answers 503 to P-1023's next 2 posts
   polled   list 200, 2 products fetched
   wrote    prices: 2 upserts, 0 deletes; the hook told of 2 changes, 2 delivered, 2 deliveries failed
   alerted  P-1017 25.00 -> 28.00 EUR (+12.0%)   attempt 1: 200, kept
            P-1023 12.50 -> 11.50 EUR (-8.0%)    attempt 1: 503
            P-1023 12.50 -> 11.50 EUR (-8.0%)    attempt 2: 503
            P-1023 12.50 -> 11.50 EUR (-8.0%)    attempt 3: 200, kept
   then     polls while an alert waited its backoff: list 304, nothing written
7. P-1030 removed, P-1037 added
   polled   list 200, 1 product fetched
   wrote    prices: 1 upsert, 1 delete; the hook told of 2 changes, 2 delivered
   alerted  nothing
prices: 36 rows, P-1030 gone: true, P-1037 at 14.90; P-1009 at 10.30, P-1017 at 28.00, P-1023 at 11.50
receiver: 2 alerts kept (P-1017 +12.0%, P-1023 -8.0%), 2 posts answered 503, 0 duplicates dropped
`
	require.Empty(t, gocmp.Diff(want, got))

	prices := seedPrices()
	delete(prices, "P-1030")
	prices["P-1037"] = Price{SKU: "P-1037", Name: "Cupping spoons, 2", Cents: 1490, Currency: "EUR"}
	setCents(prices, map[string]int64{"P-1009": 1030, "P-1017": 2800, "P-1023": 1150})
	require.Empty(t, gocmp.Diff(prices, readTable(t, db)))
}

// seedPrices returns the rows of the seed products, by SKU.
func seedPrices() map[string]Price {
	rows := make(map[string]Price)
	for _, p := range seedProducts() {
		rows[p.SKU] = Price{SKU: p.SKU, Name: p.Name, Cents: p.Cents, Currency: p.Currency}
	}
	return rows
}

// setCents sets the prices of some rows.
func setCents(rows map[string]Price, cents map[string]int64) {
	for sku, c := range cents {
		r := rows[sku]
		r.Cents = c
		rows[sku] = r
	}
}

// readTable returns the prices table in the SQLite file db, by SKU.
func readTable(t *testing.T, db string) map[string]Price {
	t.Helper()
	d, err := sqltable.Open(t.Context(), "main", db, sqltable.Options{})
	require.NoError(t, err)
	defer d.Close()
	rows := make(map[string]Price)
	for r, err := range sqltable.Declare[Price](tidemark.NewFlow("PriceWatch"), d, "prices").Rows(t.Context()) {
		require.NoError(t, err)
		rows[r.SKU] = r
	}
	return rows
}

// fixture is a price list and a receiver, and the config of a watcher of
// them in a temporary directory.
type fixture struct {
	list     *PriceList
	receiver *Receiver
	cfg      watchConfig
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{list: NewPriceList(seedProducts()), receiver: NewReceiver()}
	t.Cleanup(f.list.Close)
	t.Cleanup(f.receiver.Close)
	f.cfg = watchConfig{DB: filepath.Join(t.TempDir(), "pricewatch.db"), ListURL: f.list.URL(), WebhookURL: f.receiver.URL(),
		Threshold: 5, Backoff: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	return f
}

// open opens a watcher, closed when the test ends.
func (f *fixture) open(t *testing.T) *watcher {
	t.Helper()
	w, err := openWatcher(t.Context(), f.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return w
}

// update runs one update of w, which must succeed, and returns the stats
// of the prices table.
func update(t *testing.T, w *watcher) tidemarktype.TargetStats {
	t.Helper()
	st, err := w.engine.Update(t.Context(), tidemark.UpdateOptions{})
	require.NoError(t, err)
	var ts tidemarktype.TargetStats
	for _, s := range st.Targets {
		ts = s
	}
	return ts
}

// kept returns the alerts the receiver kept, by SKU, as "old -> new".
func kept(t *testing.T, r *Receiver) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, a := range r.Alerts() {
		require.NotContains(t, out, a.SKU, "one alert per move")
		out[a.SKU] = money(a.OldCents) + " -> " + money(a.NewCents)
	}
	return out
}

// Only moves of more than 5%, either way, are alerted; other changes only
// update the table, and a poll that finds nothing new writes and alerts
// nothing.
func TestAlertsOnlyMovesOverTheThreshold(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := f.open(t)
	update(t, w)
	require.Empty(t, f.receiver.TakePosts(), "new products are no moves")

	moves := map[string]struct {
		percent float64
		cents   int64 // the new price
		alerted bool
	}{
		"P-1001": {percent: 12, cents: 2565, alerted: true},
		"P-1023": {percent: -8, cents: 1150, alerted: true},
		"P-1004": {percent: 5.1, cents: 5150, alerted: true}, // +5.10%
		"P-1009": {percent: 5, cents: 1050},                  // exactly 5%: not more
		"P-1017": {percent: -5, cents: 2375},
		"P-1002": {percent: 3, cents: 917},
		"P-1010": {percent: -3, cents: 3104},
	}
	want, alerts := seedPrices(), make(map[string]string)
	for sku, m := range moves {
		require.NoError(t, f.list.Move(sku, m.percent))
		if m.alerted {
			alerts[sku] = money(want[sku].Cents) + " -> " + money(m.cents)
		}
		setCents(want, map[string]int64{sku: m.cents})
	}
	require.NoError(t, f.list.Republish("P-1005"))
	f.list.Remove("P-1030")
	delete(want, "P-1030")
	f.list.Add(Product{SKU: "P-1037", Name: "Cupping spoons, 2", Cents: 1490, Currency: "EUR"})
	want["P-1037"] = Price{SKU: "P-1037", Name: "Cupping spoons, 2", Cents: 1490, Currency: "EUR"}
	f.list.TakePolls()

	st := update(t, w)
	require.Equal(t, Polls{List: 1, Products: 9}, f.list.TakePolls(), "the products with a new version, P-1005 included")
	require.Equal(t, tidemarktype.TargetStats{Upserts: 8, Deletes: 1, Changes: 9, Delivered: 9}, st)
	require.Equal(t, alerts, kept(t, f.receiver))
	require.Empty(t, gocmp.Diff(want, readTable(t, f.cfg.DB)))

	f.receiver.TakePosts()
	require.Equal(t, tidemarktype.TargetStats{}, update(t, w), "an identical poll writes nothing")
	require.Equal(t, Polls{ListNotModified: 1}, f.list.TakePolls(), "and costs a 304")
	require.Empty(t, f.receiver.TakePosts())
	require.Zero(t, f.receiver.Duplicates())
}

// A webhook that answers 503 fails the alert's delivery: the alert waits
// its backoff and is posted again until the webhook takes it, once; the
// other products' alerts are not held back meanwhile.
func TestAFailingWebhookHoldsBackItsAlertOnly(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.cfg.Backoff = 300 * time.Millisecond
	w := f.open(t)
	update(t, w)

	f.receiver.FailNext("P-1023", 2)
	require.NoError(t, f.list.Move("P-1017", 12))
	require.NoError(t, f.list.Move("P-1023", -8))
	st := update(t, w)
	require.Equal(t, int64(1), st.Delivered)
	require.Equal(t, int64(1), st.DeliveryFailures)
	require.Equal(t, map[string]string{"P-1017": "25.00 -> 28.00"}, kept(t, f.receiver))

	status, err := w.engine.Status(t.Context(), 0)
	require.NoError(t, err)
	var hook *tidemarktype.HookStatus
	for _, tg := range status.Targets {
		if tg.Hook != nil {
			hook = tg.Hook
		}
	}
	require.NotNil(t, hook)
	require.Equal(t, int64(1), hook.Pending)
	require.NotNil(t, hook.Failure)
	require.Contains(t, hook.Failure.Key, "P-1023")
	require.Equal(t, "posting the alert for P-1023: the webhook answered 503 Service Unavailable", hook.Failure.Error)

	// Another product moves while P-1023's alert waits: its alert goes.
	require.NoError(t, f.list.Move("P-1001", 20))
	update(t, w)
	require.Contains(t, kept(t, f.receiver), "P-1001")
	require.NotContains(t, kept(t, f.receiver), "P-1023")

	// Later passes post P-1023's alert again, once due, until it is kept.
	require.Eventually(t, func() bool {
		update(t, w)
		_, ok := kept(t, f.receiver)["P-1023"]
		return ok
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, map[string]string{"P-1017": "25.00 -> 28.00", "P-1001": "22.90 -> 27.48", "P-1023": "12.50 -> 11.50"}, kept(t, f.receiver))
	var attempts []string
	for _, p := range f.receiver.TakePosts() {
		if p.Alert.SKU == "P-1023" {
			attempts = append(attempts, p.Outcome)
		}
	}
	require.Equal(t, []string{"503", "503", "kept"}, attempts)
	require.Zero(t, f.receiver.Duplicates())
	update(t, w)
	require.Empty(t, f.receiver.TakePosts(), "delivered: not posted again")
}

// An alert the receiver kept but whose answer was lost is posted again —
// by the hook after its backoff, or by net/http, which replays a POST that
// has an Idempotency-Key on a broken keep-alive connection — and dropped
// by the receiver as a duplicate: kept once.
func TestALostAnswerIsADuplicate(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := f.open(t)
	update(t, w)
	f.receiver.LoseNext("P-1017", 1)
	require.NoError(t, f.list.Move("P-1017", 12))
	require.Eventually(t, func() bool {
		update(t, w)
		return f.receiver.Duplicates() > 0
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, map[string]string{"P-1017": "25.00 -> 28.00"}, kept(t, f.receiver))
	require.Equal(t, 1, f.receiver.Duplicates())
	posts := f.receiver.TakePosts()
	require.Len(t, posts, 2)
	require.Equal(t, posts[0].ID, posts[1].ID, "the same change, the same ID")
	require.Equal(t, []string{"kept, answer lost", "duplicate"}, []string{posts[0].Outcome, posts[1].Outcome})
}

// kill9Env passes the helper process its helperConfig, as JSON.
const kill9Env = "PRICEWATCH_KILL9"

// helperConfig is what TestKill9Helper watches.
type helperConfig struct {
	DB, ListURL, WebhookURL string
	// KillBeforePost makes the helper kill itself as its hook posts its
	// first alert, before the request leaves.
	KillBeforePost bool
}

// TestKill9Helper is the process TestKill9 kills: it watches the price
// list in live mode until killed.
func TestKill9Helper(t *testing.T) {
	env := os.Getenv(kill9Env)
	if env == "" {
		t.Skip("run by TestKill9")
	}
	var h helperConfig
	require.NoError(t, json.Unmarshal([]byte(env), &h))
	cfg := watchConfig{DB: h.DB, ListURL: h.ListURL, WebhookURL: h.WebhookURL, Threshold: 5, Backoff: 20 * time.Millisecond}
	if h.KillBeforePost {
		cfg.Webhook = &http.Client{Transport: killer{}}
	}
	w, err := openWatcher(t.Context(), cfg)
	require.NoError(t, err)
	stop := make(chan struct{})
	time.AfterFunc(30*time.Second, func() { close(stop) })
	err = w.engine.Live(t.Context(), tidemark.LiveOptions{Refresh: 50 * time.Millisecond, Stop: stop})
	t.Fatalf("not killed in 30s (%v)", err)
}

// killer is a transport that kills its process.
type killer struct{}

func (killer) RoundTrip(*http.Request) (*http.Response, error) {
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		return nil, err
	}
	select {}
}

// A watch killed with SIGKILL after it committed big moves, before the
// webhook answered their alerts, is started again on the same state: it
// posts the alerts again, and the receiver holds each once — dropping by
// its ID the one it had kept before the kill.
func TestKill9(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		beforePost bool // killed as the hook posts (else once the receiver kept the alert)
		// keptBefore counts the alerts kept before the kill: posted again
		// after it, and dropped as duplicates.
		keptBefore int
	}{
		"killed after the receiver kept the first alert, before it answered": {keptBefore: 1},
		"killed before the first alert was posted":                           {beforePost: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			w, err := openWatcher(t.Context(), f.cfg)
			require.NoError(t, err)
			update(t, w)
			require.NoError(t, w.Close())

			require.NoError(t, f.list.Move("P-1009", 3))
			require.NoError(t, f.list.Move("P-1017", 12))
			require.NoError(t, f.list.Move("P-1023", -8))
			posted, killed := make(chan struct{}, 1), make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(killed) }) }) // before the receiver closes
			if !tc.beforePost {
				f.receiver.OnKept(func(Alert) {
					select {
					case posted <- struct{}{}:
						<-killed // the answer goes to a dead process
					default:
					}
				})
			}

			env, err := json.Marshal(helperConfig{DB: f.cfg.DB, ListURL: f.cfg.ListURL, WebhookURL: f.cfg.WebhookURL, KillBeforePost: tc.beforePost})
			require.NoError(t, err)
			cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Helper$", "-test.count=1")
			cmd.Env = append(os.Environ(), kill9Env+"="+string(env))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if !tc.beforePost {
				select {
				case <-posted:
					require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				case err := <-exited:
					t.Fatalf("the helper ended before it posted an alert: %v\n%s", err, &out)
				case <-time.After(time.Minute):
					require.NoError(t, cmd.Process.Kill())
					t.Fatalf("the helper posted no alert in a minute\n%s", &out)
				}
			}
			select {
			case err = <-exited:
			case <-time.After(time.Minute):
				require.NoError(t, cmd.Process.Kill())
				t.Fatalf("the helper was not killed in a minute\n%s", &out)
			}
			once.Do(func() { close(killed) })
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "%v\n%s", err, &out)
			require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal(), "%s", &out)

			// The moves were committed before the hook ran.
			want := seedPrices()
			setCents(want, map[string]int64{"P-1009": 1030, "P-1017": 2800, "P-1023": 1150})
			require.Empty(t, gocmp.Diff(want, readTable(t, f.cfg.DB)))
			require.Len(t, f.receiver.Alerts(), tc.keptBefore, "kept before the kill")

			// The watch again, on the same state: one pass.
			w = f.open(t)
			stop := make(chan struct{})
			require.NoError(t, w.engine.Live(t.Context(), tidemark.LiveOptions{Refresh: 50 * time.Millisecond, Stop: stop,
				OnPass: func(tidemark.Pass) { close(stop) }}))
			require.Equal(t, map[string]string{"P-1017": "25.00 -> 28.00", "P-1023": "12.50 -> 11.50"}, kept(t, f.receiver))
			require.Equal(t, tc.keptBefore, f.receiver.Duplicates())
			t.Logf("after the kill and the restart: %d alerts kept, %d duplicates dropped", len(f.receiver.Alerts()), f.receiver.Duplicates())
			for _, p := range f.receiver.TakePosts() {
				require.NotEqual(t, "P-1009", p.Alert.SKU, "a move of 3%% is no alert")
			}

			update(t, w)
			require.Empty(t, f.receiver.TakePosts(), "each alert delivered once")
			require.Empty(t, gocmp.Diff(want, readTable(t, f.cfg.DB)))
		})
	}
}
