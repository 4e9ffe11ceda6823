package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Service is a fake internal service: a JSON API on loopback holding one
// document per user, each stamped with an updated_at by the service's own
// clock. It answers
//
//	GET /users?after=ID&limit=N  {"users": [{"id", "updated_at"}…], "next": "ID"}, by ascending id
//	GET /users/{id}              the user's document, or 404
//
// and counts the requests it answers.
type Service struct {
	Name string // accounts, billing or crm
	srv  *httptest.Server

	mu       sync.Mutex
	docs     map[string]map[string]any
	clock    time.Time // stamps the next write, then moves on by a second
	counts   Counts
	failNext int
}

// Counts are the requests a Service answered, by endpoint.
type Counts struct {
	Lists    int // GET /users: listing pages
	Docs     int // GET /users/{id}: documents
	NotFound int // documents answered 404
	Failed   int // requests answered 503 (see FailNext)
}

// NewService starts a service whose clock reads now.
func NewService(name string, now time.Time) *Service {
	s := &Service{Name: name, docs: make(map[string]map[string]any), clock: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users", s.list)
	mux.HandleFunc("GET /users/{id}", s.get)
	s.srv = httptest.NewServer(s.fault(mux))
	return s
}

// URL returns the base URL of the service's API.
func (s *Service) URL() string { return s.srv.URL }

// Close stops the service.
func (s *Service) Close() { s.srv.Close() }

// Put stores doc as user id's document, stamped at updatedAt.
func (s *Service) Put(id string, updatedAt time.Time, doc map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc["id"], doc["updated_at"] = id, updatedAt.UTC()
	s.docs[id] = doc
}

// Edit sets fields of user id's document and stamps it with the service's
// clock.
func (s *Service) Edit(id string, fields map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok := s.docs[id]
	if !ok {
		return fmt.Errorf("%s has no user %s", s.Name, id)
	}
	for k, v := range fields {
		doc[k] = v
	}
	doc["updated_at"] = s.clock.UTC()
	s.clock = s.clock.Add(time.Second)
	return nil
}

// Delete removes user id's document.
func (s *Service) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.docs, id)
}

// FailNext makes the next n requests answer 503 Service Unavailable.
func (s *Service) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// TakeCounts returns the requests answered since the last call.
func (s *Service) TakeCounts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = Counts{}
	return c
}

// fault counts each request and answers 503 to those FailNext asked for.
func (s *Service) fault(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if r.URL.Path == "/users" {
			s.counts.Lists++
		} else {
			s.counts.Docs++
		}
		fail := s.failNext > 0
		if fail {
			s.failNext--
			s.counts.Failed++
		}
		s.mu.Unlock()
		if fail {
			http.Error(w, s.Name+" is restarting", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	after := r.URL.Query().Get("after")
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 {
		http.Error(w, "limit must be a positive integer", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.docs {
		if id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	next := ""
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	users := make([]map[string]any, len(ids))
	for i, id := range ids {
		users[i] = map[string]any{"id": id, "updated_at": s.docs[id]["updated_at"]}
	}
	writeJSON(w, map[string]any{"users": users, "next": next})
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok := s.docs[r.PathValue("id")]
	if !ok {
		s.counts.NotFound++
		http.NotFound(w, r)
		return
	}
	writeJSON(w, doc)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Services are the three fake services a user is spread over.
type Services struct {
	Accounts, Billing, CRM *Service
}

// all returns the services in the order they are printed.
func (s *Services) all() []*Service { return []*Service{s.Accounts, s.Billing, s.CRM} }

// Close stops the services.
func (s *Services) Close() {
	for _, svc := range s.all() {
		svc.Close()
	}
}

// StartServices starts the three services, seeded with the same 24 users
// every time: u001…u024. The CRM has no record of u024, who signed up last;
// nobody is on the enterprise plan.
func StartServices() *Services {
	// The accounts service's clock reads base when the services start;
	// billing's runs three hours behind it, the CRM's on time.
	base := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	s := &Services{
		Accounts: NewService("accounts", base),
		Billing:  NewService("billing", base.Add(-3*time.Hour)),
		CRM:      NewService("crm", base),
	}
	people := []struct{ name, company string }{
		{"Ada Lovelace", "Analytical Engines"}, {"Alan Turing", "Bletchley Labs"},
		{"Barbara Liskov", "Substitution Systems"}, {"Claude Shannon", "Entropy Works"},
		{"Donald Knuth", "Literate Press"}, {"Edsger Dijkstra", "Shortest Path Logistics"},
		{"Grace Hopper", "Compiler Navy Yard"}, {"John McCarthy", "Lambda Robotics"},
		{"Ken Thompson", "Unix Foundry"}, {"Dennis Ritchie", "Portable Systems"},
		{"Frances Allen", "Optimizing Compilers"}, {"Leslie Lamport", "Paxos Consensus"},
		{"Margaret Hamilton", "Apollo Guidance"}, {"Niklaus Wirth", "Pascal Tools"},
		{"Radia Perlman", "Spanning Tree Networks"}, {"Rob Pike", "Plan Nine Studio"},
		{"Robert Griesemer", "Gopher Garden"}, {"Sophie Wilson", "Acorn Silicon"},
		{"Tony Hoare", "Quicksort Partners"}, {"Adele Goldberg", "Smalltalk Objects"},
		{"Butler Lampson", "Alto Workstations"}, {"Fran Bilas", "ENIAC Heritage"},
		{"Jean Sammet", "Cobol Consulting"}, {"Hedy Lamarr", "Frequency Hopping Radio"},
	}
	plans := []string{"free", "team", "business", "team"}
	owners := []string{"Maya (EMEA)", "Luis (AMER)", "Kenji (APAC)"}
	notes := []string{
		"Renewal call booked; happy with the sync speed.",
		"Asked about SSO and audit logs.",
		"Evaluating the enterprise tier for data residency in the EU.",
		"Support ticket: slow search on large tables, resolved.",
		"Champion left the company; find a new contact.",
		"Wants invoices in EUR.",
		"Piloting the API with two teams.",
		"Referred by a customer at a meetup.",
	}
	for i, p := range people {
		id := fmt.Sprintf("u%03d", i+1)
		first, _, _ := strings.Cut(p.name, " ")
		domain := strings.ToLower(strings.ReplaceAll(p.company, " ", "")) + ".example"
		// Each service stamps its documents by its own clock.
		s.Accounts.Put(id, base.Add(-time.Duration(i+1)*5*time.Minute), map[string]any{
			"name": p.name, "email": strings.ToLower(first) + "@" + domain,
		})
		s.Billing.Put(id, base.Add(-3*time.Hour-time.Duration(i+1)*24*time.Hour), map[string]any{
			"plan": plans[i%len(plans)], "seats": 1 + i%4*5,
		})
		if i+1 < len(people) {
			s.CRM.Put(id, base.Add(-time.Duration(i+1)*7*time.Hour), map[string]any{
				"company": p.company, "owner": owners[i%len(owners)], "notes": notes[i%len(notes)],
			})
		}
	}
	return s
}
