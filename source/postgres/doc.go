// Package postgres is a Tidemark source over a PostgreSQL table (or view):
// each row the optional filter keeps is a source row, keyed by its key
// columns, with the chosen columns as its value (a Row).
//
// With an ordinal column (a timestamp, timestamptz, or an integer that
// grows on every change, such as a version or updated_at), an update reads
// only the rows whose ordinal moved. Without one, the listing carries each
// row's content fingerprint (the MD5 of its chosen columns, computed by
// the server), so an update still reads only the rows that changed, and
// the listing moves no row data but keys and hashes.
//
// A key is the text of the key column's value; with several key columns,
// the JSON array of their texts: ["acme","42"]. A row with a NULL key part
// has no key, and is no row. Identifiers (schema, table,
// columns) are quoted, whatever their case or characters; the filter
// (Options.Where) is SQL of the caller's, never outside input.
//
// In live mode the change stream (tidemark.Watcher) is LISTEN/NOTIFY: Watch
// installs, on first use, a trigger on the table that notifies the key of
// each inserted, updated or deleted row (both keys when an update moves
// one), and DropSource (called by Engine.Drop) removes it. The trigger is
// named after the source's table, key, columns and filter, so that the
// sources of two flows over one table have their own (two flows with the
// very same source share it, and dropping one removes the other's). A view
// has no trigger: its changes are found by the periodic listing. Live mode's
// first pass lists the table, which catches up on what changed while
// nobody listened; its periodic listing catches the rest (a key too long
// for a notification, a trigger dropped by hand).
package postgres
