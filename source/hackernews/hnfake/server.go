package hnfake

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Faults are the failures a Server injects. Each request to an endpoint
// they apply to first waits Latency, then fails with at most one fault,
// drawn from a PRNG seeded with Seed when SetFaults is called: 429 with
// probability Rate429, else 500 with Rate500, else a truncated body with
// RateTruncated, else a malformed one with RateMalformed. The rates must be
// between 0 and 1 and add up to at most 1.
//
// Faults encode to JSON with snake_case keys ("rate_429", "retry_after") and
// durations as strings ("250ms"); on decoding a duration may also be a
// number of nanoseconds.
type Faults struct {
	// Latency delays every response; the wait ends early, with no response,
	// when the request's context is done.
	Latency time.Duration
	// Rate429 is the probability of a 429 Too Many Requests answer.
	Rate429 float64
	// RetryAfter is the 429's Retry-After header, in whole seconds rounded
	// up; zero sends "Retry-After: 0".
	RetryAfter time.Duration
	// Rate500 is the probability of a 500 Internal Server Error answer.
	Rate500 float64
	// RateTruncated is the probability of a 200 whose Content-Length is the
	// full body's but whose connection closes after half of it: the client's
	// read fails with io.ErrUnexpectedEOF. The handler ends the response by
	// panicking with http.ErrAbortHandler, which net/http's server handles;
	// a caller of ServeHTTP without a server (httptest.ResponseRecorder)
	// sees the panic.
	RateTruncated float64
	// RateMalformed is the probability of a 200 with a complete body that
	// is not JSON: half the real body, then garbage.
	RateMalformed float64
	// Items and Listing choose the endpoints the faults (latency included)
	// apply to; both false means both.
	Items, Listing bool
	// Seed seeds the PRNG that draws the faults.
	Seed int64
}

// Validate reports whether the rates are probabilities adding up to at most
// 1 and the durations are not negative.
func (f Faults) Validate() error {
	rates := []struct {
		name string
		v    float64
	}{{"Rate429", f.Rate429}, {"Rate500", f.Rate500}, {"RateTruncated", f.RateTruncated}, {"RateMalformed", f.RateMalformed}}
	sum := 0.0
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("hnfake: %s must be between 0 and 1, got %v", r.name, r.v)
		}
		sum += r.v
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("hnfake: the fault rates must add up to at most 1, got %v", sum)
	}
	if f.Latency < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("hnfake: Latency and RetryAfter must not be negative, got %v and %v", f.Latency, f.RetryAfter)
	}
	return nil
}

type faultsJSON struct {
	Latency       any     `json:"latency"`
	Rate429       float64 `json:"rate_429"`
	RetryAfter    any     `json:"retry_after"`
	Rate500       float64 `json:"rate_500"`
	RateTruncated float64 `json:"rate_truncated"`
	RateMalformed float64 `json:"rate_malformed"`
	Items         bool    `json:"items"`
	Listing       bool    `json:"listing"`
	Seed          int64   `json:"seed"`
}

// MarshalJSON encodes f with snake_case keys and durations as strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Latency: f.Latency.String(), Rate429: f.Rate429, RetryAfter: f.RetryAfter.String(),
		Rate500: f.Rate500, RateTruncated: f.RateTruncated, RateMalformed: f.RateMalformed,
		Items: f.Items, Listing: f.Listing, Seed: f.Seed,
	})
}

// UnmarshalJSON decodes what MarshalJSON encodes; a duration may also be a
// number of nanoseconds. Missing keys are zero.
func (f *Faults) UnmarshalJSON(data []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	lat, err := parseDuration("latency", j.Latency)
	if err != nil {
		return err
	}
	ra, err := parseDuration("retry_after", j.RetryAfter)
	if err != nil {
		return err
	}
	*f = Faults{
		Latency: lat, Rate429: j.Rate429, RetryAfter: ra, Rate500: j.Rate500,
		RateTruncated: j.RateTruncated, RateMalformed: j.RateMalformed,
		Items: j.Items, Listing: j.Listing, Seed: j.Seed,
	}
	return nil
}

func parseDuration(key string, v any) (time.Duration, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("hnfake: %s: %w", key, err)
		}
		return d, nil
	case float64:
		return time.Duration(v), nil
	}
	return 0, fmt.Errorf("hnfake: %s must be a duration string or nanoseconds, got %v", key, v)
}

// Counts are the requests a Server has received, faulted ones included.
type Counts struct {
	// Listing counts requests to search_by_date.
	Listing int64 `json:"listing"`
	// Items counts requests to items/{id}, for any id.
	Items int64 `json:"items"`
	// ItemsByID counts requests to items/{id} per numeric id.
	ItemsByID map[int64]int64 `json:"items_by_id"`
	// Faults counts the requests answered with a fault (latency alone is
	// not one).
	Faults int64 `json:"faults"`
}

// Server serves a Dataset as the HN Search API (hn.algolia.com/api/v1) does,
// with fault injection and request counts. Its methods are safe for
// concurrent use.
type Server struct {
	d   *Dataset
	mux *http.ServeMux

	mu      sync.Mutex
	faults  Faults
	rng     *rand.Rand
	counts  Counts
	addSeed int64
}

// NewServer returns a Server of d, without faults.
func NewServer(d *Dataset) *Server {
	s := &Server{d: d, rng: newFaultRand(0), counts: Counts{ItemsByID: map[int64]int64{}}}
	m := http.NewServeMux()
	m.HandleFunc("GET /api/v1/search_by_date", s.serveSearch)
	m.HandleFunc("GET /api/v1/items/{id}", s.serveItem)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	routes := controlRoutes()
	allow := map[string][]string{} // methods by path, for 405 answers
	for _, r := range routes {
		m.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) { r.serve(s, w, req) })
		allow[r.Path] = append(allow[r.Path], r.Method)
	}
	m.HandleFunc(controlPrefix+"{name}", func(w http.ResponseWriter, r *http.Request) {
		if methods := allow[controlPrefix+r.PathValue("name")]; len(methods) > 0 {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeBody(w, http.StatusMethodNotAllowed, errorBody(http.StatusMethodNotAllowed, ""))
			return
		}
		writeBody(w, http.StatusNotFound, errorBody(http.StatusNotFound, ""))
	})
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeBody(w, http.StatusNotFound, errorBody(http.StatusNotFound, ""))
	})
	s.mux = m
	return s
}

// controlPrefix is the path prefix of the control API.
const controlPrefix = "/_fake/"

// ControlEndpoint is one endpoint of the fake's control API, which changes
// the fake while it runs.
type ControlEndpoint struct {
	// Method and Path are what the endpoint answers: "POST", "/_fake/edit".
	Method, Path string
	// Query is the query it takes, "" for none: "?id=N".
	Query string
	// Doc says in one line what it does.
	Doc string
}

// controlRoute is a control endpoint and its handler.
type controlRoute struct {
	ControlEndpoint
	serve func(s *Server, w http.ResponseWriter, r *http.Request)
}

// controlRoutes are the control API's endpoints, every one the Server
// answers under controlPrefix: the one place they are registered and
// documented.
func controlRoutes() []controlRoute {
	route := func(method, path, query, doc string, serve func(*Server, http.ResponseWriter, *http.Request)) controlRoute {
		return controlRoute{ControlEndpoint{Method: method, Path: controlPrefix + path, Query: query, Doc: doc}, serve}
	}
	return []controlRoute{
		route("GET", "stats", "", `the request counts (Counts) as JSON, with "threads" and "items_total"`, (*Server).serveStats),
		route("DELETE", "stats", "", "resets the request counts to zero", (*Server).serveResetStats),
		route("GET", "faults", "", "the injected faults (Faults) as JSON", (*Server).serveFaults),
		route("POST", "faults", "", "sets the injected faults from a JSON Faults body", (*Server).serveSetFaults),
		route("POST", "edit", "?id=N", `edits thread N: appends " (edited)" to its title, bumps its updated_at`, (*Server).serveEdit),
		route("POST", "delete", "?id=N", "deletes thread N", (*Server).serveDelete),
		route("POST", "hide", "?id=N", "hides thread N from the listing; its item stays", (*Server).serveHide),
		route("POST", "add", "?comments=M[&depth=D]", `adds a generated thread of M comments, created at the dataset's clock; answers {"id":N,...}`, (*Server).serveAdd),
	}
}

// ControlEndpoints returns the endpoints of the control API that Handler
// serves besides the API, in a stable order.
func ControlEndpoints() []ControlEndpoint {
	routes := controlRoutes()
	out := make([]ControlEndpoint, len(routes))
	for i, r := range routes {
		out[i] = r.ControlEndpoint
	}
	return out
}

// Start serves d on a loopback httptest server that t's cleanup closes, and
// returns the Server and the API base URL ("http://127.0.0.1:port/api/v1").
func Start(t testing.TB, d *Dataset) (*Server, string) {
	t.Helper()
	s := NewServer(d)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts.URL + "/api/v1"
}

// Handler returns the Server's handler. It serves:
//
//	GET  /api/v1/search_by_date   the listing (tags, numericFilters, hitsPerPage, page)
//	GET  /api/v1/items/{id}       a thread, or a comment with its replies; 404 if unknown
//	GET  /healthz                 "ok"
//
// and the control API under /_fake/, listed by ControlEndpoints: stats
// (Requests, ResetCounts), faults (SetFaults), edit, delete, hide (Edit,
// Delete, Hide) and add.
//
// Faults and counts apply to the two API endpoints only. Every other path
// answers 404 with the API's error body.
func (s *Server) Handler() http.Handler { return s.mux }

// Dataset returns the Dataset the Server serves.
func (s *Server) Dataset() *Dataset { return s.d }

// SetFaults replaces the Faults and reseeds their PRNG with f.Seed, so the
// same requests after the same SetFaults meet the same faults. It panics if
// f is not valid (see Faults.Validate).
func (s *Server) SetFaults(f Faults) {
	if err := f.Validate(); err != nil {
		panic(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.rng = newFaultRand(f.Seed)
}

func newFaultRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6a09e667f3bcc908))
}

func (s *Server) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Requests returns a snapshot of the request counts.
func (s *Server) Requests() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.ItemsByID = make(map[int64]int64, len(s.counts.ItemsByID))
	for id, n := range s.counts.ItemsByID {
		c.ItemsByID[id] = n
	}
	return c
}

// ResetCounts sets every request count to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = Counts{ItemsByID: map[int64]int64{}}
}

type endpoint int

const (
	listingEndpoint endpoint = iota
	itemsEndpoint
)

type fault int

const (
	noFault fault = iota
	fault429
	fault500
	faultTruncated
	faultMalformed
)

// admit counts a request and draws its fault.
func (s *Server) admit(ep endpoint, id int64, hasID bool) (time.Duration, fault, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep == listingEndpoint {
		s.counts.Listing++
	} else {
		s.counts.Items++
		if hasID {
			s.counts.ItemsByID[id]++
		}
	}
	f := s.faults
	if (f.Items || f.Listing) && !(ep == itemsEndpoint && f.Items) && !(ep == listingEndpoint && f.Listing) {
		return 0, noFault, 0
	}
	k := noFault
	if f.Rate429+f.Rate500+f.RateTruncated+f.RateMalformed > 0 {
		u := s.rng.Float64()
		switch {
		case u < f.Rate429:
			k = fault429
		case u < f.Rate429+f.Rate500:
			k = fault500
		case u < f.Rate429+f.Rate500+f.RateTruncated:
			k = faultTruncated
		case u < f.Rate429+f.Rate500+f.RateTruncated+f.RateMalformed:
			k = faultMalformed
		}
	}
	if k != noFault {
		s.counts.Faults++
	}
	return f.Latency, k, f.RetryAfter
}

// serveAPI answers an API request: latency, then a fault or respond's body.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, ep endpoint, id int64, hasID bool, respond func() (int, []byte)) {
	latency, k, retryAfter := s.admit(ep, id, hasID)
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	switch k {
	case fault429:
		secs := int64(math.Ceil(retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		writeBody(w, http.StatusTooManyRequests, errorBody(http.StatusTooManyRequests, ""))
		return
	case fault500:
		writeBody(w, http.StatusInternalServerError, errorBody(http.StatusInternalServerError, ""))
		return
	}
	status, body := respond()
	switch k {
	case faultTruncated:
		setHeaders(w, len(body))
		w.WriteHeader(status)
		_, _ = w.Write(body[:len(body)/2])
		_ = http.NewResponseController(w).Flush()
		// Ends the handler without completing the response: net/http closes
		// the connection, short of the Content-Length it announced.
		panic(http.ErrAbortHandler)
	case faultMalformed:
		half := body[: len(body)/2 : len(body)/2]
		body = append(half, "\x00<!-- hnfake: malformed body -->"...)
	}
	writeBody(w, status, body)
}

func (s *Server) serveSearch(w http.ResponseWriter, r *http.Request) {
	s.serveAPI(w, r, listingEndpoint, 0, false, func() (int, []byte) {
		p, err := parseSearchParams(r.URL)
		if err != nil {
			return http.StatusBadRequest, errorBody(http.StatusBadRequest, err.Error())
		}
		return http.StatusOK, s.d.appendSearch(make([]byte, 0, 1024), &p)
	})
}

func (s *Server) serveItem(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.serveAPI(w, r, itemsEndpoint, id, err == nil, func() (int, []byte) {
		if err != nil {
			return http.StatusNotFound, errorBody(http.StatusNotFound, "")
		}
		e, n, parent, ok := s.d.lookup(id)
		switch {
		case !ok:
			return http.StatusNotFound, errorBody(http.StatusNotFound, "")
		case n != nil:
			return http.StatusOK, appendCommentItem(nil, n, parent, e.t.ID)
		case e.raw != nil:
			return http.StatusOK, e.raw
		}
		return http.StatusOK, appendThreadItem(make([]byte, 0, e.size+e.size/8), e.t)
	})
}

func (s *Server) serveStats(w http.ResponseWriter, _ *http.Request) {
	c := s.Requests()
	writeValue(w, http.StatusOK, struct {
		Counts
		Threads    int `json:"threads"`
		ItemsTotal int `json:"items_total"`
	}{c, s.d.Len(), s.d.NumItems()})
}

func (s *Server) serveResetStats(w http.ResponseWriter, _ *http.Request) {
	s.ResetCounts()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveFaults(w http.ResponseWriter, _ *http.Request) {
	writeValue(w, http.StatusOK, s.currentFaults())
}

func (s *Server) serveSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	if err := dec.Decode(&f); err != nil {
		writeBody(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, err.Error()))
		return
	}
	if err := f.Validate(); err != nil {
		writeBody(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, err.Error()))
		return
	}
	s.SetFaults(f)
	writeValue(w, http.StatusOK, f)
}

// mutateByID runs a mutation named by the id query parameter and answers
// with the thread as it is afterwards (or {"id":N,"deleted":true}).
func (s *Server) mutateByID(w http.ResponseWriter, r *http.Request, fn func(id int64) bool) {
	id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
	if err != nil || id <= 0 {
		writeBody(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "id must be a positive integer"))
		return
	}
	if !fn(id) {
		writeBody(w, http.StatusNotFound, errorBody(http.StatusNotFound, "no thread "+strconv.FormatInt(id, 10)))
		return
	}
	t, ok := s.d.Get(id)
	if !ok {
		writeValue(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
		return
	}
	writeValue(w, http.StatusOK, summary(t))
}

func summary(t *Thread) map[string]any {
	return map[string]any{
		"id": t.ID, "title": t.Title,
		"created_at": t.CreatedAt.UTC().Format(hitTimeLayout),
		"updated_at": t.UpdatedAt.UTC().Format(hitTimeLayout),
	}
}

func (s *Server) serveEdit(w http.ResponseWriter, r *http.Request) {
	s.mutateByID(w, r, func(id int64) bool {
		return s.d.Edit(id, func(t *Thread) { t.Title += " (edited)" })
	})
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	s.mutateByID(w, r, s.d.Delete)
}

func (s *Server) serveHide(w http.ResponseWriter, r *http.Request) {
	s.mutateByID(w, r, s.d.Hide)
}

func (s *Server) serveAdd(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	comments, err := intParam(q.Get("comments"), 0, 100_000)
	if err != nil {
		writeBody(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "comments: "+err.Error()))
		return
	}
	depth, err := intParam(q.Get("depth"), 6, 100_000)
	if err != nil || depth < 1 {
		writeBody(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "depth must be a positive integer"))
		return
	}
	s.mu.Lock()
	s.addSeed++
	seed := s.addSeed
	s.mu.Unlock()
	t := s.d.addGenerated(comments, depth, seed)
	m := summary(t)
	m["comments"] = comments
	writeValue(w, http.StatusOK, m)
}

func intParam(v string, def, maxV int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxV {
		return 0, fmt.Errorf("must be an integer between 0 and %d, got %q", maxV, v)
	}
	return n, nil
}

func errorBody(status int, message string) []byte {
	return appendErrorBody(nil, status, http.StatusText(status), message)
}

func setHeaders(w http.ResponseWriter, n int) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(n))
	h.Set("Cache-Control", "max-age=0, private, must-revalidate")
	h.Set("Access-Control-Allow-Origin", "*")
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	setHeaders(w, len(body))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeValue(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, errorBody(http.StatusInternalServerError, err.Error())
	}
	writeBody(w, status, append(body, '\n'))
}
