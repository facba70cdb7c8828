"""Script calls on a Redis Cluster: each goes to the node that owns its keys' slot.

One :class:`ScriptBatcher` per primary, so the calls of a tick bound for one node still share
one pipelined write. A node that answers ``MOVED`` (the slot has moved for good) updates the
map and the call goes to the new owner; ``ASK`` (a slot being moved) sends it once to the
node named, after ``ASKING``; ``TRYAGAIN`` (its keys are split mid-move) sends it again
shortly. A lost node makes the map be read again, so the caller's retry finds the primary
that took over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from streams.batcher import ScriptBatcher
from streams.scripts import Script
from streams.slots import SlotMap, redirect_target, slot_of

_REDIRECTS = 5
_TRYAGAIN_DELAY = 0.05
_TRYAGAINS = 60  # 3 s for a slot's keys to finish moving, or the map to be read


class _Routed:
    """One script call and where it goes next."""

    __slots__ = ("args", "asking", "future", "keys", "node", "script", "slot", "tries", "waits")

    def __init__(
        self, script: Script, keys: list[str], args: list[Any], future: asyncio.Future[Any]
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future
        self.slot = slot_of(keys[0])
        self.node = ""  # '' follows the map; a URL is an ASK redirect's
        self.asking = False
        self.tries = 0
        self.waits = 0


class ClusterBatcher:
    def __init__(self, slots: SlotMap, *, timeout: float = 5.0) -> None:
        self._slots = slots
        self._timeout = timeout
        self._nodes: dict[str, ScriptBatcher] = {}

    @property
    def batches(self) -> int:
        return sum(node.batches for node in self._nodes.values())

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return await self.submit(script, keys, args)

    def submit(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self._send(_Routed(script.sharded, keys, args, future))
        return future

    def _send(self, call: _Routed) -> None:
        if call.future.done():  # the caller gave up (an outage bound) while it waited
            return
        url = call.node or self._slots.owner(call.slot)
        if not url:  # the map is not read yet, or a shard lost its primary: wait for it
            self._slots.refresh_soon()
            if not self._again_soon(call):
                call.future.set_exception(RedisConnectionError("no cluster node serves this slot"))
            return
        node = self._nodes.get(url)
        if node is None:
            node = self._nodes[url] = ScriptBatcher(url, timeout=self._timeout)
        reply = node.submit(call.script, call.keys, call.args, asking=call.asking)
        reply.add_done_callback(lambda done: self._answered(call, done))

    def _answered(self, call: _Routed, reply: asyncio.Future[Any]) -> None:
        if call.future.done():
            return
        error = reply.exception()
        if error is None:
            call.future.set_result(reply.result())
            return
        if isinstance(error, ResponseError) and self._redirected(call, str(error)):
            return
        if isinstance(error, RedisConnectionError):
            self._slots.refresh_soon()
        call.future.set_exception(error)

    def _redirected(self, call: _Routed, error: str) -> bool:
        """Send the call on where a cluster reply says it belongs; False: not a redirect, or
        too many of them."""
        if error.startswith("TRYAGAIN"):
            return self._again_soon(call)
        if not error.startswith(("MOVED ", "ASK ")) or call.tries >= _REDIRECTS:
            return False
        call.tries += 1
        slot, address = redirect_target(error)
        if error.startswith("MOVED "):
            self._slots.moved(slot, address)
            call.node, call.asking = "", False
        else:
            call.node, call.asking = self._slots.url_of(address), True
        self._send(call)
        return True

    def _again_soon(self, call: _Routed) -> bool:
        """Send the call again shortly; False when it has waited as often as it may."""
        if call.waits >= _TRYAGAINS:
            return False
        call.waits += 1
        asyncio.get_running_loop().call_later(_TRYAGAIN_DELAY, self._send, call)
        return True

    async def close(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.close()
