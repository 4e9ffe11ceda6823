package cli

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target/table"
)

// The server's bounds: time to read a request and to write its answer,
// open and idle connections, and the expensive requests (queries, pages of
// rows) run at once.
const (
	serverReadHeaderTimeout = 5 * time.Second
	serverReadTimeout       = 15 * time.Second
	serverWriteTimeout      = 30 * time.Second
	serverIdleTimeout       = 30 * time.Second
	serverMaxHeaderBytes    = 32 << 10
	// serverMaxConns bounds the connections open at once; more wait to be
	// accepted.
	serverMaxConns = 1024
	// serverMaxIdle bounds the idle keep-alive connections: past it, a
	// connection that goes idle is closed.
	serverMaxIdle = 64
	// requestTimeout bounds each request's work (a query has
	// table.SearchTimeout of it).
	requestTimeout = 10 * time.Second
	// maxExpensive bounds the expensive requests run at once; expensiveWait
	// is how long one waits for its turn before it is told to come back.
	maxExpensive  = 8
	expensiveWait = 2 * time.Second
)

// tokenCookie is the cookie the login page sets.
const tokenCookie = "tidemark_session"

// isLoopback says addr, as --addr gives it, binds to loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// sessionTTL is how long a login lasts.
const sessionTTL = 12 * time.Hour

// guard is the server's outer layer: security headers, the Host check,
// the token, the same-origin check on writes, and a deadline on each
// request.
type guard struct {
	token string
	cop   *http.CrossOriginProtection
	log   *slog.Logger
	now   func() time.Time
}

func newGuard(token string, log *slog.Logger) *guard {
	return &guard{token: token, cop: http.NewCrossOriginProtection(), log: log, now: time.Now}
}

// mac is the token's HMAC of what, under a label: the session cookie and
// the form token are each a MAC, so neither is the token, and one cannot
// stand for the other.
func (g *guard) mac(label, what string) string {
	m := hmac.New(sha256.New, []byte(g.token))
	m.Write([]byte("tidemark insight " + label + "\x00" + what))
	return hex.EncodeToString(m.Sum(nil))
}

// newSession returns a login cookie's value: when it expires, and its MAC.
func (g *guard) newSession() string {
	exp := strconv.FormatInt(g.now().Add(sessionTTL).Unix(), 10)
	return exp + "." + g.mac("session", exp)
}

// validSession says a login cookie's value is one of ours, not expired.
func (g *guard) validSession(v string) bool {
	exp, mac, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || g.now().Unix() >= n {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(g.mac("session", exp)))
}

// formToken is the token a page's forms carry for the session of req: a
// form posted with the cookie must have come from one of our pages.
func (g *guard) formToken(req *http.Request) string {
	c, err := req.Cookie(tokenCookie)
	if err != nil || g.token == "" {
		return ""
	}
	return g.mac("form", c.Value)
}

// authorized says the request carries the token: as a bearer token, or as
// the login page's cookie.
func (g *guard) authorized(req *http.Request) bool {
	if g.token == "" {
		return true
	}
	if h := req.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(h, "Bearer ")), []byte(g.token)) == 1
	}
	if c, err := req.Cookie(tokenCookie); err == nil {
		return g.validSession(c.Value)
	}
	return false
}

// open says a request needs no token: the login page and the assets it
// uses, read.
func open(req *http.Request) bool {
	switch {
	case req.URL.Path == "/login":
		return req.Method == http.MethodGet || req.Method == http.MethodPost
	case strings.HasPrefix(req.URL.Path, "/static/"):
		return req.Method == http.MethodGet || req.Method == http.MethodHead
	}
	return false
}

// loopbackHost says a request's Host names this machine's loopback: a
// server without a token answers no other name, or a page of any site
// could read it by rebinding its name to 127.0.0.1.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if g.token == "" && !loopbackHost(req.Host) {
			writeError(w, req, http.StatusMisdirectedRequest, "this server answers only to localhost and loopback addresses; to serve other names, give it a token")
			return
		}
		if err := g.cop.Check(req); err != nil {
			writeError(w, req, http.StatusForbidden, "a cross-origin request is refused")
			return
		}
		if !open(req) && !g.authorized(req) {
			if req.Method == http.MethodGet && wantsHTML(req) {
				http.Redirect(w, req, "/login?next="+url.QueryEscape(req.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.Set("WWW-Authenticate", `Bearer realm="tidemark"`)
			writeError(w, req, http.StatusUnauthorized, "a token is needed: send it as \"Authorization: Bearer TOKEN\", or log in at /login")
			return
		}
		if req.Method == http.MethodPost && g.token == "" && req.URL.Path != "/login" {
			writeError(w, req, http.StatusForbidden, "updates over HTTP need a token: start the server with --token or TIDEMARK_SERVER_TOKEN")
			return
		}
		if req.Method == http.MethodPost && !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") && req.URL.Path != "/login" {
			// A form sent with the cookie must come from one of our pages:
			// the cross-origin check above, and the form's own token.
			want := g.formToken(req)
			if want == "" || subtle.ConstantTimeCompare([]byte(req.PostFormValue("csrf")), []byte(want)) != 1 {
				writeError(w, req, http.StatusForbidden, "the form is stale: reload the page")
				return
			}
		}
		if req.URL.Path == "/api/v1/events" {
			next.ServeHTTP(w, req) // a stream: it ends with the client
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), requestTimeout)
		defer cancel()
		next.ServeHTTP(w, req.WithContext(ctx))
	})
}

// wantsHTML says the request is a browser's for a page.
func wantsHTML(req *http.Request) bool {
	return !strings.HasPrefix(req.URL.Path, "/api/") && req.URL.Path != "/metrics" && req.URL.Path != "/healthz"
}

// newToken returns a random token, for the login page's tests and users
// who ask for one.
func newToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// limiter bounds the expensive requests run at once.
type limiter chan struct{}

// acquire waits for a turn, at most expensiveWait; false means the server
// is busy.
func (l limiter) acquire(ctx context.Context) bool {
	t := time.NewTimer(expensiveWait)
	defer t.Stop()
	select {
	case l <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (l limiter) release() { <-l }

// errBusy is wrapped by the errors told to a client whose request found no
// turn.
var errBusy = errors.New("the server is busy: try again in a moment")

// errBusyQueries is told to a client whose expensive request found no
// turn.
var errBusyQueries = fmt.Errorf("%d queries are running: %w", maxExpensive, errBusy)

// conns bounds a listener's open connections and closes idle keep-alive
// connections past serverMaxIdle.
type conns struct {
	slots chan struct{}
	mu    sync.Mutex
	idle  map[net.Conn]struct{}
	open  atomic.Int64
}

func newConns() *conns {
	return &conns{slots: make(chan struct{}, serverMaxConns), idle: make(map[net.Conn]struct{})}
}

// listener returns ln bounded to serverMaxConns open connections.
func (c *conns) listener(ln net.Listener) net.Listener { return &limitedListener{Listener: ln, c: c} }

// state is the http.Server's ConnState hook.
func (c *conns) state(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateIdle:
		if len(c.idle) >= serverMaxIdle {
			conn.Close()
			return
		}
		c.idle[conn] = struct{}{}
	default:
		delete(c.idle, conn)
	}
}

type limitedListener struct {
	net.Listener
	c *conns
}

func (l *limitedListener) Accept() (net.Conn, error) {
	l.c.slots <- struct{}{}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.c.slots
		return nil, err
	}
	l.c.open.Add(1)
	return &limitedConn{Conn: conn, c: l.c}, nil
}

type limitedConn struct {
	net.Conn
	c    *conns
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.c.open.Add(-1)
		<-c.c.slots
	})
	return err
}

// clientError is what a client is told of err, and with which status: the
// problem in the words of the request, never the database's internals,
// which go to the log with an id the message gives.
func (s *insight) clientError(req *http.Request, err error) (int, string) {
	var nsu *table.NotSetUpError
	switch {
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, tidemark.ErrNotFound):
		return http.StatusNotFound, s.scrub(lastPart(err))
	case errors.Is(err, errNoSuchTarget), errors.Is(err, errNoSuchSource), errors.Is(err, errNoSuchQuery):
		return http.StatusNotFound, s.scrub(err.Error())
	case errors.Is(err, errBadRequest), errors.Is(err, tidemark.ErrBadKey), errors.Is(err, table.ErrSearchTooLarge), errors.Is(err, table.ErrEmptyQuery):
		return http.StatusBadRequest, strings.TrimPrefix(s.scrub(err.Error()), "table: ")
	case errors.As(err, &nsu):
		return http.StatusServiceUnavailable, fmt.Sprintf("table %s is not set up: `%s update` sets it up and fills it", nsu.Table, s.r.app.Name)
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the request took too long and was stopped"
	case errors.Is(err, context.Canceled):
		return 499, "the request was canceled"
	}
	id := newToken()[:8]
	s.r.log.ErrorContext(req.Context(), "a request failed", "id", id, "method", req.Method, "path", req.URL.Path, "err", s.scrub(err.Error()))
	return http.StatusInternalServerError, fmt.Sprintf("the server failed to answer (error %s in its log)", id)
}

// lastPart keeps an error's message from its last "tidemark: " on: the
// engine's own words.
func lastPart(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "tidemark: "); i >= 0 {
		return msg[i+len("tidemark: "):]
	}
	return msg
}

// errBadRequest is wrapped by the errors of a request's bad arguments.
var errBadRequest = errors.New("bad request")

// badRequest is a client's mistake, told in msg.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }
func (e *badRequest) Unwrap() error { return errBadRequest }

func badRequestf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }
