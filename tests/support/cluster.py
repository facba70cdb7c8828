"""A real local Redis Cluster for tests, from a binary `make run` finds (Redis 7.0+ or Valkey).

Where no such binary exists the cluster tests are skipped, unless PARLEY_TEST_REQUIRE_CLUSTER
is set (`.ci/run` sets it): then they fail, so CI never passes without them.
"""

from __future__ import annotations

import os

import pytest

from server.embedded_cluster import LocalCluster, cluster_binary
from server.embedded_redis import RedisNotFoundError, RedisProcess
from streams.slots import slot_of


def require_cluster_support() -> None:
    try:
        cluster_binary()
    except RedisNotFoundError as error:
        if os.environ.get("PARLEY_TEST_REQUIRE_CLUSTER"):
            pytest.fail(f"PARLEY_TEST_REQUIRE_CLUSTER is set: {error}")
        pytest.skip("Redis Cluster tests need Redis 7.0+ or Valkey (sharded pub/sub)")


def start_cluster(tmp_path_factory: pytest.TempPathFactory, name: str) -> LocalCluster:
    """3 primaries and 3 replicas, up and ok; the test is skipped without a 7.0+ server."""
    require_cluster_support()
    return LocalCluster(tmp_path_factory.mktemp(name)).start()


def tag_on(cluster: LocalCluster, node: RedisProcess, stem: str, skip: int = 0) -> str:
    """A hash tag (or session id) whose slot ``node`` serves now, past the first ``skip``."""
    found = 0
    for i in range(100_000):
        tag = f"{stem}{i}"
        if cluster.primary_for_slot(slot_of(tag)) is node:
            if found == skip:
                return tag
            found += 1
    raise AssertionError(f"no {stem}... tag lands on {node.url}")
