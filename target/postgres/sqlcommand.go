package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark"
	"github.com/tidemark/tidemark/target"
)

// SQLCommandSpec is the setup state of a SQL command attachment. Both SQL
// texts may hold several statements, and the placeholders {{table}} and
// {{schema}}, replaced by the table's quoted qualified name and its
// schema's quoted name.
type SQLCommandSpec struct {
	Setup    string `json:"setup"`
	Teardown string `json:"teardown,omitempty"`
}

const sqlCommandKind = "sql"

// SQLCommand declares SQL of your own attached to t — an index, a view, a
// trigger — run on setup, in a transaction. When the command changes, the
// previous one's teardown runs first, then the new setup; when it is no
// longer declared, its teardown runs. An interrupted update may run them
// again, so write them idempotent (IF NOT EXISTS, IF EXISTS, CREATE OR
// REPLACE).
func SQLCommand[T any](t *Table[T], name, setup, teardown string) {
	if name == "" || strings.TrimSpace(setup) == "" {
		t.Inner().Flow().AddError(fmt.Errorf("postgres: a SQL command on table %s needs a name and setup SQL", t.Name()))
	}
	tidemark.Attach(t.Inner(), sqlCommandKind, target.Key(name), SQLCommandSpec{Setup: setup, Teardown: teardown})
}

// sqlCommandHandler reconciles SQL command attachments; the record is the
// whole spec, since its teardown is needed once it is gone.
type sqlCommandHandler struct {
	d     *DB
	table string
}

type sqlCommandAction struct {
	table     string
	name      target.Key
	teardowns []string
	setup     string // empty: only tear down
}

func (a sqlCommandAction) String() string {
	if a.setup == "" {
		return fmt.Sprintf("tear down SQL command %s on %s", a.name, a.table)
	}
	return fmt.Sprintf("run SQL command %s on %s", a.name, a.table)
}

func (h *sqlCommandHandler) Reconcile(key target.Key, desired *SQLCommandSpec, prev []target.Record, prevMayBeMissing bool) (*target.Reconciled, error) {
	var rec target.Record
	if desired != nil {
		var err error
		if rec, err = json.Marshal(desired); err != nil {
			return nil, err
		}
		if target.Unchanged(rec, prev, prevMayBeMissing) {
			return nil, nil
		}
	}
	a := sqlCommandAction{table: h.table, name: key}
	for _, p := range prev {
		if desired != nil && string(p) == string(rec) {
			continue // the same command: its setup is idempotent
		}
		var old SQLCommandSpec
		if err := json.Unmarshal(p, &old); err != nil {
			return nil, fmt.Errorf("SQL command %s: decoding the previous one: %w", key, err)
		}
		if old.Teardown != "" && !slices.Contains(a.teardowns, old.Teardown) {
			a.teardowns = append(a.teardowns, old.Teardown)
		}
	}
	if desired == nil {
		if len(prev) == 0 {
			return nil, nil
		}
		return &target.Reconciled{Action: target.Do(h.d.sqlSink, a)}, nil
	}
	a.setup = desired.Setup
	return &target.Reconciled{Action: target.Do(h.d.sqlSink, a), Record: rec}, nil
}

func (d *DB) expand(sql, tableName string) string {
	return strings.NewReplacer("{{table}}", d.qualified(tableName), "{{schema}}", ident(d.opts.Schema)).Replace(sql)
}

// applySQLCommands runs teardowns then setups, each command in a
// transaction.
func (d *DB) applySQLCommands(ctx context.Context, actions []sqlCommandAction) error {
	for _, a := range actions {
		err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
			for _, sql := range a.teardowns {
				if _, err := tx.Exec(ctx, d.expand(sql, a.table)); err != nil {
					return fmt.Errorf("teardown: %w", err)
				}
			}
			if a.setup != "" {
				if _, err := tx.Exec(ctx, d.expand(a.setup, a.table)); err != nil {
					return fmt.Errorf("setup: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return classify(ctx, fmt.Errorf("%s: %w", a, err))
		}
	}
	return nil
}
