"""Which client runs the flush path on a Redis Cluster: Parley's own or redis-py's.

``python -m server.bench.cluster_calls`` starts a private local cluster (3 primaries, 3
replicas) and has ``--exchanges`` exchanges each send one FLUSH per round, all due in the same
tick, as runners on one refresh interval do, for ``--rounds`` rounds, through:
- ``parley``: :class:`ClusterBatcher` (one pipelined write per primary per tick);
- ``redis-py``: redis-py's cluster client, one ``EVALSHA`` call per exchange;
- ``redis-py-pipeline``: redis-py's cluster pipeline, one per tick for all of them.
It prints the client's CPU per 1,000 calls and each round's wall time (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import RedisCluster

from server.embedded_cluster import LocalCluster
from streams.cluster_batcher import ClusterBatcher
from streams.connect import cluster_client
from streams.keys import Keys
from streams.runner import flush_keys
from streams.scripts import FLUSH, Script
from streams.slots import ClusterUrl, SlotMap

_FLUSH = Script(FLUSH)
Round = Callable[[int], Awaitable[Any]]


def flush_args(seq: int) -> list[Any]:
    return [seq, f'{{"seq":{seq},"text":"word "}}', 0, 1, 0, 0, 0, 0, 30_000, 600]


async def prepare(redis: RedisCluster, keys: Keys, exchanges: int) -> list[list[str]]:
    all_keys = [flush_keys(keys, f"s{n}", "x") for n in range(exchanges)]
    for session, exchange, *_ in all_keys:
        await redis.hset(session, mapping={"owner": "bench", "in": 0, "out": 0})
        await redis.hset(exchange, mapping={"seq": 0})
    await redis.script_load(_FLUSH.sharded.source)
    return all_keys


def rounds_of(
    client: str, batcher: ClusterBatcher, redis: RedisCluster, all_keys: list[list[str]]
) -> Round:
    script = _FLUSH.sharded

    async def parley(seq: int) -> Any:
        return await asyncio.gather(
            *(batcher.submit(_FLUSH, keys, flush_args(seq)) for keys in all_keys)
        )

    async def one_by_one(seq: int) -> Any:
        return await asyncio.gather(*(_FLUSH(redis, keys, flush_args(seq)) for keys in all_keys))

    async def pipelined(seq: int) -> Any:
        async with redis.pipeline(transaction=False) as pipe:
            for keys in all_keys:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *flush_args(seq))
            return await pipe.execute()

    return {"parley": parley, "redis-py": one_by_one, "redis-py-pipeline": pipelined}[client]


async def measure(run: Round, rounds: int, first_seq: int) -> tuple[float, list[float]]:
    cpu = time.process_time()
    walls = []
    for n in range(rounds):
        started = time.perf_counter()
        await run(first_seq + n)
        walls.append(time.perf_counter() - started)
    return time.process_time() - cpu, walls


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="parley-cluster-calls-") as work:
        print("starting a local cluster (3 primaries, 3 replicas)", file=sys.stderr, flush=True)
        with LocalCluster(Path(work)) as cluster:
            cluster_url = ClusterUrl.parse(cluster.url)
            redis = cluster_client(cluster_url)
            batcher = ClusterBatcher(SlotMap(cluster_url))
            try:
                all_keys = await prepare(redis, Keys("bench"), args.exchanges)
                seq = 1
                for client in args.clients:
                    run = rounds_of(client, batcher, redis, all_keys)
                    await measure(run, 3, seq)  # connections opened, scripts cached
                    seq += 3
                    print(f"{client}: {args.rounds} rounds", file=sys.stderr, flush=True)
                    cpu, walls = await measure(run, args.rounds, seq)
                    seq += args.rounds
                    report(client, cpu, walls, args.exchanges)
            finally:
                await batcher.close()
                await redis.aclose()


def report(client: str, cpu: float, walls: list[float], exchanges: int) -> None:
    calls = len(walls) * exchanges
    p99 = statistics.quantiles(walls, n=100)[98] if len(walls) > 1 else walls[0]
    print(
        f"{client:>18}: {cpu / calls * 1e6:7.1f} us client CPU per call, "
        f"round p50 {statistics.median(walls) * 1e3:6.1f} ms, p99 {p99 * 1e3:6.1f} ms",
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server.bench.cluster_calls", description=__doc__
    )
    parser.add_argument("--exchanges", type=int, default=1000, help="default %(default)s")
    parser.add_argument("--rounds", type=int, default=30, help="default %(default)s")
    parser.add_argument(
        "--clients",
        nargs="+",
        default=["parley", "redis-py", "redis-py-pipeline"],
        choices=["parley", "redis-py", "redis-py-pipeline"],
    )
    return parser


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    asyncio.run(main(build_parser().parse_args()))
