"""A watcher's view of a whole session: each exchange as it begins, its deltas and its end,
history first, then live, across exchanges, nothing lost or twice.

One pub/sub channel carries a session's items in the order Redis ran its scripts: an
exchange's ``begin`` (BEGIN publishes it), its deltas, its ``end``, then the next one's.
Begins and ends name their exchange; deltas do not, so a delta belongs to the exchange
whose begin came last. Right after reading the history (at the start, after a resync) the
watcher does not know where the channel stands: the first delta it cannot place is looked
up in the running exchange's log, once, and from then on the channel's order tells.

The history is the session's exchange list (append-only, so a position in it is a stable
cursor) and each exchange's replay log while it is retained: an exchange whose log has
expired (or never had one: imported messages) is replayed as its begin and stored end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from redis.exceptions import RedisError

from streams.errors import NotFound
from streams.events import Item, stream_key
from streams.hub import Subscription
from streams.reaper import Reaper
from streams.store import LogEntry, Store, ended_orphan
from streams.types import Exchange
from streams.watch import PING, RECONNECT, Ping, Reconnect

_RESYNC_RETRY = 0.25
_BATCH = 100  # exchanges read per round trip when catching up


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happened in the session: ``item`` is exchange ``xid``'s ``begin``
    (carrying the exchange as stored when read), one of its deltas, or its ``end``."""

    xid: str
    item: Item


class Gone:
    """The session was deleted."""


GONE = Gone()
SessionEvent = Step | Ping | Reconnect | Gone


def begin_step(exchange: Exchange) -> Step:
    data = msgspec.json.encode(exchange)
    return Step(exchange.exchange_id, Item("begin", f"{exchange.created_ms}-0", data))


def end_step(exchange: Exchange) -> Step:
    """An end read from the exchange's record, for a log that has expired or never was."""
    at = exchange.completed_ms or exchange.created_ms
    return Step(exchange.exchange_id, Item("end", f"{at}-0", msgspec.json.encode(exchange)))


def logged_steps(exchange: Exchange, entries: list[LogEntry]) -> tuple[list[Step], bool]:
    """The steps of an exchange's log entries, and whether it has finished; a finished
    exchange's steps end with its end, taken from its record when the log has none."""
    xid = exchange.exchange_id
    steps = [Step(xid, Item(e.kind, e.id, e.data)) for e in entries]
    if steps and steps[-1].item.terminal:
        return steps, True
    if exchange.status == "running":
        return steps, False
    return [*steps, end_step(exchange)], True


async def history(
    store: Store, sid: str, start: int, count: int, after: str | None = None
) -> tuple[list[Step], bool]:
    """The steps of up to ``count`` exchanges from list position ``start`` (the first one
    after its log entry ``after``), and whether more follow. An exchange still running
    gives what it has so far and ends the history."""
    exchanges, running = await store.exchanges_from(sid, start, count + 1)
    logs = await store.read_logs(
        sid, [(x.exchange_id, after if i == 0 else None) for i, x in enumerate(exchanges[:count])]
    )
    steps: list[Step] = []
    for exchange, entries in zip(exchanges[:count], logs, strict=False):
        steps.append(begin_step(exchange))
        done, finished = logged_steps(ended_orphan(exchange, running), entries)
        steps += done
        if not finished:
            return steps, False
    return steps, len(exchanges) > count


class SessionWatch:
    """Follows session ``sub.sid`` from list position ``start`` (resuming that exchange
    after its log entry ``after``) until the client leaves, the session goes or the server
    shuts down. Call :meth:`prime` first: it reads the history, so its errors reach the
    caller before any byte is streamed."""

    def __init__(
        self,
        store: Store,
        reaper: Reaper,
        sub: Subscription,
        owner: str,
        *,
        start: int,
        after: str | None,
        closing: asyncio.Event,
    ) -> None:
        self.store = store
        self.reaper = reaper
        self.sub = sub
        self.sid = sub.sid
        self.owner = owner
        self._closing = closing
        self._position = start  # the list position of the first exchange not finished here
        self._current: str | None = None  # the exchange at that position, once begun here
        self._last_id = after  # its last log entry handed on
        self._last_key = stream_key(after) if after else (0, 0)
        self._finished: set[str] = set()
        self._channel: str | None = None  # whose deltas the channel carries now
        self._placed = False  # whether _channel is known
        self._initial: list[Step] = []

    async def prime(self) -> None:
        self._initial = await self._catch_up()

    async def events(self) -> AsyncIterator[SessionEvent]:
        try:
            for step in self._initial:
                yield step
            while True:
                if self._closing.is_set():
                    yield RECONNECT
                    return
                if self.sub.resync:
                    for step in await self._resync():
                        yield step
                    continue
                items = self.sub.take()
                for item in items:
                    for step in await self._live(item):
                        yield step
                if items:
                    continue
                if not self.sub.ping_due:
                    await self.sub.wakeup.wait()
                    continue
                self.sub.ping_due = False
                yield PING
                if await self._gone():
                    yield GONE
                    return
        finally:
            self.sub.close()

    # --- reading the history ---------------------------------------------------------------

    async def _catch_up(self) -> list[Step]:
        """Everything from the current position that Redis holds and was not handed on,
        read a batch of exchanges (records, then logs) per two round trips."""
        steps: list[Step] = []
        while True:
            exchanges, running = await self.store.exchanges_from(self.sid, self._position, _BATCH)
            wanted = [
                (x.exchange_id, self._last_id if i == 0 else None) for i, x in enumerate(exchanges)
            ]
            logs = await self.store.read_logs(self.sid, wanted)
            for exchange, entries in zip(exchanges, logs, strict=True):
                steps += await self._replayed(exchange, entries, running)
                if self._current is not None:
                    break  # still running: the last one there is
            if self._current is not None or len(exchanges) < _BATCH:
                break
        self._placed = False
        self.sub.settle(self._last_key)
        return steps

    async def _replayed(
        self, exchange: Exchange, entries: list[LogEntry], running: str | None
    ) -> list[Step]:
        """The steps of the exchange at the current position not yet handed on; it is
        finished here unless it still runs."""
        xid = exchange.exchange_id
        if exchange.status == "running" and running != xid:
            exchange = await self._unorphaned(exchange)
            entries = await self.store.read_log(self.sid, xid, self._last_id)
        steps = [] if xid == self._current else [begin_step(exchange)]
        self._current = xid
        done, finished = logged_steps(exchange, entries)
        if finished:
            self._finish(xid)
        elif done:
            self._advance(done[-1].item)
        return steps + done

    async def _unorphaned(self, exchange: Exchange) -> Exchange:
        """A "running" exchange whose runner is gone gets its end stored now (the reaper),
        or, while another exchange holds the lock, reads as failed: interrupted."""
        xid = exchange.exchange_id
        await self.reaper.reap(self.sid, xid)
        again, holder = await self.store.exchanges_from(self.sid, self._position, 1)
        if not again or again[0].exchange_id != xid:
            return exchange
        return ended_orphan(again[0], holder)

    async def _resync(self) -> list[Step]:
        """Read what pub/sub may have lost; nothing while Redis is still away (retried)."""
        self.sub.resync = False
        try:
            return await self._catch_up()
        except (RedisError, OSError):
            self.sub.resync = True
            await asyncio.sleep(_RESYNC_RETRY)
            return []

    # --- live ------------------------------------------------------------------------------

    async def _live(self, item: Item) -> list[Step]:
        try:
            if item.kind == "begin":
                return await self._begun(item.data.decode())
            if item.kind == "end":
                return await self._ended(item)
            return await self._delta(item)
        except (RedisError, OSError):
            self.sub.resync = True  # the history has whatever this item was
            return []

    async def _begun(self, xid: str) -> list[Step]:
        steps = [] if xid == self._current or xid in self._finished else await self._catch_up()
        self._place(xid)
        return steps

    async def _ended(self, item: Item) -> list[Step]:
        xid = item.exchange().exchange_id
        steps: list[Step] = []
        if xid == self._current:
            steps = [Step(xid, item)]
            self._finish(xid)
        elif xid not in self._finished:
            steps = await self._catch_up()  # an exchange whose begin this watch never saw
        self._place(None)
        return steps

    async def _delta(self, item: Item) -> list[Step]:
        current = self._current
        if current is None or item.key <= self._last_key:
            return []
        if not self._placed:
            if not await self.store.logged(self.sid, current, item.id):
                return []  # an earlier exchange's, sent before this watch read the history
            self._place(current)
        if self._channel != current:
            return []
        self._advance(item)
        return [Step(current, item)]

    async def _gone(self) -> bool:
        """On an idle tick: whether the session was deleted; a running exchange whose
        process died gets its end stored, and a resync reads it."""
        try:
            if self._current is not None:
                if not await self.reaper.alive(self.sid, self._current):
                    self.sub.resync = True
                return False
            await self.store.get_session(self.owner, self.sid)
        except NotFound:
            return True
        except (RedisError, OSError):
            return False
        return False

    # --- position --------------------------------------------------------------------------

    def _place(self, xid: str | None) -> None:
        self._channel, self._placed = xid, True

    def _advance(self, item: Item) -> None:
        self._last_id, self._last_key = item.id, item.key

    def _finish(self, xid: str) -> None:
        self._finished.add(xid)
        self._position += 1
        self._current, self._last_id, self._last_key = None, None, (0, 0)
