package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tidemark/tidemark/internal/statestore"
)

var _ statestore.Coordinator = (*Store)(nil)

// passHistory is how many passes of a source are kept, the open one
// among them: a pass older than that is forgotten when a new one opens,
// and PassProgress no longer finds it. A finished pass keeps only its
// hash, with its counts.
const passHistory = 20

// millis is d in whole milliseconds, as the coordinator's scripts take
// their TTLs, rounded up: a positive duration is at least 1.
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// PassJoin implements statestore.Coordinator in one script: it joins the
// source's open pass, taking its listing lease over when the lease ended
// or is the caller's, or else opens a pass (unless the last one is
// fresh), forgetting the oldest of the source's passes beyond
// passHistory. The source must exist: ErrNotFound otherwise.
func (s *Store) PassJoin(ctx context.Context, p statestore.PassJoinParams) (statestore.Pass, error) {
	list, err := s.runList(ctx, s.sc.passJoin, p.SourceID, p.Worker, millis(p.TTL), millis(p.Fresh), passHistory, p.Mode)
	var pass statestore.Pass
	if err == nil {
		d := decoder{list: list}
		pass = statestore.Pass{ID: d.int(), Lister: d.int() == 1, Fence: d.int(), Listed: d.int() == 1, Mode: uint8(d.int())}
		err = d.err
	}
	if err != nil {
		return statestore.Pass{}, fmt.Errorf("joining the pass of source %d: %w", p.SourceID, err)
	}
	return pass, nil
}

// leased runs a script of the lister's lease, whose ARGV are the pass,
// the worker and the fence, then tail: ErrFenced when it replies 0.
func (s *Store) leased(ctx context.Context, what string, sc *goredis.Script, p statestore.PassLeaseParams, tail ...any) error {
	v, err := s.run(ctx, sc, args(tail, p.PassID, p.Worker, p.Fence)...)
	n, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err == nil && n == 0 {
		err = statestore.ErrFenced
	}
	if err != nil {
		return fmt.Errorf("%s of pass %d: %w", what, p.PassID, err)
	}
	return nil
}

// PassLease implements statestore.Coordinator.
func (s *Store) PassLease(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "renewing the listing lease", s.sc.passLease, p, millis(p.TTL))
}

// PassListed implements statestore.Coordinator.
func (s *Store) PassListed(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "ending the listing", s.sc.passListed, p)
}

// PassFinish implements statestore.Coordinator. The pass's claims are
// forgotten with it; its hash stays, with its counts, for PassProgress.
func (s *Store) PassFinish(ctx context.Context, p statestore.PassLeaseParams) error {
	return s.leased(ctx, "finishing", s.sc.passFinish, p)
}

// PassEnqueue implements statestore.Coordinator, in one script whatever
// the number of keys.
func (s *Store) PassEnqueue(ctx context.Context, p statestore.PassEnqueueParams) error {
	tail := make([]any, 0, 2*len(p.Items))
	for _, it := range p.Items {
		tail = append(tail, it.Key, opt(it.Listed))
	}
	return s.leased(ctx, fmt.Sprintf("enqueuing %d keys", len(p.Items)), s.sc.passEnqueue, p.PassLeaseParams, tail...)
}

// PassProgress implements statestore.Coordinator. A finished pass
// reports its counts when it finished; a pass forgotten (see
// passHistory) is not found.
func (s *Store) PassProgress(ctx context.Context, p statestore.PassProgressParams) (statestore.PassProgress, error) {
	list, err := s.runList(ctx, s.sc.passProgress, p.PassID)
	var pr statestore.PassProgress
	if err == nil {
		d := decoder{list: list}
		pr = statestore.PassProgress{Pending: d.int(), Claimed: d.int(), Done: d.int(), Listed: d.int() == 1, Finished: d.int() == 1}
		err = d.err
	}
	if err != nil {
		return statestore.PassProgress{}, fmt.Errorf("counting the claims of pass %d: %w", p.PassID, err)
	}
	return pr, nil
}

// PassRunning implements statestore.Coordinator.
func (s *Store) PassRunning(ctx context.Context, p statestore.PassRunningParams) (bool, error) {
	v, err := s.run(ctx, s.sc.passRunning, p.SourceID)
	if err != nil {
		return false, fmt.Errorf("looking for a running pass of source %d: %w", p.SourceID, err)
	}
	n, ok := v.(int64)
	if !ok {
		return false, fmt.Errorf("looking for a running pass of source %d: a reply of %T", p.SourceID, v)
	}
	return n == 1, nil
}

// TargetWriter implements statestore.Coordinator, in one script.
func (s *Store) TargetWriter(ctx context.Context, p statestore.TargetWriterParams) ([]int64, error) {
	if len(p.TargetIDs) == 0 {
		return nil, nil
	}
	a := make([]any, 0, 1+len(p.TargetIDs))
	a = append(a, p.Worker)
	for _, id := range p.TargetIDs {
		a = append(a, id)
	}
	list, err := s.runList(ctx, s.sc.targetWriter, a...)
	var others []int64
	d := decoder{list: list}
	for err == nil && len(d.list) > 0 && d.err == nil {
		others = append(others, d.int())
	}
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, fmt.Errorf("recording the writer of %d targets: %w", len(p.TargetIDs), err)
	}
	slices.Sort(others)
	return others, nil
}

// ClaimTake implements statestore.Coordinator.
func (s *Store) ClaimTake(ctx context.Context, p statestore.ClaimTakeParams) ([]statestore.Claim, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	list, err := s.runList(ctx, s.sc.claimTake, p.PassID, p.Worker, p.Limit, millis(p.TTL))
	if err == nil && len(list)%3 != 0 {
		err = fmt.Errorf("reply of %d fields for claims of 3", len(list))
	}
	var out []statestore.Claim
	d := decoder{list: list}
	for err == nil && len(d.list) > 0 && d.err == nil {
		out = append(out, statestore.Claim{Key: d.string(), Listed: replyOpt(d.next()), Fence: d.int()})
	}
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, fmt.Errorf("claiming keys of pass %d: %w", p.PassID, err)
	}
	return out, nil
}

// ClaimRenew implements statestore.Coordinator.
func (s *Store) ClaimRenew(ctx context.Context, p statestore.ClaimRenewParams) ([]string, error) {
	return s.claims(ctx, "renewing", s.sc.claimRenew, p.Claims, p.PassID, p.Worker, millis(p.TTL))
}

// ClaimDone implements statestore.Coordinator.
func (s *Store) ClaimDone(ctx context.Context, p statestore.ClaimDoneParams) ([]string, error) {
	return s.claims(ctx, "ending", s.sc.claimDone, p.Claims, p.PassID, p.Worker)
}

// claims runs a script on claims a worker holds, whose ARGV are head then
// each claim's key and fence, and returns the keys it replies, those the
// worker no longer holds.
func (s *Store) claims(ctx context.Context, what string, sc *goredis.Script, refs []statestore.ClaimRef, pass int64, head ...any) ([]string, error) {
	a := make([]any, 0, 1+len(head)+2*len(refs))
	a = append(append(a, pass), head...)
	a = appendRefs(a, refs)
	list, err := s.runList(ctx, sc, a...)
	if err != nil {
		return nil, fmt.Errorf("%s %d claims of pass %d: %w", what, len(refs), pass, err)
	}
	return replyStrings(list), nil
}

// appendRefs appends each claim's key and fence to a.
func appendRefs(a []any, refs []statestore.ClaimRef) []any {
	for _, c := range refs {
		a = append(a, c.Key, c.Fence)
	}
	return a
}

// replyStrings decodes a list of strings; nil for an empty one.
func replyStrings(list []any) []string {
	var out []string
	for _, v := range list {
		out = append(out, replyString(v))
	}
	return out
}

// fenceArgs returns the ARGV of commitFenced before those of the commit.
func fenceArgs(f *statestore.CommitFence, size int) []any {
	a := make([]any, 0, 4+2*len(f.Claims)+size)
	a = append(a, f.PassID, f.Worker, f.Lister, len(f.Claims))
	return appendRefs(a, f.Claims)
}

// fenced decodes commitFenced's reply: nil when the commit landed, else
// the *statestore.FencedError it says.
func fenced(v any) error {
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	if len(list) == 0 {
		return fmt.Errorf("unexpected empty reply")
	}
	lease, err := replyInt(list[0])
	if err != nil {
		return err
	}
	return &statestore.FencedError{Keys: replyStrings(list[1:]), Lease: lease == 1}
}
