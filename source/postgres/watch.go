package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark"
)

// maxPayload bounds a notification's key: PostgreSQL refuses payloads of
// 8,000 bytes and more, and a refused notification would fail the write
// that fired it. A longer key is left to the periodic listing.
const maxPayload = 7900

// Install creates, or replaces, the trigger that notifies the table's
// changed keys on the source's channel, and its function, in the table's
// schema. Watch calls it; it needs the rights to create a function and a
// trigger on the table.
func (s *Source) Install(ctx context.Context) error {
	if s.view {
		return nil // a view has no trigger: the listing finds its changes
	}
	fn := ident(s.o.Schema) + "." + ident(s.name+"_notify")
	changed := make([]string, len(s.o.Key))
	for i, k := range s.o.Key {
		changed[i] = "OLD." + ident(k) + " IS DISTINCT FROM NEW." + ident(k)
	}
	notify := func(rec string) string {
		k := s.keyOver(rec)
		return fmt.Sprintf("IF octet_length(%s) < %d THEN PERFORM pg_notify('%s', %s); END IF;", k, maxPayload, s.name, k)
	}
	body := fmt.Sprintf(`BEGIN
  IF TG_OP = 'DELETE' THEN
    %s
  ELSE
    %s
    IF TG_OP = 'UPDATE' AND (%s) THEN
      %s
    END IF;
  END IF;
  RETURN NULL;
END`, notify("OLD"), notify("NEW"), strings.Join(changed, " OR "), notify("OLD"))
	// The body's dollar quote is one its text (identifiers included)
	// does not hold.
	tag := "$tm$"
	for strings.Contains(body, tag) {
		tag = tag[:len(tag)-1] + "x$"
	}
	sql := fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s%s%s;
CREATE OR REPLACE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()`,
		fn, tag, body, tag, ident(s.name), s.table, fn)
	// Two installs at once (two workers entering live mode) would race
	// on the function's catalog row: they take turns.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", s.name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
	if err != nil {
		return fmt.Errorf("source/postgres: installing the change trigger on %s.%s: %w", s.o.Schema, s.o.Table, err)
	}
	return nil
}

// DropSource implements tidemark.SourceDropper: it removes the trigger and
// its function, if installed.
func (s *Source) DropSource(ctx context.Context) error {
	if s.view {
		return nil
	}
	sql := fmt.Sprintf(`DROP TRIGGER IF EXISTS %s ON %s; DROP FUNCTION IF EXISTS %s()`,
		ident(s.name), s.table, ident(s.o.Schema)+"."+ident(s.name+"_notify"))
	if _, err := s.pool.Exec(ctx, sql); err != nil {
		return fmt.Errorf("source/postgres: removing the change trigger of %s.%s: %w", s.o.Schema, s.o.Table, err)
	}
	return nil
}

// Watch implements tidemark.Watcher: it installs the trigger, LISTENs on
// a connection of its own, and announces each notified key, without an
// ordinal (the row is read again). It returns when ctx ends or the
// connection fails; live mode restarts it, and lists the table meanwhile.
func (s *Source) Watch(ctx context.Context, notify func(tidemark.Change[string]) error) error {
	if s.view {
		// No change stream over a view: live mode's periodic listing
		// alone finds its changes. Returning would have it restart the
		// stream, again and again.
		s.log.InfoContext(ctx, "source/postgres: a view has no change trigger; its changes are found by the periodic listing", "table", s.o.Schema+"."+s.o.Table)
		<-ctx.Done()
		return context.Cause(ctx)
	}
	if err := s.Install(ctx); err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("source/postgres: listening: %w", err)
	}
	// The connection LISTENs: it is closed, not given back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+ident(s.name)); err != nil {
		return fmt.Errorf("source/postgres: listening: %w", err)
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("source/postgres: listening: %w", err)
		}
		if err := notify(tidemark.Change[string]{Key: n.Payload, Ordinal: tidemark.NoOrdinal}); err != nil {
			return err
		}
	}
}
