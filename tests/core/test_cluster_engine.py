"""The engine's own cluster connections on a real local cluster: script calls go to the slot's
primary and follow it when it moves; sharded subscriptions follow their channel's slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from server.embedded_cluster import LocalCluster
from server.embedded_redis import RedisProcess
from streams.clock import now_ms
from streams.cluster_batcher import ClusterBatcher
from streams.config import EngineConfig
from streams.connect import cluster_client
from streams.hub import Subscription
from streams.keys import Keys
from streams.scripts import Script
from streams.sharded_hub import ShardedHub
from streams.slots import ClusterUrl, SlotMap, slot_of
from streams.store import Store
from streams.types import ImportedMessage, NewSession
from tests.core.helpers import delta_entry, until, until_true
from tests.support.cluster import start_cluster, tag_on

# KEYS: one key; ARGV: a value. Sets it and publishes it on the key's own channel, so a test
# sees where a call ran and that a script's PUBLISH becomes an SPUBLISH.
_SET_AND_PUBLISH = Script("""
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return ARGV[1]
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_cluster(tmp_path_factory, "engine-cluster") as started:
        yield started


@pytest.fixture
async def slots(cluster: LocalCluster) -> SlotMap:
    slots = SlotMap(ClusterUrl.parse(cluster.url))
    await slots.refresh()
    return slots


@pytest.fixture
async def batcher(slots: SlotMap) -> AsyncIterator[ClusterBatcher]:
    batcher = ClusterBatcher(slots)
    yield batcher
    await batcher.close()


@pytest.fixture
async def hub(slots: SlotMap, key_prefix: str) -> AsyncIterator[ShardedHub]:
    hub = ShardedHub(slots, Keys(key_prefix))
    await hub.start()
    await until_true(lambda: hub.connected)
    yield hub
    await hub.stop()


def sid_on(cluster: LocalCluster, node: RedisProcess, skip: int = 0) -> str:
    """A session id whose keys live on ``node`` now (they share the id's hash tag)."""
    return tag_on(cluster, node, "s", skip)


def direct(node: RedisProcess) -> Redis:
    return Redis.from_url(node.url, decode_responses=True)


async def spublish(node: RedisProcess, channel: str, payload: bytes) -> int:
    client = direct(node)
    try:
        return int(await client.execute_command("SPUBLISH", channel, payload))
    finally:
        await client.aclose()


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    parsed = ClusterUrl.parse("rediss+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001")

    assert parsed.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (parsed.username, parsed.password, parsed.scheme) == ("app", "s@cret", "rediss")
    assert parsed.node_url("::1", 7001) == "rediss://app:s%40cret@[::1]:7001/0"


def test_a_cluster_url_without_nodes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        ClusterUrl.parse("redis+cluster://")


async def test_the_slot_map_names_each_primary_of_the_cluster(
    cluster: LocalCluster, slots: SlotMap
) -> None:
    assert slots.primaries() == sorted(node.url for node in cluster.primaries())
    for slot in (0, 8000, 16383):
        assert slots.owner(slot) == cluster.primary_for_slot(slot).url


async def test_a_script_call_runs_on_the_primary_that_owns_its_keys(
    cluster: LocalCluster, batcher: ClusterBatcher, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    for node in cluster.primaries():
        sid = sid_on(cluster, node)
        reply = await batcher.call(
            _SET_AND_PUBLISH, [keys.session(sid), keys.channel(sid)], [node.url, "x"]
        )
        assert reply == node.url
        client = direct(node)
        try:
            assert await client.get(keys.session(sid)) == node.url
        finally:
            await client.aclose()


async def test_the_calls_of_one_tick_share_one_write_per_node(
    cluster: LocalCluster, batcher: ClusterBatcher, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    calls = [
        batcher.submit(_SET_AND_PUBLISH, [keys.session(sid), keys.channel(sid)], ["v", "x"])
        for node in cluster.primaries()
        for sid in (sid_on(cluster, node, skip) for skip in range(10))
    ]
    before = batcher.batches

    assert await asyncio.gather(*calls) == ["v"] * 30
    assert batcher.batches - before == 3


async def test_a_call_whose_slot_moved_follows_it_to_the_new_primary(
    cluster: LocalCluster, batcher: ClusterBatcher, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    source, target = cluster.primaries()[:2]
    sid = sid_on(cluster, source, skip=20)
    await batcher.call(_SET_AND_PUBLISH, [keys.session(sid), keys.channel(sid)], ["1", "x"])

    await asyncio.to_thread(cluster.move_slot, slot_of(keys.session(sid)), target)
    reply = await batcher.call(_SET_AND_PUBLISH, [keys.session(sid), keys.channel(sid)], ["2", "x"])

    assert reply == "2"
    client = direct(target)
    try:
        assert await client.get(keys.session(sid)) == "2"
    finally:
        await client.aclose()


async def test_a_script_publishes_on_its_shard_to_the_sharded_hub(
    cluster: LocalCluster, batcher: ClusterBatcher, hub: ShardedHub, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    subs: list[Subscription] = []
    for node in cluster.primaries():
        sid = sid_on(cluster, node, skip=30)
        subs.append(await hub.subscribe(sid))
        entry = b"delta|5-1|" + delta_entry(1, node.url)
        await batcher.call(_SET_AND_PUBLISH, [keys.session(sid), keys.channel(sid)], ["v", entry])

    await until_true(lambda: all(sub.backlog == 1 for sub in subs))
    texts = [sub.take()[0].delta().text for sub in subs]
    assert texts == [node.url for node in cluster.primaries()]


async def test_a_subscription_follows_its_slot_to_a_new_primary_and_resyncs(
    cluster: LocalCluster, hub: ShardedHub, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    source, target = cluster.primaries()[1:3]
    sid = sid_on(cluster, source, skip=40)
    sub = await hub.subscribe(sid)

    await asyncio.to_thread(cluster.move_slot, slot_of(keys.channel(sid)), target)
    await until_true(lambda: sub.resync)

    async def delivered() -> bool:
        return await spublish(target, keys.channel(sid), b"delta|6-1|" + delta_entry(1, "on")) > 0

    await until(delivered, bool)
    await until_true(lambda: sub.backlog >= 1)
    assert sub.take()[0].delta().text == "on"


async def test_a_subscription_moves_to_the_replica_that_took_over_and_resyncs(
    cluster: LocalCluster, hub: ShardedHub, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    sid = sid_on(cluster, primary, skip=50)
    sub = await hub.subscribe(sid)

    await asyncio.to_thread(cluster.failover, replica)
    await until_true(lambda: sub.resync, timeout=10)

    async def delivered() -> bool:
        return await spublish(replica, keys.channel(sid), b"delta|7-1|" + delta_entry(1, "on")) > 0

    await until(delivered, bool)
    await until_true(lambda: sub.backlog >= 1)
    assert sub.take()[-1].delta().text == "on"


async def test_a_call_made_before_the_slot_map_is_read_waits_for_it(
    cluster: LocalCluster, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    batcher = ClusterBatcher(SlotMap(ClusterUrl.parse(cluster.url)))
    try:
        reply = await batcher.call(
            _SET_AND_PUBLISH, [keys.session("s"), keys.channel("s")], ["v", "x"]
        )
    finally:
        await batcher.close()

    assert reply == "v"


async def test_a_channel_subscribed_again_at_once_is_not_taken_for_a_moved_slot(
    cluster: LocalCluster, hub: ShardedHub
) -> None:
    sid = sid_on(cluster, cluster.primaries()[0], skip=60)
    (await hub.subscribe(sid)).close()
    again = await hub.subscribe(sid)
    await asyncio.sleep(0.5)  # past the answer to the first one's SUNSUBSCRIBE, and a placement

    assert not again.resync
    assert hub.resyncs == 0


async def test_a_turn_read_while_its_slot_moves_finds_the_exchanges_already_moved(
    cluster: LocalCluster, batcher: ClusterBatcher, key_prefix: str
) -> None:
    keys = Keys(key_prefix)
    source, target = cluster.primaries()[:2]
    sid = sid_on(cluster, source, skip=70)
    redis = cluster_client(ClusterUrl.parse(cluster.url))
    store = Store(redis, keys, EngineConfig(key_prefix=key_prefix), batcher)
    try:
        await store.create_session("me", NewSession(agent_id="default"), sid)
        said = [
            ImportedMessage(role="user", text="hi"),
            ImportedMessage(role="assistant", text="yo"),
        ]
        await store.import_messages("me", sid, said, now_ms())
        await redis.set(keys.lock(sid), "running-x")  # every key the script names stays put
        exchanges = [
            keys.exchange(sid, xid) for xid in await redis.lrange(keys.exchanges(sid), 0, -1)
        ]
        slot = slot_of(keys.session(sid))
        await asyncio.to_thread(start_moving, cluster, slot, source, target, exchanges)

        _, history = await store.turn_context("me", sid)

        assert [(e.input_text, e.reply_text) for e in history] == [("hi", ""), ("", "yo")]
    finally:
        await asyncio.to_thread(cluster.move_slot, slot, target)
        await redis.aclose()


def start_moving(
    cluster: LocalCluster, slot: int, source: RedisProcess, target: RedisProcess, keys: list[str]
) -> None:
    """Mark ``slot`` as moving from ``source`` to ``target`` and move only ``keys``."""
    with SyncRedis.from_url(target.url) as to, SyncRedis.from_url(source.url) as at:
        to.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
        at.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
        at.execute_command("MIGRATE", target.client_host, target.port, "", 0, 5000, "KEYS", *keys)
