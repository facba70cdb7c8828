"""``make bench``'s orchestration at a tiny size: it starts Parley and the baselines, runs the
bench (one comparison, or the three phases shrunk), reads Parley's /metrics, writes the JSON
report with the targets table and stops what it started. No speed is asserted; the targets'
verdicts are checked on given figures."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from server.bench.server_metrics import parse
from server.bench.suite import main as suite_main
from server.bench.targets import Figures, judge, render_targets
from server.metrics import Metrics, Readings
from streams.events import Item
from tests.support.cluster import require_cluster_support
from tests.support.servers import REPO_ROOT
from tests.test_bench import RATIO_METRICS

# A fast synthetic model and one exchange per session, so the run takes a few seconds.
TINY = [
    *("-c", "3", "-n", "1", "--quiet"),
    *("--tokens-per-second", "200", "--reply-tokens", "30", "--first-token-latency-ms", "10"),
    *("--refresh-interval-ms", "50", "--max-p99-lateness-ms", "1e9"),
]


# The same model, and the standard run's three phases shrunk to 3 and 6 streams and steps from
# 2 to 9, for a tenth of a second each.
TINY_PHASES = [
    *("--scale", "0.003", "--workers", "1"),
    *("--tokens-per-second", "200", "--reply-tokens", "30", "--first-token-latency-ms", "10"),
    *("--refresh-interval-ms", "50", "--max-p99-lateness-ms", "1e9"),
]
TARGET_IDS = ["P1", "P2", "P3", "P4", "P5", "P6"]
# --quick's phase A shrunk to 3 streams for 0.12 s, with 2 workers: on a cluster their hubs'
# control subscriptions may land on different nodes, which the readiness wait must sum.
TINY_QUICK = [
    *("--quick", "--scale", "0.015", "--quiet"),
    *("--tokens-per-second", "200", "--reply-tokens", "30", "--first-token-latency-ms", "10"),
    *("--refresh-interval-ms", "50", "--max-p99-lateness-ms", "1e9"),
]


def run_suite(
    tmp_path: Path, *args: str, load: Sequence[str] = TINY
) -> tuple[dict[str, Any], str, str]:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "server.bench.suite", *args, *load, "--json", str(report_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, out + err
    report: dict[str, Any] = json.loads(report_path.read_bytes())
    return report, out, err


def test_the_suite_measures_parley_against_both_baselines_and_stops_everything(
    tmp_path: Path, redis_url: str
) -> None:
    report, out, err = run_suite(tmp_path, "--redis-url", redis_url)
    assert "integrity ok" in out and "Parley /metrics (all workers" in out
    for run in (report["target"], report["baseline"], report["naiveRedis"]):
        streams = run["streams"]
        assert (streams["started"], streams["completed"], streams["failed"]) == (3, 3, 0)
        assert run["integrity"]["ok"] == 3
    # An outside Redis is not Parley's alone: left out of its figures, and the report says so.
    for run in (report["target"], report["naiveRedis"]):
        assert run["resources"]["redis"] == "left out"
        assert any("Redis is not counted" in note for note in run["notes"])
    assert "(incl. Redis)" not in out
    # Without --writers, no variant.
    assert "variant" not in report and "variantServerMetrics" not in report
    # Both workers' counts, summed: every stream the bench saw complete, and no other.
    assert report["serverMetrics"]["exchanges"]["completed"] == 3
    assert report["serverMetrics"]["firstToken"]["count"] == 3
    [pid] = re.findall(r"Parley ready in .* \(pid (\d+)\)", err)
    assert not psutil.pid_exists(int(pid)), "the suite left Parley running"


def test_the_suite_counts_its_private_redis_in_parleys_and_naive_rediss_figures(
    tmp_path: Path,
) -> None:
    report, out, err = run_suite(tmp_path)
    [pid] = re.findall(r"Redis ready: .* \(pid (\d+)\)", err)
    assert f"--redis-pid {pid}" in err
    for run in (report["target"], report["naiveRedis"]):
        assert run["integrity"]["ok"] == 3
        assert run["resources"]["redis"] == "included"
        assert any(f"include its Redis (pid {pid})" in note for note in run["notes"])
    assert report["baseline"]["resources"]["redis"] == "none"
    assert "server CPU % (incl. Redis)" in out
    # Memory per open stream is the server's processes alone; Redis's growth is apart.
    assert "server KB per open stream (no Redis)" in out and "Redis MB growth" in out
    for run in (report["target"], report["naiveRedis"]):
        resources = run["resources"]
        assert run["streams"]["exchanges"] == 3
        assert resources["redisGrowthBytes"] is not None
        assert resources["redisBytesPerFinishedExchange"] == resources["redisGrowthBytes"] / 3
        # A run this short may end before a memory sample sees a stream open; either way
        # the processes' own figure is reported beside the one that folds Redis in.
        alone, together = (
            resources["serverProcessBytesPerOpenStream"],
            resources["serverBytesPerOpenStream"],
        )
        assert (alone is None) == (together is None)
    assert report["baseline"]["resources"]["redisGrowthBytes"] is None
    assert "phases" not in report and "targets" not in report  # one comparison, as asked
    assert not psutil.pid_exists(int(pid)), "the suite left its Redis running"


def test_the_suite_with_writers_measures_parley_with_sse_starlettes_writer_right_after_parley(
    tmp_path: Path,
) -> None:
    report, out, err = run_suite(tmp_path, "--writers")
    [redis_pid] = re.findall(r"Redis ready: .* \(pid (\d+)\)", err)
    [parley_pid] = re.findall(r"Parley ready in .* \(pid (\d+)\)", err)
    [variant_pid] = re.findall(r"Parley \(sse-starlette writer\) ready in .* \(pid (\d+)\)", err)
    assert f"--variant-pid {variant_pid}" in err and f"--server-pid {parley_pid}" in err
    variant = report["variant"]
    assert variant["label"] == "sse-starlette"
    assert variant["url"] != report["target"]["url"]
    for run in (report["target"], variant):
        assert (run["streams"]["completed"], run["streams"]["failed"]) == (3, 0)
        assert run["integrity"] == {"ok": 3, "lost": 0, "duplicated": 0, "corrupt": 0}
        assert run["resources"]["redis"] == "included"
        assert any(f"include its Redis (pid {redis_pid})" in note for note in run["notes"])
    assert {r["metric"] for r in report["variantRatios"]} >= RATIO_METRICS
    assert "sse-starlette / parley" in out
    # Each one's own /metrics, both workers summed (the variant's through its own multiproc dir).
    assert "Parley (sse-starlette writer) /metrics (all workers" in out
    assert report["serverMetrics"]["exchanges"]["completed"] == 3
    assert report["variantServerMetrics"]["exchanges"]["completed"] == 3
    for pid in (parley_pid, variant_pid, redis_pid):
        assert not psutil.pid_exists(int(pid)), "the suite left a process running"


def test_the_suite_with_cluster_counts_every_node_in_the_server_figures_and_skips_naive_redis(
    tmp_path: Path,
) -> None:
    require_cluster_support()
    report, out, err = run_suite(tmp_path, "--cluster", "--writers", load=TINY_QUICK)
    nodes = report["redisCluster"]["nodes"]
    assert sorted(node["role"] for node in nodes) == ["primary"] * 3 + ["replica"] * 3
    pids = [node["pid"] for node in nodes]
    assert report["redisCluster"]["url"].startswith("redis+cluster://")
    # Every node, replicas included, is counted into Parley's and the variant's figures.
    assert all(f"--redis-pid {pid} " in err for pid in pids)
    listed = f"6 processes summed, pids {', '.join(map(str, pids))}"
    for run in (report["target"], report["variant"]):
        streams = run["streams"]
        assert (streams["started"], streams["completed"], streams["failed"]) == (3, 3, 0)
        assert run["integrity"] == {"ok": 3, "lost": 0, "duplicated": 0, "corrupt": 0}
        resources = run["resources"]
        assert resources["redis"] == "included"
        assert any(listed in note for note in run["notes"])
        assert resources["redisCpuPercent"] is not None
        assert resources["redisCpuPercent"] <= resources["serverCpuPercent"]
        assert resources["redisGrowthBytes"] is not None
    assert report["serverMetrics"]["exchanges"]["completed"] == 3
    # naive-redis is a single-Redis app: skipped, said so, and P6 not measured.
    assert "naive-redis skipped (--cluster)" in err
    assert "naiveRedis" not in report and "naive-redis" in report["skipped"]
    assert "--naive-redis" not in err
    rows = {row["id"]: row for row in report["targets"]}
    assert list(rows) == TARGET_IDS
    assert rows["P6"]["verdict"] == "not measured (naive-redis skipped: --cluster)"
    assert rows["P2"]["verdict"] == rows["P5"]["verdict"] == "not measured (--quick)"
    assert rows["P3"]["verdict"] in "✔✘"
    assert "Targets (✔ met, ✘ missed)" in out and "of which Redis CPU %" in out
    [parley_pid] = re.findall(r"Parley ready in .* \(pid (\d+)\)", err)
    for pid in (int(parley_pid), *pids):
        assert not psutil.pid_exists(pid), "the suite left a process running"


def test_the_suite_takes_either_cluster_or_an_outside_redis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        suite_main(["--cluster", "--redis-url", "redis://127.0.0.1:9/0"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_server_metrics_read_quantiles_as_bucket_bounds() -> None:
    metrics = Metrics()
    for status in ["completed"] * 7 + ["failed"]:
        metrics.finished(status, 1.0)
    for _ in range(120):
        metrics.flushed(repeated=False)
    now_ms = int(time.time() * 1000)
    for age_ms in [80] * 60 + [700] * 39 + [9000]:
        metrics.delivered(Item("delta", f"{now_ms - age_ms}-0", b"{}"))
    metrics.publish(Readings(flush_round_trips=30))
    figures = parse(metrics.render().decode())
    assert figures.exchanges == {"completed": 7, "cancelled": 0, "failed": 1}
    assert figures.deltas_per_flush == 4.0
    delivery = figures.delivery_latency
    assert (delivery.count, delivery.p50_ms_at_most, delivery.p99_ms_at_most) == (100, 100, 1000)
    assert figures.first_token.count == 0


def test_the_standard_run_measures_three_phases_and_judges_the_six_targets(
    tmp_path: Path,
) -> None:
    report, out, err = run_suite(tmp_path, load=TINY_PHASES)
    for announced in (
        "expected duration: about",
        "phase 1 of 3, A: 3 streams",
        "phase 2 of 3, B: 6 streams",
        "phase 3 of 3, C: steps from 2 streams x1.5 up to 9",
        "[bench] measuring naive-redis (2 of 3)",
    ):
        assert announced in err
    phases = {phase["phase"]["name"]: phase for phase in report["phases"]}
    assert list(phases) == ["A", "B", "C"]
    assert all(phase["exitCode"] == 0 for phase in phases.values())
    a, b, c = (phases[name]["report"] for name in "ABC")
    assert report["target"] == a["target"]  # phase A at the top, as a single run's report
    assert "naiveRedis" in a and "naiveRedis" not in b and "naiveRedis" not in c
    assert b["target"]["concurrency"] == 6 and set(c["largestPassing"]) == {"parley", "baseline"}
    rows = {row["id"]: row for row in report["targets"]}
    assert list(rows) == TARGET_IDS
    # Every phase ran; at this size a baseline's CPU may round to 0 ticks, and its ratio with it.
    verdicts = {"✔", "✘", "not measured (a figure is missing)"}
    assert all(row["verdict"] in verdicts for row in rows.values())
    assert all(rows[always]["verdict"] in "✔✘" for always in ("P2", "P3", "P5"))
    # Each row's figures are the phases' own.
    cpu = "serverCpuSecondsPer1000Events"
    assert rows["P1"]["parley"] == a["target"]["resources"][cpu]
    assert rows["P1"]["reference"] == a["baseline"]["resources"][cpu]
    assert rows["P6"]["reference"] == a["naiveRedis"]["resources"][cpu]
    memory = a["target"]["resources"]["serverProcessBytesPerOpenStream"]  # None if unseen
    assert rows["P4"]["parley"] == (None if memory is None else memory / 1024)
    assert rows["P3"]["parley"] == a["target"]["ttfdMinusFirstTokenMs"]["p99"]
    assert rows["P2"]["parley"] == b["target"]["latenessMs"]["p99"]
    # Levels judged on the targets' own 50 ms bar, whatever bar the bench stepped with.
    leading = itertools.takewhile(passes_targets_bar, c["steps"]["parley"])
    assert rows["P5"]["parley"] == max(level["concurrency"] for level in leading)
    printed = re.findall(r"^(P\d) .*  (✔|✘|not measured \(a figure is missing\))$", out, re.M)
    assert printed == [(row["id"], row["verdict"]) for row in rows.values()]


def passes_targets_bar(level: dict[str, Any]) -> bool:
    run = level["report"]
    streams, integrity = run["streams"], run["integrity"]
    clean = integrity["lost"] + integrity["duplicated"] + integrity["corrupt"] == 0
    return bool(streams["completed"] and not streams["failed"] and clean) and (
        run["latenessMs"]["p99"] <= 50
    )


def good() -> Figures:
    """Figures that meet every target."""
    return Figures(
        comparison_streams=1000,
        parley_cpu=0.05,
        bare_cpu=0.03,
        naive_cpu=0.06,
        parley_ttfd_p99=20.0,
        bare_ttfd_p99=5.0,
        parley_kb_per_stream=60.0,
        bare_kb_per_stream=42.0,
        lateness_streams=2000,
        interval_ms=100,
        parley_lateness_p99=40.0,
        bare_lateness_p99=10.0,
        parley_completed=9000,
        parley_largest=1688,
        bare_largest=1688,
    )


def test_the_targets_are_met_by_figures_within_every_bar() -> None:
    rows = judge(good())
    assert [row.id for row in rows] == TARGET_IDS
    assert [row.verdict for row in rows] == ["✔"] * 6
    assert rows[0].ratio == pytest.approx(0.05 / 0.03)
    assert rows[5].ratio == pytest.approx(0.05 / 0.06)
    assert "2,000 streams, 100 ms interval" in rows[1].what


@pytest.mark.parametrize(
    ("change", "missed"),
    [
        ({"parley_cpu": 0.061}, {"P1", "P6"}),  # 2.03x bare, and above naive-redis
        ({"parley_cpu": 0.06}, {"P6"}),  # 2.0x bare is within; equal to naive-redis is not
        ({"parley_lateness_p99": 50.1}, {"P2"}),
        ({"parley_failed": 1}, {"P2"}),
        ({"parley_integrity_failures": 1}, {"P2"}),
        ({"parley_completed": 0}, {"P2"}),
        ({"parley_ttfd_p99": 25.5}, {"P3"}),
        ({"parley_kb_per_stream": 63.1}, {"P4"}),  # 1.502x
        ({"parley_largest": 1125}, {"P5"}),
        ({"parley_largest": None}, {"P5"}),  # no level passed
    ],
)
def test_a_figure_past_its_bar_misses_its_target_and_only_that_one(
    change: dict[str, Any], missed: set[str]
) -> None:
    rows = judge(msgspec.structs.replace(good(), **change))
    assert {row.id for row in rows if row.verdict == "✘"} == missed
    assert all(row.met is (row.id not in missed) for row in rows)


def test_phases_not_run_leave_their_targets_not_measured() -> None:
    quick = msgspec.structs.replace(good(), unmeasured={"B": "--quick", "C": "--quick"})
    rows = {row.id: row for row in judge(quick)}
    for skipped in ("P2", "P5"):
        assert rows[skipped].met is None
        assert rows[skipped].verdict == "not measured (--quick)"
    assert all(rows[measured].met for measured in ("P1", "P3", "P4", "P6"))
    # A figure missing from a phase that ran is not a verdict either.
    rows = {row.id: row for row in judge(msgspec.structs.replace(good(), naive_cpu=None))}
    assert rows["P6"].met is None and rows["P6"].verdict == "not measured (a figure is missing)"
    # naive-redis left out on purpose (--cluster) says why; the other targets stand.
    skipped = msgspec.structs.replace(
        good(), naive_cpu=None, naive_unmeasured="naive-redis skipped: --cluster"
    )
    rows = {row.id: row for row in judge(skipped)}
    assert rows["P6"].verdict == "not measured (naive-redis skipped: --cluster)"
    assert all(rows[measured].met for measured in ("P1", "P2", "P3", "P4", "P5"))
    table = render_targets(judge(quick))
    assert "not measured (--quick)" in table and table.splitlines()[1].split()[:2] == [
        "target",
        "parley",
    ]
