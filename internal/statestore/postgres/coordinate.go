package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/statestore"
)

var _ statestore.Coordinator = (*Store)(nil)

// The coordinator's statements. Times are the server's (now()), so that
// the workers' clocks need not agree; a TTL is given in milliseconds.
type coordQueries struct {
	passOpen, passCreate, passTakeOver, passLease, passListed, passFinish string
	passFence, passProgress, passFresh, listerHeld, passRunning           string
	claimAdd, claimTake, claimRenew, claimDone                            string
	targetWriter                                                          string
}

func newCoordQueries(r func(string) string) coordQueries {
	until := `now() + $%d * interval '1 millisecond'`
	return coordQueries{
		passOpen: r(`SELECT id, lister, lister_fence, lister_until < now(), listed, mode FROM {{passes}}
			WHERE source_id = $1 AND finished_at IS NULL FOR UPDATE`),
		passCreate: r(`INSERT INTO {{passes}} (source_id, lister, lister_fence, lister_until, mode)
			VALUES ($1, $2, 1, ` + fmt.Sprintf(until, 3) + `, $4) ON CONFLICT DO NOTHING RETURNING id`),
		passTakeOver: r(`UPDATE {{passes}} SET lister = $2, lister_fence = lister_fence + 1, lister_until = ` + fmt.Sprintf(until, 3) + `
			WHERE id = $1 RETURNING lister_fence`),
		passLease: r(`UPDATE {{passes}} SET lister_until = ` + fmt.Sprintf(until, 4) + `
			WHERE id = $1 AND lister = $2 AND lister_fence = $3 AND finished_at IS NULL`),
		passListed: r(`UPDATE {{passes}} SET listed = true
			WHERE id = $1 AND lister = $2 AND lister_fence = $3 AND finished_at IS NULL`),
		passFinish: r(`UPDATE {{passes}} SET finished_at = now()
			WHERE id = $1 AND lister = $2 AND lister_fence = $3 AND finished_at IS NULL`),
		// The lister's lease, held while its claims are added: FOR SHARE
		// keeps a takeover from committing in between.
		passFresh: r(`SELECT EXISTS (SELECT 1 FROM {{passes}} WHERE source_id = $1 AND started_at > now() - $2 * interval '1 millisecond')`),
		// A commit under the lister's lease: FOR SHARE, as passFence.
		listerHeld: r(`SELECT 1 FROM {{passes}} WHERE id = $1 AND lister = $2 AND lister_fence = $3 AND finished_at IS NULL FOR SHARE`),
		passFence:  r(`SELECT 1 FROM {{passes}} WHERE id = $1 AND lister = $2 AND lister_fence = $3 AND finished_at IS NULL FOR SHARE`),
		passProgress: r(`SELECT
				count(*) FILTER (WHERE c.state = 0 OR c.state = 1 AND c.until < now()),
				count(*) FILTER (WHERE c.state = 1 AND c.until >= now()),
				count(*) FILTER (WHERE c.state = 2),
				p.listed, p.finished_at IS NOT NULL
			FROM {{passes}} AS p LEFT JOIN {{claims}} AS c ON c.pass_id = p.id
			WHERE p.id = $1 GROUP BY p.id`),
		passRunning: r(`SELECT EXISTS (SELECT 1 FROM {{passes}} AS p WHERE p.source_id = $1 AND p.finished_at IS NULL
			AND (p.lister_until >= now() OR EXISTS (SELECT 1 FROM {{claims}} AS c
				WHERE c.pass_id = p.id AND c.state = 1 AND c.until >= now())))`),
		// The writers before the statement (old, from its snapshot), and
		// the worker written in their place for the targets that exist.
		targetWriter: r(`WITH old AS (SELECT target_id, worker FROM {{writers}} WHERE target_id = ANY($1::bigint[])),
			put AS (INSERT INTO {{writers}} (target_id, worker) SELECT id, $2 FROM {{targets}} WHERE id = ANY($1::bigint[])
				ON CONFLICT (target_id) DO UPDATE SET worker = EXCLUDED.worker WHERE {{writers}}.worker <> EXCLUDED.worker)
			SELECT target_id FROM old WHERE worker <> $2 ORDER BY target_id`),
		// A key the pass has takes a listed entry that differs, and needs
		// work again if it was done (see statestore.Coordinator).
		claimAdd: r(`INSERT INTO {{claims}} AS c (pass_id, key, listed)
			SELECT DISTINCT ON (k) $1, k, l FROM unnest($2::text[], $3::bytea[]) AS u(k, l)
			ON CONFLICT (pass_id, key) DO UPDATE SET listed = EXCLUDED.listed,
				state = CASE WHEN c.state = 2 THEN 0 ELSE c.state END
			WHERE c.listed IS DISTINCT FROM EXCLUDED.listed`),
		// SKIP LOCKED: two workers taking claims at once take different
		// keys, neither waiting for the other.
		claimTake: r(`UPDATE {{claims}} AS c SET state = 1, worker = $2, fence = c.fence + 1, until = ` + fmt.Sprintf(until, 4) + `
			FROM (SELECT key FROM {{claims}} WHERE pass_id = $1 AND (state = 0 OR state = 1 AND until < now())
				ORDER BY key LIMIT $3 FOR UPDATE SKIP LOCKED) AS free
			WHERE c.pass_id = $1 AND c.key = free.key
			RETURNING c.key, c.listed, c.fence`),
		claimRenew: r(`UPDATE {{claims}} AS c SET until = ` + fmt.Sprintf(until, 5) + `
			FROM unnest($3::text[], $4::bigint[]) AS mine(key, fence)
			WHERE c.pass_id = $1 AND c.key = mine.key AND c.fence = mine.fence AND c.worker = $2 AND c.state = 1
			RETURNING c.key`),
		claimDone: r(`UPDATE {{claims}} AS c SET state = 2, until = NULL
			FROM unnest($3::text[], $4::bigint[]) AS mine(key, fence)
			WHERE c.pass_id = $1 AND c.key = mine.key AND c.fence = mine.fence AND c.worker = $2 AND c.state = 1
			RETURNING c.key`),
	}
}

// PassJoin implements statestore.Coordinator.
func (s *Store) PassJoin(ctx context.Context, p statestore.PassJoinParams) (statestore.Pass, error) {
	var pass statestore.Pass
	err := s.tx(ctx, func(tx pgx.Tx) error {
		for range 2 {
			var (
				lister  string
				fence   int64
				expired bool
			)
			err := tx.QueryRow(ctx, s.c.passOpen, p.SourceID).Scan(&pass.ID, &lister, &fence, &expired, &pass.Listed, &pass.Mode)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if p.Fresh > 0 {
					var fresh bool
					if err := tx.QueryRow(ctx, s.c.passFresh, p.SourceID, p.Fresh.Milliseconds()).Scan(&fresh); err != nil {
						return err
					}
					if fresh {
						pass = statestore.Pass{}
						return nil
					}
				}
				err = tx.QueryRow(ctx, s.c.passCreate, p.SourceID, p.Worker, p.TTL.Milliseconds(), int16(p.Mode)).Scan(&pass.ID)
				if errors.Is(err, pgx.ErrNoRows) {
					continue // another worker opened it meanwhile: join that
				}
				pass.Lister, pass.Fence, pass.Mode = true, 1, p.Mode
				return err
			case err != nil:
				return err
			case expired || lister == p.Worker:
				pass.Lister = true
				return tx.QueryRow(ctx, s.c.passTakeOver, pass.ID, p.Worker, p.TTL.Milliseconds()).Scan(&pass.Fence)
			}
			return nil
		}
		return errors.New("no open pass, and none could be opened")
	})
	if err != nil {
		return statestore.Pass{}, fmt.Errorf("joining the pass of source %d: %w", p.SourceID, err)
	}
	return pass, nil
}

// leased runs a statement of the lister's lease: ErrFenced when no row
// matched.
func (s *Store) leased(ctx context.Context, what, q string, p statestore.PassLeaseParams, args ...any) error {
	tag, err := s.pool.Exec(ctx, q, append([]any{p.PassID, p.Worker, p.Fence}, args...)...)
	if err != nil {
		return classify(ctx, fmt.Errorf("%s of pass %d: %w", what, p.PassID, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s of pass %d: %w", what, p.PassID, statestore.ErrFenced)
	}
	return nil
}

// PassLease implements statestore.Coordinator.
func (s *Store) PassLease(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "renewing the listing lease", s.c.passLease, p, p.TTL.Milliseconds())
}

// PassListed implements statestore.Coordinator.
func (s *Store) PassListed(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "ending the listing", s.c.passListed, p)
}

// PassFinish implements statestore.Coordinator.
func (s *Store) PassFinish(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "finishing", s.c.passFinish, p)
}

// PassEnqueue implements statestore.Coordinator.
func (s *Store) PassEnqueue(ctx context.Context, p statestore.PassEnqueueParams) error {
	keys := make([]string, len(p.Items))
	listed := make([][]byte, len(p.Items))
	for i, it := range p.Items {
		keys[i], listed[i] = it.Key, it.Listed
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, s.c.passFence, p.PassID, p.Worker, p.Fence).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return statestore.ErrFenced
		} else if err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.c.claimAdd, p.PassID, keys, listed)
		return err
	})
	if err != nil {
		return fmt.Errorf("enqueuing %d keys in pass %d: %w", len(p.Items), p.PassID, err)
	}
	return nil
}

// fenced checks, in a commit's transaction, that the worker holds what
// f names, and marks its claims done: a *statestore.FencedError when it
// does not.
func (s *Store) fenced(ctx context.Context, tx pgx.Tx, f *statestore.CommitFence) error {
	if f.Lister != 0 {
		var one int
		err := tx.QueryRow(ctx, s.c.listerHeld, f.PassID, f.Worker, f.Lister).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return &statestore.FencedError{Lease: true}
		}
		if err != nil {
			return fmt.Errorf("checking the listing lease of pass %d: %w", f.PassID, err)
		}
	}
	if len(f.Claims) == 0 {
		return nil
	}
	keys := make([]string, len(f.Claims))
	fences := make([]int64, len(f.Claims))
	for i, c := range f.Claims {
		keys[i], fences[i] = c.Key, c.Fence
	}
	rows, err := tx.Query(ctx, s.c.claimDone, f.PassID, f.Worker, keys, fences)
	if err != nil {
		return fmt.Errorf("ending %d claims of pass %d: %w", len(keys), f.PassID, err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("ending %d claims of pass %d: %w", len(keys), f.PassID, err)
	}
	if lost := missing(keys, held); len(lost) > 0 {
		return &statestore.FencedError{Keys: lost}
	}
	return nil
}

// missing returns the keys of want that got lacks, in want's order.
func missing(want, got []string) []string {
	have := make(map[string]bool, len(got))
	for _, k := range got {
		have[k] = true
	}
	var out []string
	for _, k := range want {
		if !have[k] {
			out = append(out, k)
		}
	}
	return out
}

// PassRunning implements statestore.Coordinator.
func (s *Store) PassRunning(ctx context.Context, p statestore.PassRunningParams) (bool, error) {
	var running bool
	if err := s.pool.QueryRow(ctx, s.c.passRunning, p.SourceID).Scan(&running); err != nil {
		return false, classify(ctx, fmt.Errorf("looking for a running pass of source %d: %w", p.SourceID, err))
	}
	return running, nil
}

// TargetWriter implements statestore.Coordinator, in one statement.
func (s *Store) TargetWriter(ctx context.Context, p statestore.TargetWriterParams) ([]int64, error) {
	if len(p.TargetIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.c.targetWriter, p.TargetIDs, p.Worker)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("recording the writer of %d targets: %w", len(p.TargetIDs), err))
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("recording the writer of %d targets: %w", len(p.TargetIDs), err))
	}
	return others, nil
}

// PassProgress implements statestore.Coordinator.
func (s *Store) PassProgress(ctx context.Context, p statestore.PassProgressParams) (statestore.PassProgress, error) {
	var pr statestore.PassProgress
	err := s.pool.QueryRow(ctx, s.c.passProgress, p.PassID).Scan(&pr.Pending, &pr.Claimed, &pr.Done, &pr.Listed, &pr.Finished)
	if errors.Is(err, pgx.ErrNoRows) {
		return pr, fmt.Errorf("pass %d: %w", p.PassID, statestore.ErrNotFound)
	}
	if err != nil {
		return pr, classify(ctx, fmt.Errorf("counting the claims of pass %d: %w", p.PassID, err))
	}
	return pr, nil
}

// ClaimTake implements statestore.Coordinator.
func (s *Store) ClaimTake(ctx context.Context, p statestore.ClaimTakeParams) ([]statestore.Claim, error) {
	rows, err := s.pool.Query(ctx, s.c.claimTake, p.PassID, p.Worker, p.Limit, p.TTL.Milliseconds())
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("claiming keys of pass %d: %w", p.PassID, err))
	}
	claims, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (statestore.Claim, error) {
		var c statestore.Claim
		err := row.Scan(&c.Key, &c.Listed, &c.Fence)
		return c, err
	})
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("claiming keys of pass %d: %w", p.PassID, err))
	}
	return claims, nil
}

// ClaimRenew implements statestore.Coordinator.
func (s *Store) ClaimRenew(ctx context.Context, p statestore.ClaimRenewParams) ([]string, error) {
	return s.claims(ctx, "renewing", s.c.claimRenew, p.PassID, p.Worker, p.Claims, p.TTL.Milliseconds())
}

// ClaimDone implements statestore.Coordinator.
func (s *Store) ClaimDone(ctx context.Context, p statestore.ClaimDoneParams) ([]string, error) {
	return s.claims(ctx, "ending", s.c.claimDone, p.PassID, p.Worker, p.Claims)
}

// claims runs a statement on claims the worker holds, and returns those it
// no longer does: the ones the statement did not match.
func (s *Store) claims(ctx context.Context, what, q string, pass int64, worker string, refs []statestore.ClaimRef, args ...any) ([]string, error) {
	keys := make([]string, len(refs))
	fences := make([]int64, len(refs))
	for i, c := range refs {
		keys[i], fences[i] = c.Key, c.Fence
	}
	rows, err := s.pool.Query(ctx, q, append([]any{pass, worker, keys, fences}, args...)...)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("%s %d claims of pass %d: %w", what, len(refs), pass, err))
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("%s %d claims of pass %d: %w", what, len(refs), pass, err))
	}
	return missing(keys, held), nil
}
