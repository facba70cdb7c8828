"""The Redis clients a ``PARLEY_REDIS_URL`` calls for: one server, or a Redis Cluster.

A ``redis+cluster://host:port,host:port`` URL (``rediss+cluster://`` for TLS) names some of a
cluster's nodes. The command client is then redis-py's cluster client; the pipelined script
calls and the subscriptions, which bypass redis-py, go to each slot's primary themselves.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from streams.batcher import Batcher, ScriptBatcher
from streams.cluster_batcher import ClusterBatcher
from streams.hub import Hub
from streams.keys import Keys
from streams.sharded_hub import ShardedHub
from streams.slots import ClusterUrl, SlotMap, is_cluster_url

RedisClient: TypeAlias = Redis | RedisCluster

_MAX_CONNECTIONS = 512


class Connections:
    """The command client, the script batcher and the hub for one URL."""

    def __init__(self, url: str, keys: Keys, *, keepalive: float) -> None:
        self.redis: RedisClient
        self.batcher: Batcher
        self.hub: Hub
        if is_cluster_url(url):
            slots = SlotMap(ClusterUrl.parse(url))
            self.redis = cluster_client(slots.cluster)
            self.batcher = ClusterBatcher(slots)
            self.hub = ShardedHub(slots, keys, keepalive=keepalive)
        else:
            self.redis = server_client(url)
            self.batcher = ScriptBatcher(url)
            self.hub = Hub(url, keys, keepalive=keepalive)


def server_client(url: str) -> Redis:
    """A command pool that fails fast during an outage.

    Requests wait for a free connection rather than fail at the pool's limit (an overloaded
    process holds connections longer, and a wait beats a spurious 503), while a dead Redis
    costs a caller a fraction of a second (then 503), not redis-py's default backoff.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=_MAX_CONNECTIONS,
        timeout=30,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )
    return Redis(connection_pool=pool)


def cluster_client(cluster: ClusterUrl) -> RedisCluster:
    """redis-py's cluster client; its retries span a failover (a replica takes over within
    about twice the cluster's node timeout), so a request in flight then does not fail."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.scheme == "rediss",
        decode_responses=True,
        max_connections=_MAX_CONNECTIONS,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
    )
