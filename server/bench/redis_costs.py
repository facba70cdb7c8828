"""What a delta, an open stream and a stored exchange cost Redis: the capacity plan's inputs.

``python -m server.bench.redis_costs`` starts a private Redis (``--cluster``: a local cluster
of 3 primaries and 3 replicas), Parley with 2 workers, and one ``parley bench`` of
``-c`` streams for ``-d`` seconds (the suite's model: 20 tokens/s, 200-token replies, 100 ms
refresh). It reads every node's ``INFO`` before the run, halfway through and after it, and
prints, per log entry (a delta or an end), the Redis CPU (primaries and replicas apart),
commands and network bytes; Redis's connections halfway; and per finished exchange, what
Redis keeps once the streams are gone (a running exchange holds at most that: its replay log
grows to it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis

from server.bench.suite import MODEL_ARGS, parley_server, private_cluster, private_redis, run_bench
from server.embedded_redis import RedisProcess

Info = dict[str, Any]
_CPU = ("used_cpu_sys", "used_cpu_user")


def info(nodes: list[RedisProcess]) -> list[Info]:
    snapshots = []
    for node in nodes:
        with Redis.from_url(node.url) as client:
            snapshots.append(client.info("all"))
    return snapshots


def total(snapshots: list[Info], field: str) -> float:
    return sum(float(snapshot.get(field, 0)) for snapshot in snapshots)


def calls(snapshots: list[Info], command: str) -> int:
    return sum(int(s.get(f"cmdstat_{command}", {}).get("calls", 0)) for s in snapshots)


@contextlib.contextmanager
def redis_nodes(work: Path, cluster: bool) -> Iterator[tuple[str, list[RedisProcess]]]:
    if not cluster:
        with private_redis(work / "redis") as redis:
            yield redis.url, [redis]
        return
    with private_cluster(work / "cluster") as local:
        yield local.url, list(local.nodes)


def measure(args: argparse.Namespace, work: Path) -> dict[str, float]:
    with redis_nodes(work, args.cluster) as (url, nodes):
        with parley_server(url, 2, work / "parley") as server:
            before = info(nodes)
            halfway: list[list[Info]] = []
            timer = threading.Timer(args.duration / 2 + 5, lambda: halfway.append(info(nodes)))
            timer.start()
            report = work / "bench.json"
            bench = ["--url", server.url, "--server-pid", str(server.pid), *MODEL_ARGS]
            bench += [arg for node in nodes for arg in ("--redis-pid", str(node.pid))]
            bench += ["-c", str(args.concurrency), "-d", str(args.duration), "--json", str(report)]
            code = run_bench(bench)
            timer.cancel()
            time.sleep(1.0)
            after = info(nodes)
            sizes = key_sizes(nodes)
        if code >= 2 or not halfway:  # 1: a bar was missed, the figures stand
            raise SystemExit(f"the bench exited with {code}; no figures")
        result = json.loads(report.read_bytes())
    return figures(before, halfway[0], after, result, args.concurrency) | sizes


def key_sizes(nodes: list[RedisProcess], sample: int = 200) -> dict[str, float]:
    """Average ``MEMORY USAGE`` of each kind of key a session keeps, over a sample."""
    kinds = ("session hash", "exchange hash (with its text)", "replay log of a finished exchange")
    found: dict[str, list[int]] = {kind: [] for kind in kinds}
    for node in nodes:
        with Redis.from_url(node.url) as client:
            if client.info("replication").get("role") != "master":
                continue
            for key in client.scan_iter(match="*:{*}:*", count=1000):
                name = key.decode()
                kind = _kind_of(name)
                if kind is not None and len(found[kind]) < sample:
                    found[kind].append(int(client.memory_usage(key, samples=0) or 0))
    return {f"bytes per {kind}": sum(v) / len(v) for kind, v in found.items() if v}


def _kind_of(key: str) -> str | None:
    if key.endswith(":session"):
        return "session hash"
    if key.endswith(":log"):
        return "replay log of a finished exchange"
    if ":x:" in key:
        return "exchange hash (with its text)"
    return None


def figures(
    before: list[Info], half: list[Info], after: list[Info], bench: dict[str, Any], streams: int
) -> dict[str, float]:
    """Log entries and traffic are counted on primaries (a replica replays their writes);
    CPU and memory on every node, replicas included: what the deployment pays."""
    primary = [snapshot.get("role") == "master" for snapshot in after]
    before_p, after_p = _only(before, primary), _only(after, primary)
    entries = calls(after_p, "xadd") - calls(before_p, "xadd")
    target = bench["target"]
    ends = int(target["streams"]["exchanges"] or target["streams"]["completed"])

    def per_entry(field: str) -> float:
        return (total(after_p, field) - total(before_p, field)) / entries

    replica = [not kept for kept in primary]

    def cpu_per_entry(keep: list[bool]) -> float:
        spent = sum(total(_only(after, keep), f) - total(_only(before, keep), f) for f in _CPU)
        return spent / entries * 1e6

    return {
        "log entries (deltas and ends)": entries,
        "exchanges finished": ends,
        "Redis CPU us per entry, primaries": cpu_per_entry(primary),
        "Redis CPU us per entry, replicas": cpu_per_entry(replica),
        "commands per entry (incl. those scripts run)": per_entry("total_commands_processed"),
        "client bytes in per entry": per_entry("total_net_input_bytes")
        - per_entry("total_net_repl_input_bytes"),
        "client bytes out per entry": per_entry("total_net_output_bytes")
        - per_entry("total_net_repl_output_bytes"),
        "replication bytes out per entry": per_entry("total_net_repl_output_bytes"),
        "Redis client connections, halfway (primaries)": total(
            _only(half, primary), "connected_clients"
        ),
        "Redis bytes kept per finished exchange (every node)": (
            total(after, "used_memory") - total(before, "used_memory")
        )
        / max(ends, 1),
        "Parley CPU-s per 1,000 events (incl. Redis)": _cpu_per_1k(bench),
    }


def _only(snapshots: list[Info], keep: list[bool]) -> list[Info]:
    return [snapshot for snapshot, kept in zip(snapshots, keep, strict=True) if kept]


def _cpu_per_1k(bench: dict[str, Any]) -> float:
    found = bench["target"]["resources"].get("serverCpuSecondsPer1000Events")
    return float(found) if found is not None else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench.redis_costs", description=__doc__)
    parser.add_argument("-c", "--concurrency", type=int, default=1000, help="default %(default)s")
    parser.add_argument("-d", "--duration", type=float, default=20.0, help="default %(default)s")
    parser.add_argument("--cluster", action="store_true", help="a local 3+3 cluster")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parley-redis-costs-") as work:
        found = measure(args, Path(work))
    where = "cluster (3 primaries, 3 replicas)" if args.cluster else "single Redis"
    print(f"\n{args.concurrency} streams for {args.duration:g} s on a {where}:")
    for name, value in found.items():
        print(f"  {name:58} {value:12,.3f}" if value < 10 else f"  {name:58} {value:12,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
