"""``python -m server.bench.refusals``: what refusing a request costs Parley and its Redis.

Starts a private Redis and Parley with one worker and two keys: one whose bucket is always
empty, one without limits. Each drives ``GET /v1/agents`` over keep-alive connections for
the same time; the report gives answers per second and per CPU-second of Parley plus Redis
("per core"). A refusal costs one token-bucket script call and an error envelope.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from server.bench.http1 import Http1Connection, HttpError
from server.bench.sampler import ProcessSampler
from server.bench.suite import SuiteError, parley_server, say
from server.embedded_redis import RedisProcess

KEYS_FILE = """
[[keys]]
key = "bench-limited"
principal = "bench-limited"
requestsPerSecond = 0.001
burst = 1

[[keys]]
key = "bench-free"
principal = "bench-free"
"""


class Phase(msgspec.Struct, frozen=True):
    key: str
    answers: int
    by_status: dict[int, int]
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.answers / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.answers / self.cpu_seconds if self.cpu_seconds else 0.0

    def line(self) -> str:
        statuses = ", ".join(f"{n} x {status}" for status, n in sorted(self.by_status.items()))
        return (
            f"{self.key:14} {self.per_second:8.0f} answers/s  {self.per_cpu_second:8.0f} per "
            f"CPU-second  {1e6 / self.per_cpu_second if self.per_cpu_second else 0:6.0f} "
            f"CPU-us each  ({statuses})"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server.bench.refusals", description=__doc__)
    parser.add_argument("-c", "--connections", type=int, default=32, help="keep-alive clients")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds per key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        phases = asyncio.run(run(args.connections, args.duration))
    except SuiteError as exc:
        say(f"failed: {exc}")
        return 2
    print(f"GET /v1/agents, {args.connections} connections, {args.duration:g} s per key, 1 worker")
    for phase in phases:
        print(phase.line())
    return 0


async def run(connections: int, duration: float) -> list[Phase]:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-refusals-")))
        redis = stack.enter_context(RedisProcess(work / "redis", appendonly=False))
        keys = work / "keys.toml"
        keys.write_text(KEYS_FILE)
        settings = {"PARLEY_KEYS_FILE": str(keys)}
        server = stack.enter_context(parley_server(redis.url, 1, work / "parley", settings))
        samplers = [ProcessSampler(server.pid), ProcessSampler(redis.pid or 0)]
        phases = []
        for key in ("bench-limited", "bench-free"):
            say(f"driving {key} for {duration:g} s")
            phases.append(await drive(server.url, key, connections, duration, samplers))
        return phases


async def drive(
    url: str, key: str, connections: int, duration: float, samplers: list[ProcessSampler]
) -> Phase:
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    head = (
        f"GET /v1/agents HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n\r\n"
    ).encode()
    by_status: dict[int, int] = {}

    async def client(deadline: float) -> None:
        connection = Http1Connection(host, port)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(HttpError):
                    status = (await connection.request(head, timeout=10)).status
                    by_status[status] = by_status.get(status, 0) + 1
        finally:
            connection.close()

    cpu_before = sum(s.sample().cpu_seconds for s in samplers)
    started = time.monotonic()
    await asyncio.gather(*(client(started + duration) for _ in range(connections)))
    seconds = time.monotonic() - started
    cpu = sum(s.sample().cpu_seconds for s in samplers) - cpu_before
    return Phase(key, sum(by_status.values()), by_status, seconds, cpu)


if __name__ == "__main__":
    sys.exit(main())
