"""``make bench``: a private Redis, Parley with 2 workers, and ``parley bench`` against the
bare baseline (no Redis) and the naive-redis baseline (Litestar + redis-py pub/sub, on the
same Redis), one after the other.

The standard profile is the one the targets are stated in: 2,000 streaming sessions for
60 s against a synthetic model at 20 tokens/s, 200-token replies, a 100 ms refresh interval.
``--quick`` runs the same shape small enough to try in under a minute (all three targets).
``--writers`` also starts Parley built with sse-starlette's ``EventSourceResponse`` as its stream
writer (``server.bench.sse_writer``; same Redis, same workers, a key prefix of its own) and
measures it right after Parley as the variant ``sse-starlette``, with its ratios to Parley: the
two writers on the same load in one run (four targets: ``--quick`` then takes a little over a
minute). Parley's, the variant's and naive-redis's server figures include the private Redis
(``--redis-pid``); with ``--redis-url`` that Redis is not theirs alone, so it is not counted, and
the report says so.
Options this module does not know go to ``parley bench`` as they are (e.g. ``--step``); they
win over the profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import httpx
import msgspec
from redis import Redis

from server.bench.server_metrics import read_server_metrics, summary
from server.embedded_redis import RedisProcess, exit_with_parent, free_port
from server.settings import ENV_PREFIX, Settings
from streams.keys import Keys

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
Writer = Literal["parley", "sse-starlette"]
# --writers: the variant's label in the report, and the app it runs.
SSE_STARLETTE: Final = "sse-starlette"
SSE_STARLETTE_APP = "server.bench.sse_writer:create_app"
MODEL_ARGS = (
    *("--mode", "streaming", "--tokens-per-second", "20", "--reply-tokens", "200"),
    *("--refresh-interval-ms", "100"),
)
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
# Each worker publishes its metrics once a second (server/metrics.py); let the last second land.
_METRICS_SETTLE_S = 1.5


class Profile(msgspec.Struct, frozen=True):
    name: str
    concurrency: int
    duration_s: float


STANDARD = Profile("standard", concurrency=2000, duration_s=60.0)
# Shorter than one reply (10.2 s): each session runs one exchange, and none starts a second
# that would double the run, so the three targets fit in a minute (four, with --writers, a
# little over).
QUICK = Profile("quick", concurrency=200, duration_s=8.0)


class SuiteError(RuntimeError):
    """Something the bench needs did not start."""


def say(message: str) -> None:
    print(f"[bench suite] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server.bench.suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # options it does not know go to parley bench as they are
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.concurrency} sessions for {QUICK.duration_s:g} s",
    )
    parser.add_argument("-c", "--concurrency", type=int, help="sessions (overrides the profile)")
    parser.add_argument("-d", "--duration", type=float, help="seconds (overrides the profile)")
    parser.add_argument("--workers", type=int, default=2, help="Parley and baselines' workers")
    parser.add_argument(
        "--writers",
        action="store_true",
        help="also start Parley with sse-starlette's EventSourceResponse as its stream writer "
        "(same Redis and workers, its own port and key prefix) and measure it right after "
        f"Parley as the variant {SSE_STARLETTE!r}, with its ratios to Parley",
    )
    parser.add_argument(
        "--redis-url",
        help="use this Redis (Parley's, the variant's and naive-redis's) instead of starting a "
        "private one; it is then not counted in their CPU and RSS",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        help="report path (default .parley/bench-DATE.json, or bench-DATE-quick.json)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, bench_extra = build_parser().parse_known_args(argv)
    profile = QUICK if args.quick else STANDARD
    load = [
        *("-c", str(args.concurrency or profile.concurrency)),
        *("-d", f"{profile.duration_s if args.duration is None else args.duration:g}"),
    ]
    json_path = Path(args.json_path or default_json_path(profile))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)  # what is there after the run is this run's
    writers = " and with sse-starlette's writer" if args.writers else ""
    say(f"{profile.name} profile ({' '.join(load)}), Parley with {args.workers} workers{writers}")
    try:
        code = run_suite(args, [*load, "--json", str(json_path), *bench_extra], json_path)
    except SuiteError as exc:
        say(f"failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted; everything it started is stopped")
        return 130
    if json_path.exists():
        say(f"report written to {json_path}")
    return code


def run_suite(args: argparse.Namespace, bench_args: list[str], json_path: Path) -> int:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-bench-")))
        redis_url, redis_pid = args.redis_url, None
        if redis_url is None:
            redis = stack.enter_context(private_redis(work / "redis"))
            redis_url, redis_pid = redis.url, redis.pid
        else:
            say("an outside Redis: not counted in any server's CPU and RSS")
        server = stack.enter_context(parley_server(redis_url, args.workers, work / "parley"))
        servers = [("serverMetrics", server)]
        variant: list[str] = []
        if args.writers:
            other = stack.enter_context(
                parley_server(redis_url, args.workers, work / SSE_STARLETTE, writer=SSE_STARLETTE)
            )
            servers.append(("variantServerMetrics", other))
            variant = ["--variant", f"{SSE_STARLETTE}={other.url}", "--variant-pid", str(other.pid)]
        counted = [] if redis_pid is None else ["--redis-pid", str(redis_pid)]
        code = run_bench(
            [
                *("--url", server.url, "--server-pid", str(server.pid), *counted, *variant),
                *("--baseline", "--naive-redis", redis_url),
                *("--baseline-workers", str(args.workers)),
                *MODEL_ARGS,
                *bench_args,
            ]
        )
        add_server_metrics(servers, json_path)
        for _, started in servers:
            if code != 0 and tail(started):
                say(f"the bench exited with {code}; {started.name}'s log ends:\n{tail(started)}")
        return code


def default_json_path(profile: Profile) -> str:
    suffix = "" if profile is STANDARD else f"-{profile.name}"
    return f".parley/bench-{datetime.now().date().isoformat()}{suffix}.json"


@contextlib.contextmanager
def private_redis(data_dir: Path) -> Iterator[RedisProcess]:
    say("starting a private Redis")
    server = RedisProcess(data_dir, appendonly=False).start()
    try:
        say(f"Redis ready: {server.describe()} (pid {server.pid})")
        yield server
    finally:
        server.stop()
        say("Redis stopped")


class ParleyServer(msgspec.Struct, frozen=True):
    url: str
    pid: int
    log_path: Path
    name: str = "Parley"


@contextlib.contextmanager
def parley_server(
    redis_url: str,
    workers: int,
    log_dir: Path,
    settings: dict[str, str] | None = None,
    *,
    writer: Writer = "parley",
) -> Iterator[ParleyServer]:
    """``parley serve --workers N`` on a free port, with a key prefix of its own and any
    further ``PARLEY_*`` ``settings``; with ``writer="sse-starlette"``, the same app with
    sse-starlette's stream writer, under uvicorn as ``parley serve`` runs it."""
    port = free_port()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.pop(MULTIPROC_ENV, None)  # `parley serve` makes a fresh one for its workers
    env.update(PARLEY_REDIS_URL=redis_url, PARLEY_KEY_PREFIX=prefix, PARLEY_LOG_LEVEL="warning")
    env.update(settings or {})
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "parley.log"
    if writer == "parley":
        name = "Parley"
        command = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(workers)]
    else:
        name = "Parley (sse-starlette writer)"
        command = _sse_starlette_command(port, workers, env)
        if workers > 1:  # as `parley serve` does, or /metrics would show one worker's counts
            metrics = log_dir / "metrics"
            metrics.mkdir()
            env[MULTIPROC_ENV] = str(metrics)
    say(f"starting {name} with {workers} workers on port {port}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    url = f"http://127.0.0.1:{port}"
    server = ParleyServer(url=url, pid=process.pid, log_path=log_path, name=name)
    try:
        started = time.monotonic()
        wait_ready(server, process, redis_url, Keys(prefix).control(), workers)
        say(f"{name} ready in {time.monotonic() - started:.1f} s (pid {process.pid})")
        yield server
    finally:
        stop(process, name)
        say(f"{name} stopped")


def _sse_starlette_command(port: int, workers: int, env: dict[str, str]) -> list[str]:
    """uvicorn with ``parley serve``'s options, the graceful timeout included (the shutdown
    grace plus 5 s), on the app that writes its streams with sse-starlette."""
    grace = env.get(f"{ENV_PREFIX}SHUTDOWN_GRACE_SECONDS")
    grace_s = float(grace) if grace else Settings().shutdown_grace_seconds
    return [
        *(sys.executable, "-m", "uvicorn", SSE_STARLETTE_APP, "--factory"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        *("--log-level", "warning", "--timeout-graceful-shutdown", str(int(grace_s) + 5)),
    ]


def wait_ready(
    server: ParleyServer,
    process: subprocess.Popen[bytes],
    redis_url: str,
    control: str,
    workers: int,
) -> None:
    """Until /readyz answers and every worker's hub holds its subscription (the first worker
    up may answer alone, and would then take all the early connections)."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2.0) as http, Redis.from_url(redis_url) as redis:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SuiteError(f"{server.name} exited with {process.returncode}:\n{tail(server)}")
            with contextlib.suppress(httpx.TransportError):
                if (
                    http.get("/readyz").status_code == 200
                    and _subscribers(redis, control) >= workers
                ):
                    return
            time.sleep(0.1)
    raise SuiteError(f"{server.name} was not ready within {_READY_TIMEOUT_S:g} s:\n{tail(server)}")


def _subscribers(redis: Redis, channel: str) -> int:
    [(_, count)] = redis.pubsub_numsub(channel)
    return int(count)


def stop(process: subprocess.Popen[bytes], name: str = "Parley") -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        say(f"{name} ignored SIGTERM for {_STOP_TIMEOUT_S:g} s; killing it")
        process.kill()
        process.wait()


def tail(server: ParleyServer, lines: int = 30) -> str:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_bench(bench_args: Sequence[str]) -> int:
    """``parley bench`` in its own process: its event loop shares nothing with this one."""
    command = [sys.executable, "-m", "server.cli", "bench", *bench_args]
    say("running: parley bench " + " ".join(bench_args))
    return subprocess.run(command, stdin=subprocess.DEVNULL, check=False).returncode


def add_server_metrics(servers: Sequence[tuple[str, ParleyServer]], json_path: Path) -> None:
    """Print what each Parley's own /metrics saw (every worker), and add it to the JSON report
    under the key paired with it."""
    time.sleep(_METRICS_SETTLE_S)
    found: dict[str, object] = {}
    for key, server in servers:
        try:
            figures = read_server_metrics(server.url)
        except (httpx.HTTPError, ValueError) as exc:
            say(f"could not read {server.name}'s /metrics: {exc}")
            continue
        heading, _, rest = summary(figures).partition("\n")
        print(heading.replace("Parley", server.name, 1) + "\n" + rest)
        found[key] = msgspec.to_builtins(figures)
    if found and json_path.exists():
        report = json.loads(json_path.read_bytes())
        report.update(found)
        json_path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
