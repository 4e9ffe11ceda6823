package hnindex_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark/cli"
	"github.com/tidemark/tidemark/source/hackernews/hnfake"
)

// The browser tests drive Tidemark Insight, as `hnindex server` serves it,
// in a real headless Chromium: the lineage pages by clicking, the live
// dashboard, the login page. Every page they open must load with no
// console error, no uncaught exception and no CSP violation. They write a
// screenshot of each page they check to test-artifacts/ at the repository
// root.
//
// Chromium is TIDEMARK_CHROMIUM, else `chromium` on PATH (scripts/test.sh
// installs Debian's when it is missing). Without it the tests skip, and
// fail under CI=true.

// artifacts is where the screenshots go: test-artifacts/ at the root.
const artifacts = "../test-artifacts"

// browserStep bounds each step in the browser: a navigation, a click and
// the page it loads, a wait for text.
const browserStep = 10 * time.Second

// browserLife bounds a browser's life: a test's every step.
const browserLife = time.Minute

// chromium returns the browser to run, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("TIDEMARK_CHROMIUM")
	if path == "" {
		path, _ = exec.LookPath("chromium")
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("the browser tests need Chromium under CI=true: set TIDEMARK_CHROMIUM or put chromium on PATH (scripts/test.sh installs Debian's)")
		}
		t.Skip("no Chromium: set TIDEMARK_CHROMIUM or install chromium (apt-get install -y chromium; scripts/test.sh does it) to run the browser tests")
	}
	return path
}

// browser is one tab of a headless Chromium of the test's own, and what
// its pages reported: console errors, uncaught exceptions and CSP
// violations.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// cspListener reports every CSP violation of a page as a console error
// that names it; Chromium's own report is a log entry, caught too.
const cspListener = `document.addEventListener("securitypolicyviolation", (e) =>
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline code") + " at " + e.sourceFile + ":" + e.lineNumber));`

// newBrowser starts exe (see chromium) for the test.
func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	b := &browser{t: t}
	// The browser lives until the test ends, or browserLife at most.
	life, cancelLife := context.WithTimeout(context.WithoutCancel(t.Context()), browserLife)
	// The closed network here breaks Chromium's start without these flags.
	alloc, cancelAlloc := chromedp.NewExecAllocator(life,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// A page restored from the back/forward cache fires no load event,
		// and chromedp then waits for one forever and loses the page's
		// document (chromedp#1346); Puppeteer and Playwright turn the cache
		// off for the same reason. Chromium caches our no-store pages at
		// times ("circumstantial"), so NavigateBack would hang at random.
		chromedp.Flag("disable-back-forward-cache", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(b.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit, before its data dir goes
		cancelLife()
	})
	b.ctx = ctx
	// The first run starts the browser, for the life of ctx.
	err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener})
		return err
	}))
	require.NoError(t, err, "starting %s", exe)
	return b
}

// listen records what a page reports as wrong. It runs in the tab's event
// loop: it only appends.
func (b *browser) listen(ev any) {
	var problem string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
		if d.Exception != nil {
			desc, _, _ := strings.Cut(d.Exception.Description, "\n")
			problem += " " + desc
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, strings.Trim(string(a.Value), `"`))
			} else {
				args = append(args, a.Description)
			}
		}
		problem = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level != cdplog.EntryLevelError {
			return
		}
		problem = fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, problem)
}

// takeProblems returns the problems the pages reported so far, and forgets
// them.
func (b *browser) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

// requireClean fails the test if a page reported a problem so far.
func (b *browser) requireClean() {
	b.t.Helper()
	require.Empty(b.t, b.takeProblems(), "console errors, exceptions or CSP violations")
}

// do runs steps, bounded by browserStep.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, steps...))
}

// get runs an action that returns a value, bounded by browserStep.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err)
	return v
}

// open loads url, which must answer 200.
func (b *browser) open(url string) {
	b.t.Helper()
	resp := get(b, chromedp.NavigateResponse(url))
	require.Equal(b.t, http.StatusOK, int(resp.Status), "GET %s", url)
}

// follow runs a step that loads a page (a click on a link, a form sent),
// waits for it, and returns its status.
func (b *browser) follow(step chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, step)
	require.NoError(b.t, err)
	return int(resp.Status)
}

// click clicks the first element sel matches and waits for the page it
// loads.
func (b *browser) click(sel string) {
	b.t.Helper()
	require.Equal(b.t, http.StatusOK, b.follow(chromedp.Click(chromedp.CSS(sel))), "after a click on %s", sel)
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, chromedp.Text(chromedp.CSS(sel))))
}

// path is the page's path and query.
func (b *browser) path() string {
	b.t.Helper()
	u, err := url.Parse(get(b, chromedp.Location()))
	require.NoError(b.t, err)
	return u.RequestURI()
}

// screenshot writes the whole page to test-artifacts/NAME.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := get(b, chromedp.FullScreenshot(100))
	require.NoError(b.t, os.MkdirAll(artifacts, 0o755))
	file := filepath.Join(artifacts, name+".png")
	require.NoError(b.t, os.WriteFile(file, png, 0o644))
	b.t.Logf("screenshot %s", file)
}

// serve runs `hnindex server` in-process against the world, with args,
// until the test ends, and returns its base URL.
func (w *world) serve(args ...string) string {
	w.t.Helper()
	out, errb := &syncBuffer{}, &syncBuffer{}
	stop, done := make(chan struct{}), make(chan int, 1)
	args = append([]string{"server", "--addr", "127.0.0.1:0", "--db", w.db, "--hn-url", w.url, "--log-level", "warn"}, args...)
	go func() {
		done <- cli.Run(context.WithoutCancel(w.t.Context()), w.app(), args, cli.Env{Stdout: out, Stderr: errb, Stop: stop})
	}()
	w.t.Cleanup(func() {
		close(stop)
		select {
		case code := <-done:
			if code != 0 {
				w.t.Errorf("hnindex server exited %d:\n%s%s", code, out, errb)
			} else if w.t.Failed() {
				w.t.Logf("hnindex server's output:\n%s%s", out, errb)
			}
		case <-time.After(20 * time.Second):
			w.t.Errorf("hnindex server did not stop:\n%s%s", out, errb)
		}
	})
	addr := regexp.MustCompile(`serving flow \S+ at (http://\S+)`)
	var base string
	require.Eventually(w.t, func() bool {
		select {
		case code := <-done:
			done <- code
			w.t.Fatalf("hnindex server exited %d:\n%s%s", code, out, errb)
		default:
		}
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		return base != ""
	}, 20*time.Second, 5*time.Millisecond)
	return base
}

// browserDataset is a few small threads, enough to search and to have a
// thread of several rows.
func browserDataset() *hnfake.Dataset {
	return hnfake.Generate(hnfake.GenerateOptions{Threads: 8, CommentsPerThread: 6, Depth: 3, Seed: 29})
}

// A person goes search result → target row → the source row that declared
// it → another of its target rows, and back, by clicking.
func TestBrowserLineage(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	forEachBackend(t, func(t *testing.T, backend string) {
		shot := func(b *browser, name string) {
			if backend != "sqlite" {
				name += "-" + backend
			}
			b.screenshot(name)
		}
		w := newWorld(t, backend, browserDataset())
		w.mustUpdate()
		base := w.serve()
		b := newBrowser(t, exe)

		// The search form, typed into and sent.
		b.open(base + "/")
		require.Equal(t, "Dashboard", b.text("h1"))
		shot(b, "browser-dashboard")
		b.do(chromedp.SendKeys(chromedp.CSS(`form.search input[name="q"]`), "rust"))
		require.Equal(t, http.StatusOK, b.follow(chromedp.Submit(chromedp.CSS("form.search"))))
		require.Equal(t, "/search?q=rust", b.path())
		require.Equal(t, "Search", b.text("h1"))
		require.Regexp(t, `^results 1 to \d+ of \d+$`, b.text("p.total"))
		require.Contains(t, strings.ToLower(b.text("li.result mark")), "rust", "the match is highlighted")
		shot(b, "browser-search")

		// The first result's target row: its content and its declarer.
		target := get(b, chromedp.AttributeValue(chromedp.CSS("li.result a.target-link"), "href"))
		require.True(t, target.Exists)
		b.click("li.result a.target-link")
		require.Equal(t, target.Value, b.path())
		targetH1 := b.text("h1")
		require.Regexp(t, `^hn_messages row \d+$`, targetH1)
		content := b.text("table.kv.content")
		require.Contains(t, strings.ToLower(content), "rust")
		require.Contains(t, content, "thread_id")
		require.Equal(t, "Declared by 1 source row", b.text("h2"))
		shot(b, "browser-target")

		// The source row: its key and ordinal, and every target state it
		// declared, with content.
		b.click("ul.declarers a.row-link")
		rowH1 := b.text("h1")
		require.Regexp(t, `^Row \d+ of threads$`, rowH1)
		key := strings.Fields(rowH1)[1]
		require.Equal(t, "/sources/threads/rows/"+key, b.path())
		require.Regexp(t, `^ordinal\s+\d+$`, b.text("table.kv tr:first-child"))
		states := get(b, chromedp.Nodes(chromedp.CSSAll("section.state table.states tbody tr")))
		require.Len(t, states, 7, "the thread and its 6 comments, a line each")
		require.Equal(t, "7 target states it declared", b.text("h2"))
		require.Equal(t, "7 rows of hn_messages", b.text("section.state h3"))
		links := get(b, chromedp.Evaluate[[]string](`[...document.querySelectorAll("section.state a.target-link")].map((a) => a.getAttribute("href"))`))
		require.Len(t, links, 7)
		require.Contains(t, links, target.Value, "the row declared the target row we came from")
		require.Contains(t, b.text("section.state table.states thead"), "thread_id", "under the table's columns")
		require.Contains(t, strings.ToLower(b.text("section.state table.states tbody")), "rust", "each with its content")
		shot(b, "browser-row")

		// Another of its target rows.
		other := links[0]
		if other == target.Value {
			other = links[1]
		}
		b.click(fmt.Sprintf(`section.state a.target-link[href=%q]`, other))
		require.Equal(t, other, b.path())
		require.Regexp(t, `^hn_messages row \d+$`, b.text("h1"))
		require.NotEqual(t, targetH1, b.text("h1"))

		// Back, twice: the source row, then the first target row.
		b.do(chromedp.NavigateBack())
		require.Equal(t, rowH1, b.text("h1"))
		b.do(chromedp.NavigateBack())
		require.Equal(t, targetH1, b.text("h1"))
		require.Equal(t, target.Value, b.path())

		// The other pages, by the header's links.
		b.click(`header nav a[href="/sources/threads/rows"]`)
		require.Equal(t, "Rows of threads", b.text("h1"))
		require.Len(t, get(b, chromedp.Nodes(chromedp.CSSAll("table.rows a.row-link"))), 8)
		shot(b, "browser-rows")
		b.click(`header nav a[href="/schema"]`)
		require.Equal(t, "Schema and setup", b.text("h1"))
		require.Contains(t, b.text("section.target#hn_messages"), "primary key")
		shot(b, "browser-schema")
		b.requireClean()

		// The check above sees a CSP violation when there is one.
		b.do(chromedp.Evaluate[chromedp.Void](`document.body.append(Object.assign(document.createElement("img"), {src: "http://192.0.2.1/x.png"}))`))
		var problems []string
		require.Eventually(t, func() bool {
			problems = append(problems, b.takeProblems()...)
			return slices.ContainsFunc(problems, func(p string) bool {
				return strings.HasPrefix(p, "console.error: CSP violation: img-src blocked http://192.0.2.1/x.png")
			})
		}, browserStep, 10*time.Millisecond, "a blocked image is reported: %q", problems)
	})
}

// During --live, a change on the API shows on the open dashboard, with no
// reload: the pass that updated it, in the passes table.
func TestBrowserLiveDashboard(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	ds := browserDataset()
	w := newWorld(t, "sqlite", ds)
	w.mustUpdate()
	base := w.serve("--live", "--refresh", "200ms")
	b := newBrowser(t, exe)
	b.open(base + "/")
	require.Equal(t, "true", get(b, chromedp.Evaluate[string](`document.body.dataset.live`)))
	// The server's own passes, which find nothing new, seen through the
	// events: counted, not listed.
	b.do(chromedp.WaitVisible(chromedp.CSS("p.quiet")))
	// What #progress says as the page changes it, and a mark a reload
	// would lose.
	b.do(chromedp.Evaluate[chromedp.Void](`window.tidemarkTestMark = "not reloaded";
window.tidemarkProgress = [];
new MutationObserver(() => window.tidemarkProgress.push(document.getElementById("progress").textContent.trim()))
  .observe(document.body, {subtree: true, childList: true, characterData: true});`))

	edited := ds.Threads()[2].ID
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("%s/_fake/edit?id=%d", strings.TrimSuffix(w.url, "/api/v1"), edited), nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	changed := time.Now()

	b.do(chromedp.WaitVisible(chromedp.Search(`//table[contains(@class,"passes")]//tr[contains(@class,"pass")][contains(., "1 updated")]`)))
	t.Logf("the dashboard showed the change %s after it", time.Since(changed).Round(time.Millisecond))
	b.screenshot("browser-live")
	require.Equal(t, "not reloaded", get(b, chromedp.Evaluate[string](`window.tidemarkTestMark`)), "the page was updated in place")
	require.NotEmpty(t, get(b, chromedp.Evaluate[string](`document.body.dataset.refreshed || ""`)), "app.js re-fetched the live sections")
	// #progress showed a pass running (pass_started), then none again
	// (the sections fetched on pass_finished).
	progress := get(b, chromedp.Evaluate[[]string](`window.tidemarkProgress`))
	running := slices.IndexFunc(progress, regexp.MustCompile(`^pass \d+ running, \d+ ms so far`).MatchString)
	require.GreaterOrEqual(t, running, 0, "#progress never showed a running pass: %q", progress)
	require.Contains(t, progress[running:], "No pass is running. The next one starts at the refresh interval.", "#progress after a pass ended")
	b.requireClean()
}

// With a token, a page sends the browser to the login page, and the login
// back to the page it asked for.
func TestBrowserLogin(t *testing.T) {
	t.Parallel()
	exe := chromium(t)
	const token = "browser-test-token-0123456789"
	w := newWorld(t, "sqlite", browserDataset())
	w.mustUpdate()
	base := w.serve("--token", token)
	b := newBrowser(t, exe)

	b.open(base + "/search?q=rust")
	require.Equal(t, "/login?next="+url.QueryEscape("/search?q=rust"), b.path())
	require.Equal(t, "Log in to hnindex", b.text("h1"))
	b.do(chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), "not the token"))
	require.Equal(t, http.StatusUnauthorized, b.follow(chromedp.Submit(chromedp.CSS("form"))))
	require.Equal(t, "That is not the token.", b.text("p.bad"))
	b.screenshot("browser-login")
	// A wrong token answers 401, which Chromium logs as a failed load.
	problems := b.takeProblems()
	require.Len(t, problems, 1)
	require.Contains(t, problems[0], "status of 401")

	b.do(chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token))
	require.Equal(t, http.StatusOK, b.follow(chromedp.Submit(chromedp.CSS("form"))))
	require.Equal(t, "/search?q=rust", b.path())
	require.Equal(t, "Search", b.text("h1"))
	require.NotEmpty(t, get(b, chromedp.Nodes(chromedp.CSSAll("li.result"))))
	b.requireClean()
}
