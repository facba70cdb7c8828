"""The local Redis Cluster that cluster tests run against (server/embedded_cluster.py).

Two clusters per module: `cluster` stays as formed (its tests only write keys), and
`reshaped_cluster` takes failovers and slot moves, so each of those tests picks its subject
from the cluster's state at the time rather than from the initial layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from server.embedded_cluster import LocalCluster
from server.embedded_redis import RedisProcess
from streams.slots import slot_of
from tests.support.cluster import start_cluster, tag_on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_cluster(tmp_path_factory, "cluster") as started:
        yield started


@pytest.fixture(scope="module")
def reshaped_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with start_cluster(tmp_path_factory, "reshaped-cluster") as started:
        yield started


@contextmanager
def _cluster_client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.seed_urls[0], decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _direct(node: RedisProcess) -> redis.Redis:
    return redis.Redis.from_url(node.url, decode_responses=True, socket_timeout=5)


def _primary_with_running_replica(cluster: LocalCluster) -> RedisProcess:
    return next(node for node in cluster.primaries() if cluster.replica_of(node).running)


def _slots(cluster: LocalCluster) -> list[Any]:
    with _direct(cluster.nodes[0]) as client:
        return sorted(client.execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]


def test_the_cluster_comes_up_with_three_primaries_each_owning_a_third_with_one_replica(
    cluster: LocalCluster,
) -> None:
    primaries, replicas = cluster.nodes[:3], cluster.nodes[3:]
    assert cluster.primaries() == primaries
    ranges = _slots(cluster)
    assert [(low, high) for low, high, *_ in ranges] == [(0, 5460), (5461, 10921), (10922, 16383)]
    for (_, _, owner, *followers), primary, replica in zip(
        ranges, primaries, replicas, strict=True
    ):
        assert owner[:2] == ["127.0.0.1", primary.port]
        assert [follower[1] for follower in followers] == [replica.port]
        assert cluster.replica_of(primary) is replica
        assert cluster.role(replica) == "slave"


def test_the_url_lists_every_primary_as_a_seed(cluster: LocalCluster) -> None:
    ports = [node.port for node in cluster.nodes[:3]]
    assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    assert cluster.seed_urls == [f"redis://127.0.0.1:{port}/0" for port in ports]


def test_key_slot_agrees_with_the_server_including_hash_tags(cluster: LocalCluster) -> None:
    keys = ["foo", "parley:session:1", "{user1}.following", "{user1}.followers", "{}x", "é"]
    with _direct(cluster.nodes[0]) as client:
        assert [slot_of(key) for key in keys] == [client.cluster("KEYSLOT", key) for key in keys]
    assert slot_of("{user1}.following") == slot_of("user1")


def test_a_key_written_through_a_cluster_client_lands_on_the_primary_owning_its_slot(
    cluster: LocalCluster,
) -> None:
    keys = [f"{{{tag_on(cluster, node, 'land')}}}:k" for node in cluster.primaries()]
    with _cluster_client(cluster) as client:
        for key in keys:
            client.set(key, f"value of {key}")
    for key in keys:
        owner = cluster.primary_for_slot(slot_of(key))
        with _direct(owner) as client:
            assert client.get(key) == f"value of {key}"
        for other in cluster.primaries():
            if other is not owner:
                with _direct(other) as client, pytest.raises(MovedError):
                    client.get(key)


def test_a_failover_makes_the_replica_the_primary_of_its_slots_and_the_data_survives(
    reshaped_cluster: LocalCluster,
) -> None:
    cluster = reshaped_cluster
    primary = _primary_with_running_replica(cluster)
    replica = cluster.replica_of(primary)
    tag = tag_on(cluster, primary, "failover")
    with _cluster_client(cluster) as client:
        client.mset({f"{{{tag}}}:{i}": str(i) for i in range(20)})
        cluster.failover(replica)
        assert cluster.primary_for_slot(slot_of(tag)) is replica
        assert replica in cluster.primaries() and primary not in cluster.primaries()
        assert cluster.replica_of(replica) is primary
        assert client.mget([f"{{{tag}}}:{i}" for i in range(20)]) == [str(i) for i in range(20)]


def test_a_forced_failover_promotes_the_replica_of_a_killed_primary(
    reshaped_cluster: LocalCluster,
) -> None:
    cluster = reshaped_cluster
    primary = _primary_with_running_replica(cluster)
    replica = cluster.replica_of(primary)
    tag = tag_on(cluster, primary, "forced")
    with _direct(primary) as client:
        client.set(f"{{{tag}}}:k", "kept")
        assert client.wait(1, 5000) == 1
    primary.kill()
    cluster.failover(replica, force=True)
    assert cluster.primary_for_slot(slot_of(tag)) is replica
    with _cluster_client(cluster) as client:
        assert client.get(f"{{{tag}}}:k") == "kept"


def test_a_moved_slot_keeps_its_keys_and_is_served_by_the_target(
    reshaped_cluster: LocalCluster,
) -> None:
    cluster = reshaped_cluster
    source, target = cluster.primaries()[:2]
    tag = tag_on(cluster, source, "moved")
    slot, keys = slot_of(tag), [f"{{{tag}}}:{i}" for i in range(250)]
    with _cluster_client(cluster) as client:
        client.mset({key: key.upper() for key in keys})
        cluster.move_slot(slot, target)
        assert cluster.primary_for_slot(slot) is target
        with _direct(source) as direct:
            assert direct.cluster("COUNTKEYSINSLOT", slot) == 0
        with _direct(target) as direct:
            assert direct.cluster("COUNTKEYSINSLOT", slot) == len(keys)
        assert client.mget(keys) == [key.upper() for key in keys]
