"""One pub/sub connection, kept open: it reconnects with backoff and cuts a silent one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from streams.resp import RespConnection

log = logging.getLogger("parley.hub")

_PING_EVERY = 5.0
_DEAD_AFTER = 15.0


class Link:
    """``address`` names the server for each attempt. ``on_open`` writes the subscriptions
    on each new connection; ``on_replies`` gets what arrives; ``on_reopen`` runs after each
    reconnect (messages published in the gap are gone); ``on_lost`` after each lost
    connection or failed attempt."""

    def __init__(
        self,
        address: Callable[[], str],
        *,
        on_open: Callable[[RespConnection], None],
        on_replies: Callable[[list[object]], None],
        on_reopen: Callable[[], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._address = address
        self._on_open = on_open
        self._on_replies = on_replies
        self._on_reopen = on_reopen
        self._on_lost = on_lost
        self._conn: RespConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reads = 0
        self._connected = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="parley-link")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    def send(self, *args: str) -> None:
        """Write a command; on a dead connection it is dropped, and ``on_open`` redoes it."""
        if self._conn is not None and self.connected:
            self._conn.write(args)

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while True:
            try:
                self._conn = await RespConnection.open(self._address(), decode=False)
            except (RedisError, OSError) as exc:
                log.warning("hub connect failed", extra={"error": str(exc), "retryIn": delay})
                self._on_lost()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._on_open(self._conn)
            self._connected.set()
            if not first:
                self.reconnects += 1
                self._on_reopen()
            first = False
            try:
                await self._read_forever(self._conn)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("hub connection lost", extra={"error": str(exc)})
            finally:
                self._connected.clear()
                self._drop()
            self._on_lost()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _read_forever(self, conn: RespConnection) -> None:
        watchdog = asyncio.create_task(self._ping_forever(conn))
        try:
            while True:
                replies = await conn.replies()
                self._reads += 1
                self._on_replies(replies)
        finally:
            watchdog.cancel()

    async def _ping_forever(self, conn: RespConnection) -> None:
        """PING regularly; a connection that answers nothing for a while is cut, so it is
        replaced, without a timer on every read."""
        silent_since = asyncio.get_running_loop().time()
        seen = self._reads
        while True:
            await asyncio.sleep(_PING_EVERY)
            now = asyncio.get_running_loop().time()
            if self._reads != seen:
                seen, silent_since = self._reads, now
            elif now - silent_since > _DEAD_AFTER:
                log.warning("hub connection silent; reconnecting")
                conn.close()
                return
            conn.write(("PING",))
