"""Lua scripts that make each multi-key step of an exchange atomic and one round trip.

All keys a script touches share one hash tag: the session's, or for the limit scripts the
principal's, so in a Redis Cluster every call runs on one slot. There a script publishes with
``SPUBLISH`` (:attr:`Script.sharded`), so its channel must share that tag too.
Every session script first checks that the session still exists, so a session
deleted mid-stream is never resurrected by a late write.

Every script that changes state is safe to run twice. A call whose reply was lost (a
timeout, a dropped connection) may or may not have run, so the caller sends it again,
unchanged; the second run finds the first one's mark and changes nothing:
- CREATE: the session's ``call`` token (a repeat of the same call is ``created``);
- BEGIN: the exchange's ``call`` token (a repeat of the same call is ``ok``, and publishes
  no second ``begin``);
- FLUSH: the exchange's last applied ``seq`` (a repeat returns the id it was stored under);
- FINISH: the exchange's status (once not ``running``, a repeat returns the end's id);
- SETTLE: the exchange's ``settled`` mark;
- IMPORT: its first exchange's key (a repeat finds it and writes nothing);
- COMMIT: the archive's ``call:N`` token (a repeat of the same call is ``ok``);
- ADMIT: the exchange's place in the running set (a repeat is ``ok`` and counts nothing);
- RELEASE: the same place (only the call that removes it adds the exchange's tokens).
RATE is the one script that is not: a retried request is a second request.
So the log holds each delta once, in order, and usage counters move once per applied call.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

# Lua shared by the scripts that count usage. add_usage(key, first) adds the six increments
# ARGV[first .. first + 5] (in, out, cr, cc, cc5m, cc1h: records.usage_args' order) to a hash's
# counters. A hash stored before cache writes were split has 'cc' but no 'cc5m': its writes
# were 5-minute ones, so 'cc5m' starts from 'cc' before the first split increment lands.
_ADD_USAGE = """
local USAGE_FIELDS = {'in', 'out', 'cr', 'cc', 'cc5m', 'cc1h'}
local function add_usage(key, first)
  if tonumber(ARGV[first + 4]) ~= 0 or tonumber(ARGV[first + 5]) ~= 0 then
    redis.call('HSETNX', key, 'cc5m', redis.call('HGET', key, 'cc') or 0)
  end
  for i, field in ipairs(USAGE_FIELDS) do
    local delta = tonumber(ARGV[first + i - 1])
    if delta ~= 0 then redis.call('HINCRBY', key, field, delta) end
  end
end
"""


def _counting(body: str) -> str:
    """A script body that calls add_usage, with the function defined before it."""
    return _ADD_USAGE + body


# KEYS: session
# ARGV: owner, ttl_s, call (a token unique to this create call), then the session's fields
#       and values (``call`` among them)
# Returns created (also for a repeat of this very call), exists (the owner's own session,
# made by another call) or taken (another owner's).
CREATE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner ~= ARGV[1] then return 'taken' end
  if redis.call('HGET', KEYS[1], 'call') == ARGV[3] then return 'created' end
  return 'exists'
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 'created'
"""

# KEYS: session, lock, exchanges
# ARGV: owner, the exchange key without its id (``Keys.exchange(sid, "")``)
# Returns {} when there is no such session for this owner; else {session, locked, exchanges}:
# the session's fields and values, 1 when its run lock is held, and each exchange's fields
# and values, oldest first. What a new turn reads, in one round trip; it writes nothing.
# The exchange keys are built here, undeclared: while a cluster moves the session's slot and
# some have left, Redis fails the call ("non local key"); the caller then reads them itself.
TURN_CONTEXT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return {} end
local exchanges = {}
for i, xid in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  exchanges[i] = redis.call('HGETALL', ARGV[2] .. xid)
end
return {redis.call('HGETALL', KEYS[1]), redis.call('EXISTS', KEYS[2]), exchanges}
"""

# KEYS: session, lock, exchanges, exchange, cancel, channel
# ARGV: xid, owner, now_ms, lock_ttl_ms, input_text, session_ttl_s, expires_ms, params_json,
#       call (a token unique to this begin call)
# Returns ok, missing (no such session for this owner), duplicate (xid taken by another
# call) or busy.
# The call that stores the exchange publishes ``begin|<now_ms>-0|<xid>`` on the session's
# channel, so a watcher of the whole session learns of the new exchange without polling;
# a repeat of the call publishes nothing. The begin is not logged: the exchange list is.
BEGIN = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'missing' end
if redis.call('EXISTS', KEYS[4]) == 1 then
  if redis.call('HGET', KEYS[4], 'call') == ARGV[9] then return 'ok' end
  return 'duplicate'
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then return 'busy' end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[4], 'xid', ARGV[1], 'input', ARGV[5], 'text', '', 'status', 'running',
  'created', ARGV[3], 'in', 0, 'out', 0, 'cr', 0, 'cc', 0, 'cc5m', 0, 'cc1h', 0,
  'params', ARGV[8], 'call', ARGV[9], 'seq', 0)
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'updated', ARGV[3], 'expires', ARGV[7])
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do redis.call('EXPIRE', key, ARGV[6]) end
redis.call('PUBLISH', KEYS[6], 'begin|' .. ARGV[3] .. '-0|' .. ARGV[1])
return 'ok'
"""

# KEYS: session, exchange, log, channel, cancel, lock
# ARGV: seq, data_json, d_in, d_out, d_cr, d_cc, d_cc5m, d_cc1h, lock_ttl_ms, log_ttl_s
# Returns {stream_id, cancel_requested, repeated}; stream_id is '' when the session is gone.
# A seq at or below the last applied one is a repeat: it returns the id the last applied
# delta was stored under, with repeated = 1, and writes nothing.
FLUSH = _counting("""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', 1, 0} end
local seq = tonumber(ARGV[1])
if seq <= tonumber(redis.call('HGET', KEYS[2], 'seq') or '0') then
  return {redis.call('HGET', KEYS[2], 'lastid') or '', redis.call('EXISTS', KEYS[5]), 1}
end
local id = redis.call('XADD', KEYS[3], '*', 'k', 'delta', 'd', ARGV[2])
redis.call('HSET', KEYS[2], 'seq', seq, 'lastid', id)
redis.call('EXPIRE', KEYS[3], ARGV[10])
add_usage(KEYS[1], 3)
add_usage(KEYS[2], 3)
redis.call('PUBLISH', KEYS[4], 'delta|' .. id .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[6], ARGV[9])
return {id, redis.call('EXISTS', KEYS[5]), 0}
""")

# KEYS: session, exchange, log, channel, cancel, lock, exchanges, archives
# ARGV: xid, kind, payload_json, text, status, reason, error_json,
#       in, out, cr, cc, cc5m, cc1h (final),
#       d_in, d_out, d_cr, d_cc, d_cc5m, d_cc1h (not yet counted on the session),
#       now_ms, session_ttl_s, log_ttl_s, expires_ms, first_token_ms ('' when no text came)
# A completed exchange counts as answered on the session.
# Returns the end event's stream id, or '' when the session is gone. A gone session still
# publishes the end event (its id taken from the log before the log goes), so open streams close.
# An exchange already ended (a repeat, or the reaper got there first) keeps its first end:
# the call returns that end's id and writes nothing.
FINISH = _counting("""
if redis.call('EXISTS', KEYS[1]) == 0 then
  local gone = redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'd', ARGV[3])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
  if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
  redis.call('PUBLISH', KEYS[4], ARGV[2] .. '|' .. gone .. '|' .. ARGV[3])
  return ''
end
if redis.call('HGET', KEYS[2], 'status') ~= 'running' then
  return redis.call('HGET', KEYS[2], 'endid') or ''
end
redis.call('HSET', KEYS[2], 'text', ARGV[4], 'status', ARGV[5], 'reason', ARGV[6],
  'in', ARGV[8], 'out', ARGV[9], 'cr', ARGV[10], 'cc', ARGV[11], 'cc5m', ARGV[12],
  'cc1h', ARGV[13], 'completed', ARGV[20])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'error', ARGV[7]) end
if ARGV[24] ~= '' then redis.call('HSET', KEYS[2], 'first', ARGV[24]) end
add_usage(KEYS[1], 14)
if ARGV[5] == 'completed' then redis.call('HINCRBY', KEYS[1], 'answered', 1) end
redis.call('HSET', KEYS[1], 'updated', ARGV[20], 'expires', ARGV[23])
local id = redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('HSET', KEYS[2], 'endid', id)
redis.call('EXPIRE', KEYS[3], ARGV[22])
redis.call('PUBLISH', KEYS[4], ARGV[2] .. '|' .. id .. '|' .. ARGV[3])
if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
redis.call('DEL', KEYS[5])
redis.call('EXPIRE', KEYS[1], ARGV[21])
redis.call('EXPIRE', KEYS[7], ARGV[21])
redis.call('EXPIRE', KEYS[8], ARGV[21])
local prefix = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[1])
for _, xid in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
  redis.call('EXPIRE', prefix .. xid, ARGV[21])
end
return id
""")

# KEYS: session, exchange
# ARGV: reply ('' keeps the stored one), has_reply ('1'/'0')
# A cancelled exchange either gets the caller's reply, and counts as answered, or is dropped
# from the history. Returns 1, or 0 when the exchange is gone or did not end cancelled.
SETTLE = """
if redis.call('HGET', KEYS[2], 'status') ~= 'cancelled' then return 0 end
if redis.call('HSETNX', KEYS[2], 'settled', 1) == 0 then return 1 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'text', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'answered', 1)
else
  redis.call('HSET', KEYS[2], 'dropped', 1)
end
return 1
"""

# KEYS: session, exchanges, lock, archives, then one exchange key per message
# ARGV: owner, now_ms, session_ttl_s, expires_ms, then xid, input, text per message
# Imported messages are completed exchanges the model never ran (see streams.history).
# Returns ok, missing or busy (an exchange is running: its messages come first).
IMPORT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'missing' end
if redis.call('EXISTS', KEYS[5]) == 1 then return 'ok' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'busy' end
for i = 5, #KEYS do
  local a = 5 + (i - 5) * 3
  redis.call('HSET', KEYS[i], 'xid', ARGV[a], 'input', ARGV[a + 1], 'text', ARGV[a + 2],
    'status', 'completed', 'created', ARGV[2], 'completed', ARGV[2], 'in', 0, 'out', 0,
    'cr', 0, 'cc', 0, 'cc5m', 0, 'cc1h', 0, 'params', '{}', 'imported', 1, 'seq', 0)
  redis.call('RPUSH', KEYS[2], ARGV[a])
end
redis.call('HINCRBY', KEYS[1], 'count', #KEYS - 4)
redis.call('HSET', KEYS[1], 'updated', ARGV[2], 'expires', ARGV[4])
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[4]}) do redis.call('EXPIRE', key, ARGV[3]) end
local prefix = string.sub(KEYS[5], 1, #KEYS[5] - #ARGV[5])
for _, xid in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('EXPIRE', prefix .. xid, ARGV[3])
end
return 'ok'
"""

# KEYS: session, archives
# ARGV: owner, number, cut, archive_json, keep, now_ms, d_in, d_out, d_cr, d_cc, d_cc5m,
#       d_cc1h, call
# Stores archive ``number``, which must follow the session's last one, moves the session's
# cut past the messages it archived and counts the summary's usage on the session.
# Returns ok, missing, or conflict (another commit got there first).
COMMIT = _counting("""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'missing' end
local done = redis.call('HGET', KEYS[2], 'call:' .. ARGV[2])
if done then
  if done == ARGV[13] then return 'ok' end
  return 'conflict'
end
if tonumber(redis.call('HGET', KEYS[1], 'commits') or '0') ~= tonumber(ARGV[2]) - 1 then
  return 'conflict'
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4], 'call:' .. ARGV[2], ARGV[13])
redis.call('HSET', KEYS[1], 'commits', ARGV[2], 'cut', ARGV[3], 'keep', ARGV[5],
  'lastcommit', ARGV[6], 'updated', ARGV[6])
add_usage(KEYS[1], 7)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 'ok'
""")


# KEYS: bucket (a hash: tokens, at)
# ARGV: rate (tokens added per second), burst (the bucket's size)
# Returns {allowed (1 or 0), remaining (whole tokens left), retry_ms (until the next token
# when refused, else 0), full_ms (until the bucket is full again)}. Time is the Redis
# server's, so every worker refills the same bucket by the same clock.
RATE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - at) * rate / 1000)
local allowed, retry = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now_ms)
local full = math.ceil((burst - tokens) * 1000 / rate)
redis.call('PEXPIRE', KEYS[1], full + 1000)
return {allowed, math.floor(tokens), retry, full}
"""

# KEYS: running (a sorted set: xid -> lease deadline ms), usage (a hash: tokens, exchanges)
# ARGV: xid, max_running (0: no cap), token_quota (0: none), exchange_quota (0: none),
#       lease_ms, usage_ttl_s (0: the usage never expires)
# Returns {verdict, running, tokens, exchanges}: verdict is ok (admitted; also a repeat of
# this xid), busy (max_running exchanges hold a lease) or quota (a quota is spent). Leases
# past their deadline belong to processes that died; they are dropped first.
ADMIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local used = redis.call('HMGET', KEYS[2], 'tokens', 'exchanges')
local tokens, exchanges = tonumber(used[1]) or 0, tonumber(used[2]) or 0
local running = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {'ok', running, tokens, exchanges} end
local token_quota, exchange_quota = tonumber(ARGV[3]), tonumber(ARGV[4])
if (token_quota > 0 and tokens >= token_quota)
    or (exchange_quota > 0 and exchanges >= exchange_quota) then
  return {'quota', running, tokens, exchanges}
end
local cap = tonumber(ARGV[2])
if cap > 0 and running >= cap then return {'busy', running, tokens, exchanges} end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[5]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) * 2)
exchanges = redis.call('HINCRBY', KEYS[2], 'exchanges', 1)
if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[6], 'NX') end
return {'ok', running + 1, tokens, exchanges}
"""

# KEYS: running, usage (as ADMIT)
# ARGV: xid, tokens (the finished exchange's total), usage_ttl_s (0: never expires),
#       refund (1: the exchange never began, so it is not counted either)
# Returns 1 when this call released the lease and charged the tokens, 0 for a repeat (or a
# lease that already ran out: its process was taken for dead, and nothing is charged twice).
RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[2], 'exchanges', -1)
  return 1
end
redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[3], 'NX') end
return 1
"""


class Script:
    """A Lua script called by SHA; one Redis lost (a restart, ``SCRIPT FLUSH``) is sent whole."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    @cached_property
    def sharded(self) -> Script:
        """The script as a cluster runs it: it publishes with ``SPUBLISH``, so a message stays
        on the shard that owns its channel (``PUBLISH`` would reach every node)."""
        source = self.source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
        return self if source == self.source else Script(source)

    async def __call__(self, redis: Redis | RedisCluster, keys: list[str], args: list[Any]) -> Any:
        script = self.sharded if isinstance(redis, RedisCluster) else self
        try:
            return await redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(script.source, len(keys), *keys, *args)
