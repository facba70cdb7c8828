"""``make bench``: a private Redis, Parley with 2 workers, and ``parley bench`` against the
bare baseline (no Redis) and the naive-redis baseline (Litestar + redis-py pub/sub, on the
same Redis), one after the other.

The standard run measures the six performance targets in three phases against the same
Parley and Redis, each a ``parley bench`` of its own: A, 1,000 streams for 30 s of Parley, the
variant (``--writers``), bare and naive-redis (P1 CPU per event, P3 time to first delta, P4
memory per open stream, P6 CPU against naive-redis); B, 2,000 streams for 30 s of Parley and
bare (P2 lateness); C, steps of Parley and bare from 500 streams, x1.5, 20 s each, up to 3,000
(P5 largest passing concurrency). It then prints the targets table, and writes one JSON report:
phase A's report at the top (as a single run's), ``phases`` (every phase's report) and
``targets``. The synthetic model runs at 20 tokens/s, 200-token replies, with a 100 ms refresh
interval. ``--quick`` runs phase A only, 200 streams for 8 s per target, in about a minute;
P2 and P5 are then not measured.
``-c``, ``-d``, ``-n`` or ``--step`` run one comparison instead, as given (the rest from the
2,000-stream, 60 s profile, or ``--quick``'s), without a targets table.
``--writers`` also starts Parley built with sse-starlette's ``EventSourceResponse`` as its stream
writer (``server.bench.sse_writer``; same Redis, same workers, a key prefix of its own) and
measures it right after Parley as the variant ``sse-starlette``, with its ratios to Parley: the
two writers on the same load in one run. Parley's, the variant's and naive-redis's server CPU
includes the private Redis (``--redis-pid``), their memory per open stream does not (Redis's
growth is reported apart); with ``--redis-url`` that Redis is not theirs alone, so it is not
counted, and the report says so.
``--cluster`` starts a private local Redis Cluster instead (3 primaries, 3 replicas,
``server.embedded_cluster``) and runs Parley (and the variant) on it: every node's CPU counts
in the server's (``--redis-pid`` once per node, summed), and so does every node's memory
growth. naive-redis, a single-Redis app, is then skipped (as on a cluster ``--redis-url``): the
report says so under ``skipped``, and P6 is not measured.
Options this module does not know go to every ``parley bench`` as they are (e.g.
``--step-max``); they win over the profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
from typing import Any, Final, Literal

import httpx
import msgspec
from redis import Redis
from redis.cluster import ClusterNode, RedisCluster

from server.bench.options import BenchOptions, add_bench_arguments, options_from_args
from server.bench.report import BenchReport
from server.bench.server_metrics import read_server_metrics, summary
from server.bench.targets import TargetRow, figures, judge, render_targets
from server.embedded_cluster import ClusterError, LocalCluster
from server.embedded_redis import RedisProcess, RedisStartError, exit_with_parent, free_port
from server.settings import ENV_PREFIX, Settings
from streams.keys import Keys
from streams.slots import ClusterUrl, is_cluster_url

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
# For the estimate: starting Redis and Parley, and each target's start (a baseline's server,
# the agent) and end (the report).
_STARTUP_S = 5.0
_RUN_OVERHEAD_S = 2.0
_LEVEL_OVERHEAD_S = 1.0


class Phase(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One ``parley bench`` of the run: Parley and bare always, naive-redis and the variant
    (with ``--writers``) when asked; with ``step``, levels from ``concurrency`` up."""

    name: str
    measures: str
    concurrency: int
    duration_s: float
    exchanges: int | None = None
    naive_redis: bool = False
    variant: bool = False
    step: bool = False
    step_factor: float = 1.5
    step_max: int | None = None

    def scaled(self, factor: float) -> Phase:
        """Smaller (or larger): sessions and seconds times ``factor``, at least 1 session."""
        return msgspec.structs.replace(
            self,
            concurrency=max(1, round(self.concurrency * factor)),
            duration_s=self.duration_s * factor,
            step_max=None if self.step_max is None else max(1, round(self.step_max * factor)),
        )


COMPARISON = Phase(
    name="A",
    measures="P1, P3, P4, P6",
    concurrency=1000,
    duration_s=30.0,
    naive_redis=True,
    variant=True,
)
STANDARD_PHASES = (
    COMPARISON,
    Phase(name="B", measures="P2", concurrency=2000, duration_s=30.0),
    Phase(name="C", measures="P5", concurrency=500, duration_s=20.0, step=True, step_max=3000),
)
# Shorter than one reply (10.2 s): each session runs one exchange, and none starts a second
# that would double the run, so phase A fits in a minute (a little over with --writers).
QUICK_PHASES = (msgspec.structs.replace(COMPARISON, concurrency=200, duration_s=8.0),)


class Profile(msgspec.Struct, frozen=True):
    """A run's phases, and the load of one comparison when ``-c``, ``-d``, ``-n`` or
    ``--step`` ask for one instead."""

    name: str
    concurrency: int
    duration_s: float
    phases: tuple[Phase, ...]


STANDARD = Profile("standard", concurrency=2000, duration_s=60.0, phases=STANDARD_PHASES)
QUICK = Profile("quick", concurrency=200, duration_s=8.0, phases=QUICK_PHASES)


class SuiteError(RuntimeError):
    """Something the bench needs did not start."""


class PhaseRun(msgspec.Struct, kw_only=True, rename="camel"):
    """A phase as it ran: ``parley bench``'s exit status and its report (None when it wrote
    none)."""

    phase: Phase
    exit_code: int
    elapsed_s: float
    report: dict[str, Any] | None = None


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
        help=f"phase A only: {QUICK_PHASES[0].concurrency} sessions for "
        f"{QUICK_PHASES[0].duration_s:g} s per target",
    )
    parser.add_argument(
        "-c", "--concurrency", type=int, help="sessions: one comparison instead of the phases"
    )
    parser.add_argument(
        "-d", "--duration", type=float, help="seconds: one comparison instead of the phases"
    )
    parser.add_argument(
        "-n", "--exchanges", type=int, help="exchanges per session: one comparison instead"
    )
    parser.add_argument(
        "--step",
        action="store_true",
        help="one comparison in steps (parley bench --step) instead of the phases",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="the phases' sessions and seconds times this (e.g. 0.01 tries the run in "
        "seconds); default %(default)s",
    )
    parser.add_argument("--workers", type=int, default=2, help="Parley and baselines' workers")
    parser.add_argument(
        "--writers",
        action="store_true",
        help="also start Parley with sse-starlette's EventSourceResponse as its stream writer "
        "(same Redis and workers, its own port and key prefix) and measure it right after "
        f"Parley as the variant {SSE_STARLETTE!r}, with its ratios to Parley",
    )
    redis = parser.add_mutually_exclusive_group()
    redis.add_argument(
        "--redis-url",
        help="use this Redis (Parley's, the variant's and naive-redis's) instead of starting a "
        "private one; it is then not counted in their CPU and RSS",
    )
    redis.add_argument(
        "--cluster",
        action="store_true",
        help="start a private local Redis Cluster (3 primaries, 3 replicas) instead of a "
        "single Redis, every node counted in the server's CPU and Redis's growth; naive-redis "
        "(a single-Redis app) is then skipped",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        help="report path (default .parley/bench-DATE.json, or bench-DATE-quick.json)",
    )
    return parser


def plan(args: argparse.Namespace) -> tuple[Profile, list[Phase], bool]:
    """The phases to run, and whether they are the profile's (with a targets table) rather
    than one comparison as asked."""
    profile = QUICK if args.quick else STANDARD
    single = args.step or any(
        value is not None for value in (args.concurrency, args.duration, args.exchanges)
    )
    if not single:
        return profile, [phase.scaled(args.scale) for phase in profile.phases], True
    one = Phase(
        name="run",
        measures="",
        concurrency=args.concurrency or profile.concurrency,
        duration_s=profile.duration_s if args.duration is None else args.duration,
        exchanges=args.exchanges,
        naive_redis=True,
        variant=True,
        step=args.step,
    )
    return profile, [one], False


def main(argv: Sequence[str] | None = None) -> int:
    args, bench_extra = build_parser().parse_known_args(argv)
    profile, phases, phased = plan(args)
    naive_skipped = naive_redis_skipped(args)
    if naive_skipped is not None:
        phases = [msgspec.structs.replace(phase, naive_redis=False) for phase in phases]
    json_path = Path(args.json_path or default_json_path(profile))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)  # what is there after the run is this run's
    writers = " and with sse-starlette's writer" if args.writers else ""
    shape = (
        "; ".join(describe(phase) for phase in phases) if phased else " ".join(load_args(phases[0]))
    )
    on = " on a private Redis Cluster (3 primaries, 3 replicas)" if args.cluster else ""
    say(f"{profile.name} profile ({shape}), Parley with {args.workers} workers{writers}{on}")
    if naive_skipped is not None:
        say(f"naive-redis skipped ({naive_skipped}): it is a single-Redis app")
    low, high = estimate_s(phases, args.writers, model_options(bench_extra))
    say(f"expected duration: {about(low, high)}")
    try:
        code = run_suite(args, phases, phased, bench_extra, json_path, naive_skipped)
    except SuiteError as exc:
        say(f"failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted; everything it started is stopped")
        return 130
    if json_path.exists():
        say(f"report written to {json_path}")
    return code


def naive_redis_skipped(args: argparse.Namespace) -> str | None:
    """Why naive-redis is not measured, when it is not: it subscribes on one plain Redis."""
    if args.cluster:
        return "--cluster"
    if args.redis_url is not None and is_cluster_url(args.redis_url):
        return "a cluster --redis-url"
    return None


def describe(phase: Phase) -> str:
    load = f"{phase.duration_s:g} s"
    if phase.step:
        top = "" if phase.step_max is None else f" up to {phase.step_max:,}"
        shape = f"steps from {phase.concurrency:,} streams x{phase.step_factor:g}{top}, {load} each"
    else:
        shape = f"{phase.concurrency:,} streams for {load}"
    return f"{phase.name}: {shape} -> {phase.measures}"


def load_args(phase: Phase) -> list[str]:
    load = ["-c", str(phase.concurrency), "-d", f"{phase.duration_s:g}"]
    if phase.exchanges is not None:
        load += ["-n", str(phase.exchanges)]
    if phase.step:
        load += ["--step", "--step-factor", f"{phase.step_factor:g}"]
        load += [] if phase.step_max is None else ["--step-max", str(phase.step_max)]
    return load


def labels(phase: Phase, writers: bool) -> list[str]:
    """The targets a phase measures, in the order parley bench runs them."""
    measured = ["baseline", *(["naive-redis"] if phase.naive_redis else []), "parley"]
    return measured + ([SSE_STARLETTE] if phase.variant and writers else [])


def model_options(bench_extra: Sequence[str]) -> BenchOptions:
    """The synthetic model each bench runs: the profile's, unless options passed through
    change it."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_bench_arguments(parser)
    try:
        known, _ = parser.parse_known_args([*MODEL_ARGS, *bench_extra])
    except (argparse.ArgumentError, SystemExit):  # a bad value: parley bench says so itself
        known, _ = parser.parse_known_args(MODEL_ARGS)
    return options_from_args(known)


def estimate_s(phases: Sequence[Phase], writers: bool, model: BenchOptions) -> tuple[float, float]:
    """Seconds the run should take: stepped targets stop at the first level that fails, so
    from one level each up to every level."""
    reply_s = model.first_token_latency_ms / 1000 + model.reply_tokens / model.tokens_per_second
    low = high = _STARTUP_S + _METRICS_SETTLE_S
    for phase in phases:
        times = [_run_s(phase, level / 1000, reply_s) for level in _levels(phase)]
        targets = len(labels(phase, writers))
        low += targets * (_RUN_OVERHEAD_S + times[0])
        high += targets * (_RUN_OVERHEAD_S + sum(t + _LEVEL_OVERHEAD_S for t in times))
    return low, high


def _run_s(phase: Phase, ramp_s: float, reply_s: float) -> float:
    """Exchanges back to back until the deadline (ramp-up plus the duration); the first
    session's last one then ends."""
    if phase.exchanges is not None:
        return ramp_s + phase.exchanges * reply_s
    return max(1, math.ceil((ramp_s + phase.duration_s) / reply_s)) * reply_s


def _levels(phase: Phase) -> list[int]:
    """The concurrencies parley bench tries (as ``command._step`` raises them)."""
    if not phase.step:
        return [phase.concurrency]
    top = phase.step_max or BenchOptions().step_max
    levels, level = [], phase.concurrency
    while level <= top:
        levels.append(level)
        level = max(level + 1, round(level * phase.step_factor))
    return levels or [phase.concurrency]


def about(low: float, high: float) -> str:
    def minutes(seconds: float) -> str:
        return f"{math.ceil(seconds / 60):g}"

    if high < 90:
        return f"about {math.ceil(high / 10) * 10:g} s"
    if minutes(low) == minutes(high):
        return f"about {minutes(high)} minutes"
    return (
        f"about {minutes(low)} to {minutes(high)} minutes (steps stop at the first failing level)"
    )


def run_suite(
    args: argparse.Namespace,
    phases: Sequence[Phase],
    phased: bool,
    bench_extra: list[str],
    json_path: Path,
    naive_skipped: str | None = None,
) -> int:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-bench-")))
        redis_url: str | None = args.redis_url
        redis_pids: list[int] = []  # every process of a Redis of its own: counted in
        deployment: dict[str, object] = {}
        if args.cluster:
            cluster = stack.enter_context(private_cluster(work / "cluster"))
            redis_url, redis_pids = cluster.url, node_pids(cluster)
            deployment["redisCluster"] = describe_cluster(cluster)
        elif redis_url is None:
            redis = stack.enter_context(private_redis(work / "redis"))
            redis_url, redis_pids = redis.url, [] if redis.pid is None else [redis.pid]
        else:
            say("an outside Redis: not counted in any server's CPU and RSS")
        if naive_skipped is not None:
            deployment["skipped"] = {
                "naive-redis": f"{naive_skipped}: naive-redis is a single-Redis app"
            }
        server = stack.enter_context(parley_server(redis_url, args.workers, work / "parley"))
        servers = [("serverMetrics", server)]
        variant: list[str] = []
        if args.writers:
            other = stack.enter_context(
                parley_server(redis_url, args.workers, work / SSE_STARLETTE, writer=SSE_STARLETTE)
            )
            servers.append(("variantServerMetrics", other))
            variant = ["--variant", f"{SSE_STARLETTE}={other.url}", "--variant-pid", str(other.pid)]
        counted = [flag for pid in redis_pids for flag in ("--redis-pid", str(pid))]
        parley = ["--url", server.url, "--server-pid", str(server.pid), *counted]
        runs: list[PhaseRun] = []
        started = time.monotonic()
        for index, phase in enumerate(phases, 1):
            if phased:
                names = ", ".join(labels(phase, args.writers))
                say(f"phase {index} of {len(phases)}, {describe(phase)} ({names})")
            measured = [*parley, *(variant if phase.variant else [])]
            baselines = ["--baseline", *(["--naive-redis", redis_url] if phase.naive_redis else [])]
            runs.append(run_phase(phase, [*measured, *baselines], bench_extra, args.workers, work))
            if phased:
                say(
                    f"phase {phase.name} done in {runs[-1].elapsed_s / 60:.1f} min (exit "
                    f"{runs[-1].exit_code}); {(time.monotonic() - started) / 60:.1f} min so far"
                )
            if runs[-1].exit_code >= 2:
                break  # the target could not be measured at all: nor will the next phases be
        metrics = add_server_metrics(servers)
        code = max(run.exit_code for run in runs)
        for _, started_server in servers:
            if code != 0 and tail(started_server):
                say(f"the bench exited with {code}; {started_server.name}'s log ends:")
                say(tail(started_server))
        rows = targets(runs, args.quick, naive_skipped) if phased else None
        if rows is not None:
            print("\n" + render_targets(rows))
        write_report(json_path, runs, {**deployment, **metrics}, rows)
        return code


def run_phase(
    phase: Phase, measured: list[str], extra: list[str], workers: int, work: Path
) -> PhaseRun:
    """One ``parley bench`` of what ``measured`` names under the phase's load; the options
    passed through (``extra``) come last, so they win."""
    path = work / f"phase-{phase.name}.json"
    bench_args = [
        *measured,
        *("--baseline-workers", str(workers)),
        *MODEL_ARGS,
        *load_args(phase),
        *("--json", str(path)),
        *extra,
    ]
    started = time.monotonic()
    code = run_bench(bench_args)
    report = json.loads(path.read_bytes()) if path.exists() else None
    return PhaseRun(
        phase=phase, exit_code=code, elapsed_s=time.monotonic() - started, report=report
    )


def targets(
    runs: Sequence[PhaseRun], quick: bool, naive_skipped: str | None = None
) -> list[TargetRow]:
    """P1 to P6 from the phases' reports; the phases --quick skips are "not measured", and
    so is P6 when naive-redis was skipped."""
    reports = {
        run.phase.name: msgspec.convert(run.report, BenchReport)
        for run in runs
        if run.report is not None
    }
    ran = {run.phase.name for run in runs}
    why = {
        name: "--quick" if quick else f"phase {name} did not run"
        for name in ("A", "B", "C")
        if name not in ran
    }
    naive = None if naive_skipped is None else f"naive-redis skipped: {naive_skipped}"
    return judge(figures(reports, why, naive))


def write_report(
    json_path: Path,
    runs: Sequence[PhaseRun],
    metrics: dict[str, object],
    rows: Sequence[TargetRow] | None,
) -> None:
    """One file: the first phase's report at the top (what a single run's file holds, so
    readers of earlier reports still find it), then each Parley's /metrics (and, with
    ``--cluster``, the cluster's nodes and what was skipped); with the phases, every phase
    with its report, and the targets."""
    if all(run.report is None for run in runs):
        return
    report: dict[str, Any] = dict(runs[0].report or {})
    report.update(metrics)
    if rows is not None:
        report["phases"] = msgspec.to_builtins(runs)
        report["targets"] = msgspec.to_builtins(rows)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


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


@contextlib.contextmanager
def private_cluster(data_dir: Path) -> Iterator[LocalCluster]:
    say("starting a private Redis Cluster: 3 primaries, 3 replicas")
    cluster = LocalCluster(data_dir)
    try:
        cluster.start()  # stops what it started if it fails
    except (ClusterError, RedisStartError) as exc:
        raise SuiteError(f"the Redis Cluster did not start: {exc}") from None
    try:
        nodes = ", ".join(
            f"{node.port} pid {node.pid} ({cluster.role(node)})" for node in cluster.nodes
        )
        say(f"Redis Cluster ready: {cluster.url}; nodes {nodes}")
        yield cluster
    finally:
        cluster.stop()
        say("Redis Cluster stopped")


def node_pids(cluster: LocalCluster) -> list[int]:
    """Every node's pid, primaries and replicas: the Redis cost of the deployment."""
    return [node.pid for node in cluster.nodes if node.pid is not None]


def describe_cluster(cluster: LocalCluster) -> dict[str, object]:
    primaries = {node.port for node in cluster.primaries()}
    return {
        "url": cluster.url,
        "nodes": [
            {
                "port": node.port,
                "pid": node.pid,
                "role": "primary" if node.port in primaries else "replica",
            }
            for node in cluster.nodes
        ],
    }


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
    with httpx.Client(base_url=server.url, timeout=2.0) as http, _redis_client(redis_url) as redis:
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


def _redis_client(redis_url: str) -> Redis | RedisCluster:
    """A plain client for one Redis; for a ``redis+cluster://`` URL, redis-py's cluster
    client on its seed nodes."""
    if not is_cluster_url(redis_url):
        return Redis.from_url(redis_url)
    cluster = ClusterUrl.parse(redis_url)
    return RedisCluster(
        startup_nodes=[
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in cluster.nodes
        ],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.scheme == "rediss",
    )


def _subscribers(redis: Redis | RedisCluster, channel: str) -> int:
    """Clients subscribed to ``channel``. A cluster node counts only its own subscribers (a
    hub subscribes to the control channel on any one node), so every node is asked and the
    counts summed."""
    if isinstance(redis, RedisCluster):
        [(_, count)] = redis.pubsub_numsub(channel, target_nodes=RedisCluster.ALL_NODES)
    else:
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


def add_server_metrics(servers: Sequence[tuple[str, ParleyServer]]) -> dict[str, object]:
    """Print what each Parley's own /metrics saw (every worker, the whole run), and return it
    under the report's key paired with it."""
    time.sleep(_METRICS_SETTLE_S)
    found: dict[str, object] = {}
    for key, server in servers:
        try:
            seen = read_server_metrics(server.url)
        except (httpx.HTTPError, ValueError) as exc:
            say(f"could not read {server.name}'s /metrics: {exc}")
            continue
        heading, _, rest = summary(seen).partition("\n")
        print(heading.replace("Parley", server.name, 1) + "\n" + rest)
        found[key] = msgspec.to_builtins(seen)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
