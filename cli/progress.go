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

	mu      sync.Mutex
	started time.Time
	last    *tidemarktype.UpdateStats
	p       *mpb.Progress
	bars    map[string]*mpb.Bar
}

func newProgress(env Env, log *slog.Logger, sources []string) *progress {
	p := &progress{env: env, log: log, sources: sources}
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
	rate                       float64
	eta                        time.Duration
}

func (p *progress) countsOf(name string) counts {
	if p.last == nil {
		return counts{}
	}
	s := p.last.Sources[name]
	c := counts{listed: s.Listed, processed: s.Added + s.Updated + s.Reprocessed + s.Unchanged + s.Deleted + s.Errors}
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
	s := fmt.Sprintf("%d listed · %d processed · %d written · %.0f rows/s", c.listed, c.processed, c.written, c.rate)
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
			p.log.Info("update progress", "source", name, "listed", c.listed, "processed", c.processed,
				"written", c.written, "rows_per_s", int64(c.rate), "eta", c.eta.Round(time.Second))
			continue
		}
		if b := bars[i]; b != nil {
			b.SetTotal(max(c.listed, 1), false)
			b.SetCurrent(c.processed)
		}
	}
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
		p.bars[name] = p.p.AddBar(1,
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
