// Package hackernews is a Tidemark source of HackerNews threads, read from
// the Algolia HN API (https://hn.algolia.com/api): each row is a thread —
// a story, a job, a poll — keyed by its item id in decimal, with every
// comment of its tree.
//
//	src, err := hackernews.New(hackernews.Options{MaxResults: 1000})
//	if err != nil {
//		return err
//	}
//	threads := tidemark.AddSource[string, hackernews.Thread](flow, "hn", src)
//	tidemark.ForEach(threads, func(ctx context.Context, r *tidemark.Row, id string, t hackernews.Thread) error {
//		for _, c := range t.Comments {
//			// declare a row per comment, with hackernews.PlainText(c.Text)
//		}
//		return nil
//	})
//
// # Listing
//
// List asks search_by_date, newest first, for the threads with Options.Tag
// ("story" by default), and yields the newest Options.MaxResults ids, each
// once. A thread's ordinal is its updated_at in Unix microseconds (its
// created_at_i when the hit has no updated_at), so Tidemark gets again only
// the threads that changed since the last update.
//
// Algolia serves at most 1,000 hits of a query, however they are paged. So
// the listing reads in windows: the first window pages through
// search_by_date?tags=…&hitsPerPage=…&page=0,1,…; when it has served its
// 1,000 hits and the response's nbHits says there are more, the next window
// asks again with numericFilters=created_at_i<X, X being the oldest
// creation second seen so far. Stories can share a second, so a window may
// end inside one, with more stories of that second than it could hold: the
// next window's first page, asked for at once, counts the stories before
// X, and when that leaves some of the window's query unread, a query of
// the second alone (created_at_i=X) gets them, before the next window is
// yielded. Ids already listed are skipped. So N stories cost ⌈N/1000⌉
// pages of 1,000, plus one small query per window that ends inside a
// busy second. The listing ends when MaxResults ids were yielded, or a
// window holds every remaining hit, or a window brings nothing new; more
// than 1,000 stories created within one second cannot be paged past, and
// fail the listing. Only one page of hits is held at a time, besides the
// next window's first, and the ids needed to skip repeats within a
// window's bound.
//
// Options.Tag AllTags ("all") lists every kind of item (no tags
// parameter), "story" is the default.
//
// A page that still fails after its retries, or that cannot be read (a hit
// whose objectID is not an item id), is yielded as the error: the listing
// is then incomplete, and Tidemark deletes nothing.
//
// # Getting a thread
//
// Get asks items/{id} and parses the tree as it streams in (see ParseItem):
// without recursion and without a depth limit, each comment id kept once.
// A 404, an empty body or "null" mean the thread is gone (Fetched.Exists is
// false). Comment and story texts are HackerNews's HTML; PlainText turns
// them into plain text for indexing.
//
// # Requests
//
// Every request goes through one client per Source, which:
//
//   - limits the requests to each host to Options.RequestsPerSecond (2 by
//     default; Algolia allows 10,000 an hour) with bursts of Options.Burst,
//     and those in flight to Options.Concurrency;
//   - bounds each attempt, body included, by Options.Timeout;
//   - retries with jittered exponential backoff the failures a retry may
//     fix — 429, 408 and 5xx responses, timeouts, connection errors, bodies
//     cut short or unreadable — waiting at least what a Retry-After header
//     asks (in seconds or as an HTTP date);
//   - gives up on a request after Options.MaxElapsed (2 minutes by default)
//     with an error naming the request, the attempts and the last failure,
//     such as "hackernews: GET items/123: giving up after 7 attempts in
//     1m52s (MaxElapsed 2m0s): HTTP 503";
//   - logs each retry at level INFO to Options.Logger, with the attempt's
//     number, its error and the wait before the next attempt;
//   - fails at once on any other 4xx, with the status and the start of the
//     body (see HTTPError);
//   - asks for gzip and bounds each body by Options.MaxBodyBytes (16 MiB
//     by default), both as sent and once gunzipped, so that a small gzip
//     body that would inflate to gigabytes fails after reading the limit:
//     the request fails at once, without retries, with an error matching
//     ErrBodyTooLarge;
//   - follows redirects only to BaseURL's host (its name and port) and to
//     Options.AllowRedirectHosts, only to http and https URLs and never
//     from https to http; another redirect fails the request at once,
//     without retries, with an error matching ErrRedirect;
//   - fails at once, without retrying, when the host's name does not
//     resolve or it refuses connections before the API has answered any
//     request (a wrong URL, no network), with an UnreachableError naming
//     the URL without its query, such as "hackernews: cannot reach
//     https://hn.algolia.com/api/v1/search_by_date: dial tcp: lookup
//     hn.algolia.com: no such host". Once the API has answered, these
//     failures are retried like other connection errors.
//
// Errors returned after retries are not marked retryable: Tidemark records
// the row as failed and tries it again on the next update, while the other
// rows go on. Requests carry the User-Agent "tidemark-hnindex". Stats counts
// the requests by endpoint, the retries and the bytes read.
package hackernews
