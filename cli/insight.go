package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/dburl"
	"github.com/tidemark/tidemark/tidemarktype"
)

// insight is the inspection server of a session: the JSON API under
// /api/v1/, the web UI, /healthz and /metrics.
//
//	GET  /api/v1/flow                             the flow: sources, targets, queries
//	GET  /api/v1/sources/{source}/rows            the source's rows, by key: ?failed=true&after=KEY&limit=N
//	GET  /api/v1/sources/{source}/rows/{key}      one row, with the target states it declared
//	GET  /api/v1/targets/{target}/states/{key}    a target state, with the rows that declared it
//	GET  /api/v1/passes                           the recent passes, and each source's last update
//	GET  /api/v1/events                           server-sent events: pass_started, pass_progress, pass_finished, row_failed
//	GET  /api/v1/query/{name}?q=&limit=&offset=   a query handler's page of results, with the total
//	POST /api/v1/update                           run a pass now (needs the token)
//	GET  /api/{query}?q=&limit=                   a query's results as the query command's --json prints them
//	GET  /metrics                                 Prometheus metrics
//	GET  /healthz                                 200 while each source's last update succeeded
type insight struct {
	r       *runner
	s       *session
	hub     *hub
	live    bool
	refresh time.Duration
	queries []string
	// expensive bounds the queries and pages of rows run at once.
	expensive limiter
	// now asks live mode for a pass; nil when not live.
	now chan struct{}
	// passes runs the passes asked for when not live; updating says one
	// is running.
	passes   sync.WaitGroup
	updating atomic.Bool
	// stopped ends the passes asked for when the server stops.
	stopped <-chan struct{}
	// metrics serves /metrics.
	metrics http.Handler
	guard   *guard
	pages   pages
}

// scrub removes from text what would give away --db's secrets.
func (s *insight) scrub(text string) string { return s.r.scrub(text) }

// scrub removes from text what would give away --db's secrets: the URL as
// given, and its password wherever it appears.
func (r *runner) scrub(text string) string {
	for _, u := range []string{r.db, r.state} {
		if text == "" || u == "" {
			continue
		}
		if redacted := dburl.Redact(u); redacted != u {
			text = strings.ReplaceAll(text, u, redacted)
		}
		text = dburl.RedactText(u, text)
	}
	return text
}

// scrubOptions redacts the passwords of the URLs among a source's options.
func (s *insight) scrubOptions(opts map[string]string) map[string]string {
	out := make(map[string]string, len(opts))
	for k, v := range opts {
		if u, err := url.Parse(v); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "redacted")
				v = u.String()
			}
		}
		out[k] = s.scrub(v)
	}
	return out
}

func (s *insight) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/flow", readJSON(s, s.flowAPI))
	mux.HandleFunc("GET /api/v1/sources/{source}/rows", readJSON(s, s.rows))
	mux.HandleFunc("GET /api/v1/sources/{source}/rows/{key...}", readJSON(s, s.row))
	mux.HandleFunc("GET /api/v1/targets/{target}/states/{key...}", readJSON(s, s.targetState))
	mux.HandleFunc("GET /api/v1/passes", s.apiPasses)
	mux.HandleFunc("GET /api/v1/events", s.apiEvents)
	mux.HandleFunc("GET /api/v1/query/{name}", readJSON(s, func(req *http.Request) (*queryAPI, error) {
		out, _, err := s.queryPage(req, req.PathValue("name"))
		return out, err
	}))
	mux.HandleFunc("POST /api/v1/update", s.apiUpdate)
	mux.HandleFunc("GET /api/{query}", s.apiLegacyQuery)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, req, http.StatusNotFound, fmt.Sprintf("no such API: %s %s (see /api/v1/flow)", req.Method, req.URL.Path))
	})
}

// fail answers a request that failed with err.
func (s *insight) fail(w http.ResponseWriter, req *http.Request, err error) {
	status, msg := s.clientError(req, err)
	writeError(w, req, status, msg)
}

// writeError answers with a JSON error.
func writeError(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// flowAPI is what /api/v1/flow says.
type flowAPI struct {
	*flowView
	Live bool `json:"live"`
}

func (s *insight) flowView(ctx context.Context) (*flowView, error) {
	v, err := s.r.flowView(ctx, s.s, 20)
	if err != nil {
		return nil, err
	}
	s.scrubSources(v.Sources)
	return v, nil
}

// sources reads the flow's sources, as flowView does, without the targets
// and their row counts (a count of every row, on PostgreSQL): /healthz and
// the passes need only the sources' last updates.
func (s *insight) sources(ctx context.Context) ([]sourceView, error) {
	st, err := s.s.engine.Status(ctx, 0)
	if err != nil {
		return nil, err
	}
	v := sourceViews(st)
	s.scrubSources(v)
	return v, nil
}

// scrubSources removes --db's secrets from what sources say.
func (s *insight) scrubSources(sources []sourceView) {
	for i := range sources {
		src := &sources[i]
		src.Options = s.scrubOptions(src.Options)
		if u := src.LastUpdate; u != nil {
			c := *u
			c.Error = s.scrub(c.Error)
			c.Stats.ListingError = s.scrub(c.Stats.ListingError)
			src.LastUpdate = &c
		}
		for j := range src.Failures {
			src.Failures[j].Message = s.scrub(src.Failures[j].Message)
		}
	}
}

// readJSON answers a GET with what read reads, as JSON, or with its
// error.
func readJSON[T any](s *insight, read func(req *http.Request) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		v, err := read(req)
		if err != nil {
			s.fail(w, req, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// flowAPI reads what /api/v1/flow says.
func (s *insight) flowAPI(req *http.Request) (flowAPI, error) {
	v, err := s.flowView(req.Context())
	return flowAPI{flowView: v, Live: s.live}, err
}

// errNoSuchSource and errNoSuchQuery are returned for a source or a query
// handler the flow does not have.
var (
	errNoSuchSource = errors.New("no such source")
	errNoSuchQuery  = errors.New("no query")
)

func (s *insight) source(req *http.Request) (string, error) {
	name := req.PathValue("source")
	names := s.s.flow.SourceNames()
	if !slices.Contains(names, name) {
		return "", fmt.Errorf("%w %q: the flow's sources are %s", errNoSuchSource, name, strings.Join(names, ", "))
	}
	return name, nil
}

// rowSummary is a row as a page of rows shows it.
type rowSummary struct {
	Key          any        `json:"key"`
	Ordinal      *int64     `json:"ordinal"`
	ProcessedAt  *time.Time `json:"processed_at"`
	LogicCurrent bool       `json:"logic_current"`
	Staged       bool       `json:"staged"`
	States       int        `json:"states"`
	Error        *string    `json:"error"`
	// KeyArg is the key as the row's page takes it; RawKey its JSON
	// encoding, as after takes it.
	KeyArg string `json:"-"`
	RawKey string `json:"-"`
}

// rowsPage is what /api/v1/sources/{source}/rows says.
type rowsPage struct {
	Source string       `json:"source"`
	Rows   []rowSummary `json:"rows"`
	// Next is the after of the next page; empty at the end.
	Next string `json:"next,omitempty"`
}

// rows reads a page of a source's rows, as the request's failed, after
// and limit ask.
func (s *insight) rows(req *http.Request) (*rowsPage, error) {
	source, err := s.source(req)
	if err != nil {
		return nil, err
	}
	q := req.URL.Query()
	opts := tidemark.RowsOptions{After: q.Get("after"), Limit: 50}
	if l := q.Get("limit"); l != "" {
		if opts.Limit, err = strconv.Atoi(l); err != nil || opts.Limit < 1 || opts.Limit > 1000 {
			return nil, badRequestf("limit must be a number between 1 and 1000, got %q", l)
		}
	}
	switch f := q.Get("failed"); f {
	case "", "false", "0":
	case "true", "1":
		opts.Failed = true
	default:
		return nil, badRequestf("failed must be true or false, got %q", f)
	}
	if !s.expensive.acquire(req.Context()) {
		return nil, errBusyQueries
	}
	defer s.expensive.release()
	limit := opts.Limit
	opts.Limit++ // one more, to know whether there is a next page
	states, err := s.s.engine.Rows(req.Context(), source, opts)
	if errors.Is(err, tidemark.ErrBadKey) {
		return nil, badRequestf("after %q is not a key", opts.After)
	}
	if err != nil {
		return nil, err
	}
	more := len(states) > limit
	states = states[:min(len(states), limit)]
	page := &rowsPage{Source: source, Rows: make([]rowSummary, 0, len(states))}
	for _, st := range states {
		rs := rowSummary{Key: decodedKey(st.Key), Ordinal: st.Ordinal, LogicCurrent: st.LogicCurrent, Staged: st.Staged,
			States: len(st.States), KeyArg: keyText(st.Key), RawKey: st.Key}
		if !st.ProcessedAt.IsZero() {
			at := st.ProcessedAt
			rs.ProcessedAt = &at
		}
		if st.Failure != nil {
			msg := s.scrub(st.Failure.Message)
			rs.Error = &msg
		}
		page.Rows = append(page.Rows, rs)
	}
	if more {
		page.Next = states[len(states)-1].Key
	}
	return page, nil
}

// row reads the row the request names.
func (s *insight) row(req *http.Request) (*rowView, error) {
	source, err := s.source(req)
	if err != nil {
		return nil, err
	}
	key := req.PathValue("key")
	v, err := s.s.rowView(req.Context(), source, key)
	if errors.Is(err, tidemark.ErrBadKey) {
		return nil, &badRequest{s.scrub(err.Error())}
	}
	if err != nil {
		return nil, err
	}
	if v.Error != nil {
		msg := s.scrub(*v.Error)
		v.Error = &msg
	}
	return v, nil
}

// targetState reads the target state the request names.
func (s *insight) targetState(req *http.Request) (*targetRowView, error) {
	return s.s.targetRowView(req.Context(), req.PathValue("target"), req.PathValue("key"))
}

// passesAPI is what /api/v1/passes says.
type passesAPI struct {
	// Running is the pass running now, if any; Passes those this server
	// saw end, newest first.
	Running *passView  `json:"running"`
	Passes  []passView `json:"passes"`
	// LastUpdates are each source's last update, as the state store keeps
	// it: they outlast the server.
	LastUpdates map[string]*tidemarktype.SourceUpdate `json:"last_updates"`
}

func (s *insight) apiPasses(w http.ResponseWriter, req *http.Request) {
	sources, err := s.sources(req.Context())
	if err != nil {
		s.fail(w, req, err)
		return
	}
	out := passesAPI{LastUpdates: make(map[string]*tidemarktype.SourceUpdate)}
	out.Running, out.Passes = s.hub.recent()
	if out.Passes == nil {
		out.Passes = []passView{}
	}
	for _, src := range sources {
		out.LastUpdates[src.Name] = src.LastUpdate
	}
	writeJSON(w, http.StatusOK, out)
}

// apiEvents streams the hub's events until the client goes or the server
// stops, with a comment every 15 s to keep proxies from closing it.
func (s *insight) apiEvents(w http.ResponseWriter, req *http.Request) {
	events, unsubscribe, err := s.hub.subscribe()
	if err != nil {
		s.fail(w, req, err)
		return
	}
	defer unsubscribe()
	rc := http.NewResponseController(w)
	// The stream outlives the server's write timeout: each write has a
	// deadline of its own instead, so that a client that stops reading is
	// let go of, and does not hold the server's shutdown.
	write := func(f func()) bool {
		rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		f()
		return rc.Flush() == nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	running, _ := s.hub.recent()
	if !write(func() {
		fmt.Fprintf(w, "retry: 2000\n\n")
		if running != nil {
			writeEvent(w, event{"pass_progress", *running})
		}
	}) {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		var ok bool
		select {
		case ev := <-events:
			ok = write(func() { writeEvent(w, ev) })
		case <-ping.C:
			ok = write(func() { fmt.Fprint(w, ": ping\n\n") })
		case <-s.stopped:
			return
		case <-req.Context().Done():
			return
		}
		if !ok {
			return
		}
	}
}

// eventWriteTimeout bounds each write of the event stream.
const eventWriteTimeout = 5 * time.Second

func writeEvent(w http.ResponseWriter, ev event) {
	b, err := json.Marshal(ev.Data)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b)
}

// queryAPI is what /api/v1/query/{name} says.
type queryAPI struct {
	Query  string `json:"query"`
	Text   string `json:"q"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
	// Total is the number of results in all; nil when the handler does
	// not say (it returned no tidemark.QueryPage).
	Total       *int             `json:"total"`
	TotalCapped bool             `json:"total_capped"`
	Results     []map[string]any `json:"results"`
}

// queryOf reads a query from q, limit and offset.
func queryOf(req *http.Request) (tidemark.Query, error) {
	v := req.URL.Query()
	q := tidemark.Query{Text: v.Get("q"), Limit: 20}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxQueryLimit {
			return q, badRequestf("limit must be a number between 1 and %d, got %q", MaxQueryLimit, l)
		}
		q.Limit = n
	}
	if o := v.Get("offset"); o != "" {
		n, err := strconv.Atoi(o)
		if err != nil || n < 0 || n > MaxQueryOffset {
			return q, badRequestf("offset must be a number between 0 and %d, got %q", MaxQueryOffset, o)
		}
		q.Offset = n
	}
	return q, nil
}

// runQuery runs the query handler name as the request asks, taking a turn
// among the expensive requests.
func (s *insight) runQuery(req *http.Request, name string) (tidemark.Query, any, error) {
	if !slices.Contains(s.queries, name) {
		return tidemark.Query{}, nil, fmt.Errorf("%w %q; there are: %s", errNoSuchQuery, name, strings.Join(s.queries, ", "))
	}
	q, err := queryOf(req)
	if err != nil {
		return q, nil, err
	}
	if !s.expensive.acquire(req.Context()) {
		return q, nil, errBusyQueries
	}
	defer s.expensive.release()
	res, err := s.s.flow.Query(req.Context(), name, q)
	return q, res, err
}

// queryPage runs a query for a page of records: each with its snippet and
// links when the handler gives them (see tidemark.QueryPage).
func (s *insight) queryPage(req *http.Request, name string) (*queryAPI, []tidemark.QueryItem, error) {
	q, res, err := s.runQuery(req, name)
	if err != nil {
		return nil, nil, err
	}
	items, page := pageOf(res)
	recs, msg := asRecords(items)
	if msg != "" {
		return nil, nil, errors.New(msg)
	}
	out := &queryAPI{Query: name, Text: q.Text, Offset: q.Offset, Limit: q.Limit, Results: recs}
	var about []tidemark.QueryItem
	if page != nil {
		out.Total, out.TotalCapped, about = &page.Total, page.TotalCapped, page.About
		for i, a := range page.About {
			if i < len(recs) {
				recs[i]["snippet"] = a.Snippet
				if a.Target != "" {
					recs[i]["target"] = map[string]string{"target": a.Target, "key": a.Key,
						"api": "/api/v1/targets/" + url.PathEscape(a.Target) + "/states/" + url.PathEscape(a.Key)}
				}
				if a.Link != "" {
					recs[i]["link"] = a.Link
				}
			}
		}
	}
	if out.Results == nil {
		out.Results = []map[string]any{}
	}
	return out, about, nil
}

// apiLegacyQuery answers GET /api/{query} as it always has: the query's
// results as the query command's --json prints them.
func (s *insight) apiLegacyQuery(w http.ResponseWriter, req *http.Request) {
	_, res, err := s.runQuery(req, req.PathValue("query"))
	if err != nil {
		s.fail(w, req, err)
		return
	}
	items, _ := pageOf(res)
	writeJSON(w, http.StatusOK, items)
}

// apiUpdate asks for a pass now: of live mode, or, when the server is not
// live, one update run in the background. Its progress and end are told
// on /api/v1/events and /api/v1/passes.
func (s *insight) apiUpdate(w http.ResponseWriter, req *http.Request) {
	status, msg := s.requestUpdate()
	writeJSON(w, status, map[string]any{"status": msg, "live": s.live})
}

// requestUpdate asks for a pass, and says how it went as a status and a
// word.
func (s *insight) requestUpdate() (int, string) {
	if s.live {
		select {
		case s.now <- struct{}{}:
			return http.StatusAccepted, "requested"
		default:
			return http.StatusAccepted, "already requested"
		}
	}
	if !s.updating.CompareAndSwap(false, true) {
		return http.StatusConflict, "an update is running"
	}
	s.passes.Go(func() {
		defer s.updating.Store(false)
		ctx := context.WithValue(context.Background(), loggerKey{}, s.r.log)
		_, err := s.s.engine.Update(ctx, tidemark.UpdateOptions{Stop: s.stopped, Progress: s.hub.progress, ProgressInterval: 500 * time.Millisecond})
		if err != nil {
			s.r.log.Warn("an update asked for over HTTP failed", "err", s.scrub(err.Error()))
		}
	})
	return http.StatusAccepted, "started"
}

// healthz says 200 "ok" while each source's last update succeeded and,
// when live, no pass is overdue; 503 with the reasons otherwise.
func (s *insight) healthz(w http.ResponseWriter, req *http.Request) {
	reasons, err := s.unhealthy(req.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		_, msg := s.clientError(req, err)
		reasons = append(reasons, "reading the state store failed: "+msg)
	}
	if len(reasons) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, r := range reasons {
			fmt.Fprintln(w, r)
		}
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *insight) unhealthy(ctx context.Context) ([]string, error) {
	sources, err := s.sources(ctx)
	if err != nil {
		return nil, err
	}
	running, lastEnd, lastMove := s.hub.times()
	if running {
		lastEnd = lastMove // a pass that moves on is not overdue
	}
	return s.reasons(sources, running, lastEnd, time.Now()), nil
}

// reasons says what is wrong with sources at now: a source never updated,
// one whose last update failed, and, when live, one whose pass is overdue:
// when no pass runs, since the last one ended at since; when one runs, it
// has not moved on since since.
func (s *insight) reasons(sources []sourceView, running bool, since, now time.Time) []string {
	var reasons []string
	for _, src := range sources {
		u := src.LastUpdate
		switch {
		case u == nil:
			reasons = append(reasons, fmt.Sprintf("source %s: never updated", src.Name))
		case u.Error != "" && !u.Stopped:
			reasons = append(reasons, fmt.Sprintf("source %s: its last update, at %s, failed: %s", src.Name, u.Finished.UTC().Format(time.RFC3339), firstLine(u.Error)))
		}
		if !s.live {
			continue
		}
		interval := s.interval(src.Name)
		late := now.Sub(since)
		switch {
		case !running && late <= 2*interval+30*time.Second:
		case running && late <= max(2*interval+30*time.Second, stuckAfter):
		case running:
			reasons = append(reasons, fmt.Sprintf("source %s: the running pass is stuck: no row of it was done for %s, and it is listed every %s",
				src.Name, late.Round(time.Second), interval))
		default:
			reasons = append(reasons, fmt.Sprintf("source %s: a live pass is overdue: the last ended %s ago, and it is listed every %s",
				src.Name, late.Round(time.Second), interval))
		}
	}
	return reasons
}

// stuckAfter is the least time without a row done that makes a running
// pass stuck: a row may be retried for minutes (the HackerNews source's
// --retry-deadline is 2 minutes by default) in a pass that is not.
const stuckAfter = 10 * time.Minute

// interval is how often live mode lists a source.
func (s *insight) interval(source string) time.Duration {
	switch own := s.s.flow.RefreshInterval(source); {
	case s.refresh > 0:
		return s.refresh
	case own > 0:
		return own
	}
	return tidemark.DefaultRefreshInterval
}

// asRecords turns query results into records to show: through their JSON
// form, so that the page shows what the API returns.
func asRecords(res any) ([]map[string]any, string) {
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err.Error()
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		var one map[string]any
		if json.Unmarshal(b, &one) != nil {
			return nil, "the query's result is not a list of records"
		}
		recs = []map[string]any{one}
	}
	return recs, ""
}

// length is the length of a slice, 0 for anything else.
func length(v any) int {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		return rv.Len()
	}
	return 0
}
