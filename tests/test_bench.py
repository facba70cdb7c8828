"""``parley bench`` at a tiny size: it runs, reports, and integrity holds. No speed is asserted."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.bench.baseline import delta_schedule
from server.bench.command import main as bench_main
from server.bench.http1 import Http1Connection
from server.bench.probe import StreamProbe, Tally, judge
from server.bench.sse_reader import SseReader
from server.embedded_redis import RedisProcess
from tests.support.servers import REPO_ROOT, ServerProcess, new_key_prefix, start_server

# A fast synthetic model, so a tiny run takes a second or two; no bar on lateness.
FAST = [
    *("--tokens-per-second", "200", "--reply-tokens", "30", "--first-token-latency-ms", "10"),
    *("--refresh-interval-ms", "50", "--max-p99-lateness-ms", "1e9", "--quiet"),
]
RATIO_METRICS = {
    "events/s",
    "server CPU-s per 1k events",
    "server bytes per open stream (no Redis)",
    "lateness p99 ms",
    "TTFD - first token p99 ms",
    "delivery p99 ms",
}


@pytest.fixture
def sse_writer_server(tmp_path: Path, redis_url: str) -> Iterator[ServerProcess]:
    """Parley with sse-starlette's stream writer, on the session's Redis."""
    server = start_server(
        tmp_path / "sse-writer",
        redis_url=redis_url,
        key_prefix=new_key_prefix(),
        app="server.bench.sse_writer:create_app",
    )
    yield server
    server.terminate()


def run_bench(tmp_path: Path, *args: str, module: str = "server.bench") -> dict[str, Any]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(report)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"integrity ok" in done.stdout
    loaded: dict[str, Any] = json.loads(report.read_bytes())
    return loaded


def assert_all_intact(run: dict[str, Any], streams: int) -> None:
    assert run["streams"]["started"] == streams
    assert run["streams"]["completed"] == streams
    assert run["streams"]["failed"] == 0
    assert run["integrity"] == {"ok": streams, "lost": 0, "duplicated": 0, "corrupt": 0}
    assert run["errors"] == {}


def test_bench_measures_the_baseline_and_every_stream_is_intact(tmp_path: Path) -> None:
    report = run_bench(
        tmp_path, "--baseline-only", "--baseline-workers", "1", "-c", "6", "-n", "2", *FAST
    )
    baseline = report["baseline"]
    assert_all_intact(baseline, 12)
    assert baseline["ttfdMs"]["count"] == 12
    assert baseline["latenessMs"]["count"] > 0
    assert baseline["rates"]["eventsPerS"] > 0


@pytest.mark.parametrize("writer", ["parley", "sse-starlette"])
def test_the_baseline_written_by_another_sse_writer_keeps_every_stream_intact(
    tmp_path: Path, writer: str
) -> None:
    report = run_bench(
        tmp_path,
        *("--baseline-only", "--baseline-writer", writer, "--baseline-workers", "1"),
        *("-c", "4", "-n", "2", *FAST),
    )

    assert_all_intact(report["baseline"], 8)


def test_the_naive_redis_baseline_keeps_every_stream_intact_and_counts_its_redis(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    assert redis_server.pid is not None
    report = run_bench(
        tmp_path,
        *("--baseline-only", "--naive-redis", redis_server.url),
        *("--redis-pid", str(redis_server.pid), "--baseline-workers", "1"),
        *("-c", "20", "-n", "2", *FAST),
    )

    naive = report["naiveRedis"]
    assert naive["label"] == "naive-redis"
    assert_all_intact(naive, 40)
    assert naive["resources"]["redis"] == "included"
    assert naive["resources"]["serverRssPeakBytes"] > 0
    # Redis apart from the server's processes: its growth per exchange ended in the run.
    assert naive["streams"]["exchanges"] == 40
    assert naive["resources"]["redisGrowthBytes"] is not None
    assert naive["resources"]["redisBytesPerFinishedExchange"] == pytest.approx(
        naive["resources"]["redisGrowthBytes"] / 40
    )
    assert any(f"include its Redis (pid {redis_server.pid})" in note for note in naive["notes"])
    assert "baseline" not in report and "target" not in report


def test_a_redis_pid_without_the_servers_pid_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--url", "http://127.0.0.1:9", "--redis-pid", "1"]) == 2
    assert "--server-pid" in capsys.readouterr().err


def test_a_redis_pid_given_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    pid = str(os.getpid())
    flags = ["--server-pid", pid, "--redis-pid", "1", "--redis-pid", pid, "--redis-pid", pid]
    assert bench_main(["--url", "http://127.0.0.1:9", *flags]) == 2
    assert f"--redis-pid {pid} is given twice" in capsys.readouterr().err


def test_a_variant_is_measured_like_parley_with_its_ratios_to_parley(
    tmp_path: Path,
    shared_server: ServerProcess,
    sse_writer_server: ServerProcess,
    redis_server: RedisProcess,
) -> None:
    assert redis_server.pid is not None
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "server.bench", "--url", shared_server.base_url),
            *("--server-pid", str(shared_server.pid), "--redis-pid", str(redis_server.pid)),
            *("--variant", f"sse-starlette={sse_writer_server.base_url}"),
            *("--variant-pid", str(sse_writer_server.pid)),
            *("-c", "20", "-d", "2", *FAST, "--json", str(report_path)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    report = json.loads(report_path.read_bytes())

    parley, variant = report["target"], report["variant"]
    assert variant["label"] == "sse-starlette" and variant["url"] == sse_writer_server.base_url
    for run in (parley, variant):
        assert_all_intact(run, run["streams"]["completed"])
        assert run["streams"]["completed"] >= 20
        assert run["resources"]["redis"] == "included"
        assert run["resources"]["serverCpuSecondsPer1000Events"] is not None
    assert any(f"include its Redis (pid {redis_server.pid})" in n for n in variant["notes"])
    by_metric = {r["metric"]: r for r in report["variantRatios"]}
    assert set(by_metric) >= RATIO_METRICS
    cpu = by_metric["server CPU-s per 1k events"]
    assert cpu["variant"] == variant["resources"]["serverCpuSecondsPer1000Events"]
    assert cpu["parley"] == parley["resources"]["serverCpuSecondsPer1000Events"]
    assert cpu["ratio"] == pytest.approx(cpu["variant"] / cpu["parley"])
    header = out.splitlines()[1].split()
    assert header[:3] == ["metric", "parley", "sse-starlette"]
    assert "sse-starlette / parley" in out
    assert "server CPU-s per 1k events (incl. Redis)" in out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--variant-pid", str(os.getpid())], "give --variant too"),
        (["--variant", "v=http://127.0.0.1:9", "--baseline-only"], "not with --baseline-only"),
        (
            [
                *("--variant", "v=http://127.0.0.1:9", "--server-pid", str(os.getpid())),
                *("--redis-pid", str(os.getpid())),
            ],
            "give --variant-pid",
        ),
    ],
)
def test_a_variant_given_by_halves_is_refused(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main(["--url", "http://127.0.0.1:9", *args]) == 2
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variant", "problem"),
    [
        ("parley=http://127.0.0.1:9", "names another column"),
        ("http://127.0.0.1:9", "LABEL=URL"),
        ("v=127.0.0.1:9", "not an http(s) URL"),
    ],
)
def test_a_variant_that_is_not_label_equals_url_is_refused(
    variant: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_main(["--variant", variant])
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err


def test_bench_samples_the_measured_servers_cpu_and_memory(tmp_path: Path) -> None:
    report = run_bench(
        tmp_path,
        "--baseline-only",
        "--baseline-workers",
        "1",
        "-c",
        "4",
        "-d",
        "1.5",
        "--ramp-up",
        "0",
        *FAST,
    )
    resources = report["baseline"]["resources"]
    assert resources["serverCpuSecondsPer1000Events"] is not None
    assert resources["serverRssPeakBytes"] > 0


def test_parley_bench_streams_against_a_real_server_with_intact_text(
    tmp_path: Path, shared_server: ServerProcess
) -> None:
    report = run_bench(
        tmp_path,
        "bench",
        "--url",
        shared_server.base_url,
        "-c",
        "3",
        "-n",
        "1",
        "--server-pid",
        str(shared_server.pid),
        *FAST,
        module="server.cli",
    )
    assert_all_intact(report["target"], 3)


def test_mixed_mode_streams_blocks_and_joins_on_a_real_server(
    tmp_path: Path, shared_server: ServerProcess
) -> None:
    # Sessions 0 and 1 stream, 2 blocks, 3 streams with two watchers on GET .../stream.
    report = run_bench(
        tmp_path,
        "--url",
        shared_server.base_url,
        "--mode",
        "mixed",
        "-c",
        "4",
        "-n",
        "1",
        "--watchers",
        "2",
        *FAST,
    )
    assert_all_intact(report["target"], 6)
    assert report["target"]["blockingMs"]["count"] == 1


def test_bench_with_both_baselines_reports_ratios_to_each(
    tmp_path: Path, shared_server: ServerProcess, redis_url: str
) -> None:
    report = run_bench(
        tmp_path,
        *("--url", shared_server.base_url, "--baseline", "--naive-redis", redis_url),
        *("--baseline-workers", "1", "-c", "2", "-n", "1", *FAST),
    )
    for ratios in (report["ratios"], report["naiveRedisRatios"]):
        assert {r["metric"] for r in ratios} >= {"events/s", "server CPU-s per 1k events"}
    assert_all_intact(report["baseline"], 2)
    assert_all_intact(report["naiveRedis"], 2)
    assert_all_intact(report["target"], 2)


def test_sse_bytes_cut_anywhere_give_the_same_events() -> None:
    body = (
        b"retry: 2000\n\nevent: started\ndata: {}\n\n: ping\n\n"
        b'id: 5-1\r\nevent: delta\r\ndata: {"seq":1,"text":"Hello"}\r\n\r\n'
        b'id: 6-0\nevent: delta\ndata: {"seq":2,"text":" world"}\n\n'
        b'id: 7-0\nevent: done\ndata: {"status":"completed","response":{"text":"Hello world"}}\n\n'
    )
    whole = StreamProbe("stream", 0.0, Tally())
    SseReader(whole, Tally()).feed(body, 1.0)
    for cut in range(1, len(body)):
        probe = StreamProbe("stream", 0.0, Tally())
        reader = SseReader(probe, Tally())
        reader.feed(body[:cut], 1.0)
        reader.feed(body[cut:], 2.0)
        assert (probe.text(), probe.done, probe.last_id) == (whole.text(), whole.done, (7, 0))
    assert whole.text() == "Hello world" and not whole.out_of_order


async def test_chunked_response_split_into_single_bytes_is_read_whole() -> None:
    events = b'event: delta\ndata: {"seq":1,"text":"hi"}\n\n'
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for byte in head + b"\r\n" + chunks:
            writer.write(bytes([byte]))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = StreamProbe("stream", 0.0, Tally())
    connection = Http1Connection("127.0.0.1", port)
    try:
        response = await connection.request(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", sink=SseReader(probe, Tally()), timeout=10
        )
    finally:
        connection.close()
        server.close()
    assert response.status == 200
    assert probe.text() == "hi"


def test_baseline_schedule_sends_the_first_token_at_once_then_one_delta_per_interval() -> None:
    pieces = [f" t{i}" for i in range(10)]
    schedule = delta_schedule(pieces, interval_s=0.1, token_step_s=0.05)
    assert schedule[0] == (0.0, " t0", 1)
    times = [at for at, _, _ in schedule]
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(times))
    assert "".join(text for _, text, _ in schedule) == "".join(pieces)
    assert sum(tokens for _, _, tokens in schedule) == 10


def test_slow_model_tokens_go_out_one_per_delta_as_they_come() -> None:
    schedule = delta_schedule([" a", " b", " c"], interval_s=0.1, token_step_s=0.25)
    assert schedule == [(0.0, " a", 1), (0.25, " b", 1), (0.5, " c", 1)]


@pytest.mark.parametrize(
    ("reassembled", "done", "out_of_order", "verdict"),
    [
        ("Hello world", "Hello world", False, "ok"),
        ("Hello", "Hello world", False, "lost"),
        ("Hello world world", "Hello world", False, "duplicated"),
        ("Hello world", "Hello world", True, "duplicated"),
        ("Hellx world", "Hello world", False, "corrupt"),
    ],
)
def test_streams_are_judged_against_the_done_text(
    reassembled: str, done: str, out_of_order: bool, verdict: str
) -> None:
    assert judge(reassembled, done, "Hello world", out_of_order) == verdict


def test_a_done_text_that_differs_from_the_model_reply_is_corrupt() -> None:
    assert judge("Hello there", "Hello there", "Hello world", False) == "corrupt"
