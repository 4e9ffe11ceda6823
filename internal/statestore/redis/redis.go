// Package redis is the Redis driver of Tidemark's state store: the state
// lives in keys of one Redis database, all starting with a prefix
// ("{tidemark}:" by default), so that several processes and machines can
// share it, and several stores one database.
//
// Each method is one Lua script (see scripts.go for the keys and the
// scripts), which Redis runs whole with nothing in between: a write method
// happens whole or not at all, and a read sees one state, in one round trip
// whatever the number of rows. The keys of a store share one hash tag, its
// prefix in braces, so that a script's keys are on one shard.
//
// The store is a statestore.Coordinator too: several workers can share a
// source's passes through it, each method one script as well. Its leases
// and claims expire by the server's clock (TIME), not the workers'. A
// finished pass keeps only its counts, and a source only its last
// passHistory passes, so that the memory a source takes does not grow
// with its passes.
//
// The store is a statestore.Outbox too. Each target keeps the ids of its
// states' heads (the oldest change of each) in two sorted sets: those free
// to take, by id, and those leased or waiting for a retry, by when they
// are free again. A take moves the heads free again to the first and reads
// the first Limit of it per target asked, so that its cost grows with what
// it takes and frees, not with the size of the outbox.
//
// Redis keeps its data in memory. A store that must outlive a restart of
// the server needs the server's append-only file (appendonly yes,
// appendfsync everysec or always) and maxmemory-policy noeviction: a
// server that evicts keys under memory pressure, or loses them in a
// restart, loses state (see docs/engine.md, "State store").
package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/statestore"
	"github.com/tidemark/tidemark/target"
)

// DefaultPrefix names the store when no prefix is given.
const DefaultPrefix = "tidemark"

// DefaultLockTTL is how long a flow's lock outlives its holder's last
// renewal when Config.LockTTL is zero.
const DefaultLockTTL = 30 * time.Second

// minLockTTL bounds Config.LockTTL from below: the heartbeat renews the
// lock every third of it.
const minLockTTL = 100 * time.Millisecond

// maxPrefixLen bounds a prefix's length.
const maxPrefixLen = 64

// layoutVersion is the version of the keys' layout this driver writes,
// recorded in P:meta; a store of a later version is refused.
const layoutVersion = 1

// PrefixParam is the URL query parameter naming the store's prefix, as in
// redis://127.0.0.1:6379/0?prefix=myapp.
const PrefixParam = "prefix"

// Config configures a store; the zero value takes the defaults.
type Config struct {
	// Prefix names the store within its database: every key starts with
	// "{Prefix}:". Default DefaultPrefix. It is 1 to 64 ASCII letters,
	// digits, '_', '-' and '.'. A URL's prefix parameter, when present,
	// must agree with it.
	Prefix string
	// LockTTL is how long a flow's lock outlives its holder's last
	// renewal, its heartbeat renewing it every third of it. Default
	// DefaultLockTTL; at least 100ms.
	LockTTL time.Duration
}

// Store is a state store in a Redis database.
type Store struct {
	rdb     *goredis.Client
	prefix  string // as configured
	p       string // the prefix of every key, in braces: KEYS[1] of the scripts
	lockTTL time.Duration
	sc      *scriptSet
}

var _ statestore.Store = (*Store)(nil)

// Open connects to the Redis database at rawURL, redis://[user:password@]host:port/N
// or rediss:// for TLS (the query may carry go-redis's options and the
// prefix parameter), and opens the store in it, recording its layout's
// version on first use. Close closes the connections.
func Open(ctx context.Context, rawURL string, cfg Config) (*Store, error) {
	opts, prefix, err := parseURL(rawURL, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	ttl := cfg.LockTTL
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	if ttl < minLockTTL {
		return nil, fmt.Errorf("redis state store: LockTTL must be at least %s, got %s", minLockTTL, ttl)
	}
	s := &Store{rdb: goredis.NewClient(opts), prefix: prefix, p: "{" + prefix + "}", lockTTL: ttl, sc: newScripts()}
	v, err := s.sc.open.Run(ctx, s.rdb, s.keys(), layoutVersion, micros(time.Now())).Text()
	if err == nil {
		err = checkVersion(v)
	}
	if err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("redis state store %s: %w", prefix, classify(ctx, err))
	}
	return s, nil
}

// Exists reports whether the Redis database at rawURL holds a state store
// under prefix ("" meaning DefaultPrefix, or the URL's prefix parameter),
// writing nothing.
func Exists(ctx context.Context, rawURL string, prefix string) (bool, error) {
	opts, prefix, err := parseURL(rawURL, prefix)
	if err != nil {
		return false, err
	}
	rdb := goredis.NewClient(opts)
	defer rdb.Close()
	n, err := rdb.Exists(ctx, "{"+prefix+"}:meta").Result()
	if err != nil {
		return false, fmt.Errorf("redis state store: looking for prefix %s: %w", prefix, classify(ctx, err))
	}
	return n > 0, nil
}

// checkVersion refuses a store whose layout is newer than this driver's.
func checkVersion(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("reading the layout version: %q is not a number", v)
	}
	if n > layoutVersion {
		return fmt.Errorf("layout version %d is newer than this Tidemark knows (%d); upgrade Tidemark", n, layoutVersion)
	}
	return nil
}

// parseURL returns the client options of rawURL and the store's prefix:
// the URL's prefix parameter, taken out of the options, or else prefix,
// or else DefaultPrefix. The client's own retries, of commands and of
// dials, are turned off unless the URL asks for them (max_retries): the
// engine retries, with its backoff, checking its lock before each attempt.
func parseURL(rawURL, prefix string) (*goredis.Options, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", errors.New("redis state store: the URL cannot be parsed")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	q := u.Query()
	if q.Has(PrefixParam) {
		p := q.Get(PrefixParam)
		if prefix != "" && prefix != p {
			return nil, "", fmt.Errorf("redis state store: the URL's prefix %q and the configured prefix %q differ", p, prefix)
		}
		prefix = p
		q.Del(PrefixParam)
		u.RawQuery = q.Encode()
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, "", err
	}
	opts, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, "", fmt.Errorf("redis state store: %w", err)
	}
	if !q.Has("max_retries") {
		opts.MaxRetries = -1
		opts.DialerRetries = 1
	}
	opts.DisableIdentity = true // CLIENT SETINFO: Redis 7.2 and later only
	return opts, prefix, nil
}

// checkPrefix says why name is not a prefix the store accepts.
func checkPrefix(name string) error {
	if name == "" || len(name) > maxPrefixLen {
		return fmt.Errorf("redis state store: invalid prefix %q: it must be 1 to %d characters long", name, maxPrefixLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			continue
		}
		return fmt.Errorf("redis state store: invalid prefix %q: character %q at byte %d; use ASCII letters, digits, '_', '-' and '.'", name, c, i)
	}
	return nil
}

// Close closes the store's connections.
func (s *Store) Close() error { return s.rdb.Close() }

// Prefix returns the store's prefix.
func (s *Store) Prefix() string { return s.prefix }

// keys are the KEYS of every script: the prefix.
func (s *Store) keys() []string { return []string{s.p} }

// run runs a script; its errors are classified, and a script's not-found
// reply matches statestore.ErrNotFound.
func (s *Store) run(ctx context.Context, sc *goredis.Script, args ...any) (any, error) {
	v, err := sc.Run(ctx, s.rdb, s.keys(), args...).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil && strings.HasPrefix(err.Error(), notFound) {
		return nil, fmt.Errorf("%s: %w", strings.TrimPrefix(err.Error(), notFound+" "), statestore.ErrNotFound)
	}
	return v, classify(ctx, err)
}

// runList runs a script that returns a list.
func (s *Store) runList(ctx context.Context, sc *goredis.Script, args ...any) ([]any, error) {
	v, err := s.run(ctx, sc, args...)
	if err != nil || v == nil {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected reply %T", v)
	}
	return list, nil
}

// retryablePrefixes start the error replies a retry may fix: the server is
// loading its data, running a long script, in a failover, or has as many
// clients as it takes.
var retryablePrefixes = []string{"LOADING ", "BUSY ", "TRYAGAIN ", "CLUSTERDOWN ", "MASTERDOWN ", "READONLY ", "max number of clients reached"}

// classify marks errors a retry may fix: a connection refused, reset or
// timed out, a server loading its data, busy with a script, or in a
// failover. An error after ctx ended never is: retrying cannot outlive
// the context.
func classify(ctx context.Context, err error) error {
	if err == nil || retry.Is(err) || ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, goredis.ErrClosed) {
		return err
	}
	if errors.Is(err, goredis.ErrPoolTimeout) || errors.Is(err, goredis.ErrPoolExhausted) {
		return retry.Mark(err)
	}
	if _, ok := errors.AsType[goredis.Error](err); ok {
		for _, prefix := range retryablePrefixes {
			if goredis.HasErrorPrefix(err, prefix) {
				return retry.Mark(err)
			}
		}
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return retry.Mark(err)
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return retry.Mark(err)
	}
	return err
}

func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// opt encodes an optional value for a script: "" for nil, else "=" and
// the value.
func opt(b []byte) string {
	if b == nil {
		return ""
	}
	return "=" + string(b)
}

// replyOpt decodes a value encoded by opt.
func replyOpt(v any) []byte {
	s := replyString(v)
	if s == "" {
		return nil
	}
	return []byte(s[1:])
}

// optInt is opt for an ordinal.
func optInt(p *int64) string {
	if p == nil {
		return ""
	}
	return "=" + strconv.FormatInt(*p, 10)
}

// member is an ownership as a member of a target's owners: the key hash,
// then the row id in 8 big-endian bytes.
func member(k statestore.OwnerKey, rowID int64) string {
	var b [24]byte
	copy(b[:16], k.KeyHash[:])
	for i := range 8 {
		b[16+i] = byte(uint64(rowID) >> (56 - 8*i))
	}
	return string(b[:])
}

// memberRow returns the row id of a member.
func memberRow(m string) (int64, error) {
	if len(m) != 24 {
		return 0, fmt.Errorf("ownership of %d bytes, not 24", len(m))
	}
	var id uint64
	for i := range 8 {
		id = id<<8 | uint64(m[16+i])
	}
	return int64(id), nil
}

// The decoders of script replies. Redis turns a Lua string into a bulk
// string, a number into an integer and false into nil.

func replyBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case int64:
		return []byte(strconv.FormatInt(v, 10))
	}
	return nil
}

func replyString(v any) string { return string(replyBytes(v)) }

func replyInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected reply %q: not an integer", v)
		}
		return n, nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("unexpected reply %T: not an integer", v)
}

func replyIntPtr(v any) (*int64, error) {
	if v == nil {
		return nil, nil
	}
	n, err := replyInt(v)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func replyTime(v any) (time.Time, error) {
	if v == nil {
		return time.Time{}, nil
	}
	n, err := replyInt(v)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMicro(n).UTC(), nil
}

// decoder reads the fields of a flat reply in turn, keeping its first
// error.
type decoder struct {
	list []any
	err  error
}

func (d *decoder) next() any {
	if len(d.list) == 0 {
		d.fail(errors.New("reply too short"))
		return nil
	}
	v := d.list[0]
	d.list = d.list[1:]
	return v
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) int() int64 {
	n, err := replyInt(d.next())
	d.fail(err)
	return n
}

func (d *decoder) intPtr() *int64 {
	n, err := replyIntPtr(d.next())
	d.fail(err)
	return n
}

func (d *decoder) time() time.Time {
	t, err := replyTime(d.next())
	d.fail(err)
	return t
}

func (d *decoder) bytes() []byte  { return replyBytes(d.next()) }
func (d *decoder) string() string { return replyString(d.next()) }

// FlowGet implements statestore.Store.
func (s *Store) FlowGet(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	v, err := s.run(ctx, s.sc.flowGet, p.Flow)
	gen, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err != nil {
		return statestore.Flow{}, fmt.Errorf("getting flow %s: %w", p.Flow, err)
	}
	return statestore.Flow{Name: p.Flow, Gen: gen}, nil
}

// FlowFind implements statestore.Store.
func (s *Store) FlowFind(ctx context.Context, p statestore.FlowGetParams) (statestore.Flow, error) {
	v, err := s.rdb.HGet(ctx, s.p+":gens", p.Flow).Result()
	if errors.Is(err, goredis.Nil) {
		return statestore.Flow{}, fmt.Errorf("flow %s: %w", p.Flow, statestore.ErrNotFound)
	}
	gen, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err != nil {
		return statestore.Flow{}, fmt.Errorf("finding flow %s: %w", p.Flow, classify(ctx, err))
	}
	return statestore.Flow{Name: p.Flow, Gen: gen}, nil
}

// FlowDrop implements statestore.Store.
func (s *Store) FlowDrop(ctx context.Context, p statestore.FlowDropParams) error {
	if _, err := s.run(ctx, s.sc.flowDrop, p.Flow); err != nil {
		return fmt.Errorf("dropping flow %s: %w", p.Flow, err)
	}
	return nil
}

// SourceEnsure implements statestore.Store.
func (s *Store) SourceEnsure(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	v, err := s.run(ctx, s.sc.sourceEnsure, p.Flow, p.Name)
	id, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err != nil {
		return 0, fmt.Errorf("registering source %s/%s: %w", p.Flow, p.Name, err)
	}
	return id, nil
}

// SourceFind implements statestore.Store.
func (s *Store) SourceFind(ctx context.Context, p statestore.SourceEnsureParams) (int64, error) {
	v, err := s.run(ctx, s.sc.sourceFind, p.Flow, p.Name)
	if err == nil && v == nil {
		return 0, fmt.Errorf("source %s/%s: %w", p.Flow, p.Name, statestore.ErrNotFound)
	}
	id, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err != nil {
		return 0, fmt.Errorf("finding source %s/%s: %w", p.Flow, p.Name, err)
	}
	return id, nil
}

// SourceStatus implements statestore.Store.
func (s *Store) SourceStatus(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceStatus, error) {
	var st statestore.SourceStatus
	src := s.p + ":s:" + strconv.FormatInt(p.SourceID, 10)
	if p.FailingOnly {
		n, err := s.rdb.ZCard(ctx, src+":failing").Result()
		if err != nil {
			return st, fmt.Errorf("reading the status of source %d: %w", p.SourceID, classify(ctx, err))
		}
		st.Failing = n
		return st, nil
	}
	var (
		done, failing *goredis.IntCmd
		last          *goredis.ZSliceCmd
	)
	_, err := s.rdb.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		done = pipe.ZCard(ctx, src+":done")
		failing = pipe.ZCard(ctx, src+":failing")
		last = pipe.ZRevRangeWithScores(ctx, src+":done", 0, 0)
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("reading the status of source %d: %w", p.SourceID, classify(ctx, err))
	}
	st.Rows, st.Failing = done.Val(), failing.Val()
	if z := last.Val(); len(z) > 0 {
		st.LastProcessedAt = time.UnixMicro(int64(z[0].Score)).UTC()
	}
	return st, nil
}

// SourceNotesGet implements statestore.Store.
func (s *Store) SourceNotesGet(ctx context.Context, p statestore.SourceStatusParams) (statestore.SourceNotes, error) {
	v, err := s.rdb.HMGet(ctx, s.p+":s:"+strconv.FormatInt(p.SourceID, 10), "opt", "lu").Result()
	if err != nil {
		return statestore.SourceNotes{}, fmt.Errorf("reading the notes of source %d: %w", p.SourceID, classify(ctx, err))
	}
	return statestore.SourceNotes{Options: replyBytes(v[0]), LastUpdate: replyBytes(v[1])}, nil
}

// SourceNotesSave implements statestore.Store.
func (s *Store) SourceNotesSave(ctx context.Context, p statestore.SourceNotesSaveParams) error {
	if _, err := s.run(ctx, s.sc.sourceNotesSave, p.SourceID, opt(p.Options), opt(p.LastUpdate)); err != nil {
		return fmt.Errorf("saving the notes of source %d: %w", p.SourceID, err)
	}
	return nil
}

// decodeTarget decodes a target as the scripts' target() gives it.
func decodeTarget(v any) (statestore.Target, error) {
	list, ok := v.([]any)
	if !ok {
		return statestore.Target{}, fmt.Errorf("unexpected reply %T for a target", v)
	}
	d := decoder{list: list}
	t := statestore.Target{ID: d.int(), Flow: d.string(), Kind: d.string(), Key: d.string(), ParentID: d.int()}
	t.Exists = d.next() != nil
	t.Record = d.bytes()
	t.DestroyedGen, t.LostGen, t.UpdatedAt = d.int(), d.int(), d.time()
	staged, ok := d.next().([]any)
	if !ok && d.err == nil {
		d.fail(errors.New("unexpected reply for the staged records"))
	}
	for _, r := range staged {
		t.Staged = append(t.Staged, replyOpt(r))
	}
	if d.err != nil {
		return statestore.Target{}, fmt.Errorf("target: %w", d.err)
	}
	return t, nil
}

// TargetList implements statestore.Store.
func (s *Store) TargetList(ctx context.Context, p statestore.TargetListParams) ([]statestore.Target, error) {
	list, err := s.runList(ctx, s.sc.targetList, p.Flow)
	var out []statestore.Target
	for _, v := range list {
		if err != nil {
			break
		}
		var t statestore.Target
		t, err = decodeTarget(v)
		out = append(out, t)
	}
	if err != nil {
		return nil, fmt.Errorf("listing the targets of flow %s: %w", p.Flow, err)
	}
	sortBy(out, func(t statestore.Target) int64 { return t.ID })
	return out, nil
}

// TargetStage implements statestore.Store.
func (s *Store) TargetStage(ctx context.Context, p statestore.TargetStageParams) (statestore.Target, error) {
	v, err := s.run(ctx, s.sc.targetStage, p.Flow, p.Kind, p.Key, p.ParentID, opt(p.Record), micros(time.Now()))
	var t statestore.Target
	if err == nil {
		t, err = decodeTarget(v)
	}
	if err != nil {
		return statestore.Target{}, fmt.Errorf("staging target %s of flow %s: %w", p.Key, p.Flow, err)
	}
	return t, nil
}

// TargetCommit implements statestore.Store.
func (s *Store) TargetCommit(ctx context.Context, p statestore.TargetCommitParams) (statestore.TargetCommitResult, error) {
	exists, record := "0", ""
	if p.Exists {
		exists, record = "1", opt(p.Record)
	}
	inv := "none"
	switch p.Invalidate {
	case target.InvalidateNone:
	case target.InvalidateLossy:
		inv = "lossy"
	case target.InvalidateDestructive:
		inv = "destructive"
	default:
		return statestore.TargetCommitResult{}, fmt.Errorf("committing target %d of flow %s: unknown invalidation %v", p.ID, p.Flow, p.Invalidate)
	}
	v, err := s.run(ctx, s.sc.targetCommit, p.Flow, p.ID, exists, record, inv, micros(time.Now()))
	gen, derr := replyInt(v)
	if err == nil {
		err = derr
	}
	if err != nil {
		return statestore.TargetCommitResult{}, fmt.Errorf("committing target %d of flow %s: %w", p.ID, p.Flow, err)
	}
	return statestore.TargetCommitResult{Gen: gen}, nil
}

// decodeRowMetas decodes the rows of the scripts' rowmeta.
func decodeRowMetas(list []any) ([]statestore.RowMeta, error) {
	if len(list)%rowMetaStride != 0 {
		return nil, fmt.Errorf("reply of %d fields for rows of %d", len(list), rowMetaStride)
	}
	out := make([]statestore.RowMeta, 0, len(list)/rowMetaStride)
	d := decoder{list: list}
	for len(d.list) > 0 && d.err == nil {
		m := statestore.RowMeta{ID: d.int(), Key: d.string(), Ordinal: d.intPtr(), ContentFP: d.bytes(), LogicFP: d.bytes(), Gen: d.int()}
		m.Staged = d.int() == 1
		m.ErrorCount = d.int()
		out = append(out, m)
	}
	return out, d.err
}

// decodeRowInfos decodes the rows of the scripts' rowinfo.
func decodeRowInfos(list []any) ([]statestore.RowInfo, error) {
	if len(list)%rowInfoStride != 0 {
		return nil, fmt.Errorf("reply of %d fields for rows of %d", len(list), rowInfoStride)
	}
	out := make([]statestore.RowInfo, 0, len(list)/rowInfoStride)
	d := decoder{list: list}
	for len(d.list) > 0 && d.err == nil {
		r := statestore.RowInfo{ID: d.int(), SourceID: d.int(), Key: d.string(), Ordinal: d.intPtr(),
			ContentFP: d.bytes(), LogicFP: d.bytes(), Gen: d.int(), Tracking: d.bytes(), Staged: d.bytes(),
			Error: d.string(), ErrorCount: d.int(), ErrorAt: d.time(), ProcessedAt: d.time()}
		out = append(out, r)
	}
	return out, d.err
}

// sortBy sorts s by ascending id.
func sortBy[T any](s []T, id func(T) int64) {
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(id(a), id(b)) })
}

// args returns head followed by the elements of tail.
func args[T any](tail []T, head ...any) []any {
	out := make([]any, 0, len(head)+len(tail))
	out = append(out, head...)
	for _, v := range tail {
		out = append(out, v)
	}
	return out
}

// RowLookup implements statestore.Store.
func (s *Store) RowLookup(ctx context.Context, p statestore.RowLookupParams) ([]statestore.RowMeta, error) {
	if len(p.Keys) == 0 {
		return []statestore.RowMeta{}, nil
	}
	list, err := s.runList(ctx, s.sc.rowLookup, args(p.Keys, p.SourceID)...)
	var out []statestore.RowMeta
	if err == nil {
		out, err = decodeRowMetas(list)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %d rows of source %d: %w", len(p.Keys), p.SourceID, err)
	}
	return out, nil
}

// RowLoad implements statestore.Store.
func (s *Store) RowLoad(ctx context.Context, p statestore.RowLoadParams) ([]statestore.RowTracking, error) {
	out := make([]statestore.RowTracking, 0, len(p.IDs))
	if len(p.IDs) == 0 {
		return out, nil
	}
	list, err := s.runList(ctx, s.sc.rowLoad, args(p.IDs)...)
	if err == nil && len(list)%3 != 0 {
		err = fmt.Errorf("reply of %d fields for rows of 3", len(list))
	}
	d := decoder{list: list}
	for err == nil && len(d.list) > 0 && d.err == nil {
		out = append(out, statestore.RowTracking{ID: d.int(), Tracking: d.bytes(), Staged: d.bytes()})
	}
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, fmt.Errorf("loading %d rows: %w", len(p.IDs), err)
	}
	return out, nil
}

// limit returns a LIMIT count: negative for no limit, as in SQLite.
func limit(n int) int {
	if n < 0 {
		return -1
	}
	return n
}

// RowScan implements statestore.Store.
func (s *Store) RowScan(ctx context.Context, p statestore.RowScanParams) ([]statestore.RowMeta, error) {
	if p.Limit == 0 {
		return nil, nil
	}
	list, err := s.runList(ctx, s.sc.rowScan, p.SourceID, p.AfterID, limit(p.Limit))
	var out []statestore.RowMeta
	if err == nil {
		out, err = decodeRowMetas(list)
	}
	if err != nil {
		return nil, fmt.Errorf("scanning the rows of source %d after id %d: %w", p.SourceID, p.AfterID, err)
	}
	return out, nil
}

// RowCount implements statestore.Store.
func (s *Store) RowCount(ctx context.Context, p statestore.RowCountParams) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.p+":s:"+strconv.FormatInt(p.SourceID, 10)+":ids").Result()
	if err != nil {
		return 0, fmt.Errorf("counting the rows of source %d: %w", p.SourceID, classify(ctx, err))
	}
	return n, nil
}

// RowFailures implements statestore.Store.
func (s *Store) RowFailures(ctx context.Context, p statestore.RowFailuresParams) ([]statestore.RowFailure, error) {
	if p.Limit == 0 {
		return nil, nil
	}
	list, err := s.runList(ctx, s.sc.rowFailures, p.SourceID, limit(p.Limit))
	if err == nil && len(list)%4 != 0 {
		err = fmt.Errorf("reply of %d fields for failures of 4", len(list))
	}
	var out []statestore.RowFailure
	d := decoder{list: list}
	for err == nil && len(d.list) > 0 && d.err == nil {
		out = append(out, statestore.RowFailure{Key: d.string(), Message: d.string(), Count: d.int(), At: d.time()})
	}
	if err == nil {
		err = d.err
	}
	if err != nil {
		return nil, fmt.Errorf("listing the failing rows of source %d: %w", p.SourceID, err)
	}
	return out, nil
}

// RowFind implements statestore.Store.
func (s *Store) RowFind(ctx context.Context, p statestore.RowFindParams) (statestore.RowInfo, error) {
	list, err := s.runList(ctx, s.sc.rowFind, p.SourceID, p.Key)
	var out []statestore.RowInfo
	if err == nil {
		out, err = decodeRowInfos(list)
	}
	if err != nil {
		return statestore.RowInfo{}, fmt.Errorf("finding row %q: %w", p.Key, err)
	}
	if len(out) == 0 {
		return statestore.RowInfo{}, fmt.Errorf("row %q: %w", p.Key, statestore.ErrNotFound)
	}
	return out[0], nil
}

// RowGet implements statestore.Store.
func (s *Store) RowGet(ctx context.Context, p statestore.RowGetParams) ([]statestore.RowInfo, error) {
	if len(p.IDs) == 0 {
		return nil, nil
	}
	blobs := "0"
	if p.Blobs {
		blobs = "1"
	}
	list, err := s.runList(ctx, s.sc.rowGet, args(p.IDs, blobs)...)
	var out []statestore.RowInfo
	if err == nil {
		out, err = decodeRowInfos(list)
	}
	if err != nil {
		return nil, fmt.Errorf("getting %d rows: %w", len(p.IDs), err)
	}
	sortBy(out, func(r statestore.RowInfo) int64 { return r.ID })
	return out, nil
}

// RowPage implements statestore.Store.
func (s *Store) RowPage(ctx context.Context, p statestore.RowPageParams) ([]statestore.RowInfo, error) {
	if p.Limit == 0 {
		return nil, nil
	}
	failed := "0"
	if p.Failed {
		failed = "1"
	}
	list, err := s.runList(ctx, s.sc.rowPage, p.SourceID, p.After, limit(p.Limit), failed)
	var out []statestore.RowInfo
	if err == nil {
		out, err = decodeRowInfos(list)
	}
	if err != nil {
		return nil, fmt.Errorf("paging rows: %w", err)
	}
	return out, nil
}

// OwnerFind implements statestore.Store.
func (s *Store) OwnerFind(ctx context.Context, p statestore.OwnerFindParams) ([]statestore.Owner, error) {
	if len(p.Keys) == 0 {
		return nil, nil
	}
	a := make([]any, 0, 2*len(p.Keys))
	for _, k := range p.Keys {
		a = append(a, k.TargetID, string(k.KeyHash[:]))
	}
	list, err := s.runList(ctx, s.sc.ownerFind, a...)
	if err == nil && len(list) != len(p.Keys) {
		err = fmt.Errorf("reply of %d lists for %d keys", len(list), len(p.Keys))
	}
	var out []statestore.Owner
	for i, v := range list {
		if err != nil {
			break
		}
		members, _ := v.([]any)
		for _, m := range members {
			var id int64
			if id, err = memberRow(replyString(m)); err != nil {
				break
			}
			out = append(out, statestore.Owner{OwnerKey: p.Keys[i], RowID: id})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("finding the owners of %d target keys: %w", len(p.Keys), err)
	}
	return out, nil
}

// OwnerExists implements statestore.Store.
func (s *Store) OwnerExists(ctx context.Context, p statestore.OwnerExistsParams) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.p+":t:"+strconv.FormatInt(p.TargetID, 10)+":own").Result()
	if err != nil {
		return false, fmt.Errorf("looking for owners of target %d: %w", p.TargetID, classify(ctx, err))
	}
	return n > 0, nil
}

// Precommit implements statestore.Store, in one script whatever the
// number of rows.
func (s *Store) Precommit(ctx context.Context, p statestore.PrecommitParams) ([]int64, error) {
	ids := make([]int64, len(p.Rows))
	if len(p.Rows) == 0 {
		return ids, nil
	}
	a := make([]any, 0, 1+3*len(p.Rows))
	a = append(a, p.SourceID)
	for _, r := range p.Rows {
		a = append(a, r.ID, r.Key, opt(r.Staged))
	}
	list, err := s.runList(ctx, s.sc.precommit, a...)
	if err == nil && len(list) != len(ids) {
		err = fmt.Errorf("reply of %d ids for %d rows", len(list), len(ids))
	}
	for i := range list {
		if err != nil {
			break
		}
		ids[i], err = replyInt(list[i])
	}
	if err != nil {
		return nil, fmt.Errorf("precommitting %d rows of source %d: %w", len(p.Rows), p.SourceID, err)
	}
	return ids, nil
}

// Commit implements statestore.Store, in one script whatever the number
// of rows, applying its parts in the order of the SQLite driver: updated
// rows (each with its ownerships), bumps, failures, deletions, then the
// outbox's changes. A fenced commit (p.Fence) checks in the same script,
// before it writes anything, that the worker holds its claims and lease,
// and marks the claims done; it runs even with no rows, to mark them. A
// change of a target that no longer exists is left out, as it would be
// forgotten with the target.
func (s *Store) Commit(ctx context.Context, p statestore.CommitParams) error {
	n := len(p.Rows) + len(p.Bumps) + len(p.Failed) + len(p.Deletes)
	if n == 0 && len(p.Changes) == 0 && p.Fence == nil {
		return nil
	}
	size := 5 + 8*len(p.Rows) + 2*len(p.Bumps) + 3*len(p.Failed) + 2*len(p.Deletes) + 7*len(p.Changes)
	sc, a := s.sc.commit, make([]any, 0, size)
	if p.Fence != nil {
		sc, a = s.sc.commitFenced, fenceArgs(p.Fence, size)
	}
	a = append(a, p.SourceID, micros(p.At))
	owners := func(keys []statestore.OwnerKey, rowID int64) {
		for _, k := range keys {
			a = append(a, k.TargetID, member(k, rowID))
		}
	}
	a = append(a, len(p.Rows))
	for _, r := range p.Rows {
		a = append(a, r.ID, optInt(r.Ordinal), opt(r.ContentFP), opt(r.LogicFP), r.Gen, opt(r.Tracking), len(r.DroppedOwners), len(r.NewOwners))
		owners(r.DroppedOwners, r.ID)
		owners(r.NewOwners, r.ID)
	}
	a = append(a, len(p.Bumps))
	for _, b := range p.Bumps {
		a = append(a, b.ID, optInt(b.Ordinal))
	}
	a = append(a, len(p.Failed))
	for _, f := range p.Failed {
		a = append(a, f.ID, f.Key, f.Message)
	}
	a = append(a, len(p.Deletes))
	for _, d := range p.Deletes {
		a = append(a, d.ID, len(d.Owners))
		owners(d.Owners, d.ID)
	}
	a = append(a, len(p.Changes))
	for _, c := range p.Changes {
		a = append(a, c.TargetID, c.SourceID, c.RowKey, c.Key, c.Seq, opt(c.Old), opt(c.New))
	}
	v, err := s.run(ctx, sc, a...)
	if err == nil && p.Fence != nil {
		err = fenced(v)
	}
	if err != nil {
		return fmt.Errorf("committing %d rows and %d changes of source %d: %w", n, len(p.Changes), p.SourceID, err)
	}
	return nil
}
