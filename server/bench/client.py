"""The load generator: many sessions in one asyncio process, each running exchanges in turn.

Every session keeps one keep-alive connection for its own requests (and one per watcher in
join mode). Bytes are parsed in the connection's protocol callbacks (see ``http1``), so a
delta costs the client a few microseconds and the client stays far below the server's cost
per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from server.bench.http1 import Http1Connection, HttpError, Response
from server.bench.options import BenchOptions, Mode
from server.bench.probe import ExchangeWire, StreamProbe
from server.bench.progress import Progress
from server.bench.sampler import ProcessSampler, Usage, machine_busy_seconds
from server.bench.sse_reader import SseReader
from server.bench.stats import Collector
from streams.backends.synthetic import SyntheticParams, synthetic_reply

_MAX_RESUMES = 3
_LAG_PROBE_S = 0.01
_BACKOFF_S = 1.0
_MIXED: tuple[Mode, ...] = ("streaming", "streaming", "blocking", "join")


class BenchSetupError(Exception):
    """The target cannot be measured at all (unreachable, auth refused, ...)."""


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What is measured. A ``bare`` target is a baseline: no agents, no sessions.

    ``pid`` is the server's (sampled with its children); ``redis_pids``, when the server has a
    Redis of its own to count (one process, or a cluster's nodes), are sampled with it as one
    server.
    """

    label: str
    url: str
    api_key: str | None = None
    bare: bool = False
    pid: int | None = None
    uses_redis: bool = True
    redis_pids: tuple[int, ...] = ()


class Mark(msgspec.Struct, frozen=True):
    """Totals at one instant, to compute rates over the full-load window."""

    at: float
    events: int
    deltas: int
    bytes: int
    server: Usage | None
    client: Usage
    machine_busy_s: float
    redis: Usage | None = None  # its Redis alone, already counted in ``server``


class MemoryPoint(msgspec.Struct, frozen=True):
    """RSS at one instant, the server's own processes and its Redis apart: what Redis holds
    grows with the exchanges finished (replay logs kept for the retention period), not with
    the streams open."""

    open_streams: int
    server_rss_bytes: int
    redis_rss_bytes: int | None = None

    @property
    def rss_bytes(self) -> int:
        """The server with its Redis, as its CPU is counted."""
        return self.server_rss_bytes + (self.redis_rss_bytes or 0)


class RunResult:
    """Everything a finished run measured; ``report.build_report`` turns it into figures."""

    def __init__(self, options: BenchOptions, target: Target) -> None:
        self.options = options
        self.target = target
        self.agent_id = ""
        self.params = SyntheticParams()
        self.notes: list[str] = []
        self.collector = Collector(0.0)
        self.window: tuple[Mark, Mark] | None = None
        self.idle: MemoryPoint | None = None
        self.memory: list[MemoryPoint] = []
        self.final: MemoryPoint | None = None
        self.elapsed_s = 0.0


class _Endpoint:
    """Pre-encoded request heads for one base URL."""

    def __init__(self, url: str, api_key: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchSetupError(f"not an http(s) URL: {url}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        common = f"Host: {parts.netloc}\r\nUser-Agent: parley-bench\r\n"
        if api_key:
            common += f"Authorization: Bearer {api_key}\r\n"
        self._common = common

    def connection(self) -> Http1Connection:
        return Http1Connection(self.host, self.port, ssl_context=self.ssl)

    def head(self, method: str, path: str, *, body: bytes = b"", extra: str = "") -> bytes:
        lines = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._common}{extra}"
        if body or method in ("POST", "PUT", "PATCH"):
            lines += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (lines + "\r\n").encode()


def model_params(options: BenchOptions) -> SyntheticParams:
    return SyntheticParams(
        mode="lorem",
        tokens_per_second=options.tokens_per_second,
        reply_tokens=options.reply_tokens,
        first_token_latency_ms=options.first_token_latency_ms,
    )


def default_agent_params() -> SyntheticParams:
    """The built-in default agent's synthetic params, as this checkout defines them."""
    try:
        from streams.agents import DEFAULT_AGENT_ID, builtin_agents
    except ImportError:  # pragma: no cover - an engine without a built-in table
        return SyntheticParams()
    for agent in builtin_agents():
        if agent.agent_id == DEFAULT_AGENT_ID and agent.model.provider == "synthetic":
            return SyntheticParams.parse(agent.model.params)
    return SyntheticParams()


def expected_spacing_s(refresh_interval_ms: int, params: SyntheticParams) -> float:
    """The delta spacing the flush policy promises (see ``stats``)."""
    return max(refresh_interval_ms / 1000.0, 1.0 / params.tokens_per_second)


class LoadRun:
    """One run of ``options`` against ``target``."""

    def __init__(self, options: BenchOptions, target: Target) -> None:
        self.options = options
        self.target = target
        self.result = RunResult(options, target)
        self._endpoint = _Endpoint(target.url, target.api_key)
        self._tag = uuid.uuid4().hex[:8]
        self._deadline = float("inf")
        self._sessions_left = options.concurrency
        self._first_session_done = asyncio.Event()
        self._all_done = asyncio.Event()
        # Nothing is sampled as the server without the server's own pid.
        self._server = ProcessSampler(target.pid) if target.pid is not None else None
        self._redis = (
            ProcessSampler(*target.redis_pids) if self._server and target.redis_pids else None
        )
        self._client = ProcessSampler(os.getpid(), include_children=False)

    async def execute(self) -> RunResult:
        options, result = self.options, self.result
        started = time.monotonic()
        result.agent_id, result.params = await self._prepare_agent()
        spacing = expected_spacing_s(options.refresh_interval_ms, result.params)
        result.collector.expected_spacing = spacing
        result.idle = self._sample()[1]
        if options.exchanges is None:
            self._deadline = started + options.ramp_s + options.duration_s
        tasks = [asyncio.create_task(self._session(i, started)) for i in range(options.concurrency)]
        watchers = [
            asyncio.create_task(self._watch_memory()),
            asyncio.create_task(self._watch_loop_lag()),
        ]
        if not options.quiet:
            progress = Progress(self.target.label, result.collector, started)
            watchers.append(asyncio.create_task(progress.run()))
        try:
            result.window = await self._measure_window(started)
            await asyncio.gather(*tasks)
        finally:
            for task in (*tasks, *watchers):
                task.cancel()
            await asyncio.gather(*tasks, *watchers, return_exceptions=True)
            if not options.quiet:
                Progress.clear()
        result.final = self._sample()[1]
        result.elapsed_s = time.monotonic() - started
        return result

    async def _measure_window(self, started: float) -> tuple[Mark, Mark]:
        """Marks at the end of ramp-up and at the first drop of concurrency."""
        ramp_end = started + self.options.ramp_s
        await _wait_until(self._all_done, ramp_end - time.monotonic())
        first = self._mark()
        if self.options.exchanges is None:
            await _wait_until(self._all_done, self._deadline - time.monotonic())
        else:
            await self._first_session_done.wait()
        return first, self._mark()

    def _sample(self) -> tuple[Usage | None, MemoryPoint | None]:
        """The server's usage (its Redis counted in) and its memory, Redis apart."""
        usage, _, memory = self._sample_apart()
        return usage, memory

    def _sample_apart(self) -> tuple[Usage | None, Usage | None, MemoryPoint | None]:
        """As ``_sample``, with its Redis's usage alone (all its processes summed) between."""
        if self._server is None:
            return None, None, None
        server = self._server.sample()
        redis = self._redis.sample() if self._redis else None
        open_streams = self.result.collector.open_streams
        if redis is None:
            return server, None, MemoryPoint(open_streams, server.rss_bytes)
        both = Usage(
            cpu_seconds=server.cpu_seconds + redis.cpu_seconds,
            rss_bytes=server.rss_bytes + redis.rss_bytes,
            processes=server.processes + redis.processes,
        )
        return both, redis, MemoryPoint(open_streams, server.rss_bytes, redis.rss_bytes)

    def _mark(self) -> Mark:
        collector = self.result.collector
        server, redis, memory = self._sample_apart()
        if memory is not None:
            self.result.memory.append(memory)
        return Mark(
            at=time.monotonic(),
            events=collector.tally.events,
            deltas=collector.tally.deltas,
            bytes=collector.tally.bytes,
            server=server,
            client=self._client.sample(),
            machine_busy_s=machine_busy_seconds(),
            redis=redis,
        )

    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            _, memory = self._sample()
            if memory is not None:
                self.result.memory.append(memory)

    async def _watch_loop_lag(self) -> None:
        """How late this process's own timers fire: when it is large, the client is too busy
        to time arrivals honestly, and its figures say more about itself than the server."""
        lag_ms = self.result.collector.client_lag_ms
        while True:
            before = time.monotonic()
            await asyncio.sleep(_LAG_PROBE_S)
            lag_ms.append((time.monotonic() - before - _LAG_PROBE_S) * 1000.0)

    # setup

    async def _prepare_agent(self) -> tuple[str, SyntheticParams]:
        params = model_params(self.options)
        if self.target.bare:
            return "baseline", params
        digest = hashlib.sha256(msgspec.json.encode(params)).hexdigest()[:12]
        agent_id = f"bench-{digest}"
        body = msgspec.json.encode(
            {
                "agentId": agent_id,
                "name": f"parley bench {digest}",
                "instructions": "",
                "model": {"provider": "synthetic", "name": "synthetic", "params": params},
            }
        )
        response = await self._setup_request("POST", "/v1/agents", body)
        if response.status in (200, 201, 409):
            return agent_id, params
        if response.status in (404, 405):
            defaults = default_agent_params()
            self.result.notes.append(
                "POST /v1/agents is not available: used agent 'default', whose model params are "
                f"taken as {msgspec.json.encode(defaults).decode()} (the built-in table); the "
                "model options of this run were not applied"
            )
            return "default", defaults
        raise BenchSetupError(f"POST /v1/agents answered {response.status}: {_brief(response)}")

    async def _setup_request(self, method: str, path: str, body: bytes) -> Response:
        connection = self._endpoint.connection()
        try:
            head = self._endpoint.head(method, path, body=body)
            return await connection.request(head, body, timeout=30.0)
        except HttpError as exc:
            raise BenchSetupError(f"{method} {path} failed: {exc}") from None
        finally:
            connection.close()

    # sessions

    async def _session(self, index: int, started: float) -> None:
        options = self.options
        await asyncio.sleep(
            max(0.0, started + index * options.ramp_s / options.concurrency - time.monotonic())
        )
        mode = _MIXED[index % len(_MIXED)] if options.mode == "mixed" else options.mode
        if self.target.bare:
            mode = "streaming"
        connection = self._endpoint.connection()
        watchers = [self._endpoint.connection() for _ in range(options.watchers)]
        try:
            await self._run_exchanges(index, mode, connection, watchers if mode == "join" else [])
        except Exception as exc:  # a client bug must not end the other sessions' run
            self.result.collector.error(f"client:{type(exc).__name__}")
            if not self.result.notes or "client" not in self.result.notes[-1]:
                self.result.notes.append(f"client error in session {index}: {exc!r}")
        finally:
            connection.close()
            for watcher in watchers:
                watcher.close()
            self._session_done()

    def _session_done(self) -> None:
        self._first_session_done.set()
        self._sessions_left -= 1
        if not self._sessions_left:
            self._all_done.set()

    def _more(self, done: int) -> bool:
        if self.options.exchanges is not None:
            return done < self.options.exchanges
        return time.monotonic() < self._deadline

    async def _run_exchanges(
        self, index: int, mode: Mode, connection: Http1Connection, watchers: list[Http1Connection]
    ) -> None:
        conversation_id: str | None = None
        done = 0
        while self._more(done):
            if conversation_id is None:
                conversation_id = await self._create_session(connection)
                if conversation_id is None:
                    await asyncio.sleep(_BACKOFF_S)
                    continue
            text = f"parley bench {self._tag} session {index} exchange {done}"
            expected = synthetic_reply(text, self.result.params)
            if mode == "blocking":
                ok = await self._blocking(connection, conversation_id, text, expected)
            else:
                ok = await self._streaming(connection, conversation_id, text, expected, watchers)
            done += 1
            self.result.collector.exchanges += 1
            if not ok:
                await asyncio.sleep(_BACKOFF_S)

    async def _create_session(self, connection: Http1Connection) -> str | None:
        if self.target.bare:
            return uuid.uuid4().hex
        body = msgspec.json.encode(
            {"agentId": self.result.agent_id, "refreshIntervalMs": self.options.refresh_interval_ms}
        )
        try:
            response = await connection.request(
                self._endpoint.head("POST", "/v1/sessions", body=body), body, timeout=30.0
            )
        except HttpError as exc:
            self.result.collector.error(f"create_session:{exc.kind}")
            return None
        if response.status != 201:
            self.result.collector.error(f"create_session:{_status_kind(response)}")
            return None
        session = msgspec.json.decode(response.body)
        return str(session["conversationId"])

    # one exchange

    async def _streaming(
        self,
        connection: Http1Connection,
        conversation_id: str,
        text: str,
        expected: str,
        watchers: list[Http1Connection],
    ) -> bool:
        collector = self.result.collector
        body = _continue_body(text)
        head = self._endpoint.head(
            "POST",
            f"/v1/sessions/{conversation_id}/streamingContinue",
            body=body,
            extra="Accept: text/event-stream\r\n",
        )
        probe = StreamProbe("stream", time.monotonic(), collector.tally)
        joined: list[asyncio.Task[bool]] = []
        if watchers:
            probe.on_started = self._start_watchers(conversation_id, expected, watchers, joined)
        collector.stream_started()
        failure = await self._read_stream(connection, head, body, probe)
        failure = await self._resume(connection, conversation_id, probe, failure)
        ok = collector.finish_stream(probe, expected, failure)
        results = await asyncio.gather(*joined)
        return ok and all(results)

    def _start_watchers(
        self,
        conversation_id: str,
        expected: str,
        watchers: list[Http1Connection],
        joined: list[asyncio.Task[bool]],
    ) -> Callable[[], None]:
        def start() -> None:
            for watcher in watchers:
                joined.append(asyncio.create_task(self._watch(watcher, conversation_id, expected)))

        return start

    async def _watch(
        self, connection: Http1Connection, conversation_id: str, expected: str
    ) -> bool:
        collector = self.result.collector
        head = self._stream_head(conversation_id, None)
        probe = StreamProbe("watcher", time.monotonic(), collector.tally)
        collector.stream_started()
        failure = await self._read_stream(connection, head, b"", probe)
        if failure == "no_content":
            failure = "watcher_no_content"
        failure = await self._resume(connection, conversation_id, probe, failure)
        return collector.finish_stream(probe, expected, failure)

    def _stream_head(self, conversation_id: str, last_event_id: str | None) -> bytes:
        extra = "Accept: text/event-stream\r\n"
        if last_event_id is not None:
            extra += f"Last-Event-ID: {last_event_id}\r\n"
        return self._endpoint.head("GET", f"/v1/sessions/{conversation_id}/stream", extra=extra)

    async def _read_stream(
        self, connection: Http1Connection, head: bytes, body: bytes, probe: StreamProbe
    ) -> str | None:
        """Run one SSE request into ``probe``; the failure kind, or None."""
        collector = self.result.collector
        reader = SseReader(probe, collector.tally)
        collector.opened()
        try:
            response = await connection.request(
                head, body, sink=reader, timeout=self.options.timeout_s
            )
        except HttpError as exc:
            return exc.kind
        finally:
            collector.closed()
        if response.status == 204:
            return "no_content"
        if response.status != 200:
            return _status_kind(response)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return "not_event_stream"
        return None

    async def _resume(
        self,
        connection: Http1Connection,
        conversation_id: str,
        probe: StreamProbe,
        failure: str | None,
    ) -> str | None:
        """Follow a ``reconnect`` event or a cut stream on ``GET .../stream`` from the last id."""
        attempts = 0
        while (
            not self.target.bare
            and not probe.finished
            and failure in (None, "eof")
            and attempts < _MAX_RESUMES
        ):
            attempts += 1
            self.result.collector.resumes += 1
            probe.reconnect = False
            head = self._stream_head(conversation_id, probe.last_event_id)
            failure = await self._read_stream(connection, head, b"", probe)
        return failure

    async def _blocking(
        self, connection: Http1Connection, conversation_id: str, text: str, expected: str
    ) -> bool:
        collector = self.result.collector
        body = _continue_body(text)
        head = self._endpoint.head(
            "POST", f"/v1/sessions/{conversation_id}/blockingContinue", body=body
        )
        collector.stream_started()
        collector.opened()
        sent = time.monotonic()
        failure: str | None = None
        reply: str | None = None
        try:
            response = await connection.request(head, body, timeout=self.options.timeout_s)
        except HttpError as exc:
            failure = exc.kind
        else:
            collector.tally.bytes += len(response.body)
            failure, reply = _blocking_outcome(response)
        finally:
            collector.closed()
        latency_ms = (time.monotonic() - sent) * 1000.0
        return collector.finish_blocking(latency_ms, reply, expected, failure)


def _blocking_outcome(response: Response) -> tuple[str | None, str | None]:
    if response.status != 200:
        return _status_kind(response), None
    try:
        exchange = msgspec.json.decode(response.body, type=ExchangeWire)
    except msgspec.DecodeError:
        return "bad_body", None
    if exchange.status != "completed":
        return f"status:{exchange.status}", None
    return None, exchange.response.text


def _continue_body(text: str) -> bytes:
    return msgspec.json.encode({"userInput": {"text": text}})


def _status_kind(response: Response) -> str:
    """``http_409:session_busy`` from the error envelope, or just ``http_503``."""
    try:
        code = msgspec.json.decode(response.body)["error"]["code"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return f"http_{response.status}"
    return f"http_{response.status}:{code}"


def _brief(response: Response) -> str:
    return response.body[:200].decode(errors="replace")


async def _wait_until(event: asyncio.Event, timeout: float) -> None:
    if timeout <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def run_load(options: BenchOptions, target: Target) -> RunResult:
    return await LoadRun(options, target).execute()
