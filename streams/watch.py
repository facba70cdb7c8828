"""A watcher's view of one exchange: replay from the log, then live, nothing lost or twice.

The order matters: subscribe first, then read the log after the last id the client has,
then go live and drop live items at or before what was already sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.exceptions import RedisError

from streams.events import Item, stream_key
from streams.hub import Subscription
from streams.store import Store


class Ping:
    """Nothing happened for a keepalive period."""


class Reconnect:
    """This process is shutting down; the client should resume elsewhere."""


_RESYNC_RETRY = 0.25
PING = Ping()
RECONNECT = Reconnect()
WatchEvent = Item | Ping | Reconnect


class Watch:
    def __init__(
        self,
        store: Store,
        sub: Subscription,
        xid: str,
        after: str | None,
        *,
        initial: list[Item],
        closing: asyncio.Event,
        alive: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.sub = sub
        self.xid = xid
        self.last_id = after
        self._last_key = stream_key(after) if after else (0, 0)
        self._initial = initial
        self._closing = closing
        self._alive = alive

    async def events(self) -> AsyncIterator[WatchEvent]:
        try:
            if self._initial:
                self._advance(self._initial[-1])
            self.sub.settle(self._last_key)
            for item in self._initial:
                yield item
                if item.terminal:
                    return
            while True:
                if self._closing.is_set():
                    yield RECONNECT
                    return
                if self.sub.resync:
                    resynced = await self._resync()
                    if resynced is None:
                        continue
                    for item in resynced:
                        yield item
                        if item.terminal:
                            return
                items = self.sub.take()
                if not items:
                    if self.sub.ping_due:
                        self.sub.ping_due = False
                        yield PING
                        await self._check_alive()
                    else:
                        await self.sub.wakeup.wait()
                    continue
                for item in items:
                    if item.kind == "begin" or item.key <= self._last_key:
                        continue  # a begin marks the next exchange: not this watch's
                    self._advance(item)
                    yield item
                    if item.terminal:
                        return
        finally:
            self.sub.close()

    async def _resync(self) -> list[Item] | None:
        """Read what pub/sub may have lost; None while Redis is still away (retried)."""
        self.sub.resync = False
        try:
            items = await self._read_log()
        except (RedisError, OSError):
            self.sub.resync = True
            await asyncio.sleep(_RESYNC_RETRY)
            return None
        self.sub.settle(self._last_key)
        return items

    async def _check_alive(self) -> None:
        """On an idle tick: if the runner's process died, its end is now in the log."""
        if self._alive is None:
            return
        try:
            if not await self._alive():
                self.sub.resync = True
        except (RedisError, OSError):
            return

    async def _read_log(self) -> list[Item]:
        entries = await self.store.read_log(self.sub.sid, self.xid, self.last_id)
        items = [Item(e.kind, e.id, e.data) for e in entries]
        if items:
            self._advance(items[-1])
        return items

    def _advance(self, item: Item) -> None:
        self.last_id = item.id
        self._last_key = item.key
