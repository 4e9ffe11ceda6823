package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/statestore"
)

// The outbox's statements. Leases and due times are the server's (now()),
// as the coordinator's, so that the workers' clocks need not agree; a TTL
// is given in milliseconds.
type outboxQueries struct {
	changeAdd                           string
	outboxTake, outboxDone, outboxRetry string
	outboxStatus                        string
}

// changeColumns are the columns of a statestore.Change of the outbox
// aliased a, in the order changeScan reads them. A change not found (the
// NULLs of an outer join) reads as zero values.
func changeColumns(a string) string {
	return fmt.Sprintf(`coalesce(%[1]s.id, 0), coalesce(%[1]s.target_id, 0), coalesce(%[1]s.source_id, 0),
		coalesce(%[1]s.row_key, ''), coalesce(%[1]s.key, ''::bytea), coalesce(%[1]s.seq, 0), %[1]s.old_value, %[1]s.new_value,
		%[1]s.committed_at, coalesce(%[1]s.attempts, 0), coalesce(%[1]s.last_error, ''), %[1]s.next_at, coalesce(%[1]s.fence, 0)`, a)
}

func newOutboxQueries(r func(string) string) outboxQueries {
	return outboxQueries{
		// A commit's changes, in the order given, so that their ids grow
		// with it; one already kept is kept once. A change of a target
		// that no longer exists is not kept: it would have gone with its
		// target.
		changeAdd: r(`INSERT INTO {{outbox}} (target_id, source_id, row_key, key, seq, old_value, new_value, committed_at)
			SELECT u.target_id, u.source_id, u.row_key, u.key, u.seq, u.old_value, u.new_value, $1::timestamptz
			FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::bigint[], $7::bytea[], $8::bytea[]) WITH ORDINALITY
				AS u(target_id, source_id, row_key, key, seq, old_value, new_value, ord)
			WHERE EXISTS (SELECT 1 FROM {{targets}} AS t WHERE t.id = u.target_id)
			ORDER BY u.ord
			ON CONFLICT DO NOTHING`),
		// The oldest change of each state, if free (or, $5, stealing) and
		// due. SKIP LOCKED:
		// two workers taking at once take different changes, neither
		// waiting for the other. Neither takes the next change of a state
		// whose oldest the other holds: the older row is there, in the
		// snapshot of both (an older row can go, never come).
		outboxTake: r(`WITH taken AS (
				UPDATE {{outbox}} AS o SET worker = $2, fence = o.fence + 1, lease_until = now() + $4 * interval '1 millisecond'
				FROM (SELECT c.id FROM {{outbox}} AS c
					WHERE c.target_id = ANY($1::bigint[])
						AND ($5 OR c.lease_until IS NULL OR c.lease_until < now())
						AND (c.next_at IS NULL OR c.next_at <= now())
						AND NOT EXISTS (SELECT 1 FROM {{outbox}} AS e WHERE e.target_id = c.target_id AND e.key = c.key AND e.id < c.id)
					ORDER BY c.attempts > 0, c.id LIMIT $3 FOR UPDATE OF c SKIP LOCKED) AS due
				WHERE o.id = due.id
				RETURNING o.*)
			SELECT ` + changeColumns("taken") + ` FROM taken ORDER BY taken.id`),
		// A change is done by the worker that holds it, even if its lease
		// ended, as long as nobody took it since.
		outboxDone: r(`DELETE FROM {{outbox}} AS o
			USING unnest($2::bigint[], $3::bigint[]) AS mine(id, fence)
			WHERE o.id = mine.id AND o.fence = mine.fence AND o.worker = $1
			RETURNING o.id`),
		outboxRetry: r(`UPDATE {{outbox}} SET attempts = attempts + 1, last_error = $4, next_at = $5,
				worker = NULL, lease_until = NULL
			WHERE id = $2 AND fence = $3 AND worker = $1`),
		outboxStatus: r(`WITH s AS (
				SELECT target_id, count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS failing,
					min(committed_at) AS oldest, min(id) FILTER (WHERE attempts > 0) AS failed
				FROM {{outbox}} WHERE target_id = ANY($1::bigint[]) GROUP BY target_id)
			SELECT s.target_id, s.pending, s.failing, s.oldest, ` + changeColumns("f") + `
			FROM s LEFT JOIN {{outbox}} AS f ON f.id = s.failed
			ORDER BY s.target_id`),
	}
}

// changeArrays are a commit's changes as the columns unnest takes.
type changeArrays struct {
	targetIDs, sourceIDs []int64
	rowKeys              []string
	keys                 [][]byte
	seqs                 []int64
	olds, news           [][]byte
}

func newChangeArrays(cs []statestore.Change) changeArrays {
	a := changeArrays{
		targetIDs: make([]int64, len(cs)),
		sourceIDs: make([]int64, len(cs)),
		rowKeys:   make([]string, len(cs)),
		keys:      make([][]byte, len(cs)),
		seqs:      make([]int64, len(cs)),
		olds:      make([][]byte, len(cs)),
		news:      make([][]byte, len(cs)),
	}
	for i := range cs {
		c := &cs[i]
		a.targetIDs[i], a.sourceIDs[i], a.rowKeys[i], a.keys[i] = c.TargetID, c.SourceID, c.RowKey, []byte(c.Key)
		a.seqs[i], a.olds[i], a.news[i] = c.Seq, c.Old, c.New
	}
	return a
}

// changeScan reads the columns of changeColumns into a statestore.Change.
type changeScan struct {
	c          statestore.Change
	key        []byte
	at, nextAt *time.Time
	attempts   int32
}

func (s *changeScan) dest() []any {
	return []any{&s.c.ID, &s.c.TargetID, &s.c.SourceID, &s.c.RowKey, &s.key, &s.c.Seq, &s.c.Old, &s.c.New,
		&s.at, &s.attempts, &s.c.LastError, &s.nextAt, &s.c.Fence}
}

// change returns the change read, and readies s for the next.
func (s *changeScan) change() statestore.Change {
	c := s.c
	c.Key, c.At, c.NextAt, c.Attempts = string(s.key), utc(s.at), utc(s.nextAt), int(s.attempts)
	*s = changeScan{}
	return c
}

// OutboxTake implements statestore.Store, in one statement.
func (s *Store) OutboxTake(ctx context.Context, p statestore.OutboxTakeParams) ([]statestore.Change, error) {
	if len(p.TargetIDs) == 0 || p.Limit == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.o.outboxTake, p.TargetIDs, p.Worker, limit(p.Limit), p.TTL.Milliseconds(), p.Steal)
	var out []statestore.Change
	if err == nil {
		var cs changeScan
		_, err = pgx.ForEachRow(rows, cs.dest(), func() error {
			out = append(out, cs.change())
			return nil
		})
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("taking changes of the outbox of %d targets: %w", len(p.TargetIDs), err))
	}
	return out, nil
}

// OutboxDone implements statestore.Store, in one statement.
func (s *Store) OutboxDone(ctx context.Context, p statestore.OutboxDoneParams) ([]int64, error) {
	if len(p.Changes) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(p.Changes))
	fences := make([]int64, len(p.Changes))
	for i, c := range p.Changes {
		ids[i], fences[i] = c.ID, c.Fence
	}
	rows, err := s.pool.Query(ctx, s.o.outboxDone, p.Worker, ids, fences)
	var done []int64
	if err == nil {
		done, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("removing %d delivered changes from the outbox: %w", len(ids), err))
	}
	held := make(map[int64]bool, len(done))
	for _, id := range done {
		held[id] = true
	}
	var lost []int64
	for _, id := range ids {
		if !held[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// OutboxRetry implements statestore.Store.
func (s *Store) OutboxRetry(ctx context.Context, p statestore.OutboxRetryParams) error {
	var next *time.Time
	if !p.NextAt.IsZero() {
		next = &p.NextAt
	}
	if _, err := s.pool.Exec(ctx, s.o.outboxRetry, p.Worker, p.Change.ID, p.Change.Fence, cleanText(p.Error), next); err != nil {
		return classify(ctx, fmt.Errorf("recording the failed delivery of change %d of the outbox: %w", p.Change.ID, err))
	}
	return nil
}

// OutboxStatus implements statestore.Store, in one statement.
func (s *Store) OutboxStatus(ctx context.Context, p statestore.OutboxStatusParams) ([]statestore.OutboxStatus, error) {
	if len(p.TargetIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.o.outboxStatus, p.TargetIDs)
	var out []statestore.OutboxStatus
	if err == nil {
		var (
			st     statestore.OutboxStatus
			oldest time.Time
			cs     changeScan
		)
		_, err = pgx.ForEachRow(rows, append([]any{&st.TargetID, &st.Pending, &st.Failing, &oldest}, cs.dest()...), func() error {
			st.OldestAt = oldest.UTC()
			if c := cs.change(); c.ID != 0 {
				st.Failed = &c
			}
			out = append(out, st)
			st = statestore.OutboxStatus{}
			return nil
		})
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("counting the changes of the outbox of %d targets: %w", len(p.TargetIDs), err))
	}
	return out, nil
}
