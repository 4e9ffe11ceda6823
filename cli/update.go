package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/metrics"
	"github.com/tidemark/tidemark/tidemarktype"
)

// updateOptions are the options of update.
type updateOptions struct {
	live          bool
	refresh       time.Duration
	fullReprocess bool
	reexport      bool
	preview       bool
	quiet         bool
	yes           bool
	metricsAddr   string
}

func (f *updateOptions) validate() error {
	switch {
	case f.fullReprocess && f.reexport:
		return errors.New("--full-reprocess and --reexport cannot be used together")
	case f.preview && f.live:
		return errors.New("--preview and --live cannot be used together")
	case f.refresh < 0:
		return fmt.Errorf("--refresh must not be negative, got %s", f.refresh)
	case f.refresh > 0 && !f.live:
		return errors.New("--refresh needs --live")
	case f.metricsAddr != "" && !f.live:
		return errors.New("--metrics-addr needs --live")
	}
	return nil
}

func (f *updateOptions) mode() tidemark.Mode {
	switch {
	case f.fullReprocess:
		return tidemark.ModeFullReprocess
	case f.reexport:
		return tidemark.ModeReexport
	}
	return tidemark.ModeIncremental
}

func (r *runner) updateCommand() *cobra.Command {
	var f updateOptions
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Bring the targets up to date with the sources (once, or continuously with --live)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			r.graceful.Store(true)
			return r.update(cmd.Context(), &f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&f.live, "live", "L", false, "keep updating: list every source each refresh interval until stopped")
	fs.DurationVar(&f.refresh, "refresh", 0, "with --live, how often to list the sources (default: each source's own interval, or 1m)")
	fs.BoolVar(&f.fullReprocess, "full-reprocess", false, "fetch and process every row again, writing only what changed")
	fs.BoolVar(&f.reexport, "reexport", false, "process every row and write every target row again")
	fs.BoolVar(&f.preview, "preview", false, "show what the update would do, writing nothing")
	fs.BoolVar(&f.quiet, "quiet", false, "print nothing but errors")
	fs.BoolVarP(&f.yes, "yes", "y", false, "delete without asking the rows a listing left out when it named no row, or when the source's options changed")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "with --live, serve Prometheus metrics at http://ADDR/metrics, and at /healthz whether each source's last pass succeeded")
	return cmd
}

func (r *runner) update(ctx context.Context, f *updateOptions) error {
	a := writeEngine
	if f.preview {
		a = readEngine // a preview creates nothing
	}
	var (
		s   *session
		m   *metrics.Metrics
		err error
	)
	var h *hub
	if f.metricsAddr != "" {
		r.observeMetrics(&m, &s)
		h = newHub(r.scrub)
		r.observers = append(r.observers, h)
	}
	s, err = r.open(ctx, a)
	if err != nil {
		return err
	}
	defer s.Close()
	out := r.env.Stdout
	if f.quiet {
		out = io.Discard
	}
	var prog *progress
	if !f.quiet {
		prog = newProgress(r.env, r.log, s.flow.SourceNames(), f.preview)
	}
	// A question answered no is not asked again in this run, which live
	// mode would do at every pass. --yes confirms what the first pass
	// asks only: a later pass that would delete by mistake (an API
	// answering an empty listing) is asked about again.
	var (
		mu       sync.Mutex
		declined = make(map[string]bool)
		passes   atomic.Int64
	)
	confirm := func(ctx context.Context, d tidemarktype.Deletions) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		asked := fmt.Sprint(d.Source, d.Empty(), d.OptionsBefore, d.OptionsNow)
		if declined[asked] {
			return false, nil
		}
		ok, err := r.confirmDeletions(ctx, f.yes && passes.Load() == 0, prog, d)
		if err == nil && !ok {
			declined[asked] = true
		}
		return ok, err
	}

	if f.live {
		var (
			last        *tidemarktype.UpdateStats
			liveCtx     = ctx
			stopMetrics = func() error { return nil }
		)
		if m != nil {
			health := &insight{r: r, s: s, hub: h, live: true, refresh: f.refresh}
			liveCtx, stopMetrics, err = r.serveMetrics(ctx, f.metricsAddr, m, health, out)
			if err != nil {
				return err
			}
		}
		err = s.engine.Live(liveCtx, tidemark.LiveOptions{
			Mode: f.mode(), Refresh: f.refresh, Stop: r.env.Stop, Confirm: confirm,
			Progress: prog.update, ProgressInterval: prog.interval(),
			OnPass: func(p tidemark.Pass) {
				passes.Add(1)
				prog.final(p.Stats)
				prog.done()
				printPass(out, p)
				last = p.Stats
				prog.restart()
			},
		})
		prog.done()
		err = errors.Join(err, stopMetrics())
		switch {
		case err == nil:
			fmt.Fprintln(out, "stopped")
		case interrupted(ctx):
			fmt.Fprintln(out, "stopped: the rows in hand were abandoned; what was committed stays, the next run redoes the rest")
		case errors.Is(err, tidemark.ErrFlowLocked):
			return r.locked(s, err)
		case errors.Is(err, tidemark.ErrDeletionsHeld):
			return fmt.Errorf("%w; %s", err, r.heldHint())
		default:
			return err
		}
		return r.failedRows(last)
	}

	st, err := s.engine.Update(ctx, tidemark.UpdateOptions{Mode: f.mode(), Preview: f.preview, Stop: r.env.Stop,
		Progress: prog.update, ProgressInterval: prog.interval(), Confirm: confirm})
	prog.final(st)
	prog.done()
	switch {
	case errors.Is(err, tidemark.ErrFlowLocked):
		return r.locked(s, err)
	case errors.Is(err, tidemark.ErrDeletionsHeld) && !errors.Is(err, tidemark.ErrListingIncomplete):
		printStats(out, st, f.preview)
		if ferr := r.failedRows(st); ferr != nil {
			fmt.Fprintf(r.env.Stderr, "%s: %v\n", r.app.Name, ferr)
		}
		return fmt.Errorf("%w; %s", err, r.heldHint())
	case err != nil && interrupted(ctx):
		printStats(out, st, f.preview)
		fmt.Fprintln(out, "stopped: the rows in hand were abandoned; what was committed stays, the next run redoes the rest")
	case errors.Is(err, tidemark.ErrStopped):
		printStats(out, st, f.preview)
		fmt.Fprintln(out, "stopped: what was processed is committed; the rest is left for the next run")
	case err != nil:
		if st != nil && !f.quiet {
			printStats(r.env.Stderr, st, f.preview)
		}
		return err
	default:
		printStats(out, st, f.preview)
	}
	return r.failedRows(st)
}

// confirmDeletions says whether the rows a listing left out may be
// deleted: with --yes they may; on a terminal the user is asked, the
// progress bars paused meanwhile; otherwise they may not.
func (r *runner) confirmDeletions(ctx context.Context, yes bool, prog *progress, d tidemarktype.Deletions) (bool, error) {
	if yes {
		r.log.InfoContext(ctx, "deleting rows the listing left out, as --yes says", "source", d.Source, "rows", d.Deleting, "reason", d.Reason())
		return true, nil
	}
	if !r.env.Terminal {
		return false, nil
	}
	prog.done()
	defer prog.restart()
	fmt.Fprintf(r.env.Stdout, "source %s: %s.\nThe listing named %d rows; %d of the %d rows kept would be deleted, with what they wrote.\n",
		d.Source, d.Reason(), d.Listed, d.Deleting, d.Tracked)
	return r.ask(ctx, "Delete them")
}

// heldHint says how to let held deletions go ahead.
func (r *runner) heldHint() string {
	if r.env.Terminal {
		return "answer yes, or pass --yes, to delete them"
	}
	return "pass --yes to delete them"
}

// locked is the error of an update refused because another holds the
// flow's lock: it names the holder where the state store knows it.
func (r *runner) locked(s *session, err error) error {
	return fmt.Errorf("another update of %s is running%s", s.flow.Name(), lockHolder(err))
}

// interrupted says ctx ended because the process was told to stop (Main's
// second signal, or the grace period after the first): abandoning the rows
// in hand is then the expected, safe outcome.
func interrupted(ctx context.Context) bool {
	return ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrInterrupted)
}

// failedRows prints the rows that failed, if any, and returns the error
// that exits with ExitRowsFailed.
func (r *runner) failedRows(st *tidemarktype.UpdateStats) error {
	if st == nil || st.Failed() == 0 {
		return nil
	}
	for _, e := range st.Failures {
		fmt.Fprintf(r.env.Stderr, "failed: %s %s: %s\n", e.Source, keyText(e.Key), firstLine(e.Message))
	}
	return &exitError{code: ExitRowsFailed, err: fmt.Errorf("%d rows failed; they are retried on the next run (see `%s show`)", st.Failed(), r.app.Name)}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// printStats prints what an update did, a line per source and per target;
// for a preview, what it would do.
func printStats(w io.Writer, st *tidemarktype.UpdateStats, preview bool) {
	if preview {
		fmt.Fprintln(w, "preview: nothing was written; an update would do this:")
	}
	for _, c := range st.Setup {
		fmt.Fprintf(w, "setup: %s\n", c)
	}
	if preview && len(st.Setup) > 0 {
		fmt.Fprintln(w, "(the rows of a target whose setup would change are not counted: they are reconciled after the change)")
	}
	for _, name := range slices.Sorted(maps.Keys(st.Sources)) {
		s := st.Sources[name]
		if s == (tidemarktype.SourceStats{}) {
			continue // not part of this update
		}
		if preview {
			fmt.Fprintf(w, "source %s: %d listed, %d fetched; would add %d, update %d, reprocess %d, delete %d; %d unchanged, %d failed\n",
				name, s.Listed, s.Fetched, s.Added, s.Updated, s.Reprocessed, s.Deleted, s.Unchanged, s.Errors)
		} else {
			fmt.Fprintf(w, "source %s: %d listed, %d fetched, %d added, %d updated, %d reprocessed, %d deleted, %d unchanged, %d failed\n",
				name, s.Listed, s.Fetched, s.Added, s.Updated, s.Reprocessed, s.Deleted, s.Unchanged, s.Errors)
		}
		if !s.ListingComplete && s.ListingError != "" {
			fmt.Fprintf(w, "source %s: listing incomplete, nothing deleted: %s\n", name, s.ListingError)
		}
		switch {
		case s.Held > 0 && preview:
			fmt.Fprintf(w, "source %s: %d rows the listing leaves out would be kept: deleting them needs a confirmation (--yes)\n", name, s.Held)
		case s.Held > 0:
			fmt.Fprintf(w, "source %s: %d rows the listing left out were not deleted: that needs a confirmation\n", name, s.Held)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(st.Targets)) {
		t := st.Targets[key]
		if preview {
			fmt.Fprintf(w, "target %s: would upsert %d, would delete %d\n", key, t.Upserts, t.Deletes)
			continue
		}
		fmt.Fprintf(w, "target %s: %d upserted, %d deleted\n", key, t.Upserts, t.Deletes)
	}
	fmt.Fprintf(w, "done in %s\n", st.Finished.Sub(st.Started).Round(time.Millisecond))
}

// printPass prints a line for a live pass.
func printPass(w io.Writer, p tidemark.Pass) {
	var b strings.Builder
	fmt.Fprintf(&b, "pass %d (%s", p.N, strings.Join(p.Sources, ", "))
	if p.Changes > 0 {
		fmt.Fprintf(&b, ", %d changes", p.Changes)
	}
	fmt.Fprintf(&b, ") in %s:", p.Duration().Round(time.Millisecond))
	for _, name := range p.Sources {
		s := p.Stats.Sources[name]
		fmt.Fprintf(&b, " %s %d listed, %d fetched, %d added, %d updated, %d deleted, %d failed;", name, s.Listed, s.Fetched, s.Added, s.Updated, s.Deleted, s.Errors)
	}
	var up, del int64
	for _, t := range p.Stats.Targets {
		up += t.Upserts
		del += t.Deletes
	}
	fmt.Fprintf(&b, " %d upserted, %d deleted", up, del)
	if p.Overran {
		b.WriteString("; overran the refresh interval")
	}
	if p.Err != nil {
		fmt.Fprintf(&b, "; error: %v", p.Err)
	}
	fmt.Fprintln(w, b.String())
}

// observeMetrics has the engine that open opens next observed by metrics,
// made once open has built the flow and set in *m; they read the failing
// rows from *s's engine, once it is open.
func (r *runner) observeMetrics(m **metrics.Metrics, s **session) {
	r.flowObservers = append(r.flowObservers, func(flow *tidemark.Flow) any {
		*m = metrics.New(metrics.Options{Flow: flow.Name(), RuntimeMetrics: true, Logger: r.log,
			FailingRows: func(ctx context.Context) (map[string]int64, error) { return metrics.FailingRowsOf((*s).engine)(ctx) }})
		return *m
	})
}

// lockHolder says who holds a flow's lock, as " (pid N on host H)", when
// the state store knows.
func lockHolder(err error) string {
	var le *statestore.LockedError
	if errors.As(err, &le) && le.Holder.PID != 0 {
		return fmt.Sprintf(" (pid %d on host %s)", le.Holder.PID, le.Holder.Host)
	}
	return ""
}

// metricsShutdownTimeout bounds the metrics server's shutdown; it serves
// with the inspection server's timeouts (a scrape reads the failing rows
// within metrics.DefaultFailingRowsTimeout, well within
// serverWriteTimeout).
const metricsShutdownTimeout = 5 * time.Second

// serveMetrics serves, on addr while live mode runs, the engine's metrics
// at GET /metrics and the health of its passes at GET /healthz, and says
// where on out. It returns the context live mode is to run with, which
// ends if serving fails (a live updater whose metrics are gone would go
// unwatched), and the function that stops serving when live mode ends.
// Any address may be given, as Prometheus scrapes from afar; one that is
// not loopback is warned of: the metrics name the flow, its sources and
// targets, and the health its errors.
func (r *runner) serveMetrics(ctx context.Context, addr string, m *metrics.Metrics, health *insight, out io.Writer) (context.Context, func() error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		r.log.WarnContext(ctx, "serving metrics beyond this host: whoever reaches the address can read them and the errors of the passes", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", health.healthz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: serverReadHeaderTimeout, ReadTimeout: serverReadTimeout,
		WriteTimeout: serverWriteTimeout, IdleTimeout: serverIdleTimeout, MaxHeaderBytes: serverMaxHeaderBytes,
		ErrorLog: slogErrorLog(r.log)}
	liveCtx, cancel := context.WithCancelCause(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("serving metrics at %s: %w", ln.Addr(), err))
		}
	}()
	fmt.Fprintf(out, "metrics at http://%s/metrics\n", ln.Addr())
	stop := func() error {
		defer cancel(nil)
		shutdown, done := context.WithTimeout(context.WithoutCancel(ctx), metricsShutdownTimeout)
		defer done()
		err := srv.Shutdown(shutdown)
		<-served
		if err != nil {
			return fmt.Errorf("stopping the metrics server: %w", err)
		}
		return nil
	}
	return liveCtx, stop, nil
}
