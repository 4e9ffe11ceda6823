package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
)

func (r *runner) serverCommand() *cobra.Command {
	var (
		addr    string
		live    bool
		refresh time.Duration
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve the flow's queries over HTTP (a search page and a JSON API); with --live, keep the targets up to date meanwhile",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if refresh < 0 || (refresh > 0 && !live) {
				return errors.New("--refresh needs --live and must not be negative")
			}
			r.graceful.Store(true)
			return r.serve(cmd.Context(), addr, live, refresh)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "the address to listen on")
	cmd.Flags().BoolVar(&live, "live", false, "keep the targets up to date while serving, as update --live does")
	cmd.Flags().DurationVar(&refresh, "refresh", 0, "with --live, how often to list the sources (default: each source's own interval, or 1m)")
	return cmd
}

// serve answers the flow's queries over HTTP until Env.Stop is closed or
// ctx ends:
//
//	GET /                        a search page for the first query handler ("search" if there is one)
//	GET /api/{query}?q=…&limit=  the query's results as JSON, as the query command's --json prints them
//	GET /healthz                 "ok"
func (r *runner) serve(ctx context.Context, addr string, live bool, refresh time.Duration) error {
	a := readOnly
	if live {
		a = writeEngine
	}
	s, err := r.open(ctx, a)
	if err != nil {
		return err
	}
	defer s.Close()
	names := s.flow.QueryHandlers()
	if len(names) == 0 {
		return fmt.Errorf("flow %s has no query handlers to serve", s.flow.Name())
	}
	page := names[0]
	if slices.Contains(names, "search") {
		page = "search"
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /api/{query}", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("query")
		if !slices.Contains(names, name) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no query %q; there are: %v", name, names)})
			return
		}
		q, err := queryOf(req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		res, err := s.flow.Query(req.Context(), name, q)
		if err != nil {
			writeJSON(w, queryStatus(err), map[string]string{"error": r.queryError(err).Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		data := pageData{Title: r.app.Name, Query: page, Text: req.URL.Query().Get("q")}
		status := http.StatusOK
		if data.Text != "" {
			q, err := queryOf(req)
			status = http.StatusBadRequest
			var res any
			if err == nil {
				res, err = s.flow.Query(req.Context(), page, q)
				status = queryStatus(err)
			}
			if err != nil {
				data.Error = r.queryError(err).Error()
			} else {
				status = http.StatusOK
				data.Results, data.Error = asRecords(res)
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		if err := searchPage.Execute(w, data); err != nil {
			r.log.Error("rendering the search page", "err", err)
		}
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(r.env.Stdout, "serving flow %s at http://%s\n", s.flow.Name(), ln.Addr())

	liveDone := make(chan error, 1)
	if live {
		go func() {
			liveDone <- s.engine.Live(ctx, tidemark.LiveOptions{Refresh: refresh, Stop: r.env.Stop,
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
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && serveErr == nil {
		serveErr = err
	}
	if live && !liveEnded {
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

// queryStatus is the HTTP status of a query's error: the asker's fault
// (too large, nothing to look for) is 400, a table not set up 503, any
// other fault 500.
func queryStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, table.ErrSearchTooLarge), errors.Is(err, table.ErrEmptyQuery):
		return http.StatusBadRequest
	case errors.Is(err, table.ErrNotSetUp):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// queryOf reads a query from q and limit.
func queryOf(req *http.Request) (tidemark.Query, error) {
	q := tidemark.Query{Text: req.URL.Query().Get("q"), Limit: 20}
	if l := req.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxQueryLimit {
			return q, fmt.Errorf("limit must be a number between 1 and %d, got %q", MaxQueryLimit, l)
		}
		q.Limit = n
	}
	return q, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
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

type pageData struct {
	Title, Query, Text, Error string
	Results                   []map[string]any
}

var searchPage = template.Must(template.New("page").Funcs(template.FuncMap{
	"others": func(rec map[string]any) []string {
		var keys []string
		for _, k := range slices.Sorted(maps.Keys(rec)) {
			if k != "text" && rec[k] != nil {
				keys = append(keys, k)
			}
		}
		return keys
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — {{.Query}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}
input[type=search]{width:70%;font-size:1.1rem}li{margin:1rem 0;white-space:pre-wrap}.meta{color:#666;font-size:.85rem}.error{color:#a00}</style>
</head><body>
<h1>{{.Title}}</h1>
<form method="get" action="/"><input type="search" name="q" value="{{.Text}}" autofocus placeholder="{{.Query}}…"> <button>{{.Query}}</button></form>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{if .Text}}{{if not .Error}}<p class="meta">{{len .Results}} results</p>{{end}}{{end}}
<ol>{{range .Results}}<li>{{index . "text"}}<div class="meta">{{$rec := .}}{{range others .}}{{.}}: {{index $rec .}} · {{end}}</div></li>{{end}}</ol>
</body></html>
`))
