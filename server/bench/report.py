"""Figures of a run, the printed table, the ratios to the baselines and of a variant to Parley,
and the JSON report."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import msgspec

from server.bench.client import MemoryPoint, RunResult, Target
from server.bench.stats import percentile

_KB = 1024.0
_MB = 1024.0 * 1024.0
_CONTENDED_PERCENT = 25.0
_INCL_REDIS = " (incl. Redis)"

RedisCounted = Literal["included", "left out", "none"]


class Dist(msgspec.Struct, kw_only=True, rename="camel"):
    count: int
    min: float | None = None
    p1: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class Streams(msgspec.Struct, kw_only=True, rename="camel"):
    started: int
    completed: int
    failed: int
    resumes: int
    peak_open: int
    exchanges: int = 0


class Integrity(msgspec.Struct, kw_only=True, rename="camel"):
    ok: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupt: int = 0

    @property
    def failures(self) -> int:
        return self.lost + self.duplicated + self.corrupt


class Rates(msgspec.Struct, kw_only=True, rename="camel"):
    window_s: float
    events_per_s: float
    deltas_per_s: float
    bytes_per_s: float


class Resources(msgspec.Struct, kw_only=True, rename="camel"):
    """CPU in percent of one core over the full-load window; ``other_cpu_percent`` is every
    other process on the machine (without ``--server-pid`` it includes the server).

    ``redis`` says whether the server figures count the server's Redis: ``included`` (its
    CPU and RSS are in them: one process, or every node of a cluster summed), ``left out``
    (the server uses a Redis that was not sampled), ``none`` (the server uses no Redis: the
    bare baseline). When included, ``redis_cpu_percent`` is Redis's part of
    ``server_cpu_percent``.

    Memory per open stream is the server's own processes
    (``server_process_bytes_per_open_stream``): Redis holds the replay logs of finished
    exchanges for the retention period, which grow with the run's length, not with the
    streams open, so its growth is apart (``redis_growth_bytes``, and per exchange finished
    in the run). ``server_bytes_per_open_stream`` is both folded together, as reports before
    kept it.
    """

    client_cpu_percent: float
    machine_cpu_percent: float
    other_cpu_percent: float
    cpu_count: int
    server_cpu_percent: float | None = None
    server_cpu_seconds_per_1000_events: float | None = None
    server_rss_peak_bytes: int | None = None
    server_bytes_per_open_stream: float | None = None
    redis: RedisCounted = "none"
    server_process_bytes_per_open_stream: float | None = None
    redis_growth_bytes: int | None = None
    redis_bytes_per_finished_exchange: float | None = None
    redis_cpu_percent: float | None = None


class RunReport(msgspec.Struct, kw_only=True, rename="camel"):
    label: str
    url: str
    mode: str
    concurrency: int
    duration_s: float | None
    exchanges: int | None
    refresh_interval_ms: int
    agent_id: str
    model_params: dict[str, object]
    elapsed_s: float
    streams: Streams
    integrity: Integrity
    ttfd_ms: Dist
    ttfd_minus_first_token_ms: Dist
    lateness_ms: Dist
    spacing_error_ms: Dist
    early_deltas: int
    delivery_ms: Dist
    blocking_ms: Dist
    client_loop_lag_ms: Dist
    rates: Rates
    resources: Resources
    errors: dict[str, int]
    notes: list[str]

    def passes(self, max_p99_lateness_ms: float) -> bool:
        """T1's error and lateness bars: no failed stream, no integrity failure, p99 ≤ bar."""
        late = self.lateness_ms.p99
        return (
            self.streams.failed == 0
            and self.integrity.failures == 0
            and self.streams.completed > 0
            and (late is None or late <= max_p99_lateness_ms)
        )


class Ratio(msgspec.Struct, kw_only=True, rename="camel"):
    """Parley's figure over a baseline's; ``baseline`` is the figure of the run compared to."""

    metric: str
    parley: float | None
    baseline: float | None
    ratio: float | None


class VariantRatio(msgspec.Struct, kw_only=True, rename="camel"):
    """A variant's figure over Parley's (``--variant``): below 1 is less of it than Parley."""

    metric: str
    variant: float | None
    parley: float | None
    ratio: float | None


class StepLevel(msgspec.Struct, kw_only=True, rename="camel"):
    concurrency: int
    passed: bool
    report: RunReport


class BenchReport(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    date: str
    target: RunReport | None = None
    variant: RunReport | None = None
    baseline: RunReport | None = None
    naive_redis: RunReport | None = None
    ratios: list[Ratio] = msgspec.field(default_factory=list)
    naive_redis_ratios: list[Ratio] = msgspec.field(default_factory=list)
    variant_ratios: list[VariantRatio] = msgspec.field(default_factory=list)
    steps: dict[str, list[StepLevel]] = msgspec.field(default_factory=dict)
    largest_passing: dict[str, int | None] = msgspec.field(default_factory=dict)


def distribution(values: Iterable[float]) -> Dist:
    ordered = sorted(values)
    if not ordered:
        return Dist(count=0)
    return Dist(
        count=len(ordered),
        min=ordered[0],
        p1=percentile(ordered, 1),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def build_report(result: RunResult) -> RunReport:
    options, collector, params = result.options, result.collector, result.params
    first_token_ms = params.first_token_latency_ms
    generation_ms = first_token_ms + (params.reply_tokens - 1) * 1000.0 / params.tokens_per_second
    integrity = Integrity(**{k: v for k, v in collector.integrity.items()})
    resources = _resources(result)
    early_bar = -collector.expected_spacing * 1000.0 / 2
    return RunReport(
        label=result.target.label,
        url=result.target.url,
        mode="streaming" if result.target.bare else options.mode,
        concurrency=options.concurrency,
        duration_s=None if options.exchanges else options.duration_s,
        exchanges=options.exchanges,
        refresh_interval_ms=options.refresh_interval_ms,
        agent_id=result.agent_id,
        model_params=msgspec.to_builtins(params),
        elapsed_s=result.elapsed_s,
        streams=Streams(
            started=collector.started,
            completed=collector.completed,
            failed=collector.failed,
            resumes=collector.resumes,
            peak_open=collector.peak_open,
            exchanges=collector.exchanges,
        ),
        integrity=integrity,
        ttfd_ms=distribution(collector.ttfd_ms),
        ttfd_minus_first_token_ms=distribution(v - first_token_ms for v in collector.ttfd_ms),
        lateness_ms=distribution(collector.lateness_ms),
        spacing_error_ms=distribution(collector.spacing_ms),
        early_deltas=sum(1 for v in collector.spacing_ms if v < early_bar),
        delivery_ms=distribution(collector.delivery_ms),
        blocking_ms=distribution(v - generation_ms for v in collector.blocking_ms),
        client_loop_lag_ms=distribution(collector.client_lag_ms),
        rates=_rates(result),
        resources=resources,
        errors=dict(sorted(collector.errors.items())),
        notes=[*result.notes, *_redis_notes(result.target), *_contention_notes(resources)],
    )


def _redis_counted(target: Target) -> RedisCounted:
    if not target.uses_redis:
        return "none"
    return "included" if target.pid is not None and target.redis_pids else "left out"


def _redis_notes(target: Target) -> list[str]:
    """Say plainly what the server figures are: the target is the server plus its Redis."""
    if target.pid is None or not target.uses_redis:
        return []
    if not target.redis_pids:
        return [
            "its Redis is not counted in the server figures (no --redis-pid: e.g. an outside "
            "Redis); they are the server alone, not server + Redis"
        ]
    pids = target.redis_pids
    which = (
        f"pid {pids[0]}"
        if len(pids) == 1
        else f"{len(pids)} processes summed, pids {', '.join(map(str, pids))}"
    )
    return [
        f"server CPU and RSS peak include its Redis ({which}); KB per open "
        "stream is the server's processes alone, and Redis's growth is apart (it keeps "
        "finished exchanges' replay logs, which grow with the run, not with open streams)"
    ]


def _contention_notes(resources: Resources) -> list[str]:
    """Figures taken while other processes ate the CPU measure the machine, not the server."""
    if resources.server_cpu_percent is None or resources.other_cpu_percent < _CONTENDED_PERCENT:
        return []
    return [
        f"other processes used {resources.other_cpu_percent:.0f}% CPU (of "
        f"{resources.cpu_count * 100}%) during the window: timing figures are not clean"
    ]


def _rates(result: RunResult) -> Rates:
    if result.window is None:
        return Rates(window_s=0.0, events_per_s=0.0, deltas_per_s=0.0, bytes_per_s=0.0)
    first, last = result.window
    span = max(last.at - first.at, 1e-9)
    return Rates(
        window_s=last.at - first.at,
        events_per_s=(last.events - first.events) / span,
        deltas_per_s=(last.deltas - first.deltas) / span,
        bytes_per_s=(last.bytes - first.bytes) / span,
    )


def _resources(result: RunResult) -> Resources:
    cores = os.cpu_count() or 1
    redis = _redis_counted(result.target)
    if result.window is None:
        return Resources(
            client_cpu_percent=0.0,
            machine_cpu_percent=0.0,
            other_cpu_percent=0.0,
            cpu_count=cores,
            redis=redis,
        )
    first, last = result.window
    span = max(last.at - first.at, 1e-9)
    client = (last.client.cpu_seconds - first.client.cpu_seconds) / span * 100.0
    machine = (last.machine_busy_s - first.machine_busy_s) / span * 100.0
    if first.server is None or last.server is None:
        return Resources(
            client_cpu_percent=client,
            machine_cpu_percent=machine,
            other_cpu_percent=max(0.0, machine - client),
            cpu_count=cores,
            redis=redis,
        )
    server_cpu = last.server.cpu_seconds - first.server.cpu_seconds
    events = last.events - first.events
    server = server_cpu / span * 100.0
    redis_cpu = (
        None
        if first.redis is None or last.redis is None
        else (last.redis.cpu_seconds - first.redis.cpu_seconds) / span * 100.0
    )
    growth = _redis_growth(result.idle, result.final)
    exchanges = result.collector.exchanges
    per_exchange = growth / exchanges if growth is not None and exchanges else None
    return Resources(
        client_cpu_percent=client,
        machine_cpu_percent=machine,
        other_cpu_percent=max(0.0, machine - client - server),
        cpu_count=cores,
        server_cpu_percent=server,
        server_cpu_seconds_per_1000_events=server_cpu / events * 1000.0 if events else None,
        server_rss_peak_bytes=max((p.rss_bytes for p in result.memory), default=None),
        server_bytes_per_open_stream=_bytes_per_stream(result.idle, result.memory, _both),
        redis=redis,
        server_process_bytes_per_open_stream=_bytes_per_stream(
            result.idle, result.memory, _processes
        ),
        redis_growth_bytes=growth,
        redis_bytes_per_finished_exchange=per_exchange,
        redis_cpu_percent=redis_cpu,
    )


def _both(point: MemoryPoint) -> int:
    return point.rss_bytes


def _processes(point: MemoryPoint) -> int:
    return point.server_rss_bytes


def _bytes_per_stream(
    idle: MemoryPoint | None, memory: Sequence[MemoryPoint], rss: Callable[[MemoryPoint], int]
) -> float | None:
    """RSS growth over the idle server, per open stream, at the most streams seen."""
    if idle is None or not memory:
        return None
    busiest = max(memory, key=lambda p: (p.open_streams, rss(p)))
    if not busiest.open_streams:
        return None
    return (rss(busiest) - rss(idle)) / busiest.open_streams


def _redis_growth(idle: MemoryPoint | None, final: MemoryPoint | None) -> int | None:
    """Redis's RSS once every exchange of the run ended, over its RSS before the first."""
    if idle is None or final is None or None in (idle.redis_rss_bytes, final.redis_rss_bytes):
        return None
    return (final.redis_rss_bytes or 0) - (idle.redis_rss_bytes or 0)


# The figures where the engine's (or the writer's) cost shows.
_RATIO_PICKS: list[tuple[str, Callable[[RunReport], float | None]]] = [
    ("events/s", lambda r: r.rates.events_per_s),
    ("bytes/s", lambda r: r.rates.bytes_per_s),
    ("server CPU-s per 1k events", lambda r: r.resources.server_cpu_seconds_per_1000_events),
    (
        "server bytes per open stream (no Redis)",
        lambda r: r.resources.server_process_bytes_per_open_stream,
    ),
    ("TTFD - first token p99 ms", lambda r: r.ttfd_minus_first_token_ms.p99),
    ("lateness p99 ms", lambda r: r.lateness_ms.p99),
    ("delivery p99 ms", lambda r: r.delivery_ms.p99),
]


def _divide(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def ratios(target: RunReport, baseline: RunReport) -> list[Ratio]:
    """Parley divided by a baseline."""
    out = []
    for name, pick in _RATIO_PICKS:
        mine, theirs = pick(target), pick(baseline)
        out.append(Ratio(metric=name, parley=mine, baseline=theirs, ratio=_divide(mine, theirs)))
    return out


def variant_ratios(variant: RunReport, parley: RunReport) -> list[VariantRatio]:
    """A variant divided by Parley, for the same figures as the baselines' ratios."""
    out = []
    for name, pick in _RATIO_PICKS:
        theirs, mine = pick(variant), pick(parley)
        ratio = _divide(theirs, mine)
        out.append(VariantRatio(metric=name, variant=theirs, parley=mine, ratio=ratio))
    return out


def encode_json(report: BenchReport) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


# the printed table


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _per(value: float | None, unit: float) -> float | None:
    return None if value is None else value / unit


def _trio(d: Dist, names: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    return " / ".join(_num(getattr(d, n)) for n in names)


_REDIS_CELLS = {"included": "included", "left out": "LEFT OUT", "none": "- (no Redis)"}


def _server_suffix(runs: Sequence[RunReport]) -> str:
    """`` (incl. Redis)`` on the server rows when every sampled server that has a Redis
    had it counted; otherwise the Redis row and the notes say which did not."""
    counted = {r.resources.redis for r in runs if r.resources.server_cpu_percent is not None}
    return _INCL_REDIS if "included" in counted and "left out" not in counted else ""


def _rows(r: RunReport, suffix: str = "") -> list[tuple[str, str]]:
    s, i, res = r.streams, r.integrity, r.resources
    rows = [
        ("streams started / completed / failed", f"{s.started} / {s.completed} / {s.failed}"),
        (
            "integrity ok / lost / dup / corrupt",
            f"{i.ok} / {i.lost} / {i.duplicated} / {i.corrupt}",
        ),
        ("peak open streams / resumes", f"{s.peak_open} / {s.resumes}"),
        ("TTFD ms p50 / p95 / p99", _trio(r.ttfd_ms)),
        ("TTFD - first token ms p50/p95/p99", _trio(r.ttfd_minus_first_token_ms)),
        ("lateness ms p50 / p99 / max", _trio(r.lateness_ms, ("p50", "p99", "max"))),
        ("spacing error ms p1 / p50 / p99", _trio(r.spacing_error_ms, ("p1", "p50", "p99"))),
        ("early deltas (< -interval/2)", str(r.early_deltas)),
        ("delivery ms p50 / p99 / max", _trio(r.delivery_ms, ("p50", "p99", "max"))),
    ]
    if r.blocking_ms.count:
        rows.append(("blocking - generation ms p50/p95/p99", _trio(r.blocking_ms)))
    rows += [
        ("full-load window s", _num(r.rates.window_s)),
        (
            "events/s / deltas/s",
            f"{_num(r.rates.events_per_s, 0)} / {_num(r.rates.deltas_per_s, 0)}",
        ),
        ("KB/s", _num(r.rates.bytes_per_s / _KB)),
        ("client CPU %", _num(res.client_cpu_percent)),
        ("client loop lag ms p50 / p99 / max", _trio(r.client_loop_lag_ms, ("p50", "p99", "max"))),
        (
            "Redis in server figures",
            "-" if res.server_cpu_percent is None else _REDIS_CELLS[res.redis],
        ),
        (f"server CPU %{suffix}", _num(res.server_cpu_percent)),
        *(
            [("of which Redis CPU %", _num(res.redis_cpu_percent))]
            if res.redis_cpu_percent is not None
            else []
        ),
        (f"other processes CPU % (of {res.cpu_count * 100})", _num(res.other_cpu_percent)),
        (f"server CPU-s per 1k events{suffix}", _num(res.server_cpu_seconds_per_1000_events, 3)),
        (
            f"server RSS peak MB{suffix}",
            _num(None if res.server_rss_peak_bytes is None else res.server_rss_peak_bytes / _MB),
        ),
        (
            "server KB per open stream (no Redis)",
            _num(_per(res.server_process_bytes_per_open_stream, _KB)),
        ),
        ("Redis MB growth", _num(_per(res.redis_growth_bytes, _MB))),
        ("Redis KB per exchange finished", _num(_per(res.redis_bytes_per_finished_exchange, _KB))),
    ]
    rows += [(f"error {kind}", str(n)) for kind, n in r.errors.items()]
    return rows


def measured_runs(report: BenchReport) -> list[RunReport]:
    """Every run of the report, in the order of the table's columns."""
    runs = (report.target, report.variant, report.baseline, report.naive_redis)
    return [r for r in runs if r is not None]


def render(report: BenchReport) -> str:
    runs = measured_runs(report)
    suffix = _server_suffix(runs)
    lines: list[str] = []
    if runs:
        lines += _render_runs(runs, suffix)
    lines += _render_ratios(report, suffix)
    lines += _render_variant_ratios(report, suffix)
    for label, levels in report.steps.items():
        lines += [
            "",
            f"steps of {label}:",
            _render_steps(levels),
            f"largest passing concurrency ({label}): {report.largest_passing.get(label)}"
            + (" (every level passed: raise --step-max)" if levels[-1].passed else ""),
        ]
    for run in runs:
        lines += [f"note ({run.label}): {note}" for note in run.notes]
    return "\n".join(lines)


def _metric_suffix(metric: str, suffix: str) -> str:
    """`` (incl. Redis)`` on the server figures that count it: not memory per open stream."""
    return suffix if metric.startswith("server ") and not metric.endswith("(no Redis)") else ""


def _render_ratios(report: BenchReport, suffix: str) -> list[str]:
    """One table: Parley's figure, then each baseline's and Parley's ratio to it."""
    compared = [
        (run.label, found)
        for run, found in (
            (report.baseline, report.ratios),
            (report.naive_redis, report.naive_redis_ratios),
        )
        if run is not None and found
    ]
    if not compared:
        return []
    header = ["Parley / baselines", "parley"]
    for label, _ in compared:
        header += [label, f"ratio to {label}"]
    body = []
    for index, first in enumerate(compared[0][1]):
        name = first.metric + _metric_suffix(first.metric, suffix)
        row = [name, _num(first.parley, 3)]
        for _, found in compared:
            row += [_num(found[index].baseline, 3), _num(found[index].ratio, 2)]
        body.append(row)
    return ["", table(header, body)]


def _render_variant_ratios(report: BenchReport, suffix: str) -> list[str]:
    """The variant's figure, Parley's, and the variant's over Parley's."""
    if report.variant is None or not report.variant_ratios:
        return []
    label = report.variant.label
    body = [
        [
            ratio.metric + _metric_suffix(ratio.metric, suffix),
            _num(ratio.parley, 3),
            _num(ratio.variant, 3),
            _num(ratio.ratio, 2),
        ]
        for ratio in report.variant_ratios
    ]
    return ["", table([f"{label} / parley", "parley", label, "ratio"], body)]


def _render_runs(runs: list[RunReport], suffix: str) -> list[str]:
    first = runs[0]
    header = (
        f"{first.mode}, {first.concurrency} sessions, "
        + (f"{first.exchanges} exchanges each" if first.exchanges else f"{first.duration_s:g} s")
        + f", interval {first.refresh_interval_ms} ms, model "
        + msgspec.json.encode(first.model_params).decode()
    )
    per_run = [dict(_rows(r, suffix)) for r in runs]
    names = list(dict.fromkeys(name for rows in per_run for name in rows))
    body = [[name, *(rows.get(name, "") for rows in per_run)] for name in names]
    return [header, table(["metric", *(r.label for r in runs)], body)]


def _render_steps(levels: list[StepLevel]) -> str:
    body = [
        [
            str(level.concurrency),
            "pass" if level.passed else "FAIL",
            str(level.report.streams.failed),
            str(level.report.integrity.failures),
            _num(level.report.lateness_ms.p99),
            _num(level.report.rates.events_per_s, 0),
            _num(level.report.resources.client_cpu_percent),
            _num(level.report.resources.server_cpu_percent),
        ]
        for level in levels
    ]
    header = [
        "sessions",
        "bars",
        "failed",
        "integrity",
        "late p99",
        "events/s",
        "client%",
        "server%",
    ]
    return table(header, body)


def table(header: list[str], body: list[list[str]]) -> str:
    """Aligned columns: the first to the left, the figures to the right."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body)])
