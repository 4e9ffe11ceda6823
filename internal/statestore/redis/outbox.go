package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tidemark/tidemark/internal/statestore"
)

// OutboxTake implements statestore.Outbox, in one script: two workers
// never lease one change. Leases end by the server's clock, but NextAt is
// the workers': a change retried is due when the server's clock reaches
// it.
func (s *Store) OutboxTake(ctx context.Context, p statestore.OutboxTakeParams) ([]statestore.Change, error) {
	if p.Limit <= 0 || len(p.TargetIDs) == 0 {
		return nil, nil
	}
	ids := slices.Clone(p.TargetIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	steal := 0
	if p.Steal {
		steal = 1
	}
	list, err := s.runList(ctx, s.sc.outboxTake, args(ids, p.Worker, p.Limit, millis(p.TTL), steal)...)
	var out []statestore.Change
	if err == nil {
		out, err = decodeChanges(list)
	}
	if err != nil {
		return nil, fmt.Errorf("taking changes of %d targets from the outbox: %w", len(ids), err)
	}
	return out, nil
}

// OutboxDone implements statestore.Outbox, in one script whatever the
// number of changes.
func (s *Store) OutboxDone(ctx context.Context, p statestore.OutboxDoneParams) ([]int64, error) {
	if len(p.Changes) == 0 {
		return nil, nil
	}
	a := make([]any, 0, 1+2*len(p.Changes))
	a = append(a, p.Worker)
	for _, c := range p.Changes {
		a = append(a, c.ID, c.Fence)
	}
	list, err := s.runList(ctx, s.sc.outboxDone, a...)
	var lost []int64
	d := decoder{list: list}
	for err == nil && len(d.list) > 0 && d.err == nil {
		lost = append(lost, d.int())
	}
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, fmt.Errorf("removing %d delivered changes from the outbox: %w", len(p.Changes), err)
	}
	return lost, nil
}

// OutboxRetry implements statestore.Outbox.
func (s *Store) OutboxRetry(ctx context.Context, p statestore.OutboxRetryParams) error {
	_, err := s.run(ctx, s.sc.outboxRetry, p.Worker, p.Change.ID, p.Change.Fence, p.Error, micros(p.NextAt))
	if err != nil {
		return fmt.Errorf("recording a failed delivery of change %d: %w", p.Change.ID, err)
	}
	return nil
}

// OutboxStatus implements statestore.Outbox, in one script. OldestAt is
// the commit time of the undelivered change of smallest id.
func (s *Store) OutboxStatus(ctx context.Context, p statestore.OutboxStatusParams) ([]statestore.OutboxStatus, error) {
	if len(p.TargetIDs) == 0 {
		return nil, nil
	}
	ids := slices.Clone(p.TargetIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	list, err := s.runList(ctx, s.sc.outboxStatus, args(ids)...)
	var out []statestore.OutboxStatus
	for _, v := range list {
		if err != nil {
			break
		}
		var st statestore.OutboxStatus
		st, err = decodeOutboxStatus(v)
		out = append(out, st)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the outbox of %d targets: %w", len(ids), err)
	}
	sortBy(out, func(st statestore.OutboxStatus) int64 { return st.TargetID })
	return out, nil
}

// decodeOutboxStatus decodes a target's entry of outboxStatus's reply.
func decodeOutboxStatus(v any) (statestore.OutboxStatus, error) {
	list, ok := v.([]any)
	if !ok {
		return statestore.OutboxStatus{}, fmt.Errorf("unexpected reply %T for a target's outbox", v)
	}
	d := decoder{list: list}
	st := statestore.OutboxStatus{TargetID: d.int(), Pending: d.int(), Failing: d.int(), OldestAt: d.time()}
	failed, ok := d.next().([]any)
	if !ok && d.err == nil {
		d.fail(errors.New("unexpected reply for the failing change"))
	}
	if d.err != nil {
		return statestore.OutboxStatus{}, fmt.Errorf("outbox of a target: %w", d.err)
	}
	cs, err := decodeChanges(failed)
	if err != nil {
		return statestore.OutboxStatus{}, fmt.Errorf("outbox of target %d: %w", st.TargetID, err)
	}
	if len(cs) > 0 {
		st.Failed = &cs[0]
	}
	return st, nil
}

// decodeChanges decodes the changes of the scripts' change.
func decodeChanges(list []any) ([]statestore.Change, error) {
	if len(list)%changeStride != 0 {
		return nil, fmt.Errorf("reply of %d fields for changes of %d", len(list), changeStride)
	}
	out := make([]statestore.Change, 0, len(list)/changeStride)
	d := decoder{list: list}
	for len(d.list) > 0 && d.err == nil {
		c := statestore.Change{ID: d.int(), TargetID: d.int(), SourceID: d.int(), RowKey: d.string(), Key: d.string(),
			Seq: d.int(), Old: d.bytes(), New: d.bytes(), At: d.time()}
		c.Attempts, c.LastError, c.NextAt, c.Fence = int(d.int()), d.string(), d.time(), d.int()
		out = append(out, c)
	}
	return out, d.err
}
