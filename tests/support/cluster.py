"""A real local Redis Cluster for tests, from the binary `make run` finds (Redis >= 7.0)."""

from __future__ import annotations

import re
import subprocess

import pytest

from server.embedded_cluster import LocalCluster
from server.embedded_redis import find_redis_binary


def server_version() -> tuple[int, ...]:
    _, path = find_redis_binary()
    output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", output)
    return tuple(map(int, found.groups())) if found else (0, 0)


def require_cluster_support() -> None:
    if server_version() < (7, 0):
        pytest.skip("Redis Cluster tests need Redis 7.0+ (sharded pub/sub, ADDSLOTSRANGE)")


def start_cluster(tmp_path_factory: pytest.TempPathFactory, name: str) -> LocalCluster:
    """3 primaries and 3 replicas, up and ok; the test is skipped below Redis 7.0."""
    require_cluster_support()
    return LocalCluster(tmp_path_factory.mktemp(name)).start()
