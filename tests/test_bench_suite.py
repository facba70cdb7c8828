"""``make bench``'s orchestration at a tiny size: it starts Parley and the baselines, runs the
bench, reads Parley's /metrics, writes the JSON report and stops what it started. No speed is
asserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from server.bench.server_metrics import parse
from server.metrics import Metrics, Readings
from streams.events import Item
from tests.support.servers import REPO_ROOT

# A fast synthetic model and one exchange per session, so the run takes a few seconds.
TINY = [
    *("-c", "3", "-n", "1", "--quiet"),
    *("--tokens-per-second", "200", "--reply-tokens", "30", "--first-token-latency-ms", "10"),
    *("--refresh-interval-ms", "50", "--max-p99-lateness-ms", "1e9"),
]


def run_suite(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, str]:
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "server.bench.suite", *args, *TINY, "--json", str(report_path)],
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
    assert "server CPU % (incl. Redis)" in out and "server KB per open stream (incl. Redis)" in out
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
    assert {r["metric"] for r in report["variantRatios"]} >= {
        "events/s",
        "server CPU-s per 1k events",
        "server bytes per open stream",
        "lateness p99 ms",
        "TTFD - first token p99 ms",
        "delivery p99 ms",
    }
    assert "sse-starlette / parley" in out
    # Each one's own /metrics, both workers summed (the variant's through its own multiproc dir).
    assert "Parley (sse-starlette writer) /metrics (all workers" in out
    assert report["serverMetrics"]["exchanges"]["completed"] == 3
    assert report["variantServerMetrics"]["exchanges"]["completed"] == 3
    for pid in (parley_pid, variant_pid, redis_pid):
        assert not psutil.pid_exists(int(pid)), "the suite left a process running"


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
