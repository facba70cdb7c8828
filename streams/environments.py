"""The environment registry: named configurations that sessions reference.

Parley runs no sandboxes: an environment is not a container. Its ``config`` (networking,
packages...) is stored and shown as given, and nothing acts on it. An environment belongs
to the principal that created it, as a session does: every read and change takes the
caller's principal as ``owner``, and another principal's environment is :class:`NotFound`
(never a refusal, so that ids do not leak). They never expire.

Layout, all under the ``{envs}`` hash tag: one JSON string per environment,
``{prefix}:{envs}:e:<id>`` (its ``owner`` among the fields), and per owner a sorted set of
their ids, ``{prefix}:{envs}:owner:<principal>`` (:mod:`streams.id_index`); the ids are
time-ordered, so id order is creation order. A change is read, applied, then written only
if the stored JSON is still what was read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from streams.clock import now_ms
from streams.connect import RedisClient
from streams.errors import Archived, Conflict, NotFound
from streams.guard import redis_guarded
from streams.id_index import IdPage, Position, ordered_id, page_of_ids
from streams.keys import Keys
from streams.scripts import Script

ID_PREFIX = "env_"
_ATTEMPTS = 8

# KEYS: environment, its owner's id index; ARGV: id, json. Returns 1 (written, or this very
# write before), or 0 when the id is taken.
_CREATE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] then return 1 end
if current then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: environment; ARGV: json read, json to write. Returns 1 when written (or already so),
# 0 when the environment changed or went since it was read.
_REPLACE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] then return 1 end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# KEYS: environment, the caller's id index; ARGV: id. Returns how many keys went: 0 when
# there was none, or it is not in the caller's index (another principal's).
_DELETE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Environment(msgspec.Struct, kw_only=True):
    """``owner``: the principal that created it, the only one that sees it (one stored
    before environments had owners has none, so nobody does). ``scope`` is kept as the
    client named it and changes nothing."""

    environment_id: str
    owner: str = ""
    name: str
    description: str | None = None
    scope: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    created_ms: int
    updated_ms: int
    archived_ms: int | None = None


def new_environment_id() -> str:
    return ordered_id(ID_PREFIX)


Change = Callable[[Environment], Environment]


class RedisEnvironments:
    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._create = Script(_CREATE)
        self._replace = Script(_REPLACE)
        self._delete = Script(_DELETE)

    @redis_guarded
    async def create(self, environment: Environment) -> Environment:
        """Store a new environment, its ``owner``'s; :class:`Conflict` if its id is taken."""
        env_id = environment.environment_id
        keys = [self._keys.environment(env_id), self._keys.environment_index(environment.owner)]
        written = await self._create(self._redis, keys, [env_id, msgspec.json.encode(environment)])
        if not written:
            raise Conflict(f"environment {env_id} already exists", details={"id": env_id})
        return environment

    async def get(self, owner: str, env_id: str) -> Environment:
        """``owner``'s environment ``env_id``; :class:`NotFound` if there is none or it is
        another principal's."""
        return (await self._read(owner, env_id))[0]

    @redis_guarded
    async def list_environments(
        self, owner: str, limit: int, position: Position, *, include_archived: bool = False
    ) -> IdPage[Environment]:
        """``owner``'s, in id order, which is creation order; archived ones only when asked."""

        async def load(ids: list[str]) -> list[Environment | None]:
            if not ids:
                return []
            raws = await self._redis.mget([self._keys.environment(i) for i in ids])
            found = [_decode(raw) for raw in raws if raw is not None]
            return [
                e for e in found if e.owner == owner and (include_archived or e.archived_ms is None)
            ]

        index = self._keys.environment_index(owner)
        return await page_of_ids(self._redis, index, limit, position, load)

    async def update(self, owner: str, env_id: str, change: Change) -> Environment:
        """Apply ``change`` to the stored environment; :class:`Archived` once it is archived."""

        def unless_archived(environment: Environment) -> Environment:
            if environment.archived_ms is not None:
                raise Archived(
                    f"environment {env_id} is archived, so it cannot be updated",
                    resource="environment",
                    details={"id": env_id},
                )
            return msgspec.structs.replace(change(environment), updated_ms=now_ms())

        return await self._apply(owner, env_id, unless_archived)

    async def archive(self, owner: str, env_id: str) -> Environment:
        """Mark it archived (once: archiving again changes nothing)."""

        def archived(environment: Environment) -> Environment:
            if environment.archived_ms is not None:
                return environment
            now = now_ms()
            return msgspec.structs.replace(environment, archived_ms=now, updated_ms=now)

        return await self._apply(owner, env_id, archived)

    @redis_guarded
    async def delete(self, owner: str, env_id: str) -> None:
        """Delete ``owner``'s environment; :class:`NotFound` if there is none of theirs."""
        keys = [self._keys.environment(env_id), self._keys.environment_index(owner)]
        if not await self._delete(self._redis, keys, [env_id]):
            raise _missing(env_id)

    async def _apply(self, owner: str, env_id: str, change: Change) -> Environment:
        """Read, change, write if unchanged meanwhile; a concurrent writer makes it retry.
        The owner never changes, so the write need not check it again."""
        for _ in range(_ATTEMPTS):
            current, raw = await self._read(owner, env_id)
            changed = change(current)
            if changed is current or await self._swap(env_id, raw, changed):
                return changed
        raise Conflict(f"environment {env_id} is being changed by others; retry")

    @redis_guarded
    async def _read(self, owner: str, env_id: str) -> tuple[Environment, str | bytes]:
        raw = await self._redis.get(self._keys.environment(env_id))
        if raw is None:
            raise _missing(env_id)
        environment = _decode(raw)
        if environment.owner != owner:
            raise _missing(env_id)
        return environment, raw

    @redis_guarded
    async def _swap(self, env_id: str, raw: str | bytes, changed: Environment) -> bool:
        args = [raw, msgspec.json.encode(changed)]
        return bool(await self._replace(self._redis, [self._keys.environment(env_id)], args))


def _decode(raw: str | bytes) -> Environment:
    return msgspec.json.decode(raw, type=Environment)


def _missing(env_id: str) -> NotFound:
    return NotFound(
        f"environment {env_id} not found", resource="environment", details={"id": env_id}
    )
