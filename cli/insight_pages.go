package cli

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
	"github.com/tidemark/tidemark/tidemarktype"
)

// The web UI's templates and assets, embedded: the server needs nothing
// but its binary, and no network.
//
//go:embed web
var webFS embed.FS

// pages are the UI's templates, each page parsed with the layout.
type pages map[string]*template.Template

func loadPages() (pages, error) {
	funcs := template.FuncMap{
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04:05Z")
			case *time.Time:
				if v == nil || v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04:05Z")
			}
			return fmt.Sprint(t)
		},
		"dur":        func(a, b time.Time) string { return b.Sub(a).Round(time.Millisecond).String() },
		"firstLine":  firstLine,
		"keyText":    keyText,
		"pathEscape": url.PathEscape,
		"inc":        func(n int) int { return n + 1 },
		"add":        func(a, b int) int { return a + b },
		"highlight":  highlight,
		"cell":       func(v any) string { return cell(v, 0) },
		"short":      func(v any) string { return cell(v, 160) },
		"titled": func(s string) string {
			if s == "" {
				return s
			}
			return strings.ToUpper(s[:1]) + s[1:]
		},
		"plural": func(n int, one, many string) string {
			if n == 1 {
				return "1 " + one
			}
			return strconv.Itoa(n) + " " + many
		},
		"metaOf": metaOf,
		"join":   strings.Join,
		"json": func(v any) string {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return fmt.Sprint(v)
			}
			return string(b)
		},
		"table": func(spec any) *table.Spec {
			if s, ok := tableSpec(spec); ok {
				return &s
			}
			return nil
		},
		"pkOf": func(spec any, column string) string {
			s, _ := tableSpec(spec)
			if i := slices.Index(s.PrimaryKey, column); i >= 0 {
				if len(s.PrimaryKey) > 1 {
					return fmt.Sprintf("primary key (%d of %d)", i+1, len(s.PrimaryKey))
				}
				return "primary key"
			}
			return ""
		},
		"others": func(rec map[string]any) []string {
			var keys []string
			for _, k := range slices.Sorted(maps.Keys(rec)) {
				switch k {
				case "text", "snippet", "target", "link":
					continue
				}
				if rec[k] != nil {
					keys = append(keys, k)
				}
			}
			return keys
		},
		"host": func(link string) string {
			if u, err := url.Parse(link); err == nil && u.Host != "" {
				return u.Host
			}
			return link
		},
	}
	layout, err := template.New("layout").Funcs(funcs).ParseFS(webFS, "web/layout.html")
	if err != nil {
		return nil, err
	}
	p := make(pages)
	for _, name := range []string{"dashboard", "rows", "row", "target", "schema", "search", "error", "login"} {
		t, err := layout.Clone()
		if err != nil {
			return nil, err
		}
		if p[name], err = t.ParseFS(webFS, "web/"+name+".html"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// cell shows a value of a table row on one line, cut at max runes when
// max > 0: a time, or text that is one, as the pages show times.
func cell(v any, max int) string {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05Z")
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UTC().Format("2006-01-02 15:04:05Z")
		}
	}
	return oneLine(v, max)
}

// metaOf is what a search result's line of details says: its fields but
// the text, the snippet and what its links show, its score rounded.
func metaOf(rec map[string]any, about tidemark.QueryItem) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		v := rec[k]
		switch {
		case v == nil, k == "text", k == "snippet", k == "target", k == "link":
		case k == "score":
			if f, ok := v.(float64); ok {
				out = append(out, fmt.Sprintf("score: %.3g", f))
			}
		case (k == "id" || k == "key") && about.Key != "" && fmt.Sprint(v) == about.Key:
		default:
			out = append(out, k+": "+cell(v, 80))
		}
	}
	return out
}

// highlight shows a snippet with its matches marked: the text escaped,
// then the markers of package table turned into <mark>.
func highlight(snippet string) template.HTML {
	esc := template.HTMLEscapeString(snippet)
	esc = strings.ReplaceAll(esc, template.HTMLEscapeString(table.HighlightStart), "<mark>")
	esc = strings.ReplaceAll(esc, template.HTMLEscapeString(table.HighlightEnd), "</mark>")
	// A snippet cut between its markers leaves one open.
	if open, closed := strings.Count(esc, "<mark>"), strings.Count(esc, "</mark>"); open > closed {
		esc += strings.Repeat("</mark>", open-closed)
	}
	return template.HTML(esc)
}

// pageData is what every page's layout needs, and the page's own data.
type pageData struct {
	App, Flow, Title string
	Live             bool
	Sources          []string
	// SearchQuery is the query handler the search page runs; Q its text.
	SearchQuery, Q string
	CanUpdate      bool
	CSRF           string
	Error          string
	// Notice says how a request of the page's went.
	Notice string

	View    *flowView
	Running *passView
	Passes  []passView

	Page   *rowsPage
	Failed bool
	After  string
	Limit  int
	// FirstPage, NextPage and PrevPage are the paging links, whole.
	FirstPage template.URL
	NextPage  template.URL
	PrevPage  template.URL
	KeyArg    string
	Row       *rowView
	State     *targetRowView
	Plan      []tidemarktype.SetupChange
	Groups    []stateGroup
	Quiet     int
	Results   *queryAPI
	About     []tidemark.QueryItem
	Declarers [][]refView
	Next      string
}

func (s *insight) data(req *http.Request, title string) *pageData {
	csrf := s.guard.formToken(req)
	return &pageData{App: s.r.app.Name, Flow: s.s.flow.Name(), Title: title, Live: s.live, Sources: s.s.flow.SourceNames(),
		SearchQuery: s.searchQuery(), CanUpdate: csrf != "", CSRF: csrf}
}

// searchQuery is the query handler the search page runs: "search" if the
// flow has one, else its first.
func (s *insight) searchQuery() string {
	if slices.Contains(s.queries, "search") {
		return "search"
	}
	if len(s.queries) > 0 {
		return s.queries[0]
	}
	return ""
}

// render answers with a page, rendered whole before anything is sent: a
// template that fails is a 500, not a page cut short under a 200.
func (s *insight) render(w http.ResponseWriter, req *http.Request, status int, page string, d *pageData) {
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, "layout", d); err != nil {
		id := newToken()[:8]
		s.r.log.ErrorContext(req.Context(), "rendering a page", "id", id, "page", page, "err", err)
		http.Error(w, fmt.Sprintf("the server failed to show the page (error %s in its log)", id), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// failPage answers a page's request that failed with err.
func (s *insight) failPage(w http.ResponseWriter, req *http.Request, err error) {
	status, msg := s.clientError(req, err)
	d := s.data(req, http.StatusText(status))
	d.Error = msg
	s.render(w, req, status, "error", d)
}

func (s *insight) pageRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFS, "web/static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/") {
			s.failPage(w, req, fmt.Errorf("%w: no page %s", tidemark.ErrNotFound, req.URL.Path)) // no listings
			return
		}
		files.ServeHTTP(w, req)
	})
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.HandleFunc("GET /sources/{source}/rows", s.rowsPage)
	mux.HandleFunc("GET /sources/{source}/rows/{key...}", s.rowPage)
	mux.HandleFunc("GET /targets/{target}/states/{key...}", s.targetPage)
	mux.HandleFunc("GET /schema", s.schemaPage)
	mux.HandleFunc("GET /search", s.searchPage)
	mux.HandleFunc("POST /update", func(w http.ResponseWriter, req *http.Request) {
		_, word := s.requestUpdate()
		http.Redirect(w, req, "/?"+url.Values{"update": {word}}.Encode(), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, req *http.Request) {
		s.loginPage(w, req, http.StatusOK, "")
	})
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		s.failPage(w, req, fmt.Errorf("%w: no page %s", tidemark.ErrNotFound, req.URL.Path))
	})
}

func (s *insight) dashboard(w http.ResponseWriter, req *http.Request) {
	if q := req.URL.Query().Get("q"); q != "" {
		// The search page was at / before.
		http.Redirect(w, req, "/search?"+req.URL.RawQuery, http.StatusSeeOther)
		return
	}
	v, err := s.flowView(req.Context())
	if err != nil {
		s.failPage(w, req, err)
		return
	}
	d := s.data(req, "Dashboard")
	d.View = v
	switch u := req.URL.Query().Get("update"); u {
	case "started", "requested", "already requested", "an update is running":
		d.Notice = "Update: " + u + "."
	}
	running, passes := s.hub.recent()
	d.Running = running
	// The passes that changed something, or failed: a live server lists
	// its sources every few seconds, mostly to find nothing new.
	for _, p := range passes {
		if !changed(p) {
			d.Quiet++
			continue
		}
		if len(d.Passes) < 10 {
			d.Passes = append(d.Passes, p)
		}
	}
	s.render(w, req, http.StatusOK, "dashboard", d)
}

// changed says a pass wrote or deleted something, or failed.
func changed(p passView) bool {
	if p.Error != "" {
		return true
	}
	for _, st := range p.Sources {
		if st.Added+st.Updated+st.Reprocessed+st.Deleted+st.Errors+st.Held > 0 {
			return true
		}
	}
	return false
}

func (s *insight) rowsPage(w http.ResponseWriter, req *http.Request) {
	page, err := s.rows(req)
	if err != nil {
		s.failPage(w, req, err)
		return
	}
	q := req.URL.Query()
	d := s.data(req, "Rows of "+page.Source)
	d.Page, d.Failed, d.After = page, q.Get("failed") == "true" || q.Get("failed") == "1", q.Get("after")
	d.Limit, _ = strconv.Atoi(q.Get("limit"))
	if d.Limit == 0 {
		d.Limit = 50
	}
	first := url.Values{}
	if d.Failed {
		first.Set("failed", "true")
	}
	if q.Has("limit") {
		first.Set("limit", strconv.Itoa(d.Limit))
	}
	d.FirstPage = pageURL(req.URL.Path, first)
	if page.Next != "" {
		first.Set("after", page.Next)
		d.NextPage = pageURL(req.URL.Path, first)
	}
	s.render(w, req, http.StatusOK, "rows", d)
}

func (s *insight) rowPage(w http.ResponseWriter, req *http.Request) {
	v, err := s.row(req)
	if err != nil {
		s.failPage(w, req, err)
		return
	}
	d := s.data(req, "Row "+req.PathValue("key"))
	d.Row, d.KeyArg = v, req.PathValue("key")
	d.Groups = s.groups(v)
	s.render(w, req, http.StatusOK, "row", d)
}

func (s *insight) targetPage(w http.ResponseWriter, req *http.Request) {
	v, err := s.targetState(req)
	if err != nil {
		s.failPage(w, req, err)
		return
	}
	d := s.data(req, v.Target+" "+req.PathValue("key"))
	d.State, d.KeyArg = v, req.PathValue("key")
	s.render(w, req, http.StatusOK, "target", d)
}

func (s *insight) schemaPage(w http.ResponseWriter, req *http.Request) {
	v, err := s.flowView(req.Context())
	if err != nil {
		s.failPage(w, req, err)
		return
	}
	d := s.data(req, "Schema")
	d.View = v
	if d.Plan, err = s.s.engine.Plan(req.Context()); err != nil {
		s.failPage(w, req, err)
		return
	}
	s.render(w, req, http.StatusOK, "schema", d)
}

func (s *insight) searchPage(w http.ResponseWriter, req *http.Request) {
	d := s.data(req, s.searchQuery())
	d.Q = req.URL.Query().Get("q")
	if d.SearchQuery == "" {
		s.failPage(w, req, fmt.Errorf("%w: the flow has no query handlers", tidemark.ErrNotFound))
		return
	}
	if strings.TrimSpace(d.Q) == "" {
		s.render(w, req, http.StatusOK, "search", d)
		return
	}
	res, about, err := s.queryPage(req, d.SearchQuery)
	if err != nil {
		status, msg := s.clientError(req, err)
		d.Error = msg
		s.render(w, req, status, "search", d)
		return
	}
	d.Results = res
	d.About = make([]tidemark.QueryItem, len(res.Results))
	copy(d.About, about)
	// Each result's declaring source rows, for its links: indexed lookups,
	// at most one per result.
	d.Declarers = make([][]refView, len(res.Results))
	for i, a := range d.About {
		if a.Target == "" {
			continue
		}
		if st, err := s.s.targetRowView(req.Context(), a.Target, a.Key); err == nil {
			d.Declarers[i] = st.Declarers
		}
	}
	page := url.Values{"q": {d.Q}}
	if req.URL.Query().Has("limit") {
		page.Set("limit", strconv.Itoa(res.Limit))
	}
	if res.Offset > 0 {
		prev := max(res.Offset-res.Limit, 0)
		if len(res.Results) == 0 && res.Total != nil && *res.Total > 0 {
			prev = min(prev, (*res.Total-1)/res.Limit*res.Limit) // past the end: the last page
		}
		page.Set("offset", strconv.Itoa(prev))
		d.PrevPage = pageURL(req.URL.Path, page)
	}
	end := res.Offset + len(res.Results)
	more := len(res.Results) == res.Limit // a handler that gives no total
	if res.Total != nil {
		more = end < *res.Total || res.TotalCapped && len(res.Results) > 0
	}
	if more && end <= MaxQueryOffset {
		page.Set("offset", strconv.Itoa(end))
		d.NextPage = pageURL(req.URL.Path, page)
	}
	s.render(w, req, http.StatusOK, "search", d)
}

// stateGroup is the target states a row declared in one target, as the
// row's page shows them: a table's as rows under its columns.
type stateGroup struct {
	Name    string
	Columns []string
	States  []stateView
}

// groups sorts a row's states by target, in the order they came.
func (s *insight) groups(v *rowView) []stateGroup {
	specs := tableSpecs(s.s.flow)
	var out []stateGroup
	at := make(map[string]int)
	for _, st := range v.States {
		name := st.Target
		if !st.Table {
			name += " " // apart from a table of the same name's rows
		}
		i, ok := at[name]
		if !ok {
			i = len(out)
			at[name] = i
			g := stateGroup{Name: st.Target}
			if st.Table {
				for _, spec := range specs {
					if spec.Table == st.Target {
						g.Columns = spec.ColumnNames()
					}
				}
			}
			out = append(out, g)
		}
		out[i].States = append(out[i].States, st)
	}
	return out
}

// pageURL is a link to path with the query q: a URL of this server's, that
// the templates take whole.
func pageURL(path string, q url.Values) template.URL {
	u := url.URL{Path: path, RawQuery: q.Encode()}
	return template.URL(u.String())
}

func (s *insight) loginPage(w http.ResponseWriter, req *http.Request, status int, msg string) {
	d := s.data(req, "Log in")
	d.Error, d.Next = msg, localPath(req.FormValue("next"))
	s.render(w, req, status, "login", d)
}

// login checks the token a person typed and sets the session cookie.
func (s *insight) login(w http.ResponseWriter, req *http.Request) {
	if s.guard.token == "" {
		http.Redirect(w, req, "/", http.StatusSeeOther)
		return
	}
	probe := req.Clone(req.Context())
	probe.Header = http.Header{"Authorization": {"Bearer " + req.PostFormValue("token")}}
	if !s.guard.authorized(probe) {
		time.Sleep(200 * time.Millisecond) // slows guessing
		s.loginPage(w, req, http.StatusUnauthorized, "That is not the token.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.guard.newSession(), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: req.TLS != nil, MaxAge: int(sessionTTL / time.Second)})
	http.Redirect(w, req, localPath(req.PostFormValue("next")), http.StatusSeeOther)
}

// localPath keeps a redirect on this server: a path of printable ASCII,
// not naming a host, or "/". Browsers drop tabs and line breaks from a URL,
// and read a backslash as a slash: "/\t/evil.example" is "//evil.example".
func localPath(next string) string {
	for _, c := range next {
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	return next
}
