package redis

import goredis "github.com/redis/go-redis/v9"

// The store's Lua scripts. Redis runs a script whole, with no other
// command between its calls, so each write method is one script: whole or
// not at all, in one round trip however many rows it carries. A script
// checks what can fail before it writes anything, since Redis does not
// undo the writes of a script that stops on an error; and a script that
// may write says so in its shebang line, so that a server out of memory
// refuses it before it starts, not at one of its writes (see script).
//
// Every script takes the store's key prefix, P below (such as
// "{tidemark}"), as KEYS[1]; the keys it builds all start with P and ":".
// Values reach Lua as strings and stay strings: Lua's numbers are doubles,
// and tostring would print a large one in exponent form. Only counters
// (ids, generations, failure counts) are numbers in Lua, through int.
//
// The keys (F a flow id, S a source id, R a row id, T a target id, X a
// pass id, C a change id):
//
//	P:meta            hash: version, the layout's version; created_at
//	P:seq             hash: the last id given, by kind (flow, source, target, row, pass,
//	                  change)
//	P:flows           hash: flow name → F, its namespace, made on first use
//	P:gens            hash: flow name → generation; a flow exists once in it
//	P:lock:<name>     hash: a flow's update lock: token, pid, host, since; with a TTL
//	P:f:F:sources     hash: source name → S
//	P:f:F:targets     hash: target key → T
//	P:s:S             hash: flow, name, opt (options note), lu (last update note);
//	                  pass, the source's open pass; started, when its last pass
//	                  started (Unix ms, for PassJoinParams.Fresh)
//	P:s:S:keys        hash: row key → R
//	P:s:S:ids         sorted set: R scored R (RowScan, RowCount)
//	P:s:S:lex         sorted set: row keys scored 0, in byte order (RowPage)
//	P:s:S:failing     sorted set: failmember(R) scored error_at (RowFailures, the failing count)
//	P:s:S:faillex     sorted set: keys of the failing rows scored 0 (RowPage with Failed)
//	P:s:S:done        sorted set: R scored processed_at, the rows once committed (SourceStatus)
//	P:s:S:passes      list: the ids of the source's last passes (passHistory), the newest first
//	P:r:R             hash: s, k, o, c, l, g, t, st, e, n, ea, pa (see rowFields)
//	P:t:T             hash: flow, kind, key, parent, committed, rec, dg, lg, ua;
//	                  w, the last worker to write in it (Coordinator.TargetWriter)
//	P:t:T:staged      list: staged records, each "" (a drop) or "=" and the record
//	P:t:T:own         sorted set: ownerships, each the 16-byte key hash and the
//	                  owning row's id as 8 big-endian bytes, scored 0, so that
//	                  the owners of one key hash are a range of it
//	P:t:T:out         sorted set: C scored C, the target's undelivered changes
//	                  (statestore.Outbox): OutboxStatus's pending count and oldest
//	P:t:T:fail        sorted set: C scored C, those of them whose delivery failed
//	P:t:T:dup         hash: dupkey of a change → C, so that a change committed
//	                  twice is kept once
//	P:t:T:q:<key>     list: the ids of the undelivered changes of the target's
//	                  state key, oldest first; the first is the state's head,
//	                  the only one of its changes OutboxTake gives
//	P:t:T:due         sorted set: C scored C, the heads free to take: not leased
//	                  and not waiting for a retry
//	P:t:T:wait        sorted set: the other heads, scored by when they are free
//	                  again (Unix µs, the server's TIME for a lease's end, NextAt
//	                  for a retry): OutboxTake moves those scored below now to due
//	P:c:C             hash: a change: t, s, r, k, q (target, source, row key, key,
//	                  seq); o, n (old and new, absent for NULL); a (commit time);
//	                  na, e, x (attempts, last error, next at: once it failed);
//	                  f, the last fence OutboxTake gave; w, the worker leasing it
//	P:p:X             hash: a pass (statestore.Coordinator): source; lister,
//	                  fence and until, the listing lease's holder, fence and
//	                  end; started; listed (1 once the listing is complete);
//	                  finished, and pending, claimed and done, its counts then;
//	                  mode, the engine's update mode
//	P:p:X:listed      hash: key → listed entry (opt), each key enqueued
//	P:p:X:claims      hash: key → "fence:worker", each key ever claimed: the
//	                  last fence given and who holds it ("fence:" once done)
//	P:p:X:avail       sorted set: the keys not done, scored 0 when never claimed,
//	                  else by when their claim ends (Unix ms): the keys free to
//	                  take are those scored below now
//
// A pass's listed, claims and avail go when it finishes, its hash when it
// falls out of its source's passes, all of them when its flow is dropped.
// A change goes when it is delivered (OutboxDone), the outbox keys of a
// target with the target (TargetCommit of a dropped target, FlowDrop).
// Every head of a state is in one of its target's due and wait; a worker
// holds a change while its w and f are the worker's and the fence
// OutboxTake gave it, which a later take (a new fence) or a retry (no w)
// ends.
//
// Times are Unix microseconds, but for the coordinator's: those are the
// server's (TIME), so that the workers' clocks need not agree, and in
// milliseconds, as its TTLs are given. The outbox's leases end by the
// server's clock too, but in microseconds, as they share P:t:T:wait with
// the NextAt of retries, which are the workers'. A field that is absent
// is NULL; an optional value passed to a script (an ordinal, a
// fingerprint, a blob, a change's old and new) is "" for NULL, or "="
// followed by the value (see opt).

// prelude is the start of every script.
const prelude = `
local P = KEYS[1]
local function key(...) return P .. ':' .. table.concat({...}, ':') end
-- RP starts the key of a row, P:r:<id>: the hot loops build it without key.
local RP = P .. ':r:'
local function int(n) return string.format('%d', n) end
local function flowid(flow, create)
  local id = redis.call('HGET', P .. ':flows', flow)
  if id or not create then return id end
  id = int(redis.call('HINCRBY', P .. ':seq', 'flow', 1))
  redis.call('HSET', P .. ':flows', flow, id)
  return id
end
local function setopt(k, f, v)
  if v == '' then redis.call('HDEL', k, f) else redis.call('HSET', k, f, string.sub(v, 2)) end
end
-- failmember orders the failing rows of one time by ascending id under
-- ZREVRANGEBYSCORE, which orders ties by descending member.
local FAILMAX = 999999999999999
local function failmember(id) return string.format('%015d', FAILMAX - tonumber(id)) end
local function failid(m) return int(FAILMAX - tonumber(m)) end
local function rowensure(sid, k)
  local keys = key('s', sid, 'keys')
  local id = redis.call('HGET', keys, k)
  if id then return id end
  id = int(redis.call('HINCRBY', P .. ':seq', 'row', 1))
  redis.call('HSET', keys, k, id)
  redis.call('ZADD', key('s', sid, 'ids'), id, id)
  redis.call('ZADD', key('s', sid, 'lex'), 0, k)
  redis.call('HSET', RP .. id, 's', sid, 'k', k)
  return id
end
local function unfail(id, sid, k)
  redis.call('HDEL', RP .. id, 'e', 'n', 'ea')
  redis.call('ZREM', key('s', sid, 'failing'), failmember(id))
  redis.call('ZREM', key('s', sid, 'faillex'), k)
end
local function rowmeta(out, id)
  local r = redis.call('HMGET', RP .. id, 'k', 'o', 'c', 'l', 'g', 'n', 'st')
  if not r[1] then return end
  local n = #out
  out[n+1], out[n+2], out[n+3], out[n+4], out[n+5], out[n+6], out[n+7], out[n+8] =
    id, r[1], r[2], r[3], r[4], r[5], r[7] and 1 or 0, r[6]
end
local function rowinfo(out, id, blobs)
  local r = redis.call('HMGET', RP .. id, 's', 'k', 'o', 'c', 'l', 'g', 't', 'st', 'e', 'n', 'ea', 'pa')
  if not r[1] then return end
  if not blobs then r[7], r[8] = false, false end
  out[#out+1] = id
  for j = 1, 12 do out[#out+1] = r[j] end
end
local function target(tid)
  local t = redis.call('HMGET', key('t', tid), 'flow', 'kind', 'key', 'parent', 'committed', 'rec', 'dg', 'lg', 'ua')
  return {tid, t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], redis.call('LRANGE', key('t', tid, 'staged'), 0, -1)}
end
local function stagedrop(tid)
  local sk = key('t', tid, 'staged')
  for _, r in ipairs(redis.call('LRANGE', sk, 0, -1)) do
    if r == '' then return end
  end
  redis.call('RPUSH', sk, '')
end
-- dupkey names a change of a target in its P:t:T:dup by its source id,
-- row key, key and seq: the row key's length makes it one of one.
local function dupkey(s, r, k, q) return s .. ':' .. #r .. ':' .. r .. k .. ':' .. q end
-- outboxdrop forgets the outbox's changes of target tid.
local function outboxdrop(tid)
  local states = {}
  for _, id in ipairs(redis.call('ZRANGE', key('t', tid, 'out'), 0, -1)) do
    local k = redis.call('HGET', key('c', id), 'k')
    if k then states[k] = true end
    redis.call('UNLINK', key('c', id))
  end
  for k in pairs(states) do redis.call('UNLINK', key('t', tid, 'q', k)) end
  redis.call('UNLINK', key('t', tid, 'out'), key('t', tid, 'fail'), key('t', tid, 'dup'),
    key('t', tid, 'due'), key('t', tid, 'wait'))
end
`

// coordPrelude follows prelude in the coordinator's scripts
// (statestore.Coordinator), and in those of the other methods that touch
// its keys.
const coordPrelude = `
-- now is the server's time in Unix milliseconds.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- leased returns the key of pass id if worker holds its listing lease with
-- fence and it is not finished; else nil.
local function leased(id, worker, fence)
  local pk = key('p', id)
  local p = redis.call('HMGET', pk, 'lister', 'fence', 'finished')
  if p[1] == worker and p[2] == fence and not p[3] then return pk end
  return nil
end
-- claims goes through the pairs of key and fence of ARGV from j to its end
-- (or to last), calls f with each key that worker holds in pass pk with
-- its fence, claimed and not done, and returns the keys it does not.
local function claims(pk, worker, j, last, f)
  local ck, lost = pk .. ':claims', {}
  for i = j, last or #ARGV, 2 do
    local k = ARGV[i]
    if redis.call('HGET', ck, k) == ARGV[i+1] .. ':' .. worker then f(k) else lost[#lost+1] = k end
  end
  return lost
end
-- claimdone marks claim k of pass pk done: it keeps its fence, held by no
-- worker, for the key may be enqueued again (see passEnqueue).
local function claimdone(pk, k)
  local ck = pk .. ':claims'
  redis.call('HSET', ck, k, string.match(redis.call('HGET', ck, k), '^%d+') .. ':')
  redis.call('ZREM', pk .. ':avail', k)
end
-- counts returns the pending (never claimed, or expired), claimed and
-- done claims of pass pk at time t.
local function counts(pk, t)
  local all = redis.call('HLEN', pk .. ':listed')
  local open = redis.call('ZCARD', pk .. ':avail')
  local claimed = redis.call('ZCOUNT', pk .. ':avail', int(t), '+inf')
  return open - claimed, claimed, all - open
end
local function passdrop(id)
  local pk = key('p', id)
  redis.call('UNLINK', pk, pk .. ':listed', pk .. ':claims', pk .. ':avail')
end
`

// outboxPrelude follows prelude in the outbox's scripts
// (statestore.Outbox).
const outboxPrelude = `
-- clock is the server's time in Unix microseconds.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- change appends change id to out: id, t, s, r, k, q, o, n, a, na, e, x, f.
local function change(out, id)
  local c = redis.call('HMGET', key('c', id), 't', 's', 'r', 'k', 'q', 'o', 'n', 'a', 'na', 'e', 'x', 'f')
  out[#out+1] = id
  for j = 1, 12 do out[#out+1] = c[j] end
end
`

// rowMetaStride and rowInfoStride are the replies per row of rowmeta and
// rowinfo; changeStride per change of the outbox's change.
const (
	rowMetaStride = 8
	rowInfoStride = 13
	changeStride  = 13
)

// notFound starts the error a script returns for what must exist and does
// not; the driver turns it into statestore.ErrNotFound.
const notFound = "TMNOTFOUND"

// script makes a script that may write. Its shebang line (Redis 7)
// declares it so: a server out of memory (maxmemory) refuses it before it
// starts rather than failing one of its writes midway.
func script(body string) *goredis.Script { return goredis.NewScript("#!lua\n" + prelude + body) }

// reader makes a script that only reads, which Redis runs even when out
// of memory, and on a replica.
func reader(body string) *goredis.Script {
	return goredis.NewScript("#!lua flags=no-writes\n" + prelude + body)
}

// coordScript is script with coordPrelude.
func coordScript(body string) *goredis.Script { return script(coordPrelude + body) }

// outboxScript is script with outboxPrelude.
func outboxScript(body string) *goredis.Script { return script(outboxPrelude + body) }

// scriptSet is the store's scripts. They name no key of their own: stores
// of any prefix run the same scripts, which the server caches once.
type scriptSet struct {
	open, flowGet, flowDrop                   *goredis.Script
	lockTake, lockRenew, lockRelease          *goredis.Script
	sourceEnsure, sourceFind, sourceNotesSave *goredis.Script
	targetList, targetStage, targetCommit     *goredis.Script
	rowLookup, rowLoad, rowScan, rowFailures  *goredis.Script
	rowFind, rowGet, rowPage, ownerFind       *goredis.Script
	precommit, commit, commitFenced           *goredis.Script

	passJoin, passLease, passEnqueue, passListed *goredis.Script
	passProgress, passFinish, passRunning        *goredis.Script
	claimTake, claimRenew, claimDone             *goredis.Script
	targetWriter                                 *goredis.Script

	outboxTake, outboxDone, outboxRetry, outboxStatus *goredis.Script
}

func newScripts() *scriptSet {
	return &scriptSet{
		// ARGV: version, now. Returns the layout's version.
		open: script(`
redis.call('HSETNX', P .. ':meta', 'created_at', ARGV[2])
redis.call('HSETNX', P .. ':meta', 'version', ARGV[1])
return redis.call('HGET', P .. ':meta', 'version')`),

		// ARGV: flow. Returns the generation.
		flowGet: script(`
redis.call('HSETNX', P .. ':gens', ARGV[1], 0)
return redis.call('HGET', P .. ':gens', ARGV[1])`),

		// ARGV: flow.
		flowDrop: coordScript(`
local flow = ARGV[1]
local fid = flowid(flow, false)
if fid then
  for _, sid in ipairs(redis.call('HVALS', key('f', fid, 'sources'))) do
    for _, id in ipairs(redis.call('ZRANGE', key('s', sid, 'ids'), 0, -1)) do
      redis.call('UNLINK', RP .. id)
    end
    for _, id in ipairs(redis.call('LRANGE', key('s', sid, 'passes'), 0, -1)) do passdrop(id) end
    redis.call('UNLINK', key('s', sid), key('s', sid, 'keys'), key('s', sid, 'ids'), key('s', sid, 'lex'),
      key('s', sid, 'failing'), key('s', sid, 'faillex'), key('s', sid, 'done'), key('s', sid, 'passes'))
  end
  for _, tid in ipairs(redis.call('HVALS', key('f', fid, 'targets'))) do
    redis.call('UNLINK', key('t', tid), key('t', tid, 'staged'), key('t', tid, 'own'))
    outboxdrop(tid)
  end
  redis.call('UNLINK', key('f', fid, 'sources'), key('f', fid, 'targets'))
  redis.call('HDEL', P .. ':flows', flow)
end
redis.call('HDEL', P .. ':gens', flow)
return 1`),

		// ARGV: flow, token, pid, host, since, ttl in milliseconds. Returns
		// {1} when taken, else {0, pid, host, since} of the holder.
		lockTake: script(`
local lk = P .. ':lock:' .. ARGV[1]
if redis.call('EXISTS', lk) == 1 then
  local h = redis.call('HMGET', lk, 'pid', 'host', 'since')
  return {0, h[1], h[2], h[3]}
end
redis.call('HSET', lk, 'token', ARGV[2], 'pid', ARGV[3], 'host', ARGV[4], 'since', ARGV[5])
redis.call('PEXPIRE', lk, ARGV[6])
return {1}`),

		// ARGV: flow, token, ttl in milliseconds. Returns 1 when the lock is
		// still the token's, its TTL renewed; 0 when it is not.
		lockRenew: script(`
local lk = P .. ':lock:' .. ARGV[1]
if redis.call('HGET', lk, 'token') ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', lk, ARGV[3])
return 1`),

		// ARGV: flow, token.
		lockRelease: script(`
local lk = P .. ':lock:' .. ARGV[1]
if redis.call('HGET', lk, 'token') == ARGV[2] then redis.call('DEL', lk) end
return 1`),

		// ARGV: flow, name. Returns the source's id.
		sourceEnsure: script(`
local fid = flowid(ARGV[1], true)
local sk = key('f', fid, 'sources')
local sid = redis.call('HGET', sk, ARGV[2])
if sid then return sid end
sid = int(redis.call('HINCRBY', P .. ':seq', 'source', 1))
redis.call('HSET', sk, ARGV[2], sid)
redis.call('HSET', key('s', sid), 'flow', ARGV[1], 'name', ARGV[2])
return sid`),

		// ARGV: flow, name. Returns the source's id, or nil.
		sourceFind: reader(`
local fid = flowid(ARGV[1], false)
if not fid then return false end
return redis.call('HGET', key('f', fid, 'sources'), ARGV[2])`),

		// ARGV: source id, options (opt, "" keeps it), last update (likewise).
		sourceNotesSave: script(`
local sk = key('s', ARGV[1])
if redis.call('EXISTS', sk) == 0 then return 0 end
if ARGV[2] ~= '' then setopt(sk, 'opt', ARGV[2]) end
if ARGV[3] ~= '' then setopt(sk, 'lu', ARGV[3]) end
return 1`),

		// ARGV: flow. Returns the flow's targets, each as target() gives it.
		targetList: reader(`
local fid = flowid(ARGV[1], false)
local out = {}
if not fid then return out end
for _, tid in ipairs(redis.call('HVALS', key('f', fid, 'targets'))) do
  out[#out+1] = target(tid)
end
return out`),

		// ARGV: flow, kind, key, parent, record (a staged entry), now. Returns
		// the target.
		targetStage: script(`
local flow, kind, tkey, parent, rec, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local fid = flowid(flow, true)
local tk = key('f', fid, 'targets')
local tid = redis.call('HGET', tk, tkey)
if not tid then
  tid = int(redis.call('HINCRBY', P .. ':seq', 'target', 1))
  redis.call('HSET', tk, tkey, tid)
  redis.call('HSET', key('t', tid), 'flow', flow, 'kind', kind, 'key', tkey, 'parent', parent, 'dg', 0, 'lg', 0, 'ua', now)
  redis.call('RPUSH', key('t', tid, 'staged'), rec)
else
  local found = false
  for _, r in ipairs(redis.call('LRANGE', key('t', tid, 'staged'), 0, -1)) do
    if r == rec then found = true; break end
  end
  if not found then redis.call('RPUSH', key('t', tid, 'staged'), rec) end
  redis.call('HSET', key('t', tid), 'kind', kind, 'ua', now)
end
return target(tid)`),

		// ARGV: flow, target id, exists (0 or 1), record (opt), invalidation
		// (none, lossy or destructive), now. Returns the flow's generation.
		targetCommit: script(`
local flow, id, exists, rec, inv, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('HEXISTS', P .. ':gens', flow) == 0 then return redis.error_reply('TMNOTFOUND flow ' .. flow) end
local fid = flowid(flow, false)
local tk = key('t', id)
if exists == '0' then
  if fid then
    local fk = key('f', fid, 'targets')
    local all = redis.call('HGETALL', fk)
    for j = 1, #all, 2 do
      local tid = all[j+1]
      if tid == id or redis.call('HGET', key('t', tid), 'parent') == id then
        redis.call('UNLINK', key('t', tid), key('t', tid, 'staged'), key('t', tid, 'own'))
        outboxdrop(tid)
        redis.call('HDEL', fk, all[j])
      end
    end
  end
  redis.call('UNLINK', key('t', id, 'own'))
else
  if redis.call('HGET', tk, 'flow') ~= flow then return redis.error_reply('TMNOTFOUND target ' .. id) end
  setopt(tk, 'rec', rec)
  redis.call('HSET', tk, 'committed', 1, 'ua', now)
  redis.call('DEL', key('t', id, 'staged'))
  if inv ~= 'none' then
    local gen = int(redis.call('HINCRBY', P .. ':gens', flow, 1))
    if inv == 'destructive' then
      redis.call('UNLINK', key('t', id, 'own'))
      for _, tid in ipairs(redis.call('HVALS', key('f', fid, 'targets'))) do
        if redis.call('HGET', key('t', tid), 'parent') == id then stagedrop(tid) end
      end
      redis.call('HSET', tk, 'dg', gen)
    else
      redis.call('HSET', tk, 'lg', gen)
    end
  end
end
return redis.call('HGET', P .. ':gens', flow)`),

		// ARGV: source id, keys... Returns rowmeta of each row found.
		rowLookup: reader(`
local keys, out = key('s', ARGV[1], 'keys'), {}
for j = 2, #ARGV do
  local id = redis.call('HGET', keys, ARGV[j])
  if id then rowmeta(out, id) end
end
return out`),

		// ARGV: ids... Returns {id, tracking, staged} of each row found.
		rowLoad: reader(`
local out = {}
for j = 1, #ARGV do
  local r = redis.call('HMGET', RP .. ARGV[j], 's', 't', 'st')
  if r[1] then
    local n = #out
    out[n+1], out[n+2], out[n+3] = ARGV[j], r[2], r[3]
  end
end
return out`),

		// ARGV: source id, after id, limit (negative: none). Returns rowmeta
		// of each row.
		rowScan: reader(`
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('s', ARGV[1], 'ids'), '(' .. ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])) do
  rowmeta(out, id)
end
return out`),

		// ARGV: source id, limit (negative: none). Returns {key, error, count,
		// error_at} of each failing row, the most recent failure first.
		rowFailures: reader(`
local out = {}
for _, m in ipairs(redis.call('ZREVRANGEBYSCORE', key('s', ARGV[1], 'failing'), '+inf', '-inf', 'LIMIT', 0, ARGV[2])) do
  local r = redis.call('HMGET', key('r', failid(m)), 'k', 'e', 'n', 'ea')
  if r[1] then
    local n = #out
    out[n+1], out[n+2], out[n+3], out[n+4] = r[1], r[2], r[3], r[4]
  end
end
return out`),

		// ARGV: source id, key. Returns rowinfo of the row, or nothing.
		rowFind: reader(`
local out = {}
local id = redis.call('HGET', key('s', ARGV[1], 'keys'), ARGV[2])
if id then rowinfo(out, id, true) end
return out`),

		// ARGV: blobs (0 or 1), ids... Returns rowinfo of each row found.
		rowGet: reader(`
local out = {}
for j = 2, #ARGV do rowinfo(out, ARGV[j], ARGV[1] == '1') end
return out`),

		// ARGV: source id, after, limit, failed (0 or 1). Returns rowinfo of
		// each row.
		rowPage: reader(`
local index = 'lex'
if ARGV[4] == '1' then index = 'faillex' end
local keys, out = key('s', ARGV[1], 'keys'), {}
for _, k in ipairs(redis.call('ZRANGEBYLEX', key('s', ARGV[1], index), '(' .. ARGV[2], '+', 'LIMIT', 0, ARGV[3])) do
  local id = redis.call('HGET', keys, k)
  if id then rowinfo(out, id, true) end
end
return out`),

		// ARGV: pairs of target id and key hash. Returns, for each pair, the
		// list of its ownerships.
		ownerFind: reader(`
local out = {}
for j = 1, #ARGV, 2 do
  local h = ARGV[j+1]
  out[#out+1] = redis.call('ZRANGEBYLEX', key('t', ARGV[j], 'own'), '[' .. h, '(' .. h .. string.rep('\255', 9))
end
return out`),

		// ARGV: source id, then per row: id (0 for a new row), key, staged
		// (opt). Returns the rows' ids.
		precommit: script(`
local sid, out = ARGV[1], {}
for j = 2, #ARGV, 3 do
  local id = ARGV[j]
  if id == '0' then id = rowensure(sid, ARGV[j+1]) end
  local rk = RP .. id
  if redis.call('EXISTS', rk) == 1 then setopt(rk, 'st', ARGV[j+2]) end
  out[#out+1] = id
end
return out`),

		// ARGV: those of commitBody, after none.
		commit: script(`local A = 0` + commitBody),

		// ARGV: pass id, worker, lister fence (0 for none), the number of
		// claims, each: key, fence; then those of commitBody. Returns 1
		// when the commit landed, its claims done; else, committing
		// nothing, {lease lost (0 or 1), the keys of the claims not held...}.
		commitFenced: coordScript(`
local pass, worker, lister = ARGV[1], ARGV[2], ARGV[3]
local A = 4 + 2 * tonumber(ARGV[4])
local pk = key('p', pass)
local function keep() end
local lost = claims(pk, worker, 5, A, keep)
local lease = lister ~= '0' and not leased(pass, worker, lister)
if lease or #lost > 0 then
  table.insert(lost, 1, lease and 1 or 0)
  return lost
end
claims(pk, worker, 5, A, function(k) claimdone(pk, k) end)
` + commitBody),

		// ARGV: source id, worker, ttl and fresh in milliseconds (0: not
		// set), the number of passes to keep, the mode of a pass opened.
		// Returns {pass id, lister (0 or 1), fence, listed (0 or 1), mode},
		// or {0, 0, 0, 0, 0} when the last pass is fresh.
		passJoin: coordScript(`
local sid, worker, ttl, fresh, keep, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local sk = key('s', sid)
if redis.call('EXISTS', sk) == 0 then return redis.error_reply('TMNOTFOUND source ' .. sid) end
local t = now()
local id = redis.call('HGET', sk, 'pass')
local p = id and redis.call('HMGET', key('p', id), 'lister', 'until', 'listed', 'mode')
if p and p[1] then
  local pk = key('p', id)
  local listed, pmode = p[3] and 1 or 0, tonumber(p[4] or 0)
  if p[1] ~= worker and tonumber(p[2]) >= t then return {id, 0, 0, listed, pmode} end
  local fence = redis.call('HINCRBY', pk, 'fence', 1)
  redis.call('HSET', pk, 'lister', worker, 'until', int(t + ttl))
  return {id, 1, fence, listed, pmode}
end
local last = redis.call('HGET', sk, 'started')
if fresh > 0 and last and t - tonumber(last) < fresh then return {0, 0, 0, 0, 0} end
id = int(redis.call('HINCRBY', P .. ':seq', 'pass', 1))
redis.call('HSET', key('p', id), 'source', sid, 'lister', worker, 'fence', 1, 'until', int(t + ttl), 'started', int(t), 'mode', mode)
redis.call('HSET', sk, 'pass', id, 'started', int(t))
local lk = key('s', sid, 'passes')
redis.call('LPUSH', lk, id)
while redis.call('LLEN', lk) > keep do passdrop(redis.call('RPOP', lk)) end
return {id, 1, 1, 0, tonumber(mode)}`),

		// ARGV: pass id, worker, fence, ttl in milliseconds. Returns 1, or 0
		// when the lease is not the worker's.
		passLease: coordScript(`
local pk = leased(ARGV[1], ARGV[2], ARGV[3])
if not pk then return 0 end
redis.call('HSET', pk, 'until', int(now() + tonumber(ARGV[4])))
return 1`),

		// ARGV: pass id, worker, fence, then each key and its listed entry
		// (opt). Returns 1, or 0 when the lease is not the worker's.
		passEnqueue: coordScript(`
local pk = leased(ARGV[1], ARGV[2], ARGV[3])
if not pk then return 0 end
local lk, ak = pk .. ':listed', pk .. ':avail'
for j = 4, #ARGV, 2 do
  local k, l = ARGV[j], ARGV[j+1]
  if redis.call('HSETNX', lk, k, l) == 1 then
    redis.call('ZADD', ak, 0, k)
  elseif redis.call('HGET', lk, k) ~= l then
    redis.call('HSET', lk, k, l)
    redis.call('ZADD', ak, 'NX', 0, k)
  end
end
return 1`),

		// ARGV: pass id, worker, fence. Returns 1, or 0 when the lease is
		// not the worker's.
		passListed: coordScript(`
local pk = leased(ARGV[1], ARGV[2], ARGV[3])
if not pk then return 0 end
redis.call('HSET', pk, 'listed', 1)
return 1`),

		// ARGV: pass id. Returns {pending, claimed, done, listed (0 or 1),
		// finished (0 or 1)}.
		passProgress: reader(coordPrelude + `
local pk = key('p', ARGV[1])
local p = redis.call('HMGET', pk, 'lister', 'listed', 'finished', 'pending', 'claimed', 'done')
if not p[1] then return redis.error_reply('TMNOTFOUND pass ' .. ARGV[1]) end
local listed = p[2] and 1 or 0
if p[3] then return {p[4], p[5], p[6], listed, 1} end
local pending, claimed, done = counts(pk, now())
return {pending, claimed, done, listed, 0}`),

		// ARGV: worker, then target ids. Records the worker as the last
		// writer of each target that exists; returns the ids of those
		// whose last writer was another worker.
		targetWriter: script(`
local others = {}
for i = 2, #ARGV do
  local tk = key('t', ARGV[i])
  local w = redis.call('HMGET', tk, 'flow', 'w')
  if w[1] and w[2] ~= ARGV[1] then
    if w[2] then others[#others+1] = ARGV[i] end
    redis.call('HSET', tk, 'w', ARGV[1])
  end
end
return others`),

		// ARGV: source id. Returns 1 when the source's open pass has a
		// listing lease or a claim that has not ended, else 0.
		passRunning: reader(coordPrelude + `
local id = redis.call('HGET', key('s', ARGV[1]), 'pass')
if not id then return 0 end
local pk, t = key('p', id), now()
local ends = redis.call('HGET', pk, 'until')
if ends and tonumber(ends) >= t then return 1 end
local _, claimed = counts(pk, t)
return claimed > 0 and 1 or 0`),

		// ARGV: pass id, worker, fence. Returns 1, or 0 when the lease is
		// not the worker's. The pass keeps its counts; its claims go.
		passFinish: coordScript(`
local pk = leased(ARGV[1], ARGV[2], ARGV[3])
if not pk then return 0 end
local t = now()
local pending, claimed, done = counts(pk, t)
redis.call('HSET', pk, 'finished', int(t), 'pending', pending, 'claimed', claimed, 'done', done)
redis.call('UNLINK', pk .. ':listed', pk .. ':claims', pk .. ':avail')
local sk = key('s', redis.call('HGET', pk, 'source'))
if redis.call('HGET', sk, 'pass') == ARGV[1] then redis.call('HDEL', sk, 'pass') end
return 1`),

		// ARGV: pass id, worker, limit, ttl in milliseconds. Returns {key,
		// listed (opt), fence} of each claim taken: the keys never claimed,
		// in byte order, then those whose claim ended, longest ago first.
		claimTake: coordScript(`
local pk, worker = key('p', ARGV[1]), ARGV[2]
local ck, lk, ak = pk .. ':claims', pk .. ':listed', pk .. ':avail'
local t = now()
local ends, out = int(t + tonumber(ARGV[4])), {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', ak, '-inf', '(' .. int(t), 'LIMIT', 0, ARGV[3])) do
  local old = redis.call('HGET', ck, k)
  local fence = int((old and tonumber(string.match(old, '^%d+')) or 0) + 1)
  redis.call('HSET', ck, k, fence .. ':' .. worker)
  redis.call('ZADD', ak, ends, k)
  local n = #out
  out[n+1], out[n+2], out[n+3] = k, redis.call('HGET', lk, k), fence
end
return out`),

		// ARGV: pass id, worker, ttl in milliseconds, then each claim's key
		// and fence. Returns the keys of the claims not held.
		claimRenew: coordScript(`
local pk, ends = key('p', ARGV[1]), int(now() + tonumber(ARGV[3]))
return claims(pk, ARGV[2], 4, nil, function(k) redis.call('ZADD', pk .. ':avail', 'XX', ends, k) end)`),

		// ARGV: pass id, worker, then each claim's key and fence. Returns
		// the keys of the claims not held.
		claimDone: coordScript(`
local pk = key('p', ARGV[1])
return claims(pk, ARGV[2], 3, nil, function(k) claimdone(pk, k) end)`),

		// ARGV: worker, limit, ttl in milliseconds, steal (0 or 1), then
		// target ids. Frees the heads of the targets whose lease ended (or,
		// stealing, is held) or whose retry is due, then leases the limit of free heads of smallest ids. Returns
		// change of each, with its new fence.
		outboxTake: outboxScript(`
local worker, lim, steal = ARGV[1], tonumber(ARGV[2]), ARGV[4] == '1'
local t = clock()
local free, heads = '(' .. int(t), {}
-- A head is scored by its id in due, plus 2^50 once it failed: the changes
-- never failed come first, so that failing states do not fill every take.
local function due(dk, id)
  local na = tonumber(redis.call('HGET', key('c', id), 'na') or '0')
  redis.call('ZADD', dk, na > 0 and 1125899906842624 + tonumber(id) or tonumber(id), id)
end
for j = 5, #ARGV do
  local dk, wk = key('t', ARGV[j], 'due'), key('t', ARGV[j], 'wait')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', wk, '-inf', free)) do due(dk, id) end
  redis.call('ZREMRANGEBYSCORE', wk, '-inf', free)
  if steal then
    -- Leased heads are free too (their worker is gone); those waiting
    -- for a retry are not.
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', wk, int(t), '+inf')) do
      local w = redis.call('HGET', key('c', id), 'w')
      if w and w ~= '' then
        redis.call('ZREM', wk, id)
        due(dk, id)
      end
    end
  end
  local r = redis.call('ZRANGE', dk, 0, lim - 1, 'WITHSCORES')
  for i = 1, #r, 2 do heads[#heads+1] = {tonumber(r[i+1]), tonumber(r[i])} end
end
table.sort(heads, function(a, b) return a[1] < b[1] end)
local ends, out = int(t + 1000 * tonumber(ARGV[3])), {}
for j = 1, math.min(lim, #heads) do
  local id = int(heads[j][2])
  local ck = key('c', id)
  local tid = redis.call('HGET', ck, 't')
  redis.call('HINCRBY', ck, 'f', 1)
  redis.call('HSET', ck, 'w', worker)
  redis.call('ZREM', key('t', tid, 'due'), id)
  redis.call('ZADD', key('t', tid, 'wait'), ends, id)
  change(out, id)
end
return out`),

		// ARGV: worker, then each change's id and fence. Deletes the changes
		// the worker holds, making the next change of each one's state its
		// head; returns the ids of the others.
		outboxDone: outboxScript(`
local worker, lost = ARGV[1], {}
for j = 2, #ARGV, 2 do
  local id = ARGV[j]
  local ck = key('c', id)
  local c = redis.call('HMGET', ck, 'w', 'f', 't', 's', 'r', 'k', 'q')
  if c[1] == worker and c[2] == ARGV[j+1] then
    local tid = c[3]
    local qk, dk = key('t', tid, 'q', c[6]), key('t', tid, 'due')
    if redis.call('LINDEX', qk, 0) == id then
      redis.call('LPOP', qk)
      local head = redis.call('LINDEX', qk, 0)
      if head then redis.call('ZADD', dk, head, head) end
    else
      redis.call('LREM', qk, 1, id)
    end
    redis.call('ZREM', dk, id)
    redis.call('ZREM', key('t', tid, 'wait'), id)
    redis.call('ZREM', key('t', tid, 'out'), id)
    redis.call('ZREM', key('t', tid, 'fail'), id)
    redis.call('HDEL', key('t', tid, 'dup'), dupkey(c[4], c[5], c[6], c[7]))
    redis.call('DEL', ck)
  else
    lost[#lost+1] = id
  end
end
return lost`),

		// ARGV: worker, change id, fence, error, next at. Records a failed
		// delivery of a change the worker holds, which waits until next at.
		// Returns 1, or 0 when the worker does not hold it.
		outboxRetry: outboxScript(`
local worker, id, fence, msg, nat = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ck = key('c', id)
local c = redis.call('HMGET', ck, 'w', 'f', 't')
if c[1] ~= worker or c[2] ~= fence then return 0 end
redis.call('HINCRBY', ck, 'na', 1)
redis.call('HSET', ck, 'e', msg, 'x', nat)
redis.call('HDEL', ck, 'w')
redis.call('ZREM', key('t', c[3], 'due'), id)
redis.call('ZADD', key('t', c[3], 'wait'), nat, id)
redis.call('ZADD', key('t', c[3], 'fail'), id, id)
return 1`),

		// ARGV: target ids. Returns, for each target with undelivered
		// changes, {id, pending, failing, the oldest one's commit time, change
		// of the failing one of smallest id (empty when none)}.
		outboxStatus: reader(outboxPrelude + `
local out = {}
for j = 1, #ARGV do
  local tid = ARGV[j]
  local ok, fk = key('t', tid, 'out'), key('t', tid, 'fail')
  local oldest = redis.call('ZRANGE', ok, 0, 0)[1]
  if oldest then
    local failed, f = {}, redis.call('ZRANGE', fk, 0, 0)[1]
    if f then change(failed, f) end
    out[#out+1] = {tid, redis.call('ZCARD', ok), redis.call('ZCARD', fk), redis.call('HGET', key('c', oldest), 'a'), failed}
  end
end
return out`),
	}
}

// commitBody is the body of the commit scripts, after A, the number of
// ARGV before its own: source id, at, then
//   - the number of updated rows, each: id, ordinal, content fp, logic fp
//     (opt each), gen, tracking (opt), the numbers of dropped and new
//     ownerships, then each of these: target id, member;
//   - the number of bumps, each: id, ordinal (opt);
//   - the number of failures, each: id (0 for a new row), key, message;
//   - the number of deletions, each: id, the number of ownerships, then
//     each: target id, member;
//   - the number of changes for the outbox, each: target id, source id,
//     row key, key, seq, old, new (opt each). A change of a target that
//     does not exist, or one already kept (see dupkey), is left out.
const commitBody = `
local i = A
local function nxt() i = i + 1; return ARGV[i] end
local sid, at = nxt(), nxt()
for _ = 1, tonumber(nxt()) do
  local id, o, c, l, g, t = nxt(), nxt(), nxt(), nxt(), nxt(), nxt()
  local ndrop, nnew = tonumber(nxt()), tonumber(nxt())
  local rk = RP .. id
  local r = redis.call('HMGET', rk, 's', 'k')
  if r[1] then
    setopt(rk, 'o', o); setopt(rk, 'c', c); setopt(rk, 'l', l); setopt(rk, 't', t)
    redis.call('HSET', rk, 'g', g, 'pa', at)
    redis.call('HDEL', rk, 'st')
    unfail(id, r[1], r[2])
    redis.call('ZADD', key('s', r[1], 'done'), at, id)
  end
  for _ = 1, ndrop do
    local tid, m = nxt(), nxt()
    redis.call('ZREM', key('t', tid, 'own'), m)
  end
  for _ = 1, nnew do
    local tid, m = nxt(), nxt()
    redis.call('ZADD', key('t', tid, 'own'), 0, m)
  end
end
for _ = 1, tonumber(nxt()) do
  local id, o = nxt(), nxt()
  local rk = RP .. id
  local r = redis.call('HMGET', rk, 's', 'k')
  if r[1] then
    setopt(rk, 'o', o)
    redis.call('HSET', rk, 'pa', at)
    unfail(id, r[1], r[2])
    redis.call('ZADD', key('s', r[1], 'done'), at, id)
  end
end
for _ = 1, tonumber(nxt()) do
  local id, k, msg = nxt(), nxt(), nxt()
  if id == '0' then id = rowensure(sid, k) end
  local rk = RP .. id
  local r = redis.call('HMGET', rk, 's', 'k')
  if r[1] then
    redis.call('HSET', rk, 'e', msg, 'ea', at)
    redis.call('HINCRBY', rk, 'n', 1)
    redis.call('ZADD', key('s', r[1], 'failing'), at, failmember(id))
    redis.call('ZADD', key('s', r[1], 'faillex'), 0, r[2])
  end
end
for _ = 1, tonumber(nxt()) do
  local id = nxt()
  for _ = 1, tonumber(nxt()) do
    local tid, m = nxt(), nxt()
    redis.call('ZREM', key('t', tid, 'own'), m)
  end
  local rk = RP .. id
  local r = redis.call('HMGET', rk, 's', 'k')
  if r[1] then
    local s, k = r[1], r[2]
    if redis.call('HGET', key('s', s, 'keys'), k) == id then
      redis.call('HDEL', key('s', s, 'keys'), k)
      redis.call('ZREM', key('s', s, 'lex'), k)
      redis.call('ZREM', key('s', s, 'faillex'), k)
    end
    redis.call('ZREM', key('s', s, 'ids'), id)
    redis.call('ZREM', key('s', s, 'failing'), failmember(id))
    redis.call('ZREM', key('s', s, 'done'), id)
    redis.call('DEL', rk)
  end
end
local live = {}
for _ = 1, tonumber(nxt()) do
  local tid, s, r, k, q, o, n = nxt(), nxt(), nxt(), nxt(), nxt(), nxt(), nxt()
  if live[tid] == nil then live[tid] = redis.call('HEXISTS', key('t', tid), 'flow') == 1 end
  local dk, dup = key('t', tid, 'dup'), dupkey(s, r, k, q)
  if live[tid] and redis.call('HEXISTS', dk, dup) == 0 then
    local id = int(redis.call('HINCRBY', P .. ':seq', 'change', 1))
    redis.call('HSET', dk, dup, id)
    local ck = key('c', id)
    redis.call('HSET', ck, 't', tid, 's', s, 'r', r, 'k', k, 'q', q, 'a', at)
    if o ~= '' then redis.call('HSET', ck, 'o', string.sub(o, 2)) end
    if n ~= '' then redis.call('HSET', ck, 'n', string.sub(n, 2)) end
    redis.call('ZADD', key('t', tid, 'out'), id, id)
    if redis.call('RPUSH', key('t', tid, 'q', k), id) == 1 then redis.call('ZADD', key('t', tid, 'due'), id, id) end
  end
end
return 1`
