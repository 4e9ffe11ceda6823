// Package redistest gives each test its own key prefix in a Redis
// database.
//
// Tests find the server through the TIDEMARK_TEST_REDIS_URL environment
// variable (see [EnvURL]), or else at [DefaultURL]. When that server does
// not answer, a throwaway one is started for the test from the installed
// redis-server (see [Start]) and stopped when the test finishes. When
// neither can be had the test is skipped, unless the CI environment
// variable is true, in which case it fails.
//
// Each call to [Prefix] returns a fresh, random key prefix and, when the
// test finishes, deletes every key holding it, so that tests can run in
// parallel against one database without seeing each other's keys.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tidemark/tidemark/internal/testenv"
)

// EnvURL is the environment variable holding the URL of the test Redis
// database.
const EnvURL = "TIDEMARK_TEST_REDIS_URL"

// DefaultURL is the database used when EnvURL is unset or empty.
const DefaultURL = "redis://127.0.0.1:6379/0"

// PrefixStart starts every prefix made by Prefix.
const PrefixStart = "tmtest_"

const (
	// probeTimeout bounds the reachability check of URL.
	probeTimeout = 2 * time.Second
	// startTimeout bounds the start of a throwaway server.
	startTimeout = 10 * time.Second
	// cleanTimeout bounds the deletion of a test's keys.
	cleanTimeout = 30 * time.Second
	// scanCount is the SCAN batch of the deletion.
	scanCount = 1000
)

// URL returns the URL of the test Redis database: the value of EnvURL, or
// DefaultURL when that is unset, if the server answers a PING (within a
// short timeout); else the URL of a throwaway server started for t. If
// neither works, it fails the test when the CI environment variable is
// true and skips it otherwise.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	perr := probe(t.Context(), u)
	if perr == nil {
		return u
	}
	_, started, serr := start(t)
	if serr == nil {
		return started
	}
	msg := fmt.Sprintf("redistest: Redis at %s does not answer (%v), and no throwaway server could be started (%v).\n"+
		"Start one (redis-server --save '' --appendonly no) or set %s to its URL.", testenv.Redact(u), perr, serr, EnvURL)
	if testenv.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Prefix returns the URL of the test database (as from URL) and a new
// random key prefix, PrefixStart and a slug of the test's name and random
// hex, made of lowercase ASCII letters, digits and underscores. When the
// test and its subtests finish, every key holding the prefix is deleted.
func Prefix(t testing.TB) (baseURL, prefix string) {
	t.Helper()
	baseURL = URL(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("redistest: random prefix: %v", err)
	}
	prefix = PrefixStart + testenv.Slug(t.Name(), 24) + "_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), cleanTimeout)
		defer cancel()
		if err := Delete(ctx, baseURL, prefix); err != nil {
			t.Errorf("redistest: deleting the keys of prefix %s: %v", prefix, err)
		}
	})
	return baseURL, prefix
}

// Delete deletes every key of the database at rawURL that holds prefix,
// by SCAN and UNLINK. The prefix must hold no glob character (*?[]\).
func Delete(ctx context.Context, rawURL, prefix string) error {
	if prefix == "" || strings.ContainsAny(prefix, `*?[]\`) {
		return fmt.Errorf("prefix %q is empty or holds a glob character", prefix)
	}
	rdb, err := client(rawURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, "*"+prefix+"*", scanCount).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := rdb.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == scanCount {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// Start starts a throwaway Redis server from the redis-server on PATH,
// listening on a free port of 127.0.0.1, keeping nothing on disk (its
// directory is a temporary one of t), and returns its URL, database 0.
// The server is stopped when the test finishes, or by the returned stop,
// which waits for it to exit. It fails the test when no server can be
// started.
func Start(t testing.TB) (rawURL string, stop func()) {
	t.Helper()
	s, u, err := start(t)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return u, s.stop
}

// server is a throwaway redis-server.
type server struct {
	cmd  *exec.Cmd
	once sync.Once
}

func (s *server) stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill() // it keeps nothing; it may have exited
		_ = s.cmd.Wait()         // its exit status says only that it was killed
	})
}

// start starts a throwaway server for t, trying another port when the one
// it picked was taken meanwhile.
func start(t testing.TB) (*server, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("no redis-server on PATH: %w", err)
	}
	dir := t.TempDir()
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", "server.log")
		if err := cmd.Start(); err != nil {
			return nil, "", fmt.Errorf("starting redis-server: %w", err)
		}
		s := &server{cmd: cmd}
		t.Cleanup(s.stop)
		u := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
		if lastErr = waitReady(t.Context(), u); lastErr == nil {
			return s, u, nil
		}
		s.stop()
	}
	return nil, "", fmt.Errorf("redis-server did not answer: %w", lastErr)
}

// freePort returns a TCP port of 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits for the server at rawURL to answer a PING.
func waitReady(ctx context.Context, rawURL string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := probe(ctx, rawURL)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probe sends a PING to rawURL within probeTimeout.
func probe(ctx context.Context, rawURL string) error {
	rdb, err := client(rawURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// client returns a client of rawURL, the prefix parameter left out.
func client(rawURL string) (*goredis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("the Redis URL cannot be parsed")
	}
	q := u.Query()
	q.Del("prefix")
	u.RawQuery = q.Encode()
	opts, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, err
	}
	opts.DisableIdentity = true
	opts.MaxRetries = -1
	return goredis.NewClient(opts), nil
}

// Proxy is a TCP proxy to a Redis server that a test can make drop its
// connections, as a network fault would.
type Proxy struct {
	l        net.Listener
	upstream string

	mu       sync.Mutex
	conns    map[net.Conn]bool
	dropNext bool
	wg       sync.WaitGroup
}

// NewProxy starts a proxy on a free port of 127.0.0.1 to the server of
// rawURL, closed when the test finishes, and returns it with rawURL
// pointed at it.
func NewProxy(t testing.TB, rawURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("redistest: parsing the Redis URL: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	p := &Proxy{l: l, upstream: u.Host, conns: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = l.Addr().String()
	return p, u.String()
}

// DropNext makes the proxy close the connection of the next request sent
// through it, and every other, before passing it on: the client sees the
// connection drop in the middle of its call, with its request unanswered.
func (p *Proxy) DropNext() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropNext = true
}

// Retarget makes the proxy pass the connections it accepts from now on to
// the server of rawURL.
func (p *Proxy) Retarget(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("redistest: parsing the Redis URL: %v", err))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream = u.Host
}

// DropAll closes every connection through the proxy now.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked()
}

func (p *Proxy) dropLocked() {
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) close() {
	p.l.Close()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		upstream := p.upstream
		p.mu.Unlock()
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, true)
		go p.pipe(c, up, false)
	}
}

// pipe copies from src to dst; requests (from the client) are dropped
// instead when the proxy was told to.
func (p *Proxy) pipe(dst, src net.Conn, requests bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && requests {
			p.mu.Lock()
			drop := p.dropNext
			if drop {
				p.dropNext = false
				p.dropLocked()
			}
			p.mu.Unlock()
			if drop {
				return
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the other side is closed by the defers
		}
	}
}
