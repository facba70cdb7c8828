"""Fault injection: every stream stays exact when Redis hangs, vanishes, answers late or restarts.

Each scenario runs concurrent streams of the echo agent (it answers with the user's own words,
50 a second, so every reply is known in advance), one reader that joins a stream in flight and
one that drops its connection when the fault starts and resumes with ``Last-Event-ID`` at once,
retrying on 503 as an EventSource would. About a second into the replies the fault strikes:
through tests/support/faults.py's FaultProxy, the server's only way to Redis, or on the Redis
process itself (SIGSTOP, a restart). Then, for every stream: the deltas add up to the ``done``
text, the stored text and the expected reply; no delta seq and no event id arrives twice; the
session's usage is the sum of its exchanges'; the joined and resumed readers got the same text.

Figures (``pytest -s``; also junit properties): the streams, how long the fault lasted and the
recovery, from the fault's end to the first delta on any stream (``recovery_first_s``) and to
the first delta on the slowest stream (``recovery_all_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from server.embedded_redis import RedisProcess
from streams.tokens import count_tokens
from tests.support.faults import FaultProxy
from tests.support.native import (
    ECHO,
    Received,
    blocking_continue,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    get_session,
    list_exchanges,
    record,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.sse import SseEvent

RedisFactory = Callable[..., RedisProcess]
RecordProperty = Callable[[str, object], None]

STREAMS = 20
REFRESH_MS = 100
FAULT_AFTER = 1.0  # seconds into the replies
TAIL = 1.5  # seconds of reply still to come when the fault ends
RESUME_RETRY = 0.25
USAGE_FIELDS = (
    "inputTokens",
    "outputTokens",
    "cacheReadInputTokens",
    "cacheCreationInputTokens",
    "totalTokens",
)
ENGINE_COUNTERS = re.compile(
    r"^parley_(redis_errors|hub_reconnects|flush_retries_deduplicated)_total (\S+)$", re.M
)


# --- a scenario's run ----------------------------------------------------------------------


@dataclass
class Fault:
    """When the fault was on, by the monotonic clock the SSE reader stamps events with."""

    began: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    ended_at: float = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.began.set()

    def end(self) -> None:
        self.ended_at = time.monotonic()


Inject = Callable[[Fault], Awaitable[None]]


@dataclass
class Run:
    """What the readers saw, and what the server stored afterwards."""

    sids: list[str]
    texts: list[str]
    streams: list[Received]
    joined: Received
    resumed: Received
    resume_connections: int
    fault: Fault
    exchanges: dict[str, list[dict[str, Any]]]
    sessions: dict[str, dict[str, Any]]
    engine: dict[str, float]

    def reply(self, i: int) -> str:
        return expected_reply("echo", self.texts[i])


def stream_path(sid: str, tail: str = "/stream") -> str:
    return f"/v1/sessions/{sid}{tail}"


async def read_all(
    http: httpx.AsyncClient, method: str, path: str, got: Received, json_body: Any = None
) -> None:
    """One connection read to its end event (or until the server closes it)."""
    async with connect(http, method, path, json_body=json_body) as stream:
        assert stream.status_code == 200, f"{method} {path}: {stream.status_code}"
        await stream.read(got)


async def resume_through(http: httpx.AsyncClient, sid: str, fault: Fault, got: Received) -> int:
    """Join, read a few deltas, drop the connection when the fault starts, then resume after
    the last event id at once, retrying on 503 until the end event; return the connections."""
    path = stream_path(sid)
    async with connect(http, "GET", path) as first:
        assert first.status_code == 200, f"GET {path}: {first.status_code}"
        await first.read(got, limit=3)
        await fault.began.wait()
    connections = 1
    while not got.finished:
        connections += 1
        try:
            async with connect(http, "GET", path, last_event_id=got.last_event_id) as again:
                if again.status_code != 503:
                    assert again.status_code == 200, f"resume on {path}: {again.status_code}"
                    await again.read(got)
                    continue
        except httpx.TransportError:
            pass
        await asyncio.sleep(RESUME_RETRY)
    return connections


async def until(check: Callable[[], bool], tasks: list[asyncio.Task[Any]], what: str) -> None:
    """Poll ``check`` (a reader that failed meanwhile raises its error) for up to 10 s."""
    deadline = time.monotonic() + 10.0
    while not check():
        for task in tasks:
            if task.done():
                task.result()
        assert time.monotonic() < deadline, f"no {what} within 10s"
        await asyncio.sleep(0.05)


async def finish(tasks: list[asyncio.Task[Any]], names: list[str], timeout: float) -> None:
    """Wait for every reader; name the ones still open at the deadline."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    stuck = [name for name, task in zip(names, tasks, strict=True) if task in pending]
    assert not stuck, f"readers without an end event after {timeout:g}s: {stuck}"
    for task in tasks:
        task.result()


async def run_streams(
    server: ServerProcess,
    inject: Inject,
    *,
    fault_seconds: float,
    streams: int = STREAMS,
    timeout: float = 60.0,
) -> Run:
    """Start ``streams`` echo replies long enough to outlast the fault, a joined and a resuming
    reader; ``inject`` the fault ~1 s in; read everything to its end; fetch what was stored."""
    reply_seconds = FAULT_AFTER + fault_seconds + TAIL
    count = round(reply_seconds * ECHO.tokens_per_second)
    texts = [words(count, stem=f"s{i}w") for i in range(streams)]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with server.client(timeout=httpx.Timeout(60.0, connect=5.0), limits=limits) as http:
        new = {"agentId": "echo", "refreshIntervalMs": REFRESH_MS}
        sids = list(await asyncio.gather(*(create_sid(http, **new) for _ in texts)))
        got = [Received() for _ in sids]
        fault = Fault()
        tasks = [
            asyncio.create_task(
                read_all(http, "POST", stream_path(sid, "/streamingContinue"), into, body)
            )
            for sid, into, body in zip(sids, got, map(continue_body, texts), strict=True)
        ]
        await until(lambda: all(into.deltas for into in got), tasks, "first delta on every stream")
        joined, resumed = Received(), Received()
        tasks.append(asyncio.create_task(read_all(http, "GET", stream_path(sids[0]), joined)))
        resumer = asyncio.create_task(resume_through(http, sids[1], fault, resumed))
        readers = [*tasks, resumer]
        await until(lambda: len(resumed.deltas) >= 3 and bool(joined.deltas), readers, "join")
        await asyncio.sleep(FAULT_AFTER)  # the fault's start, not a wait for anything
        await inject(fault)
        names = [f"stream {i}" for i in range(streams)] + ["joined reader", "resumed reader"]
        await finish(readers, names, timeout)
        exchanges = {sid: await list_exchanges(http, sid) for sid in sids}
        sessions = {sid: await get_session(http, sid) for sid in sids}
        metrics = (await http.get("/metrics")).text
    engine = {name: float(value) for name, value in ENGINE_COUNTERS.findall(metrics)}
    return Run(
        sids,
        texts,
        got,
        joined,
        resumed,
        resumer.result(),
        fault,
        exchanges,
        sessions,
        engine,
    )


# --- what must hold ------------------------------------------------------------------------


def order_problems(name: str, got: Received) -> list[str]:
    """No delta seq and no event id twice; seqs in order."""
    seqs = [delta.json()["seq"] for delta in got.deltas]
    ids = [block.id for block in got.blocks if block.id is not None]
    problems = [
        f"{name}: delta seq {s} arrived {n} times" for s, n in Counter(seqs).items() if n > 1
    ]
    problems += [
        f"{name}: event id {i} arrived {n} times" for i, n in Counter(ids).items() if n > 1
    ]
    if not problems and seqs != sorted(seqs):
        problems.append(f"{name}: delta seqs out of order: {seqs}")
    return problems


def text_problems(name: str, what: str, text: str, want: str) -> list[str]:
    if text == want:
        return []
    pairs = enumerate(zip(text, want, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(text), len(want)))
    return [
        f"{name}: {what} ({len(text)} chars) leaves the expected text ({len(want)} chars) at "
        f"char {at}: {text[at : at + 40]!r} instead of {want[at : at + 40]!r}"
    ]


def end_of(got: Received) -> SseEvent | None:
    ends = [block for block in got.blocks if block.event in ("done", "error")]
    return ends[-1] if ends else None


def end_problems(name: str, got: Received, kind: str) -> tuple[list[str], dict[str, Any]]:
    """The reader ended with exactly one ``kind`` event; returns its data too."""
    end = end_of(got)
    if end is None or end.event != kind:
        seen = end.data[:200] if end else f"no end event (last: {got.blocks[-1:]})"
        return [f"{name}: expected a {kind} event, got {seen}"], {}
    ends = sum(block.event in ("done", "error") for block in got.blocks)
    problems = [f"{name}: {ends} end events"] if ends > 1 else []
    data: dict[str, Any] = end.json()
    return problems, data


def usage_problems(
    name: str, session: dict[str, Any], exchanges: list[dict[str, Any]]
) -> list[str]:
    wrong: dict[str, str] = {}
    for key in USAGE_FIELDS:
        total = sum(exchange["usage"][key] for exchange in exchanges)
        if session["usage"][key] != total:
            wrong[key] = f"{session['usage'][key]} on the session, {total} in its exchanges"
    return [f"{name}: session usage is not the sum of its exchanges': {wrong}"] if wrong else []


def exact_problems(run: Run) -> list[str]:
    """Everything that must hold when every exchange completed."""
    problems: list[str] = []
    for i, sid in enumerate(run.sids):
        name, want, got = f"stream {i}", run.reply(i), run.streams[i]
        problems += order_problems(name, got)
        problems += text_problems(name, "the deltas", got.text, want)
        ended, done = end_problems(name, got, "done")
        problems += ended
        if done:
            problems += text_problems(name, "done.response.text", done["response"]["text"], want)
        stored = run.exchanges[sid]
        if [exchange["status"] for exchange in stored] != ["completed"]:
            problems.append(f"{name}: stored statuses {[x['status'] for x in stored]}")
        problems += text_problems(name, "the stored text", stored[-1]["response"]["text"], want)
        problems += usage_problems(name, run.sessions[sid], stored)
    for name, got, i in (("joined reader", run.joined, 0), ("resumed reader", run.resumed, 1)):
        problems += order_problems(name, got)
        problems += text_problems(name, "the deltas", got.text, run.reply(i))
        problems += end_problems(name, got, "done")[0]
    return problems


def failed_problems(run: Run) -> list[str]:
    """Everything that must hold when every exchange failed with ``redis_unavailable``."""
    problems: list[str] = []
    partials: list[str] = []
    for i, sid in enumerate(run.sids):
        name, got, want = f"stream {i}", run.streams[i], run.reply(i)
        stored = run.exchanges[sid][-1]
        partial = stored["response"]["text"]
        partials.append(partial)
        failure = (stored["status"], (stored.get("error") or {}).get("code"))
        if failure != ("failed", "redis_unavailable"):
            problems.append(f"{name}: stored as {failure}")
        if not partial or partial == want or not want.startswith(partial):
            problems.append(f"{name}: the stored text is no part of the reply: {partial[:80]!r}")
        problems += order_problems(name, got)
        problems += text_problems(name, "the deltas", got.text, partial)
        ended, error = end_problems(name, got, "error")
        problems += ended
        if error:
            if error["code"] != "redis_unavailable":
                problems.append(f"{name}: error code {error['code']}")
            text = error["exchange"]["response"]["text"]
            problems += text_problems(name, "the error's exchange text", text, partial)
    for name, got, i in (("joined reader", run.joined, 0), ("resumed reader", run.resumed, 1)):
        problems += order_problems(name, got)
        problems += text_problems(name, "the deltas", got.text, partials[i])
        problems += end_problems(name, got, "error")[0]
    return problems


def stopped_at(run: Run) -> list[float]:
    """How far into the fault each generation stopped, from the text it kept (the first delta
    comes with the first token; then 50 tokens a second)."""
    seconds: list[float] = []
    for sid, got in zip(run.sids, run.streams, strict=True):
        kept = count_tokens(run.exchanges[sid][-1]["response"]["text"])
        began = got.deltas[0].received_at if got.deltas else run.fault.started_at
        into = began + kept / ECHO.tokens_per_second - run.fault.started_at
        seconds.append(round(into, 1))
    return sorted(seconds)


async def next_turn_problems(http: httpx.AsyncClient, sids: list[str]) -> list[str]:
    """Each session answers a blockingContinue, and its usage is still its exchanges' sum."""
    problems: list[str] = []
    texts = [words(5, stem=f"again{i}w") for i in range(len(sids))]
    answers = await asyncio.gather(*map(blocking_continue, [http] * len(sids), sids, texts))
    for i, (sid, answer) in enumerate(zip(sids, answers, strict=True)):
        name = f"stream {i}"
        if answer["status"] != "completed":
            problems.append(f"{name}: the next blockingContinue ended {answer['status']}")
        want = expected_reply("echo", texts[i])
        problems += text_problems(name, "the next reply", answer["response"]["text"], want)
        exchanges = await list_exchanges(http, sid)
        problems += usage_problems(name, await get_session(http, sid), exchanges)
    return problems


def report(
    name: str, run: Run, record_property: RecordProperty, proxy: FaultProxy | None = None
) -> None:
    """Record the scenario's figures (printed with -s, and as junit properties)."""
    ended = run.fault.ended_at
    firsts: list[float] = []
    gaps: list[float] = [0.0]
    for got in run.streams:
        times = [delta.received_at for delta in got.deltas]
        gaps += [later - earlier for earlier, later in itertools.pairwise(times)]
        after = [t for t in times if t >= ended]
        if after:
            firsts.append(after[0])
    figures: dict[str, object] = {
        "streams": len(run.streams),
        "fault_s": round(run.fault.ended_at - run.fault.started_at, 2),
        "recovery_first_s": round(min(firsts) - ended, 3) if firsts else None,
        "recovery_all_s": round(max(firsts) - ended, 3) if firsts else None,
        "streams_recovered": len(firsts),
        "longest_delta_gap_s": round(max(gaps), 2),
        "resume_connections": run.resume_connections,
        **{f"engine_{key}": value for key, value in sorted(run.engine.items())},
    }
    if proxy is not None:
        stats = proxy.stats
        figures |= {
            "proxy_connections": stats.accepted,
            "proxy_bytes_to_redis": stats.to_redis,
            "proxy_bytes_from_redis": stats.from_redis,
            "proxy_bytes_dropped": stats.dropped,
        }
    for key, value in figures.items():
        record_property(key, value)
    record(name, **figures)


def assert_exact(
    name: str, run: Run, record_property: RecordProperty, proxy: FaultProxy | None = None
) -> None:
    report(name, run, record_property, proxy)
    problems = exact_problems(run)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


# --- faults --------------------------------------------------------------------------------


def hang(proxy: FaultProxy, seconds: float) -> Inject:
    async def inject(fault: Fault) -> None:
        fault.start()
        await proxy.pause(seconds)
        fault.end()

    return inject


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(redis_url) as running:
        yield running


@contextlib.asynccontextmanager
async def server_through(
    proxy: FaultProxy, server_factory: ServerFactory, env: dict[str, str] | None = None
) -> AsyncIterator[ServerProcess]:
    """A server whose only way to Redis is the proxy.

    Starting and stopping block on the server, which talks to Redis through the proxy on this
    very loop meanwhile: both run in a worker thread (the loop's executor keeps its threads,
    and a server dies with the thread that started it).
    """
    server = await asyncio.to_thread(server_factory, env, redis_url=proxy.url)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.terminate)


@pytest.fixture
async def proxied(proxy: FaultProxy, server_factory: ServerFactory) -> AsyncIterator[ServerProcess]:
    async with server_through(proxy, server_factory) as server:
        yield server


async def hang_scenario(
    seconds: float, proxy: FaultProxy, server: ServerProcess, record_property: RecordProperty
) -> None:
    run = await run_streams(server, hang(proxy, seconds), fault_seconds=seconds)
    assert_exact(f"{seconds:g} s hang", run, record_property, proxy)


# --- the scenarios -------------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_the_fault_proxy_holds_delays_blackholes_cuts_and_drops(
    proxy: FaultProxy, key_prefix: str
) -> None:
    """The proxy itself, on raw RESP, so a failing scenario is the engine's doing, not its."""

    def resp(*args: str) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        parts += [f"${len(arg.encode())}\r\n{arg}\r\n".encode() for arg in args]
        return b"".join(parts)

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(), 2) == b""
        except ConnectionResetError:
            return True

    async def asked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *args: str
    ) -> bytes:
        writer.write(resp(*args))
        return await asyncio.wait_for(reader.readline(), 5)

    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

    async def ask(*args: str) -> tuple[bytes, float]:
        sent = time.monotonic()
        answer = await asked(reader, writer, *args)
        return answer, time.monotonic() - sent

    assert (await ask("PING"))[0] == b"+PONG\r\n"
    pausing = asyncio.create_task(proxy.pause(0.5))
    await asyncio.sleep(0)  # one loop turn: the task's first step, which closes the gate
    answer, took = await ask("PING")
    assert answer == b"+PONG\r\n" and took >= 0.45  # held, not lost
    await pausing

    proxy.delay_replies(300)
    answer, took = await ask("PING")
    proxy.delay_replies(0)
    assert answer == b"+PONG\r\n" and took >= 0.28

    proxy.blackhole(True)
    writer.write(resp("PING"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readline(), 0.3)
    proxy.blackhole(False)
    assert await closed(reader)  # it lost a command: its replies could never line up again

    keys = [f"{key_prefix}:cut:{i}" for i in range(3)]
    cut_reader, cut_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    cut = proxy.cut_mid_batch()
    cut_writer.write(b"".join(resp("SET", key, "v") for key in keys))
    await asyncio.wait_for(cut.wait(), 2)
    assert await closed(cut_reader)
    assert proxy.stats.cuts == [["SET", "SET", "SET"]]

    drop_reader, drop_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    deadline = time.monotonic() + 2
    while (exists := await asked(drop_reader, drop_writer, "EXISTS", *keys)) == b":0\r\n":
        assert time.monotonic() < deadline, "Redis never ran the first command of the cut batch"
        await asyncio.sleep(0.05)
    assert exists == b":1\r\n"  # the whole first SET ran; the torn second and the third did not
    await asked(drop_reader, drop_writer, "DEL", *keys)
    assert proxy.drop_all() >= 1
    assert await closed(drop_reader)
    assert proxy.stats.accepted == 3 and proxy.stats.dropped > 0
    assert proxy.stats.to_redis > 0 and proxy.stats.from_redis > 0
    for stream in (writer, cut_writer, drop_writer):
        stream.close()


@pytest.mark.timeout(60)
async def test_streams_stay_exact_through_a_3_second_redis_hang(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    await hang_scenario(3, proxy, proxied, record_property)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_through_a_6_second_redis_hang(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    await hang_scenario(6, proxy, proxied, record_property)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_through_an_8_second_redis_hang(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    await hang_scenario(8, proxy, proxied, record_property)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_streams_stay_exact_through_a_20_second_redis_hang(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    await hang_scenario(20, proxy, proxied, record_property)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_while_the_redis_process_is_stopped_for_8_seconds(
    redis_factory: RedisFactory, server_factory: ServerFactory, record_property: RecordProperty
) -> None:
    redis = redis_factory()
    server = server_factory(redis_url=redis.url)
    pid = redis.pid
    assert pid is not None

    async def sigstop(fault: Fault) -> None:
        fault.start()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(8)
        finally:
            os.kill(pid, signal.SIGCONT)
            fault.end()

    run = await run_streams(server, sigstop, fault_seconds=8)
    assert_exact("SIGSTOP 8 s", run, record_property)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_when_a_connection_is_cut_mid_batch(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    async def cut_a_batch(fault: Fault) -> None:
        cut = proxy.cut_mid_batch()
        await asyncio.wait_for(cut.wait(), 10)
        fault.start()
        fault.end()

    run = await run_streams(proxied, cut_a_batch, fault_seconds=2)
    [names] = proxy.stats.cuts
    assert set(names) == {"EVALSHA"}, f"the cut hit {names}, not a batch of flushes"
    record("cut batch", commands=len(names))
    assert_exact("cut mid-batch", run, record_property, proxy)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_with_replies_2_seconds_late_for_10_seconds(
    proxy: FaultProxy, proxied: ServerProcess, record_property: RecordProperty
) -> None:
    async def late_replies(fault: Fault) -> None:
        fault.start()
        proxy.delay_replies(2000)
        try:
            await asyncio.sleep(10)
        finally:
            proxy.delay_replies(0)
            fault.end()

    run = await run_streams(proxied, late_replies, fault_seconds=10)
    assert_exact("replies 2 s late for 10 s", run, record_property, proxy)


@pytest.mark.timeout(60)
async def test_streams_stay_exact_through_a_restart_of_a_persistent_redis(
    redis_factory: RedisFactory, server_factory: ServerFactory, record_property: RecordProperty
) -> None:
    redis = redis_factory(appendonly=True)
    server = server_factory(redis_url=redis.url)

    async def restart(fault: Fault) -> None:
        fault.start()
        redis.stop()  # SIGTERM: the append-only file is flushed
        await asyncio.sleep(3)  # down for 3 s; it comes back on the same port and data
        redis.start()  # blocks the loop until PING answers (a few tens of ms)
        fault.end()

    # 2 s more of reply: the hub's reconnect backoff (up to 2 s) comes on top of the outage
    run = await run_streams(server, restart, fault_seconds=3 + 2)
    assert_exact("restart", run, record_property)


# Under a blackhole the first flush waits out the batcher's 5 s timeout (cut at its next 1 s
# check); the runner counts the outage from when that call was sent, so it is past a 3 s
# bound at that first failure, 5-6 s in. Later calls give up at the bound themselves.
BOUND_SECONDS = 3
BLACKHOLE_SECONDS = 9
STOPPED_BY_SECONDS = 7.5


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_blackhole_past_the_outage_bound_fails_each_stream_and_keeps_its_text(
    proxy: FaultProxy, server_factory: ServerFactory, record_property: RecordProperty
) -> None:
    env = {"PARLEY_REDIS_OUTAGE_BOUND_SECONDS": str(BOUND_SECONDS)}

    async def blackhole(fault: Fault) -> None:
        fault.start()
        proxy.blackhole(True)
        try:
            await asyncio.sleep(BLACKHOLE_SECONDS)
        finally:
            proxy.blackhole(False)
            fault.end()

    async with server_through(proxy, server_factory, env) as server:
        run = await run_streams(server, blackhole, fault_seconds=BLACKHOLE_SECONDS, streams=10)
        report("blackhole past the bound", run, record_property, proxy)
        stopped = stopped_at(run)
        record("blackhole past the bound", generation_stopped_s_into_the_fault=stopped)
        problems = failed_problems(run)
        problems += [
            f"a generation ran {at} s into the blackhole"
            for at in stopped
            if at > STOPPED_BY_SECONDS
        ]
        async with server.client() as http:
            problems += await next_turn_problems(http, run.sids)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
