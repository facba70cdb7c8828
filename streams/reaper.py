"""Ends exchanges whose runner died with its process, so no watcher waits forever.

A runner keeps its session's run lock alive; when the lock lapses while the exchange is
still ``running``, whoever notices (a watcher's keepalive tick, a resume) claims the lock and
stores the exchange as ``failed: interrupted`` with the text its replay log holds.
"""

from __future__ import annotations

import logging
from typing import cast

import msgspec

from streams.clock import now_ms
from streams.config import EngineConfig
from streams.connect import RedisClient
from streams.ending import FINISH_SCRIPT, finish_args, finish_keys
from streams.events import Item, stream_key
from streams.keys import Keys
from streams.records import exchange_from, usage_args
from streams.store import LogEntry, Store
from streams.types import ErrorInfo, Usage

log = logging.getLogger("parley.reaper")


class Reaper:
    def __init__(self, redis: RedisClient, store: Store, keys: Keys, config: EngineConfig) -> None:
        self._redis = redis
        self._store = store
        self._keys = keys
        self._config = config

    async def alive(self, sid: str, xid: str) -> bool:
        """Whether some process still runs ``xid``; if none does, end it as interrupted."""
        holder = await self._store.running_exchange_id(sid)
        if holder == xid:
            return True
        await self.reap(sid, xid)
        return False

    async def reap(self, sid: str, xid: str) -> bool:
        lock = self._keys.lock(sid)
        if not await self._redis.set(lock, xid, nx=True, px=self._config.lock_ttl_ms):
            return False
        try:
            record = cast(dict[str, str], await self._redis.hgetall(self._keys.exchange(sid, xid)))
            if record.get("status") != "running":
                return False
            entries = await self._store.read_log(sid, xid, None)
            if any(e.kind == "end" for e in entries):
                return False
            await self._store_interrupted(sid, xid, record, entries)
            log.warning("ended an exchange whose server stopped", extra={"exchangeId": xid})
            return True
        finally:
            await self._release(lock, xid)

    async def _store_interrupted(
        self, sid: str, xid: str, record: dict[str, str], entries: list[LogEntry]
    ) -> None:
        texts = [Item(e.kind, e.id, e.data).delta().text for e in entries]
        completed = now_ms()
        exchange = msgspec.structs.replace(
            exchange_from(sid, record),
            reply_text="".join(texts),
            # The first delta is flushed as soon as its text arrives: its log id tells when.
            first_token_ms=stream_key(entries[0].id)[0] if entries else None,
            status="failed",
            finish_reason="interrupted",
            completed_ms=completed,
            error=ErrorInfo(
                code="interrupted",
                message="the server running this exchange stopped before it finished",
                retryable=True,
            ),
        )
        # The flushes already counted the record's usage on the session: nothing to add.
        args = finish_args(exchange, usage_args(Usage()), completed, self._config)
        await FINISH_SCRIPT(self._redis, finish_keys(self._keys, sid, xid), args)

    async def _release(self, lock: str, xid: str) -> None:
        if await self._redis.get(lock) == xid:
            await self._redis.delete(lock)
