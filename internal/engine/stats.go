package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats describe one update.
type Stats struct {
	Started  time.Time
	Finished time.Time
	// Setup lists the setup changes the update applied (or, in preview,
	// would apply).
	Setup []SetupChange
	// Sources are per source, by name.
	Sources map[string]SourceStats
	// Targets are per root target, by key: the actions written to its
	// children (or, in preview, that would be).
	Targets map[string]TargetStats
	// RowErrors are the first failed rows, up to maxRowErrors.
	RowErrors []RowError
}

// SourceStats count what an update did with one source's rows.
type SourceStats struct {
	// Listed is the number of keys listed.
	Listed int64
	// Fetched is the number of rows fetched with Get.
	Fetched int64
	// Added, Updated and Reprocessed count rows processed: seen for the
	// first time, changed, or processed again because the logic, a target's
	// setup or the mode asked for it.
	Added       int64
	Updated     int64
	Reprocessed int64
	// Deleted counts rows gone from the source whose targets were deleted.
	Deleted int64
	// Unchanged counts rows skipped: by ordinal, or fetched and found with
	// the same content.
	Unchanged int64
	// Errors counts rows that failed; they are retried next update.
	Errors int64
	// ListingComplete says the listing ran to its end, so rows missing from
	// it were deleted.
	ListingComplete bool
	// ListingError is why the listing did not complete, if it did not.
	ListingError string
}

// TargetStats count the actions written to a root target's children.
type TargetStats struct {
	Upserts int64
	Deletes int64
}

// RowError is a source row that failed.
type RowError struct {
	Source string
	Key    string
	Err    string
}

const maxRowErrors = 100

// counters are the live counters of one update.
type counters struct {
	mu        sync.Mutex
	sources   map[string]*sourceCounters
	targets   map[string]*targetCounters
	rowErrors []RowError
}

type sourceCounters struct {
	listed, fetched, added, updated, reprocessed, deleted, unchanged, errors atomic.Int64
	listingComplete                                                          atomic.Bool
	listingError                                                             atomic.Value // error
}

type targetCounters struct {
	upserts, deletes atomic.Int64
}

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
	if len(c.rowErrors) < maxRowErrors {
		c.rowErrors = append(c.rowErrors, RowError{Source: source, Key: key, Err: err.Error()})
	}
}

func (c *counters) snapshot() Stats {
	st := Stats{Sources: make(map[string]SourceStats, len(c.sources)), Targets: make(map[string]TargetStats, len(c.targets))}
	for name, s := range c.sources {
		ss := SourceStats{
			Listed: s.listed.Load(), Fetched: s.fetched.Load(), Added: s.added.Load(), Updated: s.updated.Load(),
			Reprocessed: s.reprocessed.Load(), Deleted: s.deleted.Load(), Unchanged: s.unchanged.Load(), Errors: s.errors.Load(),
			ListingComplete: s.listingComplete.Load(),
		}
		if err, ok := s.listingError.Load().(error); ok {
			ss.ListingError = err.Error()
		}
		st.Sources[name] = ss
	}
	for key, t := range c.targets {
		st.Targets[key] = TargetStats{Upserts: t.upserts.Load(), Deletes: t.deletes.Load()}
	}
	c.mu.Lock()
	st.RowErrors = append([]RowError(nil), c.rowErrors...)
	c.mu.Unlock()
	return st
}
