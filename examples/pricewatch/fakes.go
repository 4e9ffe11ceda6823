package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
)

// PriceList is a fake public price list: a JSON API on loopback, with no
// webhooks of its own. It answers
//
//	GET /products        {"products": [{"sku", "version"}…]}, by SKU
//	GET /products/{sku}  the Product, or 404
//
// each with an ETag of its body; a request whose If-None-Match matches it
// gets a 304 without a body. It counts the requests it answers.
type PriceList struct {
	srv *httptest.Server

	mu       sync.Mutex
	products map[string]Product
	polls    Polls
}

// Polls count the requests a PriceList answered.
type Polls struct {
	List, ListNotModified int // GET /products: 200s and 304s
	Products              int // GET /products/{sku} answered 200
	NotModified, NotFound int // … answered 304 or 404
}

// NewPriceList starts a price list holding products.
func NewPriceList(products []Product) *PriceList {
	l := &PriceList{products: make(map[string]Product, len(products))}
	for _, p := range products {
		l.products[p.SKU] = p
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products", l.list)
	mux.HandleFunc("GET /products/{sku}", l.get)
	l.srv = httptest.NewServer(mux)
	return l
}

// URL returns the listing's URL.
func (l *PriceList) URL() string { return l.srv.URL + "/products" }

// Close stops the price list.
func (l *PriceList) Close() { l.srv.Close() }

// Move changes sku's price by percent (-8 for a drop of 8%), to the cent.
func (l *PriceList) Move(sku string, percent float64) error {
	return l.edit(sku, func(p *Product) {
		p.Cents = int64(math.Round(float64(p.Cents) * (100 + percent) / 100))
	})
}

// Republish gives sku a new version without changing it otherwise.
func (l *PriceList) Republish(sku string) error { return l.edit(sku, func(*Product) {}) }

// Add adds p, at version 1.
func (l *PriceList) Add(p Product) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p.Version = 1
	l.products[p.SKU] = p
}

// Remove removes sku from the list.
func (l *PriceList) Remove(sku string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.products, sku)
}

// TakePolls returns the requests answered since the last call.
func (l *PriceList) TakePolls() Polls {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.polls
	l.polls = Polls{}
	return p
}

// edit applies f to sku and moves its version on.
func (l *PriceList) edit(sku string, f func(*Product)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.products[sku]
	if !ok {
		return fmt.Errorf("the price list has no product %s", sku)
	}
	f(&p)
	p.Version++
	l.products[sku] = p
	return nil
}

func (l *PriceList) list(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	type entry struct {
		SKU     string `json:"sku"`
		Version int64  `json:"version"`
	}
	skus := slices.Sorted(func(yield func(string) bool) {
		for sku := range l.products {
			if !yield(sku) {
				return
			}
		}
	})
	entries := make([]entry, len(skus))
	for i, sku := range skus {
		entries[i] = entry{SKU: sku, Version: l.products[sku].Version}
	}
	if answer(w, r, map[string]any{"products": entries}) {
		l.polls.List++
	} else {
		l.polls.ListNotModified++
	}
}

func (l *PriceList) get(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.products[r.PathValue("sku")]
	switch {
	case !ok:
		l.polls.NotFound++
		http.NotFound(w, r)
	case answer(w, r, p):
		l.polls.Products++
	default:
		l.polls.NotModified++
	}
}

// answer writes v as JSON with its ETag, or a 304 when the request's
// If-None-Match is that ETag; it reports whether it wrote the body.
func answer(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
	return true
}

// Receiver is a fake webhook receiver on loopback: it takes alerts POSTed
// to /alerts, keeps each by its Idempotency-Key, and drops — answering 200
// all the same — an alert whose key it has kept already, counting it as a
// duplicate. An alert without a key is refused with 400.
type Receiver struct {
	srv *httptest.Server

	mu         sync.Mutex
	kept       []Alert
	ids        map[string]bool
	duplicates int
	posts      []Post
	fail       map[string]int // SKU → posts to answer 503
	lose       map[string]int // SKU → answers to lose
	onKept     func(Alert)
}

// Post is a POST the receiver answered.
type Post struct {
	ID      string // its Idempotency-Key
	Attempt int    // its Delivery-Attempt
	Alert   Alert
	// Outcome is "kept", "duplicate", "503" (see FailNext) or "kept,
	// answer lost" (see LoseNext).
	Outcome string
}

// NewReceiver starts a receiver.
func NewReceiver() *Receiver {
	r := &Receiver{ids: make(map[string]bool), fail: make(map[string]int), lose: make(map[string]int)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /alerts", r.post)
	r.srv = httptest.NewServer(mux)
	return r
}

// URL returns the URL alerts are posted to.
func (r *Receiver) URL() string { return r.srv.URL + "/alerts" }

// Close stops the receiver.
func (r *Receiver) Close() { r.srv.Close() }

// FailNext makes the receiver answer 503 Service Unavailable to the next
// n posts of sku's alerts, without looking at them.
func (r *Receiver) FailNext(sku string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[sku] = n
}

// LoseNext makes the receiver keep the next n alerts of sku and then drop
// the connection instead of answering, as a network failure would.
func (r *Receiver) LoseNext(sku string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lose[sku] = n
}

// OnKept sets a function called with each alert kept, before the receiver
// answers: a test kills the process that posted it there.
func (r *Receiver) OnKept(f func(Alert)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onKept = f
}

// Alerts returns the alerts kept, in the order they came.
func (r *Receiver) Alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.kept)
}

// Duplicates returns the number of alerts dropped as duplicates.
func (r *Receiver) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.duplicates
}

// TakePosts returns the posts answered since the last call.
func (r *Receiver) TakePosts() []Post {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.posts
	r.posts = nil
	return p
}

func (r *Receiver) post(w http.ResponseWriter, req *http.Request) {
	p := Post{ID: req.Header.Get("Idempotency-Key")}
	p.Attempt, _ = strconv.Atoi(req.Header.Get("Delivery-Attempt"))
	if err := json.NewDecoder(req.Body).Decode(&p.Alert); err != nil || p.ID == "" {
		http.Error(w, "an alert is a JSON body with an Idempotency-Key header", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	switch {
	case r.fail[p.Alert.SKU] > 0:
		r.fail[p.Alert.SKU]--
		p.Outcome = "503"
	case r.ids[p.ID]:
		r.duplicates++
		p.Outcome = "duplicate"
	default:
		r.ids[p.ID] = true
		r.kept = append(r.kept, p.Alert)
		p.Outcome = "kept"
		if r.lose[p.Alert.SKU] > 0 {
			r.lose[p.Alert.SKU]--
			p.Outcome = "kept, answer lost"
		}
	}
	r.posts = append(r.posts, p)
	onKept := r.onKept
	r.mu.Unlock()

	switch p.Outcome {
	case "503":
		http.Error(w, "receiver restarting", http.StatusServiceUnavailable)
		return
	case "duplicate":
		w.WriteHeader(http.StatusOK)
		return
	}
	if onKept != nil {
		onKept(p.Alert)
	}
	if p.Outcome == "kept, answer lost" {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// seedProducts are the price list's 36 products, the same every time.
func seedProducts() []Product {
	items := []struct {
		name  string
		cents int64
	}{
		{"Espresso beans, 1 kg", 2290}, {"Filter coffee, 500 g", 890}, {"Green tea, 100 bags", 650},
		{"Hand grinder, ceramic burrs", 4900}, {"Pour-over dripper", 1800}, {"Paper filters, 100", 350},
		{"Gooseneck kettle, 1 l", 5900}, {"Milk frother", 2450}, {"Moka pot, 6 cups", 1000},
		{"French press, 1 l", 3200}, {"Cold brew jar", 2700}, {"Digital scale, 0.1 g", 2990},
		{"Tamper, 58 mm", 3500}, {"Knock box", 1990}, {"Barista cloths, 3", 750},
		{"Descaler, 500 ml", 990}, {"Travel mug, 350 ml", 2500}, {"Ceramic cups, 4", 3400},
		{"Oat milk, 1 l", 230}, {"Cane sugar, 1 kg", 280}, {"Chai spice mix, 200 g", 790},
		{"Matcha, 30 g", 1900}, {"Tea infuser", 1250}, {"Teapot, cast iron", 4500},
		{"Honey, 500 g", 890}, {"Biscotti, 250 g", 450}, {"Dark chocolate, 100 g", 320},
		{"Cocoa powder, 250 g", 560}, {"Espresso machine, single boiler", 54900}, {"Grinder, 64 mm flat burrs", 39900},
		{"Water filter cartridge", 1590}, {"Latte art pitcher, 600 ml", 2100}, {"Coffee canister", 2200},
		{"Syrup, vanilla, 700 ml", 790}, {"Decaf beans, 500 g", 1390}, {"Gift card", 5000},
	}
	products := make([]Product, len(items))
	for i, it := range items {
		products[i] = Product{SKU: fmt.Sprintf("P-%d", 1001+i), Name: it.name, Cents: it.cents, Currency: "EUR", Version: 1}
	}
	return products
}
