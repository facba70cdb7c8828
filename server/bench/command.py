"""``parley bench``: measure a Parley server, a variant of it, the bare and naive-redis
baselines, in one run."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psutil

from server.bench.baseline import BaselineProfile
from server.bench.client import BenchSetupError, Target, model_params, run_load
from server.bench.launch import serve_baseline
from server.bench.naive_redis import NaiveRedisProfile
from server.bench.options import BenchOptions, add_bench_arguments, options_from_args
from server.bench.report import (
    BenchReport,
    Ratio,
    RunReport,
    StepLevel,
    build_report,
    encode_json,
    measured_runs,
    ratios,
    render,
    variant_ratios,
)

__all__ = ["add_bench_arguments", "run_bench"]

Measure = Callable[[BenchOptions], Awaitable[RunReport]]
_GC_THRESHOLDS = (100_000, 50, 100)


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench described by ``args`` (from :func:`add_bench_arguments`).

    Exit status 0 when every measured run met the bars (no failed stream, no integrity
    failure, p99 lateness within ``--max-p99-lateness-ms``; with ``--step``, when some level
    passed), 1 when not, 2 when the target could not be measured at all.
    """
    options = options_from_args(args)
    problem = _check(options)
    if problem:
        print(f"parley bench: {problem}", file=sys.stderr)
        return 2
    try:
        report = _event_loop_run(_bench(options))
    except BenchSetupError as exc:
        print(f"parley bench: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if options.json_path:
        Path(options.json_path).write_bytes(encode_json(report))
    return 0 if _passed(report, options) else 1


def _check(options: BenchOptions) -> str | None:
    if options.step and options.step_factor <= 1.0:
        return "--step-factor must be above 1"
    if options.exchanges is None and options.duration_s <= 0:
        return "--duration must be positive"
    if options.mode == "join" and options.watchers < 1:
        return "join mode needs --watchers of at least 1"
    if options.redis_pids and options.server_pid is None and not options.baseline_only:
        return "--redis-pid counts Redis into Parley's figures: give --server-pid too"
    if options.variant is None and options.variant_pid is not None:
        return "--variant-pid is the pid of a --variant's server: give --variant too"
    if options.variant is not None and options.baseline_only:
        return "--variant measures a second Parley: not with --baseline-only"
    if options.variant is not None and options.redis_pids and options.variant_pid is None:
        return "--redis-pid counts Redis into the variant's figures too: give --variant-pid"
    duplicated = sorted({pid for pid in options.redis_pids if options.redis_pids.count(pid) > 1})
    if duplicated:
        return f"--redis-pid {duplicated[0]} is given twice: it would be counted twice"
    pids = (
        ("--server-pid", options.server_pid),
        *(("--redis-pid", pid) for pid in options.redis_pids),
        ("--variant-pid", options.variant_pid),
    )
    for flag, pid in pids:
        if pid is not None and not psutil.pid_exists(pid):
            return f"{flag} {pid}: no such process"
    try:
        model_params(options)
    except ValueError as exc:
        return str(exc)
    return None


def _event_loop_run(main: Awaitable[BenchReport]) -> BenchReport:
    async def wrapped() -> BenchReport:
        return await main

    with _rare_full_collections():
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
            return asyncio.run(wrapped())
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(wrapped())


@contextmanager
def _rare_full_collections() -> Iterator[None]:
    """With 10,000 streams, the default thresholds gave full collections of 100-300 ms:
    arrivals were stamped that much late, and showed up as the server's lateness."""
    before = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def _bench(options: BenchOptions) -> BenchReport:
    """The baselines first, so Parley's leftovers in a shared Redis weigh on neither; then
    Parley, then the variant."""
    report = BenchReport(date=datetime.now(UTC).isoformat(timespec="seconds"))
    params = model_params(options)
    if options.measure_bare:
        bare = BaselineProfile(
            params=params,
            refresh_interval_ms=options.refresh_interval_ms,
            writer=options.baseline_writer,
        )
        report.baseline = await _measure_baseline(options, bare, "baseline", report)
    if options.naive_redis_url is not None:
        naive = NaiveRedisProfile(
            redis_url=options.naive_redis_url,
            params=params,
            refresh_interval_ms=options.refresh_interval_ms,
        )
        report.naive_redis = await _measure_baseline(options, naive, "naive-redis", report)
    if not options.baseline_only:
        parley = Target(
            label="parley",
            url=options.url,
            api_key=options.api_key,
            pid=options.server_pid,
            redis_pids=options.redis_pids,
        )
        report.target = await _measure(options, parley, report)
    if options.variant is not None:
        # Right after Parley, so the two compared see the same Redis as nearly as can be: what
        # Parley left there (replay logs, kept PARLEY_REPLAY_RETENTION_SECONDS, 10 minutes by
        # default) neither expires under the variant's run nor counts in its KB per open stream
        # (growth over the idle RSS taken at each run's start). Parley first, so its figures
        # stay those of a run without --variant, comparable with earlier reports.
        label, url = options.variant
        variant = Target(
            label=label,
            url=url,
            api_key=options.api_key,
            pid=options.variant_pid,
            redis_pids=options.redis_pids,
        )
        report.variant = await _measure(options, variant, report)
    report.ratios = _ratios(report.target, report.baseline)
    report.naive_redis_ratios = _ratios(report.target, report.naive_redis)
    variant_run, parley_run = report.variant, report.target
    if variant_run and parley_run and variant_run.concurrency == parley_run.concurrency:
        report.variant_ratios = variant_ratios(variant_run, parley_run)
    return report


async def _measure_baseline(
    options: BenchOptions,
    profile: BaselineProfile | NaiveRedisProfile,
    label: str,
    report: BenchReport,
) -> RunReport:
    naive = isinstance(profile, NaiveRedisProfile)
    async with serve_baseline(profile, workers=options.baseline_workers) as server:
        target = Target(
            label=label,
            url=f"http://{server.host}:{server.port}",
            bare=True,
            pid=server.pid,
            uses_redis=naive,
            redis_pids=options.redis_pids if naive else (),
        )
        run = await _measure(options, target, report)
    if options.mode != "streaming":
        run.notes.append(
            f"the {label} baseline streams only; Parley ran {options.mode} mode, so ratios "
            "compare different loads"
        )
    return run


def _ratios(mine: RunReport | None, theirs: RunReport | None) -> list[Ratio]:
    if mine is None or theirs is None or mine.concurrency != theirs.concurrency:
        return []
    return ratios(mine, theirs)


async def _measure(options: BenchOptions, target: Target, report: BenchReport) -> RunReport:
    async def once(opts: BenchOptions) -> RunReport:
        return build_report(await run_load(opts, target))

    if not options.quiet:
        print(_start_line(options, target.label, report), file=sys.stderr, flush=True)
    if not options.step:
        return await once(options)
    levels = await _step(options, once)
    report.steps[target.label] = levels
    passing = [level.concurrency for level in levels if level.passed]
    report.largest_passing[target.label] = max(passing) if passing else None
    best = [level.report for level in levels if level.passed]
    return best[-1] if best else levels[-1].report


async def _step(options: BenchOptions, once: Measure) -> list[StepLevel]:
    """Raise concurrency geometrically from ``--concurrency`` until a level fails the bars."""
    levels: list[StepLevel] = []
    concurrency = options.concurrency
    while concurrency <= options.step_max:
        run = await once(msgspec.structs.replace(options, concurrency=concurrency))
        passed = run.passes(options.max_p99_lateness_ms)
        levels.append(StepLevel(concurrency=concurrency, passed=passed, report=run))
        print(_step_line(run, passed), file=sys.stderr)
        if not passed:
            break
        concurrency = max(concurrency + 1, round(concurrency * options.step_factor))
    return levels


def _labels(options: BenchOptions) -> list[str]:
    """The columns measured, in the order they run."""
    labels = ["baseline"] if options.measure_bare else []
    labels += ["naive-redis"] if options.naive_redis_url is not None else []
    labels += [] if options.baseline_only else ["parley"]
    return labels + ([options.variant[0]] if options.variant is not None else [])


def _start_line(options: BenchOptions, label: str, report: BenchReport) -> str:
    """Which target runs now, and how long it should take."""
    labels = _labels(options)
    load = (
        f"{options.exchanges} exchanges per session"
        if options.exchanges is not None
        else f"{options.duration_s:g} s"
    )
    if options.step:
        shape = (
            f"steps from {options.concurrency:,} sessions, x{options.step_factor:g} up to "
            f"{options.step_max:,}, {load} each"
        )
    else:
        shape = f"{options.concurrency:,} sessions, {load}"
    position = f"{len(measured_runs(report)) + 1} of {len(labels)}"
    return f"[bench] measuring {label} ({position}): {shape}"


def _step_line(run: RunReport, passed: bool) -> str:
    late = run.lateness_ms.p99
    return (
        f"[{run.label}] step {run.concurrency}: {'pass' if passed else 'FAIL'} "
        f"(failed {run.streams.failed}, integrity failures {run.integrity.failures}, "
        f"lateness p99 {'-' if late is None else f'{late:.1f}'} ms, "
        f"{run.rates.events_per_s:,.0f} events/s)"
    )


def _passed(report: BenchReport, options: BenchOptions) -> bool:
    if options.step:
        return all(best is not None for best in report.largest_passing.values())
    return all(r.passes(options.max_p99_lateness_ms) for r in measured_runs(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="parley bench",
        description="Load-test a Parley server (and a variant of it) against the bare and "
        "naive-redis baselines.",
    )
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))
