package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// usageError is a problem with the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// config is what the flags say.
type config struct {
	addr     string
	data     string
	generate hnfake.GenerateOptions
	// clock is the generated dataset's clock, nil for the current time: by
	// default it stands at generate.Start, so that the same requests get
	// the same answers on every run.
	clock     func() time.Time
	faults    hnfake.Faults
	endpoints string
}

// generationFlags are the flags that -data excludes.
var generationFlags = map[string]bool{"threads": true, "comments": true, "depth": true, "seed": true, "text-bytes": true, "start": true, "now": true}

// parseFlags reads args into a config; help reports -h.
func parseFlags(args []string, stdout io.Writer, now time.Time) (c config, help bool, err error) {
	fs := flag.NewFlagSet("hnfake", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8081", "`address` to listen on (port 0 picks a free port)")
	fs.StringVar(&c.data, "data", "", "serve the items/{id} JSON files of this `directory` instead of a generated dataset")
	fs.IntVar(&c.generate.Threads, "threads", 200, "generated threads")
	fs.IntVar(&c.generate.CommentsPerThread, "comments", 20, "comments per generated thread")
	fs.IntVar(&c.generate.Depth, "depth", 6, "deepest comment nesting of generated threads")
	fs.Int64Var(&c.generate.Seed, "seed", 1, "seed of the generated dataset")
	fs.IntVar(&c.generate.TextBytes, "text-bytes", 300, "mean length of generated comment texts, in bytes")
	start := fs.String("start", "", "created_at of the newest generated thread, RFC 3339 (default "+hnfake.DefaultStart().Format(time.RFC3339)+")")
	relative := fs.Bool("now", false, "anchor the generated dataset at the current time instead of -start, and let its clock run: the dataset then differs from run to run")
	fs.DurationVar(&c.faults.Latency, "latency", 0, "delay before every API response")
	fs.Float64Var(&c.faults.Rate429, "rate-429", 0, "share of API requests answered 429")
	fs.DurationVar(&c.faults.RetryAfter, "retry-after", time.Second, "Retry-After of the 429 answers (whole seconds)")
	fs.Float64Var(&c.faults.Rate500, "rate-500", 0, "share of API requests answered 500")
	fs.Float64Var(&c.faults.RateTruncated, "rate-truncated", 0, "share of API responses cut short of their Content-Length")
	fs.Float64Var(&c.faults.RateMalformed, "rate-malformed", 0, "share of API responses with a body that is not JSON")
	fs.Int64Var(&c.faults.Seed, "fault-seed", 1, "seed of the fault draws")
	fs.StringVar(&c.endpoints, "fault-endpoints", "both", "endpoints the faults apply to: both, items or listing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: hnfake [flags]\n\nServes a fake HackerNews Search API. The generated dataset is the same on every\nrun: its times are fixed by -start, and edits and added threads take -start\nas the current time (-now: the real clock). Flags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			fmt.Fprintln(stdout, "\nControl endpoints, beside the API at /api/v1:")
			printControlEndpoints(stdout)
			return c, true, nil
		}
		return c, false, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, false, usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	if c.data != "" {
		var clash []string
		fs.Visit(func(f *flag.Flag) {
			if generationFlags[f.Name] {
				clash = append(clash, "-"+f.Name)
			}
		})
		if len(clash) > 0 {
			return c, false, usageError{fmt.Errorf("-data serves recorded files; %v only apply to a generated dataset", clash)}
		}
	}
	switch {
	case c.generate.Threads < 0:
		return c, false, usageError{fmt.Errorf("-threads must not be negative, got %d", c.generate.Threads)}
	case c.generate.CommentsPerThread < 0:
		return c, false, usageError{fmt.Errorf("-comments must not be negative, got %d", c.generate.CommentsPerThread)}
	case c.generate.Depth < 1:
		return c, false, usageError{fmt.Errorf("-depth must be at least 1, got %d", c.generate.Depth)}
	case c.generate.TextBytes < 1:
		return c, false, usageError{fmt.Errorf("-text-bytes must be at least 1, got %d", c.generate.TextBytes)}
	}
	switch {
	case *relative && *start != "":
		return c, false, usageError{errors.New("-now and -start both anchor the generated dataset; give one")}
	case *relative:
		c.generate.Start = now.UTC().Truncate(time.Second)
	case *start != "":
		if c.generate.Start, err = time.Parse(time.RFC3339, *start); err != nil {
			return c, false, usageError{fmt.Errorf("-start: %w", err)}
		}
	default:
		c.generate.Start = hnfake.DefaultStart()
	}
	if !*relative {
		anchor := c.generate.Start
		c.clock = func() time.Time { return anchor }
	}
	switch c.endpoints {
	case "both":
	case "items":
		c.faults.Items = true
	case "listing":
		c.faults.Listing = true
	default:
		return c, false, usageError{fmt.Errorf("-fault-endpoints must be both, items or listing, got %q", c.endpoints)}
	}
	if err := c.faults.Validate(); err != nil {
		return c, false, usageError{err}
	}
	return c, false, nil
}

// newServer builds the fake that c describes.
func newServer(c config) (*hnfake.Server, error) {
	var d *hnfake.Dataset
	if c.data != "" {
		var err error
		if d, err = hnfake.LoadDir(c.data); err != nil {
			return nil, err
		}
	} else {
		d = hnfake.Generate(c.generate)
		if c.clock != nil {
			d.SetClock(c.clock)
		}
	}
	s := hnfake.NewServer(d)
	s.SetFaults(c.faults)
	return s, nil
}

// run serves the fake that args describe until ctx is done, then shuts the
// server down gracefully. It prints the address it serves at to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	c, help, err := parseFlags(args, stdout, time.Now())
	if err != nil || help {
		return err
	}
	s, err := newServer(c)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	d := s.Dataset()
	fmt.Fprintf(stdout, "hnfake: serving %d threads (%d items) at http://%s/api/v1\n", d.Len(), d.NumItems(), ln.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = hs.Shutdown(shutdownCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// printControlEndpoints lists the fake's control endpoints, one a line.
func printControlEndpoints(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range hnfake.ControlEndpoints() {
		fmt.Fprintf(tw, "  %s %s%s\t%s\n", e.Method, e.Path, e.Query, e.Doc)
	}
	_ = tw.Flush() // w is the caller's; its errors are not this listing's
}
