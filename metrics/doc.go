// Package metrics keeps Prometheus metrics of what a Tidemark engine does:
// an observer of every kind (tidemark.PassObserver, RowObserver,
// FetchObserver, BatchObserver and StoreObserver) to set as
// tidemark.Options.Observer, with a registry of its own and an
// http.Handler that serves it in the text format, for GET /metrics.
//
//	m := metrics.New(metrics.Options{Flow: flow.Name()})
//	engine, err := tidemark.Open(ctx, flow, tidemark.Options{StateStore: "state.db", Observer: m})
//	…
//	http.Handle("GET /metrics", m.Handler())
//
// The metrics, each with the label flow (Options.Flow: one Metrics
// observes one flow's engine):
//
//	tidemark_rows_total{source,outcome}                counter: rows an update finished with, by outcome
//	                                                   (added, updated, reprocessed, unchanged, deleted, failed)
//	tidemark_fetch_duration_seconds{source}            histogram: the time each Get took, retries included
//	tidemark_fetches_total{source,result}              counter: Gets by result (found, missing, error)
//	tidemark_pass_duration_seconds                     histogram: the time each update took
//	tidemark_passes_total{result}                      counter: updates by result (ok, failed)
//	tidemark_pass_running                              gauge: updates running now
//	tidemark_last_pass_timestamp_seconds{result}       gauge: when the last update of each result finished
//	tidemark_target_states_written_total{target,op}    counter: target states written, by op (upsert, delete)
//	tidemark_target_batches_total{target}              counter: batches that wrote to the target
//	tidemark_batch_duration_seconds                    histogram: each batch's time from precommit to commit
//	tidemark_state_store_operation_duration_seconds{operation}
//	                                                   histogram: each state store call's time, by operation
//	                                                   (lookup, precommit, commit, lock_check…: see tidemarktype.StoreOp)
//	tidemark_state_store_errors_total{operation}       counter: state store calls that failed
//	tidemark_failing_rows{source}                      gauge: rows failing now (with Options.FailingRows)
//	tidemark_scrape_errors_total                       counter: scrapes in which FailingRows failed
//
// An update counts as ok when it completed or was stopped gracefully
// (tidemark.ErrStopped), as failed otherwise. Previews are not counted as
// updates; the engine does not tell their rows apart from an update's, so
// an engine observed here should not run previews.
//
// Labels hold only names the flow declares — its sources, its root
// targets, the state store's operations — never a row's key, so the number
// of series stays small and fixed. A source's and a target's series exist,
// at zero, from the end of the first update that covers them.
//
// tidemark_failing_rows is read when scraped, not counted from events: a
// failing row that a later update fixed, or that a previous process left,
// is counted right. Options.FailingRows gives the counts (FailingRowsOf
// reads them from an engine's status, in a few state store calls, which
// are counted as any; the engine is opened after the Metrics, its
// observer, so the callback reaches it through a variable set once it is
// open: see the example). A scrape that cannot get them in time goes
// without the gauge and counts one more scrape error.
package metrics
