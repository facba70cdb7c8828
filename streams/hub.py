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

from streams.errors import Unavailable
from streams.events import Item, compact
from streams.keys import Keys
from streams.link import Link
from streams.resp import RespConnection

log = logging.getLogger("parley.hub")

_COMPACT_AT = 16


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

    _ACK = b"subscribe"
    _MESSAGE = b"message"

    def __init__(self, url: str, keys: Keys, keepalive: float = 15.0) -> None:
        self._keys = keys
        self.on_control: Callable[[bytes], None] = lambda _payload: None
        self._subs: dict[str, set[Subscription]] = {}
        self._acked: set[str] = set()
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._keepalive = keepalive
        self._control = keys.control().encode()
        self._url = url
        self._link = Link(
            self._control_address,
            on_open=self._open,
            on_replies=self._dispatch_all,
            on_reopen=self._control_reopened,
            on_lost=self._control_lost,
        )
        self.resyncs = 0

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

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
        self._link.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="parley-keepalive")

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self._link.stop()

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
            self._request(channel)
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
        self._release(sub.channel)

    def _request(self, channel: str) -> None:
        """Subscribe ``channel``; a connection down now subscribes it when it is back."""
        self._link.send("SUBSCRIBE", channel)

    def _release(self, channel: str) -> None:
        self._link.send("UNSUBSCRIBE", channel)

    def _open(self, conn: RespConnection) -> None:
        self._acked.clear()
        conn.write(("SUBSCRIBE", self._keys.control(), *self._subs))

    def _control_address(self) -> str:
        return self._url

    def _control_reopened(self) -> None:
        """The one connection carries every channel: all of them resync."""
        self._reopened(list(self._subs))

    def _control_lost(self) -> None:
        """Nothing to do here: the link reconnects by itself."""

    def _reopened(self, channels: list[str]) -> None:
        """The connection of ``channels`` came back: what it missed must come from the log."""
        self._resync(channels)
        log.warning(
            "hub reconnected",
            extra={
                "channels": len(channels),
                "reconnects": self.reconnects,
                "resyncs": self.resyncs,
            },
        )

    def _resync(self, channels: list[str]) -> None:
        for channel in channels:
            for sub in self._subs.get(channel, ()):
                self.resyncs += 1
                sub.mark_resync()

    def _dispatch_all(self, replies: list[object]) -> None:
        for reply in replies:
            self._dispatch(reply)

    def _dispatch(self, reply: object) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel_raw, payload = reply[0], reply[1], reply[2]
        if kind == b"message" and channel_raw == self._control:
            self.on_control(payload)
        elif kind == self._MESSAGE:
            subs = self._subs.get(channel_raw.decode())
            if subs:
                item = Item.parse(payload)
                for sub in subs:
                    sub.push(item)
        elif kind == self._ACK:
            self._confirmed(channel_raw.decode())

    def _confirmed(self, channel: str) -> None:
        self._acked.add(channel)
        ack = self._acks.pop(channel, None)
        if ack and not ack.done():
            ack.set_result(None)
