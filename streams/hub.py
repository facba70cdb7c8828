"""The process's one pub/sub connection, fanned out to local subscribers.

The reader hands each message to the subscribers' buffers without awaiting, so a slow
client never delays the others. After a reconnect it resubscribes and tells every
subscriber to resync from the replay log, because messages published in the gap are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from streams.errors import Unavailable
from streams.events import Item, compact
from streams.keys import Keys
from streams.resp import RespConnection

log = logging.getLogger("parley.hub")

_COMPACT_AT = 16
_PING_EVERY = 5.0
_DEAD_AFTER = 15.0


class Subscription:
    """A watcher's buffer. Pending deltas merge when it grows, so memory stays bounded.

    Until the watcher has read the replay log (at the start, and again after a resync) the
    buffer may hold items the log also gave it; merged, they could no longer be told apart
    by id. So it merges only once :meth:`settle` has dropped everything the log covered.
    """

    __slots__ = (
        "_hub",
        "channel",
        "idle_ticks",
        "items",
        "ping_due",
        "resync",
        "settled",
        "sid",
        "wakeup",
    )

    def __init__(self, hub: Hub, sid: str, channel: str) -> None:
        self._hub = hub
        self.sid = sid
        self.channel = channel
        self.items: list[Item] = []
        self.resync = False
        self.settled = False
        self.ping_due = False
        self.idle_ticks = 0
        self.wakeup = asyncio.Event()

    def push(self, item: Item) -> None:
        self.items.append(item)
        self.idle_ticks = 0
        if self.settled and len(self.items) >= _COMPACT_AT:
            self.items = compact(self.items)
        self.wakeup.set()

    def settle(self, floor: tuple[int, int]) -> None:
        """The watcher has everything up to ``floor`` from the log: drop it, merge the rest.

        A ``begin`` is kept whatever its id: no log holds it, and its id is an app clock's.
        """
        self.items = [item for item in self.items if item.kind == "begin" or item.key > floor]
        self.settled = True
        if len(self.items) >= _COMPACT_AT:
            self.items = compact(self.items)

    def tick(self) -> None:
        """Called every half keepalive; two quiet ticks in a row make a ping due."""
        self.idle_ticks += 1
        if self.idle_ticks >= 2:
            self.idle_ticks = 0
            self.ping_due = True
            self.wakeup.set()

    def mark_resync(self) -> None:
        self.resync = True
        self.settled = False
        self.wakeup.set()

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        self.wakeup.clear()
        return items

    @property
    def backlog(self) -> int:
        return len(self.items)

    def close(self) -> None:
        self._hub.unsubscribe(self)


class Hub:
    """``on_control`` receives each message of the control channel (the service sets it)."""

    def __init__(self, url: str, keys: Keys, keepalive: float = 15.0) -> None:
        self._url = url
        self._keys = keys
        self.on_control: Callable[[bytes], None] = lambda _payload: None
        self._subs: dict[str, set[Subscription]] = {}
        self._acked: set[str] = set()
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._conn: RespConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._keepalive = keepalive
        self._reads = 0
        self._connected = asyncio.Event()
        self.reconnects = 0
        self.resyncs = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    @property
    def backlog(self) -> int:
        return sum(sub.backlog for subs in self._subs.values() for sub in subs)

    def wake_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.wakeup.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="parley-hub")
        self._ticker = asyncio.create_task(self._tick_forever(), name="parley-keepalive")

    async def stop(self) -> None:
        for task in (self._task, self._ticker):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop_connection()

    async def _tick_forever(self) -> None:
        """One timer for every watcher's keepalive, instead of a timeout per wait."""
        while True:
            await asyncio.sleep(self._keepalive / 2)
            for subs in list(self._subs.values()):
                for sub in subs:
                    sub.tick()

    async def subscribe(self, sid: str, timeout: float = 5.0) -> Subscription:
        """Register a watcher; return once Redis has confirmed the channel subscription."""
        channel = self._keys.channel(sid)
        sub = Subscription(self, sid, channel)
        self._subs.setdefault(channel, set()).add(sub)
        if channel in self._acked:
            return sub
        ack = self._acks.get(channel)
        if ack is None:
            ack = self._acks[channel] = asyncio.get_running_loop().create_future()
            self._send("SUBSCRIBE", channel)
        try:
            await asyncio.wait_for(asyncio.shield(ack), timeout)
        except TimeoutError:
            self.unsubscribe(sub)
            raise Unavailable("the event hub is not connected to Redis") from None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if subs:
            return
        del self._subs[sub.channel]
        self._acked.discard(sub.channel)
        ack = self._acks.pop(sub.channel, None)
        if ack and not ack.done():
            ack.cancel()
        self._send("UNSUBSCRIBE", sub.channel)

    def _send(self, *args: str) -> None:
        """Write a command on the pub/sub connection; a dead one is replaced by the reader."""
        conn = self._conn
        if conn is not None and self.connected:
            conn.write(args)

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while True:
            try:
                await self._connect()
            except (RedisError, OSError) as exc:
                log.warning("hub connect failed", extra={"error": str(exc), "retryIn": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            if not first:
                self.reconnects += 1
                self._resync_all()
                log.warning(
                    "hub reconnected",
                    extra={
                        "channels": len(self._subs),
                        "reconnects": self.reconnects,
                        "resyncs": self.resyncs,
                    },
                )
            first = False
            try:
                await self._read_forever()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("hub connection lost", extra={"error": str(exc)})
            finally:
                self._connected.clear()
                await self._drop_connection()

    async def _connect(self) -> None:
        conn = await RespConnection.open(self._url, decode=False)
        self._conn = conn
        channels = [self._keys.control(), *self._subs]
        self._acked.clear()
        conn.write(("SUBSCRIBE", *channels))
        self._connected.set()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _resync_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                self.resyncs += 1
                sub.mark_resync()

    async def _read_forever(self) -> None:
        conn = self._conn
        assert conn is not None
        watchdog = asyncio.create_task(self._ping_forever(conn))
        control = self._keys.control().encode()
        try:
            while True:
                replies = await conn.replies()
                self._reads += 1
                for reply in replies:
                    self._dispatch(reply, control)
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

    def _dispatch(self, reply: object, control: bytes) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel_raw, payload = reply[0], reply[1], reply[2]
        if kind == b"message":
            if channel_raw == control:
                self.on_control(payload)
                return
            subs = self._subs.get(channel_raw.decode())
            if subs:
                item = Item.parse(payload)
                for sub in subs:
                    sub.push(item)
        elif kind == b"subscribe":
            channel = channel_raw.decode()
            self._acked.add(channel)
            ack = self._acks.pop(channel, None)
            if ack and not ack.done():
                ack.set_result(None)
