package hackernews_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/source/hackernews"
)

// newSource starts a test server with h and returns a source on it, with
// opts' zero fields set for fast tests: no rate limit to speak of and a
// small retry budget.
func newSource(t *testing.T, h http.Handler, opts hackernews.Options) *hackernews.Source {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	opts.BaseURL = srv.URL
	if opts.RequestsPerSecond == 0 {
		opts.RequestsPerSecond, opts.Burst = 10_000, 100
	}
	if opts.MaxElapsed == 0 {
		opts.MaxElapsed = 2 * time.Second
	}
	src, err := hackernews.New(opts)
	require.NoError(t, err)
	return src
}

// listAll runs a listing to its end and returns the keys and ordinals
// listed, and the error yielded, if any.
func listAll(t *testing.T, src *hackernews.Source) ([]tidemark.Listed[string], error) {
	t.Helper()
	var listed []tidemark.Listed[string]
	for l, err := range src.List(t.Context()) {
		if err != nil {
			return listed, err
		}
		listed = append(listed, l)
	}
	return listed, nil
}

func keys(listed []tidemark.Listed[string]) []string {
	out := make([]string, len(listed))
	for i, l := range listed {
		out[i] = l.Key
	}
	return out
}

// story is one hit of an archive.
type story struct {
	id      int64
	created int64 // created_at_i
	updated string
}

// archive is a search_by_date endpoint over a list of stories, newest
// first, that serves at most 1,000 hits of a query as Algolia does, and
// understands numericFilters=created_at_i<X, <=X and =X.
type archive struct {
	stories []story
	// fail, when set, returns the status to fail a request with (0: serve).
	fail func(q url.Values) int

	mu      sync.Mutex
	queries []url.Values
}

// newArchive returns an archive of n stories, three created in each second
// (so that a window's boundary falls between stories of the same second),
// with ids that grow with time.
func newArchive(n int) *archive {
	const newest = 1_783_568_909
	a := &archive{}
	for i := range n {
		created := int64(newest - i/3)
		a.stories = append(a.stories, story{
			id:      int64(48_000_000 + n - i),
			created: created,
			updated: time.Unix(created+60, 0).UTC().Format(time.RFC3339),
		})
	}
	return a
}

func (a *archive) ids() []string {
	out := make([]string, len(a.stories))
	for i, s := range a.stories {
		out[i] = strconv.FormatInt(s.id, 10)
	}
	return out
}

func (a *archive) requests() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.queries)
}

func (a *archive) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/search_by_date" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	a.mu.Lock()
	a.queries = append(a.queries, q)
	a.mu.Unlock()
	if a.fail != nil {
		if code := a.fail(q); code != 0 {
			http.Error(w, `{"message":"injected failure","status":`+strconv.Itoa(code)+`}`, code)
			return
		}
	}
	hpp, err1 := strconv.Atoi(q.Get("hitsPerPage"))
	page, err2 := strconv.Atoi(q.Get("page"))
	if err1 != nil || err2 != nil || hpp < 1 || hpp > 1000 || page < 0 || q.Get("tags") != "story" {
		http.Error(w, `{"message":"bad query","status":400}`, http.StatusBadRequest)
		return
	}
	matching := a.stories
	if f := q.Get("numericFilters"); f != "" {
		op, n, _ := strings.Cut(strings.TrimPrefix(f, "created_at_i"), "=")
		if !strings.HasPrefix(f, "created_at_i") || strings.HasPrefix(n, "=") {
			op = "bad"
		}
		if op == "" {
			op = "="
		} else if strings.HasPrefix(f, "created_at_i<") && !strings.Contains(f, "=") {
			op, n = "<", strings.TrimPrefix(f, "created_at_i<")
		} else if op == "<" {
			op = "<="
		}
		bound, err := strconv.ParseInt(n, 10, 64)
		if err != nil || op != "<" && op != "<=" && op != "=" {
			http.Error(w, `{"message":"bad numericFilters","status":400}`, http.StatusBadRequest)
			return
		}
		matching = nil
		for _, s := range a.stories {
			if s.created < bound && op != "=" || s.created == bound && op != "<" {
				matching = append(matching, s)
			}
		}
	}
	reachable := min(len(matching), 1000)
	type hit struct {
		ObjectID   string `json:"objectID"`
		CreatedAtI int64  `json:"created_at_i"`
		UpdatedAt  string `json:"updated_at,omitempty"`
		Title      string `json:"title"`
	}
	resp := struct {
		Hits        []hit `json:"hits"`
		NbHits      int   `json:"nbHits"`
		NbPages     int   `json:"nbPages"`
		Page        int   `json:"page"`
		HitsPerPage int   `json:"hitsPerPage"`
	}{Hits: []hit{}, NbHits: len(matching), NbPages: (reachable + hpp - 1) / hpp, Page: page, HitsPerPage: hpp}
	for i := page * hpp; i < min((page+1)*hpp, reachable); i++ {
		s := matching[i]
		resp.Hits = append(resp.Hits, hit{ObjectID: strconv.FormatInt(s.id, 10), CreatedAtI: s.created, UpdatedAt: s.updated, Title: "story"})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func TestListRecordedPage(t *testing.T) {
	t.Parallel()

	body := readTestdata(t, "testdata/search_by_date-tags_story-created_at_i-hpp150.json")
	var queries []url.Values
	var mu sync.Mutex
	src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		require.Equal(t, "/search_by_date", r.URL.Path)
		require.Equal(t, "tidemark-hnindex", r.UserAgent())
		w.Write(body)
	}), hackernews.Options{MaxResults: 150})

	listed, err := listAll(t, src)
	require.NoError(t, err)

	var page struct {
		Hits []struct {
			ObjectID  string `json:"objectID"`
			UpdatedAt string `json:"updated_at"`
		} `json:"hits"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Hits, 150)
	var want []tidemark.Listed[string]
	for _, h := range page.Hits {
		want = append(want, tidemark.Listed[string]{Key: h.ObjectID, Ordinal: tidemark.Ordinal(at(h.UpdatedAt).UnixMicro())})
	}
	require.Equal(t, want, listed)
	require.Equal(t, tidemark.Listed[string]{Key: "48840760", Ordinal: tidemark.Ordinal(at("2026-07-09T03:50:14Z").UnixMicro())}, listed[0])

	require.Equal(t, []url.Values{{"tags": {"story"}, "hitsPerPage": {"150"}, "page": {"0"}}}, queries)
	require.Equal(t, int64(1), src.Stats().Requests[hackernews.EndpointSearchByDate])
	require.Equal(t, int64(len(body)), src.Stats().Bytes)
}

// TestListRecordedPageCap serves the recorded page as page 0 of a window
// whose nbPages (7) is the 1,000-hit cap: the source pages on to the cap
// and asks for a second window.
func TestListRecordedPageCap(t *testing.T) {
	t.Parallel()

	body := readTestdata(t, "testdata/search_by_date-tags_story-created_at_i-hpp150.json")
	var mu sync.Mutex
	var queries []string
	src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if r.URL.Query().Get("page") == "0" && r.URL.Query().Get("numericFilters") == "" {
			w.Write(body)
			return
		}
		w.Write([]byte(`{"hits":[],"nbHits":0,"nbPages":0,"page":1,"hitsPerPage":150}`))
	}), hackernews.Options{MaxResults: 2000, HitsPerPage: 150})

	listed, err := listAll(t, src)
	require.NoError(t, err)
	require.Len(t, listed, 150)
	require.Equal(t, []string{
		"hitsPerPage=150&page=0&tags=story",
		"hitsPerPage=150&page=1&tags=story",
	}, queries, "an empty page ends the window; with fewer than 1,000 hits it was the last")
}

func TestListWindows(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		stories, hitsPerPage, maxResults int
		want                             int      // keys listed: the newest ones
		filters                          []string // numericFilters of the windows
		requests                         int
	}{
		"2,500 stories in pages of 1,000": {
			stories: 2500, hitsPerPage: 1000, maxResults: 2500, want: 2500,
			// Story 999 shares its second with 1000 and 1001, which the
			// first window cannot hold; 2001 with 2002 and 2003: each
			// window ends inside a second, whose query gets the rest.
			filters: []string{"", "created_at_i<1783568576", "created_at_i=1783568576", "created_at_i<1783568242", "created_at_i=1783568242"},
			// The windows of 1,000, 1,000 and 496 hits, and the two seconds.
			requests: 3 + 2,
		},
		"2,500 stories in pages of 150": {
			stories: 2500, hitsPerPage: 150, maxResults: 5000, want: 2500,
			filters:  []string{"", "created_at_i<1783568576", "created_at_i=1783568576", "created_at_i<1783568242", "created_at_i=1783568242"},
			requests: 7 + 1 + 7 + 1 + 4,
		},
		"MaxResults within the first page": {
			stories: 2500, hitsPerPage: 1000, maxResults: 10, want: 10,
			filters: []string{""}, requests: 1,
		},
		"MaxResults in the second window": {
			stories: 2500, hitsPerPage: 1000, maxResults: 1234, want: 1234,
			filters:  []string{"", "created_at_i<1783568576", "created_at_i=1783568576"},
			requests: 3,
		},
		"MaxResults defaults the page size": {
			stories: 2500, maxResults: 300, want: 300,
			filters: []string{""}, requests: 1,
		},
		"fewer stories than MaxResults": {
			stories: 300, hitsPerPage: 100, maxResults: 500, want: 300,
			filters: []string{""}, requests: 3,
		},
		"exactly one full window": {
			stories: 1000, hitsPerPage: 1000, maxResults: 5000, want: 1000,
			filters: []string{""}, requests: 1,
		},
		"one more than a window": {
			stories: 1001, hitsPerPage: 1000, maxResults: 5000, want: 1001,
			// Story 1000 shares story 999's second: the next window is
			// empty, and the second's query gets it.
			filters:  []string{"", "created_at_i<1783568576", "created_at_i=1783568576"},
			requests: 3,
		},
		"no stories": {
			stories: 0, hitsPerPage: 1000, maxResults: 5000, want: 0,
			filters: []string{""}, requests: 1,
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := newArchive(tt.stories)
			src := newSource(t, a, hackernews.Options{HitsPerPage: tt.hitsPerPage, MaxResults: tt.maxResults})

			listed, err := listAll(t, src)
			require.NoError(t, err)
			require.Equal(t, a.ids()[:tt.want], keys(listed), "the newest stories, newest first, each once")
			for i, l := range listed {
				require.Equal(t, tidemark.Ordinal((a.stories[i].created+60)*1_000_000), l.Ordinal)
			}

			var filters []string
			for _, q := range a.requests() {
				if q.Get("page") == "0" {
					filters = append(filters, q.Get("numericFilters"))
				}
			}
			require.Equal(t, tt.filters, filters)
			require.Len(t, a.requests(), tt.requests)
			require.Equal(t, int64(tt.requests), src.Stats().Requests[hackernews.EndpointSearchByDate])
		})
	}
}

// TestListSameSecond lists more stories created in one second than a
// window can hold: the listing cannot page past them and says so.
func TestListSameSecond(t *testing.T) {
	t.Parallel()

	a := newArchive(0)
	for i := range 1200 {
		a.stories = append(a.stories, story{id: int64(5000 - i), created: 1_700_000_000})
	}
	src := newSource(t, a, hackernews.Options{HitsPerPage: 1000, MaxResults: 5000})

	listed, err := listAll(t, src)
	require.ErrorContains(t, err, "more than 1000 stories share created_at_i 1700000000")
	require.Len(t, listed, 1000)
	require.Len(t, a.requests(), 3, "the window, the next window's first page, the second's query")
}

// TestListRequestsPerWindow: when no window ends inside a second (stories
// a second or more apart, as most are), the listing asks ⌈N/1000⌉ pages
// of 1,000 for N stories, at exact multiples of 1,000 too.
func TestListRequestsPerWindow(t *testing.T) {
	t.Parallel()

	for _, n := range []int{0, 999, 1000, 1001, 2999, 3000, 4000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			a := &archive{}
			for i := range n {
				created := int64(1_783_568_909 - 7*i)
				a.stories = append(a.stories, story{id: int64(48_000_000 + n - i), created: created, updated: time.Unix(created, 0).UTC().Format(time.RFC3339)})
			}
			src := newSource(t, a, hackernews.Options{HitsPerPage: 1000, MaxResults: 1_000_000})
			listed, err := listAll(t, src)
			require.NoError(t, err)
			require.Equal(t, a.ids(), keys(listed))
			want := max(1, (n+999)/1000)
			require.Len(t, a.requests(), want, "⌈%d/1000⌉ requests", n)
		})
	}
}

func TestListFailsOnPage2(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		status int
		want   []string
	}{
		"transient": {status: http.StatusServiceUnavailable, want: []string{"giving up after", "HTTP 503"}},
		"permanent": {status: http.StatusForbidden, want: []string{"HTTP 403: {\"message\":\"injected failure\",\"status\":403}"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := newArchive(500)
			a.fail = func(q url.Values) int {
				if q.Get("page") == "1" {
					return tt.status
				}
				return 0
			}
			src := newSource(t, a, hackernews.Options{HitsPerPage: 100, MaxResults: 500, MaxElapsed: 200 * time.Millisecond})

			listed, err := listAll(t, src)
			require.Equal(t, a.ids()[:100], keys(listed), "the keys of page 1, then the error")
			require.ErrorContains(t, err, "hackernews: GET search_by_date?hitsPerPage=100&page=1&tags=story: ")
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.False(t, tidemark.IsRetryable(err), "retried already")
		})
	}
}

func TestListBadHits(t *testing.T) {
	t.Parallel()

	for name, tt := range map[string]struct {
		hits string
		want []tidemark.Listed[string]
		err  string // "" for no error
	}{
		"objectID not a number": {
			hits: `{"objectID":"48840760","updated_at":"2026-07-09T03:50:14Z"},{"objectID":"abc"},{"objectID":"48840761"}`,
			want: []tidemark.Listed[string]{{Key: "48840760", Ordinal: tidemark.Ordinal(at("2026-07-09T03:50:14Z").UnixMicro())}},
			err:  `page 0, hit 1: hackernews: malformed response: objectID "abc" is not an item id`,
		},
		"objectID missing": {
			hits: `{"title":"x"}`,
			err:  "hit has no objectID",
		},
		"objectID negative": {
			hits: `{"objectID":"-5"}`,
			err:  "is not an item id",
		},
		"ordinals": {
			hits: `{"objectID":"1","updated_at":"2026-07-09T03:50:14.5Z","created_at_i":1},` +
				`{"objectID":"2","created_at_i":1783568909},` +
				`{"objectID":3,"updated_at":"yesterday","created_at_i":1783568909},` +
				`{"objectID":"4","updated_at":null},` +
				`{"objectID":"1","created_at_i":5}`,
			want: []tidemark.Listed[string]{
				{Key: "1", Ordinal: tidemark.Ordinal(at("2026-07-09T03:50:14Z").UnixMicro() + 500_000)},
				{Key: "2", Ordinal: 1783568909_000_000},
				{Key: "3", Ordinal: 1783568909_000_000},
				{Key: "4", Ordinal: tidemark.NoOrdinal},
			},
		},
		"not JSON": {
			hits: `oops`,
			err:  "giving up after",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"hits":[%s],"nbHits":5,"nbPages":1}`, tt.hits)
			}), hackernews.Options{MaxElapsed: 100 * time.Millisecond})

			listed, err := listAll(t, src)
			require.Equal(t, tt.want, listed)
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.err)
			require.ErrorIs(t, err, hackernews.ErrMalformed)
		})
	}
}

func TestListStopsWhenTheConsumerDoes(t *testing.T) {
	t.Parallel()

	a := newArchive(2500)
	src := newSource(t, a, hackernews.Options{HitsPerPage: 10, MaxResults: 2500})

	n := 0
	for _, err := range src.List(t.Context()) {
		require.NoError(t, err)
		if n++; n == 15 {
			break
		}
	}
	require.Len(t, a.requests(), 2)
}

func TestListCancelled(t *testing.T) {
	t.Parallel()

	a := newArchive(2500)
	src := newSource(t, a, hackernews.Options{HitsPerPage: 10, MaxResults: 2500})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	var last error
	for _, err := range src.List(ctx) {
		if err != nil {
			last = err
			break
		}
		if n++; n == 15 {
			cancel()
		}
	}
	require.Equal(t, 20, n, "the page in hand is yielded")
	require.ErrorIs(t, last, context.Canceled)
}
