package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/statestore"
)

// changeParams are the parameters of one change in changeAdd's VALUES.
const changeParams = 7

// changesPerInsert bounds the changes of one insert, under maxParams with
// the commit's time.
const changesPerInsert = (maxParams - 1) / changeParams

// changeAdd inserts n changes of a commit, its time first, then each
// change's parameters, in the order given (the VALUES are numbered in the
// statement, so that their ids grow with it); one already kept is kept
// once. A change of a target that no longer exists is not kept: it would
// have gone with its target.
func changeAdd(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO tidemark_outbox (target_id, source_id, row_key, key, seq, old_value, new_value, committed_at)
		SELECT v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, ?
		FROM (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, ?, ?, ?, ?, ?, ?, ?)", i)
	}
	b.WriteString(`) AS v
		WHERE EXISTS (SELECT 1 FROM tidemark_targets AS t WHERE t.id = v.column2)
		ORDER BY v.column1
		ON CONFLICT DO NOTHING`)
	return b.String()
}

// addChanges adds a commit's changes to the outbox, in statements of up to
// changesPerInsert changes.
func addChanges(ctx context.Context, tx *sql.Tx, at int64, changes []statestore.Change) error {
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, 1+changeParams*min(len(changes), changesPerInsert))
	for chunk := range slices.Chunk(changes, changesPerInsert) {
		args = append(args[:0], at)
		for i := range chunk {
			c := &chunk[i]
			args = append(args, c.TargetID, c.SourceID, c.RowKey, c.Key, c.Seq, nonNil(c.Old), nonNil(c.New))
		}
		var err error
		if len(chunk) < changesPerInsert {
			_, err = tx.ExecContext(ctx, changeAdd(len(chunk)), args...)
		} else {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, changeAdd(changesPerInsert)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// changeColumns are the columns of a statestore.Change of the outbox,
// prefixed with prefix ("f." or ""), in the order changeScan reads them.
// A change not found (the NULLs of an outer join) reads as zero values.
func changeColumns(prefix string) string {
	return strings.ReplaceAll(`coalesce(@id, 0), coalesce(@target_id, 0), coalesce(@source_id, 0),
		coalesce(@row_key, ''), coalesce(@key, ''), coalesce(@seq, 0), @old_value, @new_value,
		@committed_at, coalesce(@attempts, 0), coalesce(@last_error, ''), @next_at, coalesce(@fence, 0),
		@old_value IS NULL, @new_value IS NULL`, "@", prefix)
}

// changeScan reads the columns of changeColumns into a statestore.Change.
type changeScan struct {
	c                statestore.Change
	at, nextAt       sql.NullInt64
	oldNull, newNull bool
}

func (s *changeScan) dest() []any {
	return []any{&s.c.ID, &s.c.TargetID, &s.c.SourceID, &s.c.RowKey, &s.c.Key, &s.c.Seq, &s.c.Old, &s.c.New,
		&s.at, &s.c.Attempts, &s.c.LastError, &s.nextAt, &s.c.Fence, &s.oldNull, &s.newNull}
}

// change returns the change read, and readies s for the next.
func (s *changeScan) change() statestore.Change {
	c := s.c
	c.At, c.NextAt = fromMicros(s.at), fromMicros(s.nextAt)
	// The driver reads an empty blob as nil.
	if !s.oldNull && c.Old == nil {
		c.Old = []byte{}
	}
	if !s.newNull && c.New == nil {
		c.New = []byte{}
	}
	*s = changeScan{}
	return c
}

// jsonIDs encodes ids as a JSON array, for json_each: a list of any length
// as one parameter.
func jsonIDs(ids []int64) string {
	b, _ := json.Marshal(ids) // a []int64 always encodes
	return string(b)
}

// OutboxTake implements statestore.Store. It takes, for each state, its
// oldest change if free and due, in one statement.
func (s *Store) OutboxTake(ctx context.Context, p statestore.OutboxTakeParams) ([]statestore.Change, error) {
	if len(p.TargetIDs) == 0 || p.Limit == 0 {
		return nil, nil
	}
	now := time.Now()
	var out []statestore.Change
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE tidemark_outbox SET worker = ?1, fence = fence + 1, lease_until = ?2
			WHERE id IN (SELECT c.id FROM tidemark_outbox AS c
				WHERE c.target_id IN (SELECT value FROM json_each(?3))
					AND (?6 OR c.lease_until IS NULL OR c.lease_until < ?4)
					AND (c.next_at IS NULL OR c.next_at <= ?4)
					AND NOT EXISTS (SELECT 1 FROM tidemark_outbox AS e WHERE e.target_id = c.target_id AND e.key = c.key AND e.id < c.id)
				ORDER BY c.attempts > 0, c.id LIMIT ?5)
			RETURNING `+changeColumns(""),
			p.Worker, micros(now.Add(p.TTL)), jsonIDs(p.TargetIDs), micros(now), p.Limit, p.Steal)
		if err != nil {
			return err
		}
		defer rows.Close()
		var cs changeScan
		for rows.Next() {
			if err := rows.Scan(cs.dest()...); err != nil {
				return err
			}
			out = append(out, cs.change())
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("taking changes of the outbox of %d targets: %w", len(p.TargetIDs), err)
	}
	slices.SortFunc(out, func(a, b statestore.Change) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// OutboxDone implements statestore.Store.
func (s *Store) OutboxDone(ctx context.Context, p statestore.OutboxDoneParams) ([]int64, error) {
	if len(p.Changes) == 0 {
		return nil, nil
	}
	var lost []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		lost = lost[:0]
		done, err := tx.PrepareContext(ctx, `DELETE FROM tidemark_outbox WHERE id = ? AND fence = ? AND worker = ?`)
		if err != nil {
			return err
		}
		defer done.Close()
		for _, c := range p.Changes {
			r, err := done.ExecContext(ctx, c.ID, c.Fence, p.Worker)
			if err != nil {
				return err
			}
			if n, err := r.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				lost = append(lost, c.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("removing %d delivered changes from the outbox: %w", len(p.Changes), err)
	}
	return lost, nil
}

// OutboxRetry implements statestore.Store.
func (s *Store) OutboxRetry(ctx context.Context, p statestore.OutboxRetryParams) error {
	var next any
	if !p.NextAt.IsZero() {
		next = micros(p.NextAt)
	}
	_, err := s.db.ExecContext(ctx, `UPDATE tidemark_outbox SET attempts = attempts + 1, last_error = ?, next_at = ?,
			worker = NULL, lease_until = NULL
		WHERE id = ? AND fence = ? AND worker = ?`, p.Error, next, p.Change.ID, p.Change.Fence, p.Worker)
	if err != nil {
		return classify(fmt.Errorf("recording the failed delivery of change %d of the outbox: %w", p.Change.ID, err))
	}
	return nil
}

// OutboxStatus implements statestore.Store, in one statement.
func (s *Store) OutboxStatus(ctx context.Context, p statestore.OutboxStatusParams) ([]statestore.OutboxStatus, error) {
	if len(p.TargetIDs) == 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `WITH s AS (
			SELECT target_id, count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS failing,
				min(committed_at) AS oldest, min(id) FILTER (WHERE attempts > 0) AS failed
			FROM tidemark_outbox WHERE target_id IN (SELECT value FROM json_each(?)) GROUP BY target_id)
		SELECT s.target_id, s.pending, s.failing, s.oldest, `+changeColumns("f.")+`
		FROM s LEFT JOIN tidemark_outbox AS f ON f.id = s.failed
		ORDER BY s.target_id`, jsonIDs(p.TargetIDs))
	if err != nil {
		return nil, classify(fmt.Errorf("counting the changes of the outbox of %d targets: %w", len(p.TargetIDs), err))
	}
	defer rows.Close()
	var (
		out    []statestore.OutboxStatus
		oldest sql.NullInt64
		cs     changeScan
	)
	for rows.Next() {
		var st statestore.OutboxStatus
		if err := rows.Scan(append([]any{&st.TargetID, &st.Pending, &st.Failing, &oldest}, cs.dest()...)...); err != nil {
			return nil, classify(fmt.Errorf("counting the changes of the outbox of %d targets: %w", len(p.TargetIDs), err))
		}
		st.OldestAt = fromMicros(oldest)
		if c := cs.change(); c.ID != 0 {
			st.Failed = &c
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("counting the changes of the outbox of %d targets: %w", len(p.TargetIDs), err))
	}
	return out, nil
}
