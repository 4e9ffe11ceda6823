package cli

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/tidemarktype"
)

// maxPasses is the number of passes the server remembers, for
// /api/v1/passes and its dashboard.
const maxPasses = 50

// event is what /api/v1/events sends: a server-sent event's type and its
// JSON data.
type event struct {
	Type string
	Data any
}

// passView is a pass as /api/v1/passes and the events give it.
type passView struct {
	N          int                                 `json:"n"`
	Started    time.Time                           `json:"started"`
	Finished   *time.Time                          `json:"finished,omitempty"`
	DurationMS int64                               `json:"duration_ms"`
	Running    bool                                `json:"running"`
	Preview    bool                                `json:"preview,omitempty"`
	Sources    map[string]tidemarktype.SourceStats `json:"sources"`
	Targets    map[string]targetStatsView          `json:"targets"`
	Failures   []tidemarktype.RowFailure           `json:"failures"`
	Error      string                              `json:"error,omitempty"`
}

type targetStatsView struct {
	Upserts int64 `json:"upserts"`
	Deletes int64 `json:"deletes"`
	// Changes, Delivered and DeliveryFailures count the work of the
	// target's change hook, if it has one.
	Changes          int64 `json:"changes,omitempty"`
	Delivered        int64 `json:"delivered,omitempty"`
	DeliveryFailures int64 `json:"delivery_failures,omitempty"`
}

// hub is the server's observer of the engine: it keeps the recent passes
// and the one running, and sends what happens to the clients of
// /api/v1/events. A slow client misses events rather than slowing the
// engine: every send is non-blocking.
type hub struct {
	// scrub removes secrets from the messages it passes on.
	scrub func(string) string

	mu      sync.Mutex
	n       int
	running *passView
	passes  []passView // oldest first
	clients map[chan event]struct{}
	// lastEnd is when the last pass ended, or when the hub began;
	// lastMove when the running pass last moved on (it began, or a row of
	// it was done).
	lastEnd, lastMove time.Time
}

// maxEventClients bounds the clients of /api/v1/events at once: each holds
// a connection for as long as it listens.
const maxEventClients = 64

// errTooManyListeners is told to a client of /api/v1/events past
// maxEventClients.
var errTooManyListeners = fmt.Errorf("%d clients already listen to the events: %w", maxEventClients, errBusy)

func newHub(scrub func(string) string) *hub {
	return &hub{scrub: scrub, clients: make(map[chan event]struct{}), lastEnd: time.Now()}
}

// subscribe returns a channel of the events from now on, and the function
// that ends the subscription; errTooManyListeners past maxEventClients.
func (h *hub) subscribe() (<-chan event, func(), error) {
	ch := make(chan event, 64)
	h.mu.Lock()
	if len(h.clients) >= maxEventClients {
		h.mu.Unlock()
		return nil, nil, errTooManyListeners
	}
	h.clients[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.clients, ch)
		h.mu.Unlock()
	}, nil
}

// sendLocked sends ev to every client that has room for it.
func (h *hub) sendLocked(ev event) {
	for ch := range h.clients {
		select {
		case ch <- ev:
		default:
		}
	}
}

// PassStarted begins the pass the hub shows as running.
func (h *hub) PassStarted(_ context.Context, p tidemarktype.PassStart) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	h.lastMove = time.Now()
	h.running = &passView{N: h.n, Started: p.Started, Running: true, Preview: p.Preview,
		Sources: map[string]tidemarktype.SourceStats{}, Targets: map[string]targetStatsView{}, Failures: []tidemarktype.RowFailure{}}
	h.sendLocked(event{"pass_started", *h.running})
}

// PassFinished ends the running pass and remembers it.
func (h *hub) PassFinished(_ context.Context, p tidemarktype.PassEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.view(p.Stats, false)
	if h.running != nil {
		v.N, v.Preview = h.running.N, h.running.Preview
	}
	if p.Err != nil {
		v.Error = h.scrub(p.Err.Error())
	}
	h.running = nil
	h.lastEnd = time.Now()
	h.passes = append(h.passes, v)
	if len(h.passes) > maxPasses {
		h.passes = slices.Delete(h.passes, 0, len(h.passes)-maxPasses)
	}
	h.sendLocked(event{"pass_finished", v})
}

// progress is told an update's counts as it runs.
func (h *hub) progress(st *tidemarktype.UpdateStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running == nil {
		return
	}
	v := h.view(*st, true)
	v.N, v.Preview, v.Started = h.running.N, h.running.Preview, h.running.Started
	v.DurationMS = time.Since(v.Started).Milliseconds()
	h.running = &v
	h.sendLocked(event{"pass_progress", v})
}

// RowDone notes that the running pass moves on, and sends each failed
// row.
func (h *hub) RowDone(_ context.Context, r tidemarktype.RowDone) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastMove = time.Now()
	if r.Outcome != tidemarktype.OutcomeFailed {
		return
	}
	h.sendLocked(event{"row_failed", tidemarktype.RowFailure{Source: r.Source, Key: r.Key, Message: h.scrub(r.Message), At: time.Now()}})
}

// view turns an update's stats into a passView.
func (h *hub) view(st tidemarktype.UpdateStats, running bool) passView {
	v := passView{Started: st.Started, Running: running, Sources: map[string]tidemarktype.SourceStats{},
		Targets: map[string]targetStatsView{}, Failures: []tidemarktype.RowFailure{}}
	end := time.Now()
	if !running && !st.Finished.IsZero() {
		end = st.Finished
		v.Finished = &end
	}
	if !st.Started.IsZero() {
		v.DurationMS = end.Sub(st.Started).Milliseconds()
	}
	for name, s := range st.Sources {
		s.ListingError = h.scrub(s.ListingError)
		v.Sources[name] = s
	}
	for key, t := range st.Targets {
		v.Targets[key] = targetStatsView{Upserts: t.Upserts, Deletes: t.Deletes, Changes: t.Changes, Delivered: t.Delivered, DeliveryFailures: t.DeliveryFailures}
	}
	for _, f := range st.Failures {
		f.Message = h.scrub(f.Message)
		v.Failures = append(v.Failures, f)
	}
	return v
}

// recent returns the pass running, if any, and the passes remembered,
// newest first.
func (h *hub) recent() (running *passView, passes []passView) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running != nil {
		r := *h.running
		running = &r
	}
	passes = slices.Clone(h.passes)
	slices.Reverse(passes)
	return running, passes
}

// times says whether a pass is running, when the last one ended, and when
// the running one last moved on.
func (h *hub) times() (running bool, lastEnd, lastMove time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running != nil, h.lastEnd, h.lastMove
}
