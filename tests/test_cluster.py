"""Parley on a real local Redis Cluster (3 primaries, 3 replicas), through two uvicorn processes.

Sessions spread over every shard; a stream started on one process is joined, resumed and
cancelled from the other. A primary that stops mid-stream (its replica takes over) and a slot
moved mid-stream cost the streams of that shard a pause, never a word; the other shards'
streams never notice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from server.embedded_cluster import LocalCluster
from server.embedded_redis import RedisProcess
from server.settings import Settings, SettingsError
from streams.keys import Keys
from streams.slots import slot_of
from tests.support.cluster import start_cluster
from tests.support.native import (
    Received,
    assert_cancelled_with_partial_text,
    assert_ordered_once,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    sessions_url,
    stream_reply,
    words,
)
from tests.support.servers import ServerProcess, new_key_prefix, start_server

T = TypeVar("T")
_MANY = httpx.Limits(max_connections=400, max_keepalive_connections=400)


@dataclass
class Deployment:
    cluster: LocalCluster
    a: ServerProcess
    b: ServerProcess
    keys: Keys

    def shard_of(self, sid: str) -> RedisProcess:
        return self.cluster.primary_for_slot(slot_of(self.keys.session(sid)))

    def stop(self) -> None:
        self.b.terminate()
        self.a.terminate()
        self.cluster.stop()


def deploy(tmp: Path, name: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    cluster = start_cluster(tmp_path_factory, name)
    prefix = new_key_prefix()
    a = start_server(tmp / "a", redis_url=cluster.url, key_prefix=prefix)
    b = start_server(tmp / "b", redis_url=cluster.url, key_prefix=prefix)
    return Deployment(cluster, a, b, Keys(prefix))


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = deploy(tmp_path_factory.mktemp("spread"), "spread-cluster", tmp_path_factory)
    yield deployment
    deployment.stop()


@pytest.fixture
def shaken(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment of its own, for a test that stops a node or moves a slot."""
    deployment = deploy(tmp_path, "shaken-cluster", tmp_path_factory)
    yield deployment
    deployment.stop()


async def sids_on_every_shard(
    deployment: Deployment, client: httpx.AsyncClient, per_shard: int
) -> dict[int, list[str]]:
    """Sessions created until each primary (by port) holds ``per_shard`` of them."""
    found: dict[int, list[str]] = {node.port: [] for node in deployment.cluster.primaries()}
    while any(len(sids) < per_shard for sids in found.values()):
        sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
        port = deployment.shard_of(sid).port
        if len(found[port]) < per_shard:
            found[port].append(sid)
    return found


async def test_two_hundred_sessions_spread_over_every_shard_stream_exact_text(
    spread: Deployment,
) -> None:
    async with spread.a.client(limits=_MANY) as setup:
        sids = await asyncio.gather(
            *(create_sid(setup, agentId="echo", refreshIntervalMs=50) for _ in range(200))
        )
    texts = [words(20, start=n * 100) for n in range(200)]
    # Fresh clients: none reuses a connection the server may be closing as idle.
    async with spread.a.client(limits=_MANY) as on_a, spread.b.client(limits=_MANY) as on_b:
        replies = await asyncio.gather(
            *(
                stream_reply((on_a, on_b)[n % 2], sid, text)
                for n, (sid, text) in enumerate(zip(sids, texts, strict=True))
            )
        )

    shards = Counter(spread.shard_of(sid).port for sid in sids)
    assert len(shards) == 3 and min(shards.values()) > 30, shards
    for reply, text in zip(replies, texts, strict=True):
        assert reply.text == expected_reply("echo", text)
        assert reply.done["status"] == "completed"


async def test_a_stream_is_joined_and_resumed_on_the_other_process_on_every_shard(
    spread: Deployment,
) -> None:
    async with spread.a.client() as on_a, spread.b.client() as on_b:
        by_shard = await sids_on_every_shard(spread, on_a, 1)
        outcomes = await asyncio.gather(
            *(join_and_resume(on_a, on_b, sid) for [sid] in by_shard.values())
        )

    for text, origin, joined, resumed in outcomes:
        assert origin.text == joined.text == resumed.text == expected_reply("echo", text)
        assert [(e.id, e.data) for e in joined.items] == [(e.id, e.data) for e in origin.items]
        assert [e.id for e in resumed.items] == [e.id for e in origin.items]


async def join_and_resume(
    on_a: httpx.AsyncClient, on_b: httpx.AsyncClient, sid: str
) -> tuple[str, Received, Received, Received]:
    """Started on A; joined whole on B, and resumed on B in hops of a few events."""
    text = words(60)
    origin, joined, resumed = Received(), Received(), Received()
    url = sessions_url(sid, "/streamingContinue")
    async with connect(on_a, "POST", url, json_body=continue_body(text)) as stream:
        await stream.read(origin, limit=3)
        joiner = asyncio.create_task(read_all(on_b, sid, None, joined))
        resumer = asyncio.create_task(read_in_hops(on_b, sid, resumed))
        await stream.read(origin)
        await asyncio.wait_for(asyncio.gather(joiner, resumer), 20)
    return text, origin, joined, resumed


async def read_in_hops(client: httpx.AsyncClient, sid: str, into: Received) -> None:
    """Resume on a new connection after every three events until the end."""
    finished = False
    while not finished:
        url = sessions_url(sid, "/stream")
        async with connect(client, "GET", url, last_event_id=into.last_event_id) as hop:
            finished = await hop.read(into, limit=3)


async def read_all(
    client: httpx.AsyncClient, sid: str, last_event_id: str | None, into: Received
) -> None:
    url = sessions_url(sid, "/stream")
    async with connect(client, "GET", url, last_event_id=last_event_id) as stream:
        await stream.read(into)


async def test_a_cancel_from_the_other_process_stops_the_stream_on_every_shard(
    spread: Deployment,
) -> None:
    async with spread.a.client() as on_a, spread.b.client() as on_b:
        by_shard = await sids_on_every_shard(spread, on_a, 1)
        outcomes = await asyncio.gather(
            *(stream_and_cancel(on_a, on_b, sid) for [sid] in by_shard.values())
        )

    for status, received, text in outcomes:
        assert status == 200
        assert_cancelled_with_partial_text(
            received.exchange(), received, expected_reply("echo", text)
        )


async def stream_and_cancel(
    on_a: httpx.AsyncClient, on_b: httpx.AsyncClient, sid: str
) -> tuple[int, Received, str]:
    text = words(200)
    received = Received()
    url = sessions_url(sid, "/streamingContinue")
    async with connect(on_a, "POST", url, json_body=continue_body(text)) as stream:
        await stream.read(received, limit=3)
        cancel = await on_b.post(sessions_url(sid, "/cancel"), json={})
        await stream.read(received)
    return cancel.status_code, received, text


@dataclass
class Watched:
    """One stream read to its end, with when each delta arrived."""

    sid: str
    text: str
    received: Received = field(default_factory=Received)
    arrivals: list[float] = field(default_factory=list)

    @property
    def longest_pause(self) -> float:
        return max(b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False))


async def watch_to_end(
    client: httpx.AsyncClient, watched: Watched, started: asyncio.Event, method: str
) -> None:
    tail = "/streamingContinue" if method == "POST" else "/stream"
    body = continue_body(watched.text) if method == "POST" else None
    async with connect(client, method, sessions_url(watched.sid, tail), json_body=body) as stream:
        while not await stream.read(watched.received, limit=1):
            watched.arrivals.append(time.monotonic())
            if len(watched.arrivals) == 3:
                started.set()


Groups = dict[int, list[Watched]]  # streams by the port of their shard's primary


async def stream_through(
    deployment: Deployment,
    per_shard: int,
    seconds: float,
    shake: Callable[[Groups], Awaitable[T]],
) -> tuple[Groups, Groups, T]:
    """Streams on every shard, each started on A and joined on B; ``shake`` runs once all
    are under way. Returns the streams, the joins and what ``shake`` returned."""
    text = words(int(seconds * 50))
    async with deployment.a.client() as on_a, deployment.b.client() as on_b:
        by_shard = await sids_on_every_shard(deployment, on_a, per_shard)
        streams = {port: [Watched(sid, text) for sid in sids] for port, sids in by_shard.items()}
        joins = {port: [Watched(sid, text) for sid in sids] for port, sids in by_shard.items()}
        tasks = await start_all(on_a, streams, "POST") + await start_all(on_b, joins, "GET")
        shaken = await shake(streams)
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
    return streams, joins, shaken


async def start_all(
    client: httpx.AsyncClient, groups: Groups, method: str
) -> list[asyncio.Task[None]]:
    """Open every stream; return once each has had its first deltas."""
    pairs = [(watched, asyncio.Event()) for group in groups.values() for watched in group]
    tasks = [asyncio.create_task(watch_to_end(client, w, begun, method)) for w, begun in pairs]
    await asyncio.wait_for(asyncio.gather(*(begun.wait() for _, begun in pairs)), 10)
    return tasks


def assert_exact(groups: Groups) -> None:
    for group in groups.values():
        for watched in group:
            assert_ordered_once(watched.received.items)
            assert watched.received.text == expected_reply("echo", watched.text), watched.sid
            assert watched.received.exchange()["status"] == "completed"


def longest_pause(groups: Groups, ports: set[int]) -> float:
    return max(w.longest_pause for port, group in groups.items() if port in ports for w in group)


@pytest.mark.slow
async def test_a_primary_stopped_mid_stream_costs_its_shard_a_pause_and_no_word(
    shaken: Deployment,
) -> None:
    cluster = shaken.cluster
    victim = cluster.primaries()[0]
    replica = cluster.replica_of(victim)

    async def stop_primary(_: Groups) -> float:
        stopped = time.monotonic()
        await asyncio.to_thread(victim.stop)  # SIGTERM: Redis 7 lets the replica catch up first
        await asyncio.to_thread(cluster.wait_ok)
        return time.monotonic() - stopped

    streams, joins, took = await stream_through(shaken, per_shard=3, seconds=10, shake=stop_primary)

    assert cluster.role(replica) == "master"
    assert_exact(streams)
    assert_exact(joins)
    others = set(streams) - {victim.port}
    recovery = max(longest_pause(streams, {victim.port}), longest_pause(joins, {victim.port}))
    print(f"failover: the cluster took {took:.2f}s, the shard's streams paused {recovery:.2f}s")
    assert recovery < 15
    assert max(longest_pause(streams, others), longest_pause(joins, others)) < 1.0


@pytest.mark.slow
async def test_a_slot_moved_mid_stream_keeps_its_stream_exact(shaken: Deployment) -> None:
    cluster = shaken.cluster
    source, target = cluster.primaries()[:2]

    async def move_their_slots(streams: Groups) -> list[int]:
        slots = [slot_of(shaken.keys.session(w.sid)) for w in streams[source.port]]
        for slot in slots:
            await asyncio.to_thread(cluster.move_slot, slot, target)
        return slots

    streams, joins, slots = await stream_through(
        shaken, per_shard=2, seconds=6, shake=move_their_slots
    )

    assert all(cluster.primary_for_slot(slot) is target for slot in slots)
    assert_exact(streams)
    assert_exact(joins)


def test_a_cluster_url_without_nodes_stops_the_server_at_start() -> None:
    with pytest.raises(SettingsError, match="PARLEY_REDIS_URL: a cluster URL names at least one"):
        Settings(redis_url="redis+cluster://")


async def test_listing_pages_through_sessions_on_every_shard_once_each_in_order(
    spread: Deployment,
) -> None:
    user = f"lister-{uuid.uuid4().hex[:8]}"
    async with spread.a.client() as on_a, spread.b.client() as on_b:
        created = [await create_sid(on_a, userId=user) for _ in range(45)]
        deleted = created.pop(7)
        assert (await on_a.delete(sessions_url(deleted))).status_code == 204
        listed: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"userId": user, "limit": 10, "order": "asc"} | (
                {"cursor": cursor} if cursor else {}
            )
            page = (await on_b.get("/v1/sessions", params=params)).json()
            listed += page["data"]
            if not (cursor := page["nextCursor"]):
                break

    assert len({spread.shard_of(sid).port for sid in created}) == 3
    ids = [s["conversationId"] for s in listed]
    assert sorted(ids) == sorted(created)  # each once, the deleted one gone
    order = [(s["createdAt"], s["conversationId"]) for s in listed]
    assert order == sorted(order)
