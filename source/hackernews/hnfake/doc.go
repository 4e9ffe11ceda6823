// Package hnfake is a fake of the HackerNews Search API
// (https://hn.algolia.com/api/v1) for tests, benchmarks and offline demos:
// it serves the two endpoints an incremental indexer uses, from a Dataset
// that the test changes between requests, with injected faults and request
// counts.
//
//	d := hnfake.Generate(hnfake.GenerateOptions{Threads: 200, CommentsPerThread: 20, Seed: 1})
//	srv, base := hnfake.Start(t, d) // base is "http://127.0.0.1:port/api/v1"
//	// ... run the client against base ...
//	d.Edit(id, func(t *hnfake.Thread) { t.Title += " (edited)" })
//	// ... run it again: one listing page and exactly one item fetch ...
//	require.Equal(t, int64(1), srv.Requests().ItemsByID[id])
//
// The command cmd/hnfake serves the same from a terminal.
//
// # Wire format
//
// The fake is written from recorded responses of the real API (see
// testdata/README.md), not from a client, and its tests compare its bytes
// with those recordings.
//
// GET /api/v1/items/{id} answers the thread with its whole comment tree:
// every node has the keys author, children, created_at
// ("2024-05-29T16:41:07.000Z"), created_at_i, id, options ([]), parent_id
// (null for the thread), points (null for comments), story_id, text (HTML, or
// null), title and url (null for comments), type ("story", "comment"…), in
// that order. An id of a comment answers that comment with its replies. An
// unknown id answers 404 with {"status":404,"error":"Not Found"}. A thread
// loaded with LoadDir and not changed since is served as its file's bytes.
//
// GET /api/v1/search_by_date answers the listing: {exhaustive,
// exhaustiveNbHits, exhaustiveTypo, hits, hitsPerPage, nbHits, nbPages, page,
// params, processingTimeMS, processingTimingsMS, query, serverTimeMS}. A hit
// has _highlightResult, _tags (type, author_NAME, story_ID, then show_hn or
// ask_hn and Thread.Tags), author, children (ids of the top-level comments,
// omitted when none), created_at and updated_at ("2026-07-09T03:48:29Z"),
// created_at_i, num_comments (comments not deleted), objectID, points,
// story_id, story_text (only for a thread with text), title, and url
// (omitted when none).
//
// Parameters: tags (Algolia's syntax: "story", "story,author_pg",
// "(story,job)"; a thread has the tags listed above), numericFilters (a
// comma-separated AND of conditions on created_at_i, points or num_comments
// with <, <=, >, >=, =, != or "attr:lo TO hi"), hitsPerPage (default 20,
// at most 1000; larger values are lowered to 1000), page (from 0); query is
// echoed and otherwise ignored. Hits are ordered by created_at_i, then by
// objectID, both descending. As on Algolia, only the first 1,000 hits of a
// query can be paged to: nbHits counts every match, nbPages is
// min(⌈nbHits/hitsPerPage⌉, ⌈1000/hitsPerPage⌉), and a page past the first
// 1,000 hits is empty; a client reaches older threads with a numericFilters
// window such as created_at_i<=T (threads can share a second, so < alone
// would skip some).
//
// Bodies are compact JSON, Content-Type application/json; charset=utf-8.
// Strings are escaped as in the recorded bodies: non-ASCII characters as \u
// escapes, '<', '>', '&' and '/' unescaped; they decode to the same strings
// encoding/json's output would. Nothing recurses over a comment tree, so a
// thread nested 20,000 deep is served as fast as a flat one (see
// Dataset.AddDeepThread).
//
// # Faults
//
// Server.SetFaults makes the API endpoints slow (Faults.Latency) or fail at
// given rates, drawn from a seeded PRNG: 429 with Retry-After, 500, a body cut
// short of its Content-Length (the client reads io.ErrUnexpectedEOF), or a
// 200 whose body is not JSON. Server.Requests counts the requests per
// endpoint and per item id, faulted ones included.
package hnfake
