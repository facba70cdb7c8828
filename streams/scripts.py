"""Lua scripts that make each multi-key step of an exchange atomic and one round trip.

All keys a script touches share the session's hash tag. Every script first checks that the
session still exists, so a session deleted mid-stream is never resurrected by a late write.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

# KEYS: session, lock, exchanges, exchange, cancel
# ARGV: xid, owner, now_ms, lock_ttl_ms, input_text, session_ttl_s, expires_ms, params_json
# Returns ok, missing (no such session for this owner), duplicate (xid taken) or busy.
BEGIN = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 'missing' end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'duplicate' end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then return 'busy' end
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[4], 'xid', ARGV[1], 'input', ARGV[5], 'text', '', 'status', 'running',
  'created', ARGV[3], 'in', 0, 'out', 0, 'cr', 0, 'cc', 0, 'params', ARGV[8])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'updated', ARGV[3], 'expires', ARGV[7])
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do redis.call('EXPIRE', key, ARGV[6]) end
return 'ok'
"""

# KEYS: session, exchange, log, channel, cancel, lock
# ARGV: seq, data_json, d_in, d_out, d_cr, d_cc, lock_ttl_ms, log_ttl_s
# Returns {stream_id, cancel_requested}; stream_id is '' when the session is gone.
FLUSH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', 1} end
local id = redis.call('XADD', KEYS[3], '*', 'k', 'delta', 'd', ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[8])
local fields = {'in', 'out', 'cr', 'cc'}
for i, field in ipairs(fields) do
  local delta = tonumber(ARGV[2 + i])
  if delta ~= 0 then
    redis.call('HINCRBY', KEYS[1], field, delta)
    redis.call('HINCRBY', KEYS[2], field, delta)
  end
end
redis.call('PUBLISH', KEYS[4], 'delta|' .. id .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[6], ARGV[7])
return {id, redis.call('EXISTS', KEYS[5])}
"""

# KEYS: session, exchange, log, channel, cancel, lock, exchanges
# ARGV: xid, kind, payload_json, text, status, reason, error_json,
#       in, out, cr, cc (final), d_in, d_out, d_cr, d_cc (not yet counted on the session),
#       now_ms, session_ttl_s, log_ttl_s, expires_ms
# A completed exchange counts as answered on the session.
# Returns the end event's stream id, or '' when the session is gone. A gone session still
# publishes the end event (its id taken from the log before the log goes), so open streams close.
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local gone = redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'd', ARGV[3])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[5])
  if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
  redis.call('PUBLISH', KEYS[4], ARGV[2] .. '|' .. gone .. '|' .. ARGV[3])
  return ''
end
redis.call('HSET', KEYS[2], 'text', ARGV[4], 'status', ARGV[5], 'reason', ARGV[6],
  'in', ARGV[8], 'out', ARGV[9], 'cr', ARGV[10], 'cc', ARGV[11], 'completed', ARGV[16])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'error', ARGV[7]) end
local fields = {'in', 'out', 'cr', 'cc'}
for i, field in ipairs(fields) do
  local delta = tonumber(ARGV[11 + i])
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], field, delta) end
end
if ARGV[5] == 'completed' then redis.call('HINCRBY', KEYS[1], 'answered', 1) end
redis.call('HSET', KEYS[1], 'updated', ARGV[16], 'expires', ARGV[19])
local id = redis.call('XADD', KEYS[3], '*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[18])
redis.call('PUBLISH', KEYS[4], ARGV[2] .. '|' .. id .. '|' .. ARGV[3])
if redis.call('GET', KEYS[6]) == ARGV[1] then redis.call('DEL', KEYS[6]) end
redis.call('DEL', KEYS[5])
redis.call('EXPIRE', KEYS[1], ARGV[17])
redis.call('EXPIRE', KEYS[7], ARGV[17])
local prefix = string.sub(KEYS[2], 1, #KEYS[2] - #ARGV[1])
for _, xid in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
  redis.call('EXPIRE', prefix .. xid, ARGV[17])
end
return id
"""

# KEYS: session, exchange
# ARGV: reply ('' keeps the stored one), has_reply ('1'/'0')
# A cancelled exchange either gets the caller's reply, and counts as answered, or is dropped
# from the history. Returns 1, or 0 when the exchange is gone or did not end cancelled.
SETTLE = """
if redis.call('HGET', KEYS[2], 'status') ~= 'cancelled' then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], 'text', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'answered', 1)
else
  redis.call('HSET', KEYS[2], 'dropped', 1)
end
return 1
"""


class Script:
    """A Lua script called by SHA, reloaded transparently after a Redis restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
