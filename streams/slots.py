"""Which Redis Cluster node owns which slot, for the connections that bypass redis-py.

The pipelined script calls and the sharded subscriptions go straight to the node that owns
a key's slot. The map is read with ``CLUSTER SLOTS`` from any node that answers, and read
again when a node is lost or answers ``MOVED``: after a failover or a resharding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from streams.resp import RespConnection

log = logging.getLogger("parley.slots")

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_REFRESH_GAP = 0.1  # a burst of MOVED replies or lost calls asks the cluster once


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def slot_of(key: str) -> int:
    return key_slot(key.encode())


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """``redis+cluster://[user:password@]host:port,host:port`` (``rediss+cluster`` for TLS):
    the nodes to ask for the slot map first; any one of them that answers is enough."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        parts = urlsplit(url)
        if parts.scheme not in CLUSTER_SCHEMES:
            raise ValueError(f"not a cluster URL (redis+cluster://host:port,...): {url!r}")
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, _, password = credentials.partition(":")
        nodes = tuple(_host_port(node) for node in hosts.split(",") if node)
        if not nodes:
            raise ValueError(f"a cluster URL names at least one node: {url!r}")
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError("Redis Cluster has one database, 0")
        return cls(
            CLUSTER_SCHEMES[parts.scheme],
            nodes,
            unquote(username) or None,
            unquote(password) or None,
        )

    def node_url(self, host: str, port: int) -> str:
        """The plain URL of one node, with the cluster's credentials."""
        auth = ""
        if self.password:
            user = quote(self.username, safe="") if self.username else ""
            auth = f"{user}:{quote(self.password, safe='')}@"
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{auth}{host}:{port}/0"


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a cluster node is host:port, not {node!r}")
    return host.strip("[]"), int(port)


def redirect_target(error: str) -> tuple[int, str]:
    """The slot and ``host:port`` of a ``MOVED`` or ``ASK`` reply."""
    _, slot, address = error.split(" ", 2)
    return int(slot), address.strip()


class SlotMap:
    """The slot owners as last read; :meth:`refresh` reads them again (concurrent callers
    share one read)."""

    def __init__(self, cluster: ClusterUrl, *, timeout: float = 2.0) -> None:
        self.cluster = cluster
        self._timeout = timeout
        self._owners: list[str] = [""] * REDIS_CLUSTER_HASH_SLOTS
        self._known = [cluster.node_url(host, port) for host, port in cluster.nodes]
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -1.0
        self._listeners: list[Callable[[], None]] = []
        self.version = 0

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a slot changes owner."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener()

    def owner(self, slot: int) -> str:
        """The URL of the primary serving ``slot``; '' before the first read."""
        return self._owners[slot]

    def owner_of(self, key: str) -> str:
        return self._owners[slot_of(key)]

    def primaries(self) -> list[str]:
        return sorted({owner for owner in self._owners if owner})

    def url_of(self, address: str) -> str:
        """The URL of the node a ``MOVED``/``ASK`` reply names as ``host:port``."""
        return self.cluster.node_url(*_host_port(address))

    def moved(self, slot: int, address: str) -> None:
        """A node said ``slot`` is served elsewhere now: believe it until the next read."""
        url = self.url_of(address)
        if self._owners[slot] != url:
            self._owners[slot] = url
            self._changed()
        self.refresh_soon()

    def refresh_soon(self) -> None:
        """Read the map again in the background (callers that lost a node call this)."""
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(self._refreshed)

    async def refresh(self) -> None:
        self.refresh_soon()
        assert self._refreshing is not None
        await asyncio.shield(self._refreshing)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing = None
        if not task.cancelled():
            task.exception()  # logged where it happened

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._refreshed_at + _REFRESH_GAP - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            asked, reply = await self._read()
        finally:
            self._refreshed_at = loop.time()
        owners = [""] * REDIS_CLUSTER_HASH_SLOTS
        for start, end, primary, *_replicas in reply:
            host = _text(primary[0]) or urlsplit(asked).hostname or ""  # '': the node asked
            url = self.cluster.node_url(host, int(primary[1]))
            owners[int(start) : int(end) + 1] = [url] * (int(end) - int(start) + 1)
        if owners != self._owners:
            self._owners = owners
            self._changed()
        self._known = list(dict.fromkeys([*self.primaries(), *self._known]))

    async def _read(self) -> tuple[str, list[Any]]:
        """``CLUSTER SLOTS`` from the first known node that answers."""
        errors: list[str] = []
        for url in self._known:
            try:
                conn = await RespConnection.open(url, decode=True, timeout=self._timeout)
            except (RedisError, OSError) as exc:
                errors.append(str(exc))
                continue
            try:
                return url, list(await conn.call(self._timeout, "CLUSTER", "SLOTS"))
            except (RedisError, OSError, TimeoutError) as exc:
                errors.append(str(exc))
            finally:
                with contextlib.suppress(OSError):
                    conn.close()
        log.warning("no cluster node answered", extra={"errors": errors[-3:]})
        raise RedisConnectionError("no Redis Cluster node answered CLUSTER SLOTS")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
