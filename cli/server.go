package cli

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/metrics"
)

// serverOptions are the options of the server command.
type serverOptions struct {
	addr    string
	live    bool
	refresh time.Duration
	token   string
}

func (o *serverOptions) validate() error {
	if o.refresh < 0 || (o.refresh > 0 && !o.live) {
		return errors.New("--refresh needs --live and must not be negative")
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return fmt.Errorf("--addr %q: %w", o.addr, err)
	}
	if !isLoopback(o.addr) && o.token == "" {
		return fmt.Errorf("--addr %s is not a loopback address: serving beyond this machine needs a token (--token or TIDEMARK_SERVER_TOKEN)", o.addr)
	}
	if o.token != "" && len(o.token) < 16 {
		return errors.New("--token must be at least 16 characters long")
	}
	return nil
}

func (r *runner) serverCommand() *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve Tidemark Insight: a web UI and a JSON API to inspect the flow (its rows, their lineage, its passes) and run its queries, with metrics; with --live, keep the targets up to date meanwhile",
		Long: `Serve Tidemark Insight at --addr (loopback by default): a dashboard, the sources'
rows and their lineage both ways, the schema, and a search page at /; the JSON API
under /api/v1/; Prometheus metrics at /metrics; /healthz.

Binding to any other address needs a token (--token or TIDEMARK_SERVER_TOKEN),
asked of every request: "Authorization: Bearer TOKEN", or a login page that sets
a cookie. POST /api/v1/update (run a pass now) needs the token on loopback too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.token == "" && r.env.Getenv != nil {
				o.token = r.env.Getenv("TIDEMARK_SERVER_TOKEN")
			}
			if err := o.validate(); err != nil {
				return err
			}
			r.graceful.Store(true)
			return r.serve(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.addr, "addr", "127.0.0.1:8080", "the address to listen on")
	cmd.Flags().BoolVar(&o.live, "live", false, "keep the targets up to date while serving, as update --live does")
	cmd.Flags().DurationVar(&o.refresh, "refresh", 0, "with --live, how often to list the sources (default: each source's own interval, or 1m)")
	cmd.Flags().StringVar(&o.token, "token", "", "the token every request must carry (default $TIDEMARK_SERVER_TOKEN); needed to bind beyond loopback, and for updates over HTTP")
	return cmd
}

// serve runs the inspection server (see insight) until Env.Stop is closed
// or ctx ends, and with --live keeps the targets up to date meanwhile.
func (r *runner) serve(ctx context.Context, o serverOptions) error {
	a := readEngine
	if o.live {
		a = writeEngine
	}
	h := newHub(r.scrub)
	r.observers = append(r.observers, h)
	var (
		s   *session
		m   *metrics.Metrics
		err error
	)
	r.observeMetrics(&m, &s)
	s, err = r.open(ctx, a)
	if err != nil {
		return err
	}
	defer s.Close()
	stopped := make(chan struct{})
	in := &insight{r: r, s: s, hub: h, live: o.live, refresh: o.refresh, queries: s.flow.QueryHandlers(),
		expensive: make(limiter, maxExpensive), stopped: stopped, guard: newGuard(o.token, r.log)}
	in.metrics = m.Handler()
	if in.pages, err = loadPages(); err != nil {
		return fmt.Errorf("loading the web UI: %w", err)
	}
	if o.live {
		in.now = make(chan struct{}, 1)
	}
	mux := http.NewServeMux()
	in.routes(mux)
	in.pageRoutes(mux)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", o.addr, err)
	}
	c := newConns()
	srv := &http.Server{Handler: in.guard.wrap(mux), ReadHeaderTimeout: serverReadHeaderTimeout, ReadTimeout: serverReadTimeout,
		WriteTimeout: serverWriteTimeout, IdleTimeout: serverIdleTimeout, MaxHeaderBytes: serverMaxHeaderBytes,
		ConnState: c.state, ErrorLog: slogErrorLog(r.log)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(c.listener(ln)) }()
	fmt.Fprintf(r.env.Stdout, "serving flow %s at http://%s\n", s.flow.Name(), ln.Addr())

	liveDone := make(chan error, 1)
	if o.live {
		go func() {
			liveDone <- s.engine.Live(ctx, tidemark.LiveOptions{Refresh: o.refresh, Stop: r.env.Stop, Now: in.now,
				Progress: h.progress, ProgressInterval: 500 * time.Millisecond,
				OnPass: func(p tidemark.Pass) { printPass(r.env.Stdout, p) }})
		}()
	}
	var (
		serveErr, liveErr error
		liveEnded         bool
	)
	select {
	case <-r.env.Stop:
	case <-ctx.Done():
	case serveErr = <-served:
	case liveErr = <-liveDone:
		// Live mode ended on its own (refused, its lock lost, its first
		// pass held): the server must not go on serving stale results.
		liveEnded = true
	}
	close(stopped)
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		// A client that held on past the grace period is cut off: what
		// it had asked for is read only.
		r.log.Warn("closing the connections still open after the grace period", "err", err)
		srv.Close()
	}
	in.passes.Wait()
	if o.live && !liveEnded {
		liveErr = <-liveDone
	}
	switch {
	case liveErr == nil || interrupted(ctx) || ctx.Err() != nil:
	case errors.Is(liveErr, tidemark.ErrFlowLocked):
		return r.locked(s, liveErr)
	default:
		serveErr = errors.Join(serveErr, liveErr)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	fmt.Fprintln(r.env.Stdout, "stopped")
	return nil
}

// slogErrorLog is the http.Server's error log: its complaints (a TLS
// handshake, a malformed request) as warnings in the run's log.
func slogErrorLog(l *slog.Logger) *log.Logger { return slog.NewLogLogger(l.Handler(), slog.LevelWarn) }
