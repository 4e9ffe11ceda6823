package engine

import (
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark/tidemarktype"
)

// The result types are tidemarktype's: one definition in every layer.
type (
	// Stats describe one update.
	Stats = tidemarktype.UpdateStats
	// SourceStats count what an update did with one source's rows.
	SourceStats = tidemarktype.SourceStats
	// TargetStats count the actions written to a root target's children.
	TargetStats = tidemarktype.TargetStats
	// RowFailure is a source row that failed.
	RowFailure = tidemarktype.RowFailure
)

// counters are the live counters of one update.
type counters struct {
	mu       sync.Mutex
	sources  map[string]*sourceCounters
	targets  map[string]*targetCounters
	failures []RowFailure
}

type sourceCounters struct {
	listed, fetched, added, updated, reprocessed, deleted, unchanged, errors atomic.Int64
	listingComplete                                                          atomic.Bool
	listingError                                                             atomic.Pointer[error]
	held                                                                     atomic.Int64
}

// failListing records why the listing failed.
func (s *sourceCounters) failListing(err error) { s.listingError.Store(&err) }

// listingErr is why the listing failed; nil when it did not.
func (s *sourceCounters) listingErr() error {
	if p := s.listingError.Load(); p != nil {
		return *p
	}
	return nil
}

// newListing forgets what an earlier listing of the update found: a
// shared pass's lister that takes its lease back lists again, and only
// that listing may decide the deletions.
func (s *sourceCounters) newListing() {
	s.listingComplete.Store(false)
	s.listingError.Store(nil)
	s.listed.Store(0)
}

type targetCounters struct {
	upserts, deletes                atomic.Int64
	changes, delivered, deliveryErr atomic.Int64
}

// hookDelivered counts a change told to target's hook.
func (c *counters) hookDelivered(target string) { c.targets[target].delivered.Add(1) }

// hookFailed counts a failed delivery of a change to target's hook.
func (c *counters) hookFailed(target string) { c.targets[target].deliveryErr.Add(1) }

func newCounters(f *Flow) *counters {
	c := &counters{sources: make(map[string]*sourceCounters), targets: make(map[string]*targetCounters)}
	for _, s := range f.Sources {
		c.sources[s.Name] = &sourceCounters{}
	}
	for _, r := range f.Roots {
		c.targets[string(r.Key)] = &targetCounters{}
	}
	return c
}

func (c *counters) rowError(source, key string, err error) {
	c.sources[source].errors.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < tidemarktype.MaxFailures {
		c.failures = append(c.failures, RowFailure{Source: source, Key: key, Message: err.Error()})
	}
}

func (c *counters) snapshot() Stats {
	st := Stats{Sources: make(map[string]SourceStats, len(c.sources)), Targets: make(map[string]TargetStats, len(c.targets))}
	for name, s := range c.sources {
		ss := SourceStats{
			Listed: s.listed.Load(), Fetched: s.fetched.Load(), Added: s.added.Load(), Updated: s.updated.Load(),
			Reprocessed: s.reprocessed.Load(), Deleted: s.deleted.Load(), Unchanged: s.unchanged.Load(), Errors: s.errors.Load(),
			ListingComplete: s.listingComplete.Load(), Held: s.held.Load(),
		}
		if err := s.listingErr(); err != nil {
			ss.ListingError = err.Error()
		}
		st.Sources[name] = ss
	}
	for key, t := range c.targets {
		st.Targets[key] = TargetStats{Upserts: t.upserts.Load(), Deletes: t.deletes.Load(),
			Changes: t.changes.Load(), Delivered: t.delivered.Load(), DeliveryFailures: t.deliveryErr.Load()}
	}
	c.mu.Lock()
	st.Failures = append([]RowFailure(nil), c.failures...)
	c.mu.Unlock()
	return st
}
