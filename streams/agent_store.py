"""The agent registry in Redis: immutable, numbered versions of each agent.

Layout: one hash per agent, ``{prefix}:{agents}:a:<agentId>``, holding ``latest``, per
version N ``d:N`` (the definition as canonical JSON) and ``t:N`` (when it was published), and
``archived`` (when, once the agent is archived: it then takes no new version); and a sorted
set of agent ids (all scores 0, so it pages in id order). Agents are global: every principal
sees and uses the same ones. They never expire.

Versions are numbered inside a Lua script, so two publishers never get the same number.
A version, once written, is never changed, which is also why this process may cache it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import msgspec

from streams.agents import Agent, AgentRecord
from streams.clock import iso, now_ms
from streams.connect import RedisClient
from streams.errors import Archived, Conflict, NotFound
from streams.guard import redis_guarded
from streams.id_index import IdPage, Position, page_of_ids
from streams.keys import Keys
from streams.paging import (
    KeysetCursor,
    decode_keyset,
    decode_offset,
    encode_cursor,
)
from streams.scripts import Script
from streams.types import Page

Mode = Literal["create", "publish", "sync", "seed"]
AgentCheck = Callable[[Agent], None]
Keep = Callable[[AgentRecord], bool]

# KEYS: agent hash, id index; ARGV: mode, agent_id, definition_json, now_ms, call[, expected]
# Returns {outcome, version}: ok (written), same (nothing to write), exists, missing, and for
# publish stale (latest is not ``expected``, when given) or archived.
# ``call`` is unique to one write: the same call run again (its reply was lost) finds its
# own version and answers ok without writing another.
_WRITE = """
local latest = tonumber(redis.call('HGET', KEYS[1], 'latest') or '0')
if latest > 0 and redis.call('HGET', KEYS[1], 'c:' .. latest) == ARGV[5] then
  return {'ok', latest}
end
local mode = ARGV[1]
if mode == 'create' and latest > 0 then return {'exists', latest} end
if mode == 'publish' then
  if latest == 0 then return {'missing', 0} end
  local expected = tonumber(ARGV[6] or '')
  if expected and expected ~= latest then return {'stale', latest} end
  if redis.call('HEXISTS', KEYS[1], 'archived') == 1 then return {'archived', latest} end
end
if mode == 'seed' and latest > 0 then return {'same', latest} end
if mode == 'sync' and latest > 0 and redis.call('HGET', KEYS[1], 'd:' .. latest) == ARGV[3] then
  return {'same', latest}
end
local v = latest + 1
redis.call('HSET', KEYS[1], 'latest', v, 'd:' .. v, ARGV[3], 't:' .. v, ARGV[4], 'c:' .. v, ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return {'ok', v}
"""

# KEYS: agent hash; ARGV: version ('' for the latest)
# Returns {version, definition_json, published_ms, created_ms, archived_ms or ''}, or {latest}
# when that version is absent.
_READ = """
local v = ARGV[1]
local latest = redis.call('HGET', KEYS[1], 'latest')
if not latest then return {} end
if v == '' then v = latest end
local d = redis.call('HGET', KEYS[1], 'd:' .. v)
if not d then return {latest} end
local archived = redis.call('HGET', KEYS[1], 'archived') or ''
return {v, d, redis.call('HGET', KEYS[1], 't:' .. v), redis.call('HGET', KEYS[1], 't:1'), archived}
"""

# KEYS: agent hash; ARGV: now_ms. Returns 0 when there is no such agent; archiving again
# keeps the first date.
_ARCHIVE = """
if redis.call('HEXISTS', KEYS[1], 'latest') == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'archived', ARGV[1])
return 1
"""

_CACHE_MAX = 4096


def definition(agent: Agent) -> bytes:
    """The stored form: everything but the number and date, keys sorted, so equal is equal."""
    bare = msgspec.structs.replace(agent, version=0, created_at="")
    return msgspec.json.encode(bare, order="sorted")


def _agent(raw: str, version: int, published_ms: int) -> Agent:
    bare = msgspec.json.decode(raw, type=Agent)
    return msgspec.structs.replace(bare, version=version, created_at=iso(published_ms))


def _record(raw: str, version: int, published: Any, created: Any, archived: Any) -> AgentRecord:
    """A record from the hash's fields as Redis answers them (``archived``: None or '')."""
    return AgentRecord(
        agent=_agent(raw, version, int(published)),
        created_ms=int(created),
        published_ms=int(published),
        archived_ms=int(archived) if archived else None,
    )


class RedisAgentCatalog:
    """Implements :class:`streams.agents.AgentCatalog`, plus the registry's own operations.

    ``check`` validates a definition before it is written (it raises ``InvalidInput``).
    ``builtins`` answer :meth:`resolve` for their ids when Redis has no such agent (until
    :meth:`seed` has written them), so the built-in agents always work.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        check: AgentCheck | None = None,
        builtins: Sequence[Agent] = (),
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._check = check or (lambda _agent: None)
        self._builtins = {agent.agent_id: agent for agent in builtins}
        self._write = Script(_WRITE)
        self._read = Script(_READ)
        self._archive = Script(_ARCHIVE)
        self._versions: dict[tuple[str, int], Agent] = {}

    # --- AgentCatalog ----------------------------------------------------------------------

    async def resolve(self, agent_id: str, version: int | None) -> Agent:
        try:
            return await self.get(agent_id, version)
        except NotFound:
            builtin = self._builtins.get(agent_id)
            if builtin is None or version not in (None, builtin.version):
                raise
            if await self._redis.exists(self._keys.agent(agent_id)):
                raise
            return builtin

    # --- reads -----------------------------------------------------------------------------

    async def get(self, agent_id: str, version: int | None = None) -> Agent:
        """The given version, or the latest one; :class:`NotFound` naming what is missing."""
        if version is not None and (cached := self._versions.get((agent_id, version))):
            return cached
        return (await self.record(agent_id, version)).agent

    @redis_guarded
    async def record(self, agent_id: str, version: int | None = None) -> AgentRecord:
        """Like :meth:`get`, with the agent's dates; never cached, as archiving may change."""
        reply = await self._read(self._redis, [self._keys.agent(agent_id)], [version or ""])
        if not reply:
            raise _no_agent(agent_id)
        if len(reply) == 1:
            raise NotFound(
                f"agent {agent_id} has no version {version} (latest is {reply[0]})",
                resource="agent_version",
                details={"agent_id": agent_id, "agent_version": version, "latest": int(reply[0])},
            )
        record = _record(reply[1], int(reply[0]), reply[2], reply[3], reply[4])
        self._remember(record.agent)
        return record

    def _remember(self, agent: Agent) -> None:
        if len(self._versions) >= _CACHE_MAX:
            self._versions.clear()
        self._versions[(agent.agent_id, agent.version)] = agent

    @redis_guarded
    async def list_agents(self, limit: int, cursor: str | None) -> Page[Agent]:
        """Each agent at its latest version, in agentId order."""
        after = f"({decode_keyset(cursor).member}" if cursor else "-"
        ids = cast(
            list[str],
            await self._redis.zrangebylex(self._keys.agent_index(), after, "+", 0, limit + 1),
        )
        agents = await self._latest_of(ids[:limit])
        more = len(ids) > limit
        last = KeysetCursor(0, ids[limit - 1]) if more else None
        return Page(items=agents, next_cursor=encode_cursor(last) if last else None)

    async def _latest_of(self, agent_ids: list[str]) -> list[Agent]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.hget(self._keys.agent(agent_id), "latest")
            latest = await pipe.execute()
        found = [(a, int(v)) for a, v in zip(agent_ids, latest, strict=True) if v is not None]
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id, version in found:
                pipe.hmget(self._keys.agent(agent_id), [f"d:{version}", f"t:{version}"])
            replies = await pipe.execute()
        return [
            _agent(raw, version, int(published))
            for (_, version), (raw, published) in zip(found, replies, strict=True)
            if raw is not None
        ]

    @redis_guarded
    async def list_records(self, limit: int, position: Position, keep: Keep) -> IdPage[AgentRecord]:
        """Each agent at its latest version, in agentId order, those ``keep`` accepts."""

        async def load(agent_ids: list[str]) -> list[AgentRecord | None]:
            return [
                r if r is not None and keep(r) else None for r in await self._records(agent_ids)
            ]

        return await page_of_ids(self._redis, self._keys.agent_index(), limit, position, load)

    async def _records(self, agent_ids: list[str]) -> list[AgentRecord | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.hmget(self._keys.agent(agent_id), ["latest", "t:1", "archived"])
            heads = await pipe.execute()
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id, (latest, _, _) in zip(agent_ids, heads, strict=True):
                pipe.hmget(self._keys.agent(agent_id), [f"d:{latest}", f"t:{latest}"])
            bodies = await pipe.execute()
        return [
            _record(raw, int(latest), published, created, archived) if raw is not None else None
            for (latest, created, archived), (raw, published) in zip(heads, bodies, strict=True)
        ]

    async def list_versions(self, agent_id: str, limit: int, cursor: str | None) -> Page[Agent]:
        """Every version of one agent, oldest first."""
        page = await self.list_version_records(agent_id, limit, cursor)
        return Page(items=[r.agent for r in page.items], next_cursor=page.next_cursor)

    @redis_guarded
    async def list_version_records(
        self, agent_id: str, limit: int, cursor: str | None
    ) -> Page[AgentRecord]:
        """Every version of one agent, oldest first, with the agent's dates."""
        key = self._keys.agent(agent_id)
        latest, created, archived = await self._redis.hmget(key, ["latest", "t:1", "archived"])
        if latest is None:
            raise _no_agent(agent_id)
        first = decode_offset(cursor) if cursor else 1
        numbers = list(range(max(first, 1), min(first + limit, int(latest) + 1)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.hmget(key, [f"d:{number}", f"t:{number}"])
            replies = await pipe.execute()
        records = [
            _record(raw, number, published, created, archived)
            for number, (raw, published) in zip(numbers, replies, strict=True)
            if raw is not None
        ]
        more = first + limit <= int(latest)
        next_cursor = encode_cursor(first + limit) if more else None
        return Page(items=records, next_cursor=next_cursor)

    # --- writes ----------------------------------------------------------------------------

    async def create(self, agent: Agent) -> Agent:
        """Version 1 of a new agent; :class:`Conflict` when the agentId is taken."""
        self._check(agent)
        outcome, version = await self._store("create", agent)
        if outcome == "exists":
            raise Conflict(
                f"agent {agent.agent_id} already exists; publish a new version instead",
                details={"agent_id": agent.agent_id, "latest": version},
            )
        return await self.get(agent.agent_id, version)

    async def publish(self, agent: Agent, expected: int | None = None) -> Agent:
        """A new version (latest + 1) of an existing agent that is not archived.

        ``expected``, when given, must be the latest version (else :class:`Conflict`), so two
        editors of the same version never overwrite each other unknowingly.
        """
        self._check(agent)
        agent_id = agent.agent_id
        outcome, version = await self._store("publish", agent, expected)
        if outcome == "missing":
            raise _no_agent(agent_id)
        if outcome == "stale":
            raise Conflict(
                f"agent {agent_id} is at version {version}, not {expected}; read it again",
                details={"agent_id": agent_id, "agent_version": expected, "latest": version},
            )
        if outcome == "archived":
            raise Archived(
                f"agent {agent_id} is archived, so it takes no new version",
                resource="agent",
                details={"agent_id": agent_id},
            )
        return await self.get(agent_id, version)

    @redis_guarded
    async def archive(self, agent_id: str) -> AgentRecord:
        """Mark the agent archived: it keeps its versions and takes no new one."""
        if not await self._archive(self._redis, [self._keys.agent(agent_id)], [now_ms()]):
            raise _no_agent(agent_id)
        return await self.record(agent_id)

    async def sync(self, agent: Agent) -> tuple[Agent, bool]:
        """Publish ``agent`` unless its latest version already says the same; True if written."""
        self._check(agent)
        outcome, version = await self._store("sync", agent)
        return await self.get(agent.agent_id, version), outcome == "ok"

    async def seed(self, agents: Sequence[Agent]) -> None:
        """Write version 1 of each agent that does not exist yet; never touch existing ones."""
        for agent in agents:
            await self._store("seed", agent)

    @redis_guarded
    async def _store(
        self, mode: Mode, agent: Agent, expected: int | None = None
    ) -> tuple[str, int]:
        keys = [self._keys.agent(agent.agent_id), self._keys.agent_index()]
        call = uuid.uuid4().hex
        args = [mode, agent.agent_id, definition(agent), now_ms(), call, expected or ""]
        outcome, version = await self._write(self._redis, keys, args)
        return str(outcome), int(version)


def _no_agent(agent_id: str) -> NotFound:
    return NotFound(f"agent {agent_id} not found", resource="agent", details={"agent_id": agent_id})
