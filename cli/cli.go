// Package cli is the command line every Tidemark application gets by
// calling Main from its main function: update (one-shot or live), setup,
// drop, ls, show, evaluate, and a subcommand per query handler of the flow.
//
// An application describes itself with an App: its name, its own flags,
// and a function that builds its flow on the database chosen with --db (a
// SQLite file by default, or a postgres:// URL; the state store lives in
// the same database). The commands write to the writers of an Env and log
// with log/slog, so that they run the same in tests as from a terminal.
//
// The flow's query handlers (tidemark.Flow.QueryHandler) are commands too:
// `app NAME QUERY…` runs the handler NAME.
//
// Exit codes: 0 done; 1 fatal error (nothing inconsistent is left: the
// next run resumes); 3 done, but some rows failed (they are retried on the
// next run). 2 is left to the Go runtime, which exits with it when the
// process dies of a panic or runs out of memory.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/internal/dburl"
	"github.com/tidemark/tidemark/target/sqltable"
)

// Exit codes. 2 is the Go runtime's, for a process that died.
const (
	ExitOK         = 0
	ExitFatal      = 1
	ExitRowsFailed = 3
)

// App describes a Tidemark application to the command line.
type App struct {
	// Name is the command's name, such as "hnindex".
	Name string
	// Short is a one-line description.
	Short string
	// DefaultDB is --db's default: a SQLite file path or a postgres:// URL.
	DefaultDB string
	// Env maps flag names to environment variables that give their
	// defaults, such as {"db": "TIDEMARK_DATABASE_URL"}.
	Env map[string]string
	// Flags adds the application's own flags, given to every command.
	Flags func(fs *pflag.FlagSet)
	// Flow builds the application's flow on the database. It is called
	// once per command, after the flags are parsed.
	Flow func(ctx context.Context, db *sqltable.DB) (*tidemark.Flow, error)
	// Validate, when set, checks the application's own flags before
	// anything is opened, naming the flag in its error.
	Validate func() error
	// Options, when set, adjusts the engine's options (batch sizes,
	// retries) before the engine is opened.
	Options func(o *tidemark.Options)
}

// openDatabase opens the database at --db.
func (r *runner) openDatabase(ctx context.Context) (*sqltable.DB, error) {
	d, err := sqltable.Open(ctx, "main", r.db, sqltable.Options{Writers: r.writers})
	if err != nil {
		return nil, fmt.Errorf("opening --db %s: %w", dburl.Redact(r.db), dburl.RedactError(r.db, err))
	}
	return d, nil
}

// mustExist checks, before anything opens it, that a read-only command's
// database exists and, for one that reads Tidemark's state, that the state
// does: such a command must not create them.
func (r *runner) mustExist(ctx context.Context, a access, opts tidemark.Options) error {
	noDatabase := fmt.Errorf("no database at %s (run `%s update` first)", dburl.Redact(r.db), r.app.Name)
	if !dburl.IsPostgres(r.db) {
		// An empty file is no database yet; opening it would write one.
		if fi, err := os.Stat(r.db); errors.Is(err, os.ErrNotExist) || err == nil && fi.Size() == 0 {
			return noDatabase
		}
	}
	if a != readEngine && (!dburl.IsPostgres(r.db) || r.state != "") {
		// A read-only command on PostgreSQL asks StateExists below whether
		// the database exists; with --state apart, opening --db tells.
		return nil
	}
	exists, err := tidemark.StateExists(ctx, opts)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "3D000": // invalid_catalog_name
		if r.state != "" {
			return fmt.Errorf("no database at --state %s (run `%s update` first)", dburl.Redact(r.state), r.app.Name)
		}
		return noDatabase
	case err != nil:
		return err
	case !exists && a == readEngine:
		return fmt.Errorf("no %s index at %s (run `%s update` first)", r.app.Name, dburl.Redact(r.stateURL()), r.app.Name)
	}
	return nil
}

// Env is what a run of the command line talks to.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// Getenv reads environment variables; nil reads none.
	Getenv func(string) string
	// Stop, when closed, stops a running update gracefully: the rows in
	// hand are finished and committed, and the command exits 0. Main
	// closes it on the first SIGINT or SIGTERM.
	Stop <-chan struct{}
	// Terminal says Stdout and Stderr are a terminal: progress is drawn as
	// bars, and setup and drop may ask for confirmation.
	Terminal bool
}

// Main runs the command line with the process's arguments, standard
// streams and environment, and exits with its code. The first SIGINT or
// SIGTERM stops an update gracefully; a second one (or 30 seconds without
// the stop completing) abandons the rows in hand, which is safe: the next
// run redoes them. SIGHUP stops it as SIGTERM does.
func Main(app App) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := make(chan struct{})
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "%s: %s: stopping after the rows in hand (again to abandon them)\n", app.Name, sig)
		close(stop)
		select {
		case sig = <-signals:
		case <-time.After(30 * time.Second):
		}
		cancel(fmt.Errorf("%w by %s", ErrInterrupted, sig))
	}()
	env := Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv, Stop: stop,
		Terminal: isTerminal(os.Stdout) && isTerminal(os.Stderr)}
	stopProfiles := startProfiles(os.Getenv("TIDEMARK_CPUPROFILE"), os.Getenv("TIDEMARK_MEMPROFILE"))
	code := Run(ctx, app, os.Args[1:], env)
	cancel(nil)
	stopProfiles()
	os.Exit(code)
}

// startProfiles writes a CPU profile of the run to cpu and a heap profile
// at its end to mem, where set (the benchmark harness sets them through
// TIDEMARK_CPUPROFILE and TIDEMARK_MEMPROFILE). A profile that cannot be
// written is reported on stderr and skipped.
func startProfiles(cpu, mem string) (stop func()) {
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "CPU profile: %v\n", err)
		} else {
			cpuFile = f
		}
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem == "" {
			return
		}
		f, err := os.Create(mem)
		if err == nil {
			runtime.GC()
			err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "heap profile: %v\n", err)
		}
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ErrInterrupted is the cause of the context Main cancels on a second
// SIGINT or SIGTERM (or 30 seconds after the first): an update abandoned
// so exits 0, having left nothing inconsistent. A program calling Run
// itself cancels its context with a cause wrapping ErrInterrupted for the
// same outcome; any other cancellation is a fatal error.
var ErrInterrupted = errors.New("interrupted")

// exitError carries an exit code other than ExitFatal.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run runs the command line with args (without the program name) and
// returns the exit code.
func Run(ctx context.Context, app App, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	r := &runner{app: app, env: env}
	// Stop asks an update to stop gracefully; every other command is
	// simply interrupted.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if env.Stop != nil {
		go func() {
			select {
			case <-env.Stop:
				if !r.graceful.Load() {
					cancel(ErrInterrupted)
				}
			case <-ctx.Done():
			}
		}()
	}
	cmd := r.command()
	r.addQueryCommand(cmd, args)
	cmd.SetArgs(args)
	cmd.SetOut(env.Stdout)
	cmd.SetErr(env.Stderr)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", app.Name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", app.Name, err)
	return ExitFatal
}

// runner holds one run's flags and environment.
type runner struct {
	app App
	env Env
	// graceful is set by commands that stop gracefully on Env.Stop.
	graceful atomic.Bool

	db        string
	state     string
	solo      bool
	leaseTTL  time.Duration
	writers   int
	logFormat string
	logLevel  string
	log       *slog.Logger
	// observers are told what the engine does, beside the App's own
	// Options.Observer: the server's metrics and live events.
	observers []any
	// flowObservers make observers that need the flow (metrics are
	// labelled with its name): open calls them once the flow is built and
	// joins what they return to the others.
	flowObservers []func(*tidemark.Flow) any
}

func (r *runner) command() *cobra.Command {
	root := &cobra.Command{
		Use:   r.app.Name,
		Short: r.app.Short,
		Long: r.app.Short + "\n\nThe flow's query handlers run as commands too: `" + r.app.Name +
			" NAME QUERY…` (`" + r.app.Name + " ls` lists them).",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return r.prepare(cmd)
		},
	}
	fs := root.PersistentFlags()
	fs.StringVar(&r.db, "db", r.app.DefaultDB, "where the tables and Tidemark's state live: a SQLite file path or a postgres:// URL")
	fs.StringVar(&r.state, "state", "", "where Tidemark's state lives, when not in --db: a SQLite file path, a postgres:// URL or a redis://host:port/N URL")
	fs.BoolVar(&r.solo, "solo", false, "with a PostgreSQL or Redis state store, update alone: refuse to start while another update runs, rather than share its work")
	fs.DurationVar(&r.leaseTTL, "lease-ttl", tidemark.DefaultLeaseTTL, "with a PostgreSQL or Redis state store, how long a worker's listing lease and claims outlive it, should it die")
	fs.IntVar(&r.writers, "pg-writers", 2, "with PostgreSQL, connections that write a large batch at once")
	fs.StringVar(&r.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&r.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if r.app.Flags != nil {
		r.app.Flags(fs)
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.AddCommand(r.updateCommand(), r.setupCommand(), r.dropCommand(), r.lsCommand(), r.showCommand(), r.evaluateCommand(), r.serverCommand(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version and VCS revision (as --version does)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintf(r.env.Stdout, "%s %s\n", r.app.Name, version())
				return err
			},
		})
	return root
}

// prepare applies environment defaults to flags not given, checks the
// logging flags and builds the logger.
func (r *runner) prepare(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		name, ok := r.app.Env[f.Name]
		if !ok || f.Changed || err != nil {
			return
		}
		if v := r.env.Getenv(name); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("$%s: %w", name, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(r.logLevel)); err != nil {
		return fmt.Errorf("--log-level must be debug, info, warn or error, got %q", r.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch r.logFormat {
	case "text":
		r.log = slog.New(slog.NewTextHandler(r.env.Stderr, opts))
	case "json":
		r.log = slog.New(slog.NewJSONHandler(r.env.Stderr, opts))
	default:
		return fmt.Errorf("--log-format must be text or json, got %q", r.logFormat)
	}
	return nil
}

// session is an open database, the flow built on it and, once asked for,
// an engine.
type session struct {
	db     *sqltable.DB
	flow   *tidemark.Flow
	engine *tidemark.Engine
}

func (s *session) Close() {
	if s.engine != nil {
		s.engine.Close()
	}
	s.db.Close()
}

// loggerKey is the context key of the run's logger.
type loggerKey struct{}

// Logger returns the logger of the command line's run, for App.Flow to
// give the flow's sources (the --log-level and --log-format flags apply to
// it). Outside a run it returns a logger that discards everything.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// access is what a command does with the database.
type access int

const (
	// readOnly commands open an existing database and build the flow.
	readOnly access = iota
	// readEngine commands open an existing database, the flow and an
	// engine.
	readEngine
	// writeEngine commands may create the database.
	writeEngine
)

// open opens the database and builds the flow, and for readEngine and
// writeEngine an engine on it too.
func (r *runner) open(ctx context.Context, a access) (*session, error) {
	ctx = context.WithValue(ctx, loggerKey{}, r.log)
	if r.writers < 1 {
		return nil, fmt.Errorf("--pg-writers must be at least 1, got %d", r.writers)
	}
	if r.leaseTTL < 100*time.Millisecond {
		return nil, fmt.Errorf("--lease-ttl must be at least 100ms, got %s", r.leaseTTL)
	}
	if err := dburl.Check(r.db); err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}
	if r.state != "" {
		if err := dburl.CheckState(r.state); err != nil {
			return nil, fmt.Errorf("--state: %w", err)
		}
	}
	if r.app.Validate != nil {
		if err := r.app.Validate(); err != nil {
			return nil, err
		}
	}
	opts := tidemark.Options{StateStore: r.stateURL(), Logger: r.log}
	if st := r.stateURL(); !r.solo && (dburl.IsPostgres(st) || dburl.IsRedis(st)) {
		// Updates share their work with the other workers on the store.
		opts.Shared = tidemark.SharedOptions{Enabled: true, LeaseTTL: r.leaseTTL}
	}
	if r.app.Options != nil {
		r.app.Options(&opts)
	}
	opts.Observer = tidemark.JoinObservers(append([]any{opts.Observer}, r.observers...)...)
	if a != writeEngine {
		if err := r.mustExist(ctx, a, opts); err != nil {
			return nil, err
		}
	}
	db, err := r.openDatabase(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{db: db}
	s.flow, err = r.app.Flow(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if a == readOnly {
		return s, nil
	}
	for _, observer := range r.flowObservers {
		opts.Observer = tidemark.JoinObservers(opts.Observer, observer(s.flow))
	}
	s.engine, err = tidemark.Open(ctx, s.flow, opts)
	if err != nil {
		db.Close()
		return nil, dburl.RedactError(r.stateURL(), dburl.RedactError(r.db, err))
	}
	return s, nil
}

// stateURL is where Tidemark's state lives: --state, or else --db.
func (r *runner) stateURL() string {
	if r.state != "" {
		return r.state
	}
	return r.db
}

// version is the module's version and VCS revision, as the build recorded
// them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown version)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += " (revision " + rev + modified + ")"
	}
	return v + " " + bi.GoVersion
}
