package cli

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/tidemark/tidemark/tidemarktype"
)

// progress shows how an update goes: bars on a terminal, a log line every
// few seconds otherwise. A nil *progress shows nothing.
type progress struct {
	env     Env
	log     *slog.Logger
	sources []string
	// preview says nothing is written: the counts are what would be.
	preview bool

	mu      sync.Mutex
	started time.Time
	last    *tidemarktype.UpdateStats
	p       *mpb.Progress
	bars    map[string]*mpb.Bar
}

func newProgress(env Env, log *slog.Logger, sources []string, preview bool) *progress {
	p := &progress{env: env, log: log, sources: sources, preview: preview}
	p.restart()
	return p
}

// interval is how often the engine reports progress.
func (p *progress) interval() time.Duration {
	if p != nil && p.env.Terminal {
		return 200 * time.Millisecond
	}
	return 5 * time.Second
}

// counts are the figures shown for a source.
type counts struct {
	listed, processed, written int64
	// total is what processed counts up to: the rows listed and those
	// found gone, one more while the listing runs, so that the bar is
	// full only once everything listed was processed.
	total   int64
	rate    float64
	eta     time.Duration
	preview bool
}

func (p *progress) countsOf(name string) counts {
	if p.last == nil {
		return counts{}
	}
	s := p.last.Sources[name]
	c := counts{listed: s.Listed, processed: s.Added + s.Updated + s.Reprocessed + s.Unchanged + s.Deleted + s.Errors, preview: p.preview}
	c.total = max(s.Listed+s.Deleted, c.processed)
	if !s.ListingComplete {
		c.total++
	}
	for _, t := range p.last.Targets {
		c.written += t.Upserts + t.Deletes
	}
	if secs := time.Since(p.started).Seconds(); secs > 0 {
		c.rate = float64(c.processed) / secs
	}
	if c.rate > 0 && c.listed > c.processed {
		c.eta = time.Duration(float64(c.listed-c.processed) / c.rate * float64(time.Second))
	}
	return c
}

func (c counts) String() string {
	written := "written"
	if c.preview {
		written = "would write"
	}
	s := fmt.Sprintf("%d listed · %d processed · %d %s · %.0f rows/s", c.listed, c.processed, c.written, written, c.rate)
	if c.eta > 0 {
		s += " · ETA " + c.eta.Round(time.Second).String()
	}
	return s
}

// update takes the engine's latest counts.
func (p *progress) update(st *tidemarktype.UpdateStats) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.last = st
	all := make([]counts, len(p.sources))
	bars := make([]*mpb.Bar, len(p.sources))
	for i, name := range p.sources {
		all[i], bars[i] = p.countsOf(name), p.bars[name]
	}
	p.mu.Unlock()
	// The bars are set with p.mu released: their rendering goroutine takes
	// it to draw the counts, and setting a bar waits for that goroutine.
	for i, name := range p.sources {
		c := all[i]
		if !p.env.Terminal {
			written := "written"
			if p.preview {
				written = "would_write"
			}
			p.log.Info("update progress", "source", name, "listed", c.listed, "processed", c.processed,
				written, c.written, "rows_per_s", int64(c.rate), "eta", c.eta.Round(time.Second))
			continue
		}
		if b := bars[i]; b != nil {
			b.SetTotal(max(c.total, 1), false)
			b.SetCurrent(c.processed)
		}
	}
}

// final sets the bars to an update's final counts, so that they end full
// when everything listed was processed. Off a terminal it does nothing:
// the summary says it.
func (p *progress) final(st *tidemarktype.UpdateStats) {
	if p == nil || st == nil || !p.env.Terminal {
		return
	}
	p.update(st)
}

// restart starts showing a new update.
func (p *progress) restart() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started, p.last = time.Now(), nil
	if !p.env.Terminal {
		return
	}
	p.p = mpb.New(mpb.WithOutput(p.env.Stderr), mpb.WithWidth(30), mpb.WithRefreshRate(200*time.Millisecond))
	p.bars = make(map[string]*mpb.Bar)
	for _, name := range p.sources {
		// A total of 0 is unknown: the bar completes only when done says.
		p.bars[name] = p.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(name+" ", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.countsOf(name).String()
			})),
		)
	}
}

// done stops showing the current update.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	pp, bars := p.p, p.bars
	p.p, p.bars = nil, nil
	p.mu.Unlock()
	if pp == nil {
		return
	}
	for _, b := range bars {
		b.Abort(false)
	}
	pp.Wait()
}
