"""The hub on a Redis Cluster: sharded subscriptions, one connection per primary.

Each session's channel is subscribed with ``SSUBSCRIBE`` on the primary that owns its slot,
so its messages cross no other node. The control channel, rare and meant for every process,
stays a classic ``SUBSCRIBE`` on any one node: the cluster relays it to all.

A slot that changes hands (a failover, a resharding) shows as a lost node, an unasked-for
``sunsubscribe`` or a ``MOVED`` error. Then the slot map is read again and every channel
whose primary changed is subscribed at the new one; its watchers resync from the replay log,
since what was published in between reached no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from redis.exceptions import RedisError, ResponseError

from streams.hub import Hub, log
from streams.keys import Keys
from streams.link import Link
from streams.resp import RespConnection
from streams.slots import SlotMap

_RECHECK = 10.0  # the map is read this often even when nothing looks wrong
_GAP = 0.1


class ShardedHub(Hub):
    _ACK = b"ssubscribe"
    _MESSAGE = b"smessage"

    def __init__(self, slots: SlotMap, keys: Keys, keepalive: float = 15.0) -> None:
        self._slots = slots
        self._turn = itertools.count()
        super().__init__(slots.cluster.node_url(*slots.cluster.nodes[0]), keys, keepalive)
        self._links: dict[str, Link] = {}
        self._home: dict[str, str] = {}  # channel -> the node it is subscribed on
        self._dropped: set[str] = set()  # channels a node unsubscribed on its own
        self._trouble = asyncio.Event()
        self._placer: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed_reconnects = 0  # of links closed since: the count only grows
        slots.on_change(self._trouble_soon)

    @property
    def reconnects(self) -> int:
        links = sum(link.reconnects for link in self._links.values())
        return self._link.reconnects + links + self._closed_reconnects

    async def start(self) -> None:
        with contextlib.suppress(RedisError):
            await self._slots.refresh()  # else the placer keeps trying
        await super().start()
        self._placer = asyncio.create_task(self._keep_placed(), name="parley-shards")

    async def stop(self) -> None:
        if self._placer:
            self._placer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._placer
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.stop()
        await super().stop()

    def _control_address(self) -> str:
        """The next primary in turn (a seed before the map is read), so a dead one is not
        tried twice in a row."""
        cluster = self._slots.cluster
        nodes = self._slots.primaries() or [cluster.node_url(*node) for node in cluster.nodes]
        return nodes[next(self._turn) % len(nodes)]

    def _control_reopened(self) -> None:
        """The control connection carries no session channel; a cancel missed meanwhile is in
        the cancel key too."""

    def _control_lost(self) -> None:
        self._trouble_soon()

    def _open(self, conn: RespConnection) -> None:
        conn.write(("SUBSCRIBE", self._keys.control()))

    def _request(self, channel: str) -> None:
        node = self._slots.owner_of(channel)
        if not node:
            self._trouble_soon()  # placed once the map is read
            return
        self._home[channel] = node
        self._link_to(node).send("SSUBSCRIBE", channel)

    def _release(self, channel: str) -> None:
        node = self._home.pop(channel, None)
        self._dropped.discard(channel)
        if node in self._links:
            self._links[node].send("SUNSUBSCRIBE", channel)

    def _link_to(self, node: str) -> Link:
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = Link(
                lambda: node,
                on_open=lambda conn: self._open_node(node, conn),
                on_replies=lambda replies: self._node_replies(node, replies),
                on_reopen=lambda: self._reopened(self._channels_on(node)),
                on_lost=self._trouble_soon,
            )
            link.start()
        return link

    def _channels_on(self, node: str) -> list[str]:
        return [channel for channel, home in self._home.items() if home == node]

    def _open_node(self, node: str, conn: RespConnection) -> None:
        # One SSUBSCRIBE per channel: several in one command must share a slot.
        channels = self._channels_on(node)
        self._acked.difference_update(channels)
        if channels:
            conn.write(*(("SSUBSCRIBE", channel) for channel in channels))

    def _node_replies(self, node: str, replies: list[object]) -> None:
        for reply in replies:
            if isinstance(reply, ResponseError):  # MOVED: sent to a former owner
                self._trouble_soon()
            elif isinstance(reply, list) and reply[:1] == [b"sunsubscribe"]:
                self._unsubscribed(node, reply[1].decode())
            else:
                self._dispatch(reply)

    def _unsubscribed(self, node: str, channel: str) -> None:
        """A node dropped ``channel`` without being asked: its slot has moved. (The answer to
        our own ``SUNSUBSCRIBE`` of a channel subscribed again since comes before the new
        subscription's ack, so a channel not acked yet is left alone.)"""
        if channel in self._acked and self._home.get(channel) == node:
            self._acked.discard(channel)
            self._dropped.add(channel)
            self._trouble_soon()

    def _trouble_soon(self) -> None:
        self._trouble.set()

    async def _keep_placed(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trouble.wait(), _RECHECK)
            self._trouble.clear()
            try:
                await self._slots.refresh()
            except RedisError as exc:
                log.warning("cannot read the cluster's slots", extra={"error": str(exc)})
                self._trouble.set()
            else:
                self._place()
            await asyncio.sleep(_GAP)

    def _place(self) -> None:
        """Move every channel to the primary that owns its slot now; close idle links."""
        moved = []
        for channel in list(self._subs):
            owner = self._slots.owner_of(channel)
            home = self._home.get(channel)
            if not owner or (owner == home and channel not in self._dropped):
                continue
            self._dropped.discard(channel)
            if home in self._links and home != owner:
                self._links[home].send("SUNSUBSCRIBE", channel)
            self._acked.discard(channel)
            self._request(channel)
            moved.append(channel)
        if moved:
            log.warning(
                "hub moved channels to their slots' primaries", extra={"channels": len(moved)}
            )
            self._resync(moved)
        serving = set(self._home.values())
        for node in [node for node in self._links if node not in serving]:
            link = self._links.pop(node)
            self._closed_reconnects += link.reconnects
            closing = asyncio.create_task(link.stop())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
