"""Durable state in Redis: sessions, exchanges, their indexes and replay logs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

import msgspec
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from streams.batcher import Batcher
from streams.clock import now_ms
from streams.config import EngineConfig
from streams.connect import RedisClient
from streams.errors import Conflict, NotFound, SessionBusy
from streams.keys import Keys
from streams.paging import (
    KeysetCursor,
    after_cursor,
    decode_keyset,
    decode_offset,
    encode_cursor,
)
from streams.records import exchange_from, session_from, usage_args
from streams.scripts import BEGIN, COMMIT, CREATE, IMPORT, SETTLE, TURN_CONTEXT, Script
from streams.types import (
    Archive,
    Counted,
    ErrorInfo,
    Exchange,
    ImportedMessage,
    NewSession,
    Page,
    Session,
    SessionPatch,
    SessionQuery,
    SessionSearch,
)

_SORTS = ("created", "updated")
_archive = msgspec.json.Decoder(Archive)
_SCAN_BATCH = 200


class LogEntry(msgspec.Struct):
    id: str
    kind: str
    data: bytes


class Store:
    """``batcher`` runs the reads on the hot path (a new turn's context) on the pipelined
    connection; everything else, and every write that must be retried after a lost reply,
    goes through ``redis``."""

    def __init__(
        self, redis: RedisClient, keys: Keys, config: EngineConfig, batcher: Batcher
    ) -> None:
        self.redis = redis
        self._batcher = batcher
        self.keys = keys
        self.config = config
        self._create = Script(CREATE)
        self._begin = Script(BEGIN)
        self._settle = Script(SETTLE)
        self._import = Script(IMPORT)
        self._commit = Script(COMMIT)
        self._context = Script(TURN_CONTEXT)

    # --- sessions -------------------------------------------------------------------------

    async def create_session(
        self, owner: str, new: NewSession, sid: str | None = None, *, exclusive: bool = False
    ) -> Session:
        """Create a session; a caller-chosen ``sid`` that exists is never overwritten.

        The owner's own existing session is returned as it is (two racing creates get the
        same one); another principal gets :class:`NotFound`, so it can neither take over nor
        read a session whose id it guessed. ``exclusive``: an id in use, by anyone, is a
        :class:`Conflict` instead, for APIs whose create must make a new session.
        """
        sid = sid or uuid.uuid4().hex
        call = uuid.uuid4().hex  # a retry of this call, after a lost reply, is no conflict
        now = now_ms()
        ttl = self.config.session_ttl_seconds
        record: dict[FieldT, EncodableT] = {
            "cid": sid,
            "owner": owner,
            "agent": new.agent_id,
            "version": new.agent_version or 1,
            "metadata": msgspec.json.encode(new.metadata).decode(),
            "interval": new.refresh_interval_ms or self.config.default_refresh_interval_ms,
            "count": 0,
            "in": 0,
            "out": 0,
            "cr": 0,
            "cc": 0,
            "cc5m": 0,
            "cc1h": 0,
            "created": now,
            "updated": now,
            "expires": now + ttl * 1000,
            "call": call,
        }
        if new.title is not None:
            record["title"] = new.title
        if new.user_id is not None:
            record["user"] = new.user_id
        if new.state is not None:
            record["state"] = msgspec.json.encode(new.state).decode()
        if new.attributes is not None:
            record["attrs"] = msgspec.json.encode(new.attributes).decode()
        fields = [part for pair in record.items() for part in pair]
        args = [owner, ttl, call, *fields]
        outcome = await self._create(self.redis, [self.keys.session(sid)], args)
        if exclusive and outcome != "created":
            raise Conflict(f"session {sid} already exists", details={"session_id": sid})
        if outcome == "taken":
            raise _no_session(sid)
        if outcome == "created":
            session = session_from({str(k): str(v) for k, v in record.items()}, running=False)
        else:
            session = await self.get_session(owner, sid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.index(owner, "created"), {sid: session.created_ms}, nx=True)
            pipe.zadd(self.keys.index(owner, "updated"), {sid: session.updated_ms}, nx=True)
            await pipe.execute()
        return session

    async def _load(self, owner: str, sid: str) -> tuple[dict[str, str], bool]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.session(sid))
            pipe.exists(self.keys.lock(sid))
            record, locked = await pipe.execute()
        if not record or record.get("owner") != owner:
            raise _no_session(sid)
        return record, bool(locked)

    async def get_session(self, owner: str, sid: str) -> Session:
        record, running = await self._load(owner, sid)
        return session_from(record, running=running)

    async def update_session(self, owner: str, sid: str, patch: SessionPatch) -> Session:
        await self._load(owner, sid)
        key = self.keys.session(sid)
        now = now_ms()
        changes: dict[FieldT, EncodableT] = {"updated": now}
        if not isinstance(patch.metadata, msgspec.UnsetType):
            changes["metadata"] = msgspec.json.encode(patch.metadata).decode()
        if not isinstance(patch.refresh_interval_ms, msgspec.UnsetType):
            changes["interval"] = patch.refresh_interval_ms
        if isinstance(patch.state, dict):
            changes["state"] = msgspec.json.encode(patch.state).decode()
        if isinstance(patch.attributes, dict):
            changes["attrs"] = msgspec.json.encode(patch.attributes).decode()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=changes)
            if patch.title is None:
                pipe.hdel(key, "title")
            elif not isinstance(patch.title, msgspec.UnsetType):
                pipe.hset(key, "title", patch.title)
            if patch.state is None:
                pipe.hdel(key, "state")
            if patch.attributes is None:
                pipe.hdel(key, "attrs")
            await pipe.execute()
        # The index has its own slot (the owner's): it cannot join the session's transaction.
        await self.redis.zadd(self.keys.index(owner, "updated"), {sid: now}, xx=True)
        return await self.get_session(owner, sid)

    async def delete_session(self, owner: str, sid: str) -> bool:
        record = cast(dict[str, str], await self.redis.hgetall(self.keys.session(sid)))
        if not record or record.get("owner") != owner:
            return False
        xids = cast(list[str], await self.redis.lrange(self.keys.exchanges(sid), 0, -1))
        doomed = [
            self.keys.session(sid),
            self.keys.exchanges(sid),
            self.keys.lock(sid),
            self.keys.cancel(sid),
            self.keys.archives(sid),
        ]
        for xid in xids:
            doomed += [self.keys.exchange(sid, xid), self.keys.log(sid, xid)]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*doomed)
            for sort in _SORTS:
                pipe.zrem(self.keys.index(owner, sort), sid)
            await pipe.execute()
        return True

    async def list_sessions(self, owner: str, query: SessionQuery) -> Page[Session]:
        cursor = decode_keyset(query.cursor) if query.cursor else None
        index = self.keys.index(owner, query.sort)
        descending = query.descending
        keep = _session_filter(query)
        found: list[tuple[int, str, Session]] = []
        batch = max(query.limit * 2, 50)
        start = 0
        while len(found) <= query.limit:
            entries = await self._index_window(index, cursor, descending, start, batch)
            start += len(entries)
            fresh = [(int(s), m) for m, s in entries if after_cursor(int(s), m, cursor, descending)]
            for score, sid, session in await self._sessions_of(owner, index, fresh):
                if keep(session):
                    found.append((score, sid, session))
            if len(entries) < batch:
                break
        page = found[: query.limit]
        next_cursor = None
        if len(found) > query.limit:
            score, sid, _ = page[-1]
            next_cursor = encode_cursor(KeysetCursor(score, sid))
        return Page(items=[s for _, _, s in page], next_cursor=next_cursor)

    async def search_sessions(self, owner: str, search: SessionSearch) -> Counted[Session]:
        """Every matching session of ``owner``, sorted, counted exactly, then one slice.

        An exact total needs every session read, so this costs a pass over the owner's index
        (pipelined in batches); keyset paging (:meth:`list_sessions`) stays the cheap way.
        """
        index = self.keys.index(owner, "created")
        entries = cast(
            list[tuple[str, float]], await self.redis.zrange(index, 0, -1, withscores=True)
        )
        keep = _session_filter(
            SessionQuery(
                agent_id=search.agent_id,
                user_id=search.user_id,
                title_contains=search.title_contains,
            )
        )
        matched: list[Session] = []
        for start in range(0, len(entries), _SCAN_BATCH):
            batch = [(int(score), sid) for sid, score in entries[start : start + _SCAN_BATCH]]
            matched += [s for _, _, s in await self._sessions_of(owner, index, batch) if keep(s)]
        matched.sort(key=_SEARCH_KEYS[search.sort], reverse=search.descending)
        end = search.offset + search.limit
        return Counted(items=matched[search.offset : end], total=len(matched))

    async def running_session_of(self, owner: str, xid: str) -> str | None:
        """The session of ``owner`` whose running exchange is ``xid``, if any.

        A running exchange holds its session's lock under its own id; the sessions touched
        last are looked at first, as a running exchange's session was touched when it began.
        """
        index = self.keys.index(owner, "updated")
        start = 0
        while True:
            sids = cast(
                list[str], await self.redis.zrevrange(index, start, start + _SCAN_BATCH - 1)
            )
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.get(self.keys.lock(sid))
                holders = await pipe.execute()
            for sid, holder in zip(sids, holders, strict=True):
                if holder == xid:
                    return sid
            if len(sids) < _SCAN_BATCH:
                return None
            start += _SCAN_BATCH

    async def _index_window(
        self, index: str, cursor: KeysetCursor | None, descending: bool, start: int, count: int
    ) -> list[tuple[str, float]]:
        if descending:
            top: int | str = cursor.score if cursor else "+inf"
            return cast(
                list[tuple[str, float]],
                await self.redis.zrevrangebyscore(
                    index, top, "-inf", start=start, num=count, withscores=True
                ),
            )
        bottom: int | str = cursor.score if cursor else "-inf"
        return cast(
            list[tuple[str, float]],
            await self.redis.zrangebyscore(
                index, bottom, "+inf", start=start, num=count, withscores=True
            ),
        )

    async def _sessions_of(
        self, owner: str, index: str, entries: list[tuple[int, str]]
    ) -> list[tuple[int, str, Session]]:
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, sid in entries:
                pipe.hgetall(self.keys.session(sid))
                pipe.exists(self.keys.lock(sid))
            replies = await pipe.execute()
        sessions: list[tuple[int, str, Session]] = []
        expired: list[str] = []
        for (score, sid), record, locked in zip(entries, replies[::2], replies[1::2], strict=True):
            if not record or record.get("owner") != owner:
                expired.append(sid)
                continue
            sessions.append((score, sid, session_from(record, running=bool(locked))))
        if expired:
            await self._prune(owner, expired)
        return sessions

    async def _prune(self, owner: str, sids: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sort in _SORTS:
                pipe.zrem(self.keys.index(owner, sort), *sids)
            await pipe.execute()

    # --- exchanges ------------------------------------------------------------------------

    async def begin_exchange(
        self, owner: str, sid: str, xid: str, text: str, parameters: dict[str, str], now: int
    ) -> None:
        """Take the session's run lock and store the exchange as running, atomically."""
        ttl = self.config.session_ttl_seconds
        keys = [
            self.keys.session(sid),
            self.keys.lock(sid),
            self.keys.exchanges(sid),
            self.keys.exchange(sid, xid),
            self.keys.cancel(sid),
            self.keys.channel(sid),
        ]
        params = msgspec.json.encode(parameters)
        call = uuid.uuid4().hex  # a retry of this call, after a lost reply, is no duplicate
        expires = now + ttl * 1000
        args = [xid, owner, now, self.config.lock_ttl_ms, text, ttl, expires, params, call]
        outcome = await self._begin(self.redis, keys, args)
        if outcome == "missing":
            raise _no_session(sid)
        if outcome == "duplicate":
            raise Conflict(
                f"an exchange with id {xid} already exists", details={"exchange_id": xid}
            )
        if outcome == "busy":
            raise SessionBusy(
                "the session already has an exchange running", details={"session_id": sid}
            )
        await self.redis.zadd(self.keys.index(owner, "updated"), {sid: now}, xx=True)

    async def running_exchange_id(self, sid: str) -> str | None:
        return cast(str | None, await self.redis.get(self.keys.lock(sid)))

    async def latest_exchange_id(self, sid: str) -> str | None:
        return cast(str | None, await self.redis.lindex(self.keys.exchanges(sid), -1))

    async def get_exchange(self, sid: str, xid: str) -> Exchange | None:
        record = cast(dict[str, str], await self.redis.hgetall(self.keys.exchange(sid, xid)))
        return exchange_from(sid, record) if record else None

    async def list_exchanges(
        self, owner: str, sid: str, limit: int, cursor: str | None
    ) -> Page[Exchange]:
        await self._load(owner, sid)
        offset = decode_offset(cursor) if cursor else 0
        xids = cast(
            list[str], await self.redis.lrange(self.keys.exchanges(sid), offset, offset + limit)
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.lock(sid))
            for xid in xids[:limit]:
                pipe.hgetall(self.keys.exchange(sid, xid))
            running, *records = await pipe.execute()
        data = [ended_orphan(exchange_from(sid, r), running) for r in records if r]
        more = len(xids) > limit
        next_cursor = encode_cursor(offset + limit) if more else None
        return Page(items=data, next_cursor=next_cursor)

    async def completed_history(self, sid: str) -> list[Exchange]:
        """Every finished exchange not dropped, oldest first, for the model's context."""
        xids = cast(list[str], await self.redis.lrange(self.keys.exchanges(sid), 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for xid in xids:
                pipe.hgetall(self.keys.exchange(sid, xid))
            records = await pipe.execute()
        return _history(sid, records)

    async def turn_context(self, owner: str, sid: str) -> tuple[Session, list[Exchange]]:
        """The session and its :meth:`completed_history`, read in one round trip."""
        keys = [self.keys.session(sid), self.keys.lock(sid), self.keys.exchanges(sid)]
        args = [owner, self.keys.exchange(sid, "")]
        try:
            reply = await self._batcher.call(self._context, keys, args)
        except ResponseError as error:
            if "non local key" not in str(error):
                raise
            # The session's slot is moving between cluster nodes and some of its exchanges
            # have left (the script names them itself, so it is not redirected): read them
            # where they are now.
            return await self.get_session(owner, sid), await self.completed_history(sid)
        if not reply:
            raise _no_session(sid)
        fields, locked, records = reply
        session = session_from(_pairs(fields), running=bool(locked))
        return session, _history(sid, [_pairs(record) for record in records])

    async def exchanges_from(
        self, sid: str, start: int, count: int | None = None
    ) -> tuple[list[Exchange], str | None]:
        """The session's exchanges from list position ``start`` (``count`` of them, or all),
        oldest first, and the id of the one running now (None: none is)."""
        stop = -1 if count is None else start + count - 1
        xids = cast(list[str], await self.redis.lrange(self.keys.exchanges(sid), start, stop))
        async with self.redis.pipeline(transaction=False) as pipe:
            for xid in xids:
                pipe.hgetall(self.keys.exchange(sid, xid))
            pipe.get(self.keys.lock(sid))  # after the records: one begun since is no orphan
            *records, running = await pipe.execute()
        return [exchange_from(sid, r) for r in records if r], running

    async def exchange_index(self, sid: str, xid: str) -> int | None:
        """Where exchange ``xid`` stands in the session's list (0 is the first), if it does."""
        found = await self.redis.lpos(self.keys.exchanges(sid), xid)
        return None if found is None else int(cast(int, found))

    async def logged(self, sid: str, xid: str, entry_id: str) -> bool:
        """Whether exchange ``xid``'s replay log holds the entry ``entry_id``."""
        log = self.keys.log(sid, xid)
        return bool(await self.redis.xrange(log, entry_id, entry_id, count=1))

    async def import_messages(
        self, owner: str, sid: str, messages: list[ImportedMessage], now: int
    ) -> None:
        """Append ``messages`` to the history as imported exchanges, in one atomic step."""
        ttl = self.config.session_ttl_seconds
        xids = [uuid.uuid4().hex for _ in messages]
        keys = [
            self.keys.session(sid),
            self.keys.exchanges(sid),
            self.keys.lock(sid),
            self.keys.archives(sid),
            *(self.keys.exchange(sid, xid) for xid in xids),
        ]
        args: list[EncodableT] = [owner, now, ttl, now + ttl * 1000]
        for xid, m in zip(xids, messages, strict=True):
            args += [xid, m.text, ""] if m.role == "user" else [xid, "", m.text]
        outcome = await self._import(self.redis, keys, args)
        if outcome == "missing":
            raise _no_session(sid)
        if outcome == "busy":
            raise SessionBusy("the session has an exchange running", details={"session_id": sid})
        await self.redis.zadd(self.keys.index(owner, "updated"), {sid: now}, xx=True)

    async def archives(self, sid: str) -> list[Archive]:
        """The session's archives, oldest first."""
        record = cast(dict[str, str], await self.redis.hgetall(self.keys.archives(sid)))
        found = [_archive.decode(v) for k, v in record.items() if k.isdigit()]
        return sorted(found, key=lambda a: a.number)

    async def commit(self, owner: str, sid: str, archive: Archive, keep: int) -> None:
        """Store ``archive`` and move the session's cut past it, atomically."""
        keys = [self.keys.session(sid), self.keys.archives(sid)]
        call = uuid.uuid4().hex  # a retry of this call, after a lost reply, is no conflict
        args = [
            owner,
            archive.number,
            archive.last,
            msgspec.json.encode(archive),
            keep,
            archive.created_ms,
            *usage_args(archive.usage),
            call,
        ]
        outcome = await self._commit(self.redis, keys, args)
        if outcome == "missing":
            raise _no_session(sid)
        if outcome == "conflict":
            raise Conflict(
                "another commit of this session finished first; commit again",
                details={"session_id": sid},
            )
        now = archive.created_ms
        await self.redis.zadd(self.keys.index(owner, "updated"), {sid: now}, xx=True)

    async def read_log(self, sid: str, xid: str, after: str | None) -> list[LogEntry]:
        start = f"({after}" if after else "-"
        raw = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrange(self.keys.log(sid, xid), start, "+"),
        )
        return [LogEntry(entry_id, fields["k"], fields["d"].encode()) for entry_id, fields in raw]

    async def read_logs(
        self, sid: str, wanted: list[tuple[str, str | None]]
    ) -> list[list[LogEntry]]:
        """:meth:`read_log` of several exchanges at once: (xid, after) each, in one trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for xid, after in wanted:
                pipe.xrange(self.keys.log(sid, xid), f"({after}" if after else "-", "+")
            found = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        return [[LogEntry(i, f["k"], f["d"].encode()) for i, f in raw] for raw in found]

    async def exchange_of_event(self, sid: str, event_id: str, recent: int = 8) -> str | None:
        """Which of the session's latest exchanges wrote ``event_id`` to its replay log."""
        xids = cast(list[str], await self.redis.lrange(self.keys.exchanges(sid), -recent, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for xid in xids:
                pipe.xrange(self.keys.log(sid, xid), event_id, event_id, count=1)
            found = await pipe.execute()
        return next((x for x, hit in zip(xids, found, strict=True) if hit), None)

    async def settle_cancelled(self, sid: str, xid: str, reply: str | None) -> None:
        """Give a cancelled exchange the caller's ``reply``, or drop it from the history."""
        keys = [self.keys.session(sid), self.keys.exchange(sid, xid)]
        await self._settle(self.redis, keys, [reply or "", "0" if reply is None else "1"])

    async def request_cancel(self, sid: str) -> None:
        await self.redis.set(self.keys.cancel(sid), "1", px=self.config.lock_ttl_ms)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


def _no_session(sid: str) -> NotFound:
    return NotFound(f"session {sid} not found", resource="session", details={"session_id": sid})


def ended_orphan(exchange: Exchange, running: str | None) -> Exchange:
    """A "running" exchange whose runner no longer holds the lock died with its process:
    it reads as failed, interrupted (``running`` is the lock's holder)."""
    if exchange.status != "running" or exchange.exchange_id == running:
        return exchange
    return msgspec.structs.replace(
        exchange,
        status="failed",
        finish_reason="interrupted",
        error=ErrorInfo(
            code="interrupted", message="the server running this exchange stopped", retryable=True
        ),
    )


_SEARCH_KEYS: dict[str, Callable[[Session], tuple[Any, ...]]] = {
    "created": lambda s: (s.created_ms, s.session_id),
    "updated": lambda s: (s.updated_ms, s.session_id),
    "title": lambda s: ((s.title or "").casefold(), s.created_ms, s.session_id),
}


def _session_filter(query: SessionQuery) -> Callable[[Session], bool]:
    needle = query.title_contains.casefold() if query.title_contains else None

    def keep(session: Session) -> bool:
        if query.agent_id is not None and session.agent_id != query.agent_id:
            return False
        if query.status is not None and session.status != query.status:
            return False
        if query.user_id is not None and session.user_id != query.user_id:
            return False
        return needle is None or needle in (session.title or "").casefold()

    return keep


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash as HGETALL's flat reply (inside a script) gives it."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _history(sid: str, records: list[dict[str, str]]) -> list[Exchange]:
    return [
        exchange_from(sid, r)
        for r in records
        if r and r.get("status", "running") != "running" and r.get("dropped") != "1"
    ]
