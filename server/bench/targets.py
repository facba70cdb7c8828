"""The performance targets P1-P6, judged from the phases of one ``make bench`` run.

Phase A (the comparison: Parley, the variant, bare, naive-redis) gives P1, P3, P4 and P6,
phase B (2,000 streams) P2, phase C (steps) P5. :func:`figures` takes what the targets need
from the phases' reports, :func:`judge` turns those figures into ✔ and ✘, so the verdicts can
be checked on figures alone. A phase that did not run leaves its targets "not measured", with
the reason (``--quick``, or the phase that could not run); so does naive-redis left out of
phase A (``--cluster``: it is a single-Redis app) for P6.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from server.bench.report import BenchReport, RunReport, StepLevel, table

LATENESS_BAR_MS = 50.0  # P2's and P5's bar, whatever --max-p99-lateness-ms the bench ran with
CPU_RATIO_BAR = 2.0
TTFD_BAR_MS = 25.0
MEMORY_RATIO_BAR = 1.5
_KB = 1024.0
_DIGITS = {"CPU-s/1k events": 3, "ms": 1, "KB": 1, "streams": 0}
MET, MISSED = "✔", "✘"
_SHORT = {"baseline": "bare"}


class Figures(msgspec.Struct, kw_only=True):
    """What the targets are judged on; None where it was not measured. ``unmeasured`` says,
    by phase (``A``, ``B``, ``C``), why a phase's targets have no figures."""

    # phase A
    comparison_streams: int | None = None
    parley_cpu: float | None = None  # server CPU-s per 1,000 events, its Redis included
    bare_cpu: float | None = None
    naive_cpu: float | None = None  # its Redis included
    redis_counted: bool = True  # False with an outside Redis (--redis-url)
    parley_ttfd_p99: float | None = None  # TTFD minus the model's first token, ms
    bare_ttfd_p99: float | None = None
    parley_kb_per_stream: float | None = None  # the server's processes, not its Redis
    bare_kb_per_stream: float | None = None
    # phase B
    lateness_streams: int | None = None
    interval_ms: int | None = None
    parley_lateness_p99: float | None = None
    bare_lateness_p99: float | None = None
    parley_completed: int = 0
    parley_failed: int = 0
    parley_integrity_failures: int = 0
    # phase C: the largest level passing 0 failures and p99 ≤ LATENESS_BAR_MS, None when
    # none did; *_capped when every level up to the highest tried passed
    parley_largest: int | None = None
    bare_largest: int | None = None
    parley_capped: bool = False
    bare_capped: bool = False
    unmeasured: dict[str, str] = msgspec.field(default_factory=dict)
    naive_unmeasured: str | None = None  # why phase A left naive-redis out (e.g. --cluster)


class TargetRow(msgspec.Struct, kw_only=True, rename="camel"):
    """One target: Parley's figure, the reference's (``reference_label``), Parley's over it,
    and the verdict (``met`` None when not measured)."""

    id: str
    what: str
    unit: str
    parley: float | None
    reference: float | None
    reference_label: str
    ratio: float | None = None
    goal: str
    met: bool | None
    verdict: str = ""
    note: str = ""


def figures(
    phases: Mapping[str, BenchReport | None],
    unmeasured: Mapping[str, str],
    naive_unmeasured: str | None = None,
) -> Figures:
    """The figures of phases ``A``, ``B`` and ``C``; a phase missing from ``phases`` (or None)
    without a reason in ``unmeasured`` is said to have produced no report. ``naive_unmeasured``
    says why phase A did not measure naive-redis, when it did not on purpose."""
    why = dict(unmeasured)
    for name in ("A", "B", "C"):
        if phases.get(name) is None:
            why.setdefault(name, f"phase {name} produced no report")
    found = Figures(unmeasured=why, naive_unmeasured=naive_unmeasured)
    comparison, lateness, steps = phases.get("A"), phases.get("B"), phases.get("C")
    if comparison is not None:
        _comparison_figures(found, comparison)
    if lateness is not None and lateness.target is not None:
        run = lateness.target
        found.lateness_streams = run.concurrency
        found.interval_ms = run.refresh_interval_ms
        found.parley_lateness_p99 = run.lateness_ms.p99
        found.bare_lateness_p99 = _pick(lateness.baseline, lambda r: r.lateness_ms.p99)
        found.parley_completed = run.streams.completed
        found.parley_failed = run.streams.failed
        found.parley_integrity_failures = run.integrity.failures
    if steps is not None:
        found.parley_largest, found.parley_capped = _largest(steps.steps.get("parley"))
        found.bare_largest, found.bare_capped = _largest(steps.steps.get("baseline"))
    return found


def _comparison_figures(found: Figures, report: BenchReport) -> None:
    parley, bare, naive = report.target, report.baseline, report.naive_redis
    if parley is None:
        return
    found.comparison_streams = parley.concurrency
    found.redis_counted = parley.resources.redis == "included"
    found.parley_cpu = parley.resources.server_cpu_seconds_per_1000_events
    found.parley_ttfd_p99 = parley.ttfd_minus_first_token_ms.p99
    found.parley_kb_per_stream = _kb(parley)
    found.bare_cpu = _pick(bare, lambda r: r.resources.server_cpu_seconds_per_1000_events)
    found.bare_ttfd_p99 = _pick(bare, lambda r: r.ttfd_minus_first_token_ms.p99)
    found.bare_kb_per_stream = _kb(bare)
    found.naive_cpu = _pick(naive, lambda r: r.resources.server_cpu_seconds_per_1000_events)


def _pick(run: RunReport | None, pick: Callable[[RunReport], float | None]) -> float | None:
    return None if run is None else pick(run)


def _kb(run: RunReport | None) -> float | None:
    found = None if run is None else run.resources.server_process_bytes_per_open_stream
    return None if found is None else found / _KB


def _largest(levels: Sequence[StepLevel] | None) -> tuple[int | None, bool]:
    """The last of the leading levels that pass the targets' bar (not the bench's, which
    ``--max-p99-lateness-ms`` may have moved), and whether every level passed."""
    largest = None
    for level in levels or ():
        if not level.report.passes(LATENESS_BAR_MS):
            return largest, False
        largest = level.concurrency
    return largest, bool(levels)


def judge(found: Figures) -> list[TargetRow]:
    """P1 to P6, each ✔, ✘ or not measured."""
    return [_p1(found), _p2(found), _p3(found), _p4(found), _p5(found), _p6(found)]


def _streams(count: int | None) -> str:
    return "" if count is None else f", {count:,} streams"


def _verdict(found: Figures, phase: str, row: TargetRow) -> TargetRow:
    """Not measured when its phase did not run, or a figure it needs is missing."""
    if phase in found.unmeasured:
        why = f"not measured ({found.unmeasured[phase]})"
        return msgspec.structs.replace(row, met=None, verdict=why, note="")
    if row.met is None:
        return msgspec.structs.replace(row, verdict="not measured (a figure is missing)")
    return msgspec.structs.replace(row, verdict=MET if row.met else MISSED)


def _divide(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def _at_most(value: float | None, bar: float) -> bool | None:
    return None if value is None else value <= bar


def _redis_note(found: Figures) -> str:
    return "" if found.redis_counted else "Parley's Redis is not counted (an outside Redis)"


def _p1(found: Figures) -> TargetRow:
    ratio = _divide(found.parley_cpu, found.bare_cpu)
    return _verdict(
        found,
        "A",
        TargetRow(
            id="P1",
            what="server CPU-s per 1k events, Parley + Redis / bare"
            + _streams(found.comparison_streams),
            unit="CPU-s/1k events",
            parley=found.parley_cpu,
            reference=found.bare_cpu,
            reference_label="baseline",
            ratio=ratio,
            goal=f"≤ {CPU_RATIO_BAR:.1f}x",
            met=_at_most(ratio, CPU_RATIO_BAR),
            note=_redis_note(found),
        ),
    )


def _p2(found: Figures) -> TargetRow:
    late = found.parley_lateness_p99
    met = _at_most(late, LATENESS_BAR_MS)
    if met is not None:
        met = (
            met
            and found.parley_completed > 0
            and found.parley_failed == 0
            and found.parley_integrity_failures == 0
        )
    interval = "" if found.interval_ms is None else f", {found.interval_ms} ms interval"
    return _verdict(
        found,
        "B",
        TargetRow(
            id="P2",
            what=f"lateness p99 ms{_streams(found.lateness_streams)}{interval}",
            unit="ms",
            parley=late,
            reference=found.bare_lateness_p99,
            reference_label="baseline",
            goal=f"≤ {LATENESS_BAR_MS:g} ms, 0 failures",
            met=met,
            note=_failures(found),
        ),
    )


def _failures(found: Figures) -> str:
    if not found.parley_failed and not found.parley_integrity_failures:
        return ""
    return f"{found.parley_failed} failed, {found.parley_integrity_failures} integrity failures"


def _p3(found: Figures) -> TargetRow:
    p99 = found.parley_ttfd_p99
    return _verdict(
        found,
        "A",
        TargetRow(
            id="P3",
            what=f"TTFD - first token p99 ms{_streams(found.comparison_streams)}",
            unit="ms",
            parley=p99,
            reference=found.bare_ttfd_p99,
            reference_label="baseline",
            goal=f"≤ {TTFD_BAR_MS:g} ms",
            met=_at_most(p99, TTFD_BAR_MS),
        ),
    )


def _p4(found: Figures) -> TargetRow:
    ratio = _divide(found.parley_kb_per_stream, found.bare_kb_per_stream)
    return _verdict(
        found,
        "A",
        TargetRow(
            id="P4",
            what="server KB per open stream, no Redis, Parley / bare"
            + _streams(found.comparison_streams),
            unit="KB",
            parley=found.parley_kb_per_stream,
            reference=found.bare_kb_per_stream,
            reference_label="baseline",
            ratio=ratio,
            goal=f"≤ {MEMORY_RATIO_BAR:.1f}x",
            met=_at_most(ratio, MEMORY_RATIO_BAR),
        ),
    )


def _p5(found: Figures) -> TargetRow:
    mine, theirs = found.parley_largest, found.bare_largest
    met: bool | None = None
    notes = []
    if mine is None and theirs is None:
        notes.append("no level passed for either: start lower")
    else:
        met = (mine or 0) >= (theirs or 0) and mine is not None
    notes += [
        f"{label} passed every level: its figure is a floor"
        for label, capped in (("Parley", found.parley_capped), ("baseline", found.bare_capped))
        if capped
    ]
    return _verdict(
        found,
        "C",
        TargetRow(
            id="P5",
            what=f"largest concurrency, 0 failed, lateness p99 ≤ {LATENESS_BAR_MS:g} ms",
            unit="streams",
            parley=None if mine is None else float(mine),
            reference=None if theirs is None else float(theirs),
            reference_label="baseline",
            ratio=_divide(mine, theirs),
            goal="≥ bare's",
            met=met,
            note="; ".join(notes),
        ),
    )


def _p6(found: Figures) -> TargetRow:
    ratio = _divide(found.parley_cpu, found.naive_cpu)
    if found.naive_cpu is None and found.naive_unmeasured and "A" not in found.unmeasured:
        found = msgspec.structs.replace(
            found, unmeasured={**found.unmeasured, "A": found.naive_unmeasured}
        )
    return _verdict(
        found,
        "A",
        TargetRow(
            id="P6",
            what="server CPU-s per 1k events incl. Redis, Parley / naive-redis"
            + _streams(found.comparison_streams),
            unit="CPU-s/1k events",
            parley=found.parley_cpu,
            reference=found.naive_cpu,
            reference_label="naive-redis",
            ratio=ratio,
            goal="< 1.0x",
            met=None if ratio is None else ratio < 1.0,
            note=_redis_note(found),
        ),
    )


def render_targets(rows: Sequence[TargetRow]) -> str:
    """The targets table, then each row's note."""
    header = ["target", "parley", "reference", "ratio", "goal", "met"]
    notes = [f"{row.id}: {row.note}" for row in rows if row.note]
    title = "Targets (✔ met, ✘ missed)"
    return "\n".join([title, table(header, [_cells(row) for row in rows]), *notes])


def _cells(row: TargetRow) -> list[str]:
    label = _SHORT.get(row.reference_label, row.reference_label)
    return [
        f"{row.id} {row.what}",
        _figure(row.parley, row.unit),
        f"{_figure(row.reference, row.unit)} {label}",
        "-" if row.ratio is None else f"{row.ratio:.2f}x",
        row.goal,
        row.verdict,
    ]


def _figure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.{_DIGITS.get(unit, 1)}f}"
