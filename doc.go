// Package tidemark is an incremental indexing framework: it keeps databases,
// search indexes and files in sync with sources that have no change feed of
// their own — HTTP APIs, partner and legacy services, directories — by
// remembering, for every source row, what it last saw and what it wrote.
// Each update fetches, processes and writes only what changed, deletes what
// disappeared, and survives a crash without losing or duplicating a row.
//
// # The model
//
// A Flow is a named app. It has sources, a processing function per source
// row, and targets:
//
//   - A Source lists its rows cheaply — each key with an Ordinal that grows
//     whenever the row changes — and gets one row's full value.
//   - The processing function is plain Go. It receives one row and declares
//     the target states it should produce: table rows, files, graph nodes.
//   - A Target holds declared states. Built-in targets live in their own
//     packages; Custom adapts a simple connector; DeclareContainer takes a
//     full handler written on package target.
//
// Tidemark keeps, in a state store (an embedded SQLite file by default, or a
// PostgreSQL schema), per source row: its ordinal, a fingerprint of its
// content, the logic version that processed it, and the keys of the target
// states it declared with a tracking record of each.
//
// # One update
//
// Engine.Update sets up the targets, then for each source:
//
//  1. Lists every key. A row whose stored ordinal is at least the listed one,
//     processed by the current logic, is skipped without a Get. Stored state
//     is looked up in batches, never one round trip per key.
//  2. Gets the rest. A row whose content fingerprint is unchanged only has
//     its ordinal moved.
//  3. Processes changed rows with bounded concurrency (at most one update of
//     a key at a time) and reconciles what they declare against what they
//     declared before: unchanged states are not written, new and changed ones
//     are upserted, states no longer declared are deleted.
//  4. Writes in batches spanning many rows, in two phases: it stages the keys
//     about to be written in the state store (precommit), has the targets'
//     sinks apply the batch, then commits the rows' new tracking. After a
//     crash at any point, staged keys count as "may exist", so the next
//     update converges: nothing lost, nothing left behind.
//  5. After a complete listing, deletes the target states of rows that are
//     gone. A listing that fails or ends early deletes nothing.
//
// A row that fails — its Get, its processing, or its write — is recorded
// with its error, left as it was, and retried on the next update; the other
// rows go on. Transient faults marked with Retryable or RetryAfter are
// retried with jittered exponential backoff.
//
// A target state declared by two source rows stays until neither declares
// it; the most recent writer's value wins. A row can declare containers of
// its own (a directory per row, a table per tenant) with Nest, and states
// in them, to any depth: a container lives while some row declares it, and
// goes after everything in it. Changing the flow's LogicVersion
// reprocesses every row; a target's setup change that loses or destroys its
// rows (a column type, a primary key) rewrites them all.
//
// # Writing targets
//
// Package target is the target-state API every target is written on: a
// Handler reconciles a desired state against the records of what may exist
// and returns an action; sinks apply actions in batches. See its
// documentation, and the examples here for a full handler and a simple
// connector.
//
// # Fingerprints
//
// Content and target fingerprints are SHA-256 over a canonical encoding of
// Go values, documented in package fingerprint and stable across runs,
// platforms and versions.
package tidemark
