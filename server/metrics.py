"""Prometheus metrics for ``GET /metrics``: what the engine does, counted cheaply.

The hooks run on the hot path (every flush, every delivered event), so they only bump plain
Python numbers. About once a second, and at every scrape, those are moved into
prometheus_client, whose multi-process values cost a lock and an mmap write per change.

Multi-worker: with ``PROMETHEUS_MULTIPROC_DIR`` set (``parley serve --workers N`` makes a
private one), every worker writes its values to its own files there and a scrape answered by
any worker sums them all. Without it, the process keeps a registry of its own.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from streams.events import Item
from streams.runner import RunObserver
from streams.service import ConversationService

log = logging.getLogger("parley.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every scraper reads
STATUSES = ("completed", "cancelled", "failed")
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PUBLISH_EVERY = 1.0

# When the HTTP request that started an exchange arrived. asyncio tasks copy the context
# they are created in, so the runner's tasks see the value set for their continue request.
_request_arrived: ContextVar[float | None] = ContextVar("parley_request_arrived", default=None)


def request_clock_middleware(app: ASGIApp) -> ASGIApp:
    """Stamp each request's arrival, for the first-token latency of the exchange it starts."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            _request_arrived.set(time.monotonic())
        await app(scope, receive, send)

    return middleware


class Tally:
    """A histogram's observations since the last publish: a count per bucket and a sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def drain_into(self, histogram: Histogram) -> None:
        """Add everything observed to ``histogram`` with one write per bucket, then reset.

        prometheus_client has no bulk observe; its bucket and sum values are what
        ``observe()`` increments one by one (tests pin that both ways agree).
        """
        if not any(self.counts):
            return
        for value, count in zip(histogram._buckets, self.counts, strict=True):
            if count:
                value.inc(count)
        histogram._sum.inc(self.total)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


@dataclass(frozen=True, slots=True)
class Readings:
    """Values this process reads off the running service, rather than counts from hooks."""

    open_streams: int = 0
    running_exchanges: int = 0
    subscribers: int = 0
    backlog: int = 0
    hub_reconnects: int = 0
    flush_round_trips: int = 0


def service_readings(
    service: ConversationService, open_streams: Callable[[], int]
) -> Callable[[], Readings]:
    def read() -> Readings:
        return Readings(
            open_streams=open_streams(),
            running_exchanges=service.running_count,
            subscribers=service.hub.subscriber_count,
            backlog=service.hub.backlog,
            hub_reconnects=service.hub.reconnects,
            flush_round_trips=service.batcher.batches,
        )

    return read


class Metrics(RunObserver):
    """The run observer the service calls, and the Prometheus metrics it feeds."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # In multi-process mode the metrics live in files; a registry holding them as well
        # would count this process twice.
        own = None if multiprocess_dir else CollectorRegistry()
        self.registry = own or _files_registry(multiprocess_dir or "")
        self._define(own)
        self._deltas = 0
        self._repeats = 0
        self._redis_errors = 0
        self._finished: dict[str, int] = {}
        self._refused: dict[str, int] = {}
        self._charged: dict[str, list[int]] = {}  # principal -> [exchanges, tokens]
        self._first_token = Tally(FIRST_TOKEN_BUCKETS)
        self._delivery = Tally(DELIVERY_BUCKETS)
        self._seen = Readings()

    @classmethod
    def from_env(cls) -> Metrics:
        directory = os.environ.get(MULTIPROC_ENV) or None
        if directory is None and multiprocessing.parent_process() is not None:
            log.warning(
                f"this worker's /metrics covers itself only: set {MULTIPROC_ENV} to a fresh "
                "directory to sum every worker (`parley serve` does)"
            )
        return cls(directory)

    def _define(self, registry: CollectorRegistry | None) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry, multiprocess_mode="livesum")

        self.open_streams = gauge("parley_open_streams", "SSE responses in flight.")
        self.running = gauge("parley_running_exchanges", "Exchanges generating right now.")
        self.subscribers = gauge("parley_hub_subscribers", "Watchers subscribed to the hub.")
        self.backlog = gauge(
            "parley_subscriber_backlog",
            "Events waiting in subscriber buffers for their client to take them.",
        )
        self.exchanges = Counter(
            "parley_exchanges", "Exchanges ended, by final status.", ["status"], registry=registry
        )
        for status in STATUSES:
            self.exchanges.labels(status)
        self.deltas = Counter(
            "parley_deltas_published", "Deltas flushed to Redis and published.", registry=registry
        )
        self.flushes = Counter(
            "parley_flushes",
            "Flush round trips to Redis; deltas (and exchange ends) that fall due together "
            "share one.",
            registry=registry,
        )
        self.redis_errors = Counter(
            "parley_redis_errors", "Failed Redis calls of exchange runners.", registry=registry
        )
        self.flush_repeats = Counter(
            "parley_flush_retries_deduplicated",
            "Deltas sent again after a lost reply that Redis already had: skipped, not "
            "written twice.",
            registry=registry,
        )
        self.hub_reconnects = Counter(
            "parley_hub_reconnects",
            "Times the pub/sub hub reconnected to Redis.",
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "parley_delivery_latency_seconds",
            "From an event's publish (its Redis stream id) until it is written to the client.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "parley_refusals",
            "Requests and exchanges refused by a key's limits, by reason: rate_limited, "
            "concurrency_limited, quota_exceeded.",
            ["reason"],
            registry=registry,
        )
        self.principal_exchanges = Counter(
            "parley_principal_exchanges",
            "Exchanges ended, by the principal (API key owner) that ran them.",
            ["principal"],
            registry=registry,
        )
        self.principal_tokens = Counter(
            "parley_principal_tokens",
            "Tokens used by ended exchanges, by principal.",
            ["principal"],
            registry=registry,
        )
        self.first_token_latency = Histogram(
            "parley_first_token_seconds",
            "From a continue request's arrival until the model's first token.",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )

    # --- hot-path hooks: plain arithmetic only ----------------------------------------------

    def first_token(self) -> None:
        arrived = _request_arrived.get()
        if arrived is not None:
            self._first_token.observe(time.monotonic() - arrived)

    def flushed(self, *, repeated: bool) -> None:
        if repeated:
            self._repeats += 1
        else:
            self._deltas += 1

    def redis_error(self) -> None:
        self._redis_errors += 1

    def finished(self, status: str, seconds: float) -> None:
        self._finished[status] = self._finished.get(status, 0) + 1

    def charged(self, principal: str, tokens: int) -> None:
        counts = self._charged.setdefault(principal, [0, 0])
        counts[0] += 1
        counts[1] += tokens

    def refused(self, code: str) -> None:
        self._refused[code] = self._refused.get(code, 0) + 1

    def delivered(self, item: Item) -> None:
        """An event was written to a client; its stream id's first part is the publish ms."""
        self._delivery.observe(max(0.0, time.time() - item.key[0] / 1000))

    # --- publishing ----------------------------------------------------------------------

    def publish(self, now: Readings) -> None:
        """Move what the hooks counted, and the service's readings, into the metrics."""
        self.open_streams.set(now.open_streams)
        self.running.set(now.running_exchanges)
        self.subscribers.set(now.subscribers)
        self.backlog.set(now.backlog)
        _add(self.hub_reconnects, now.hub_reconnects - self._seen.hub_reconnects)
        _add(self.flushes, now.flush_round_trips - self._seen.flush_round_trips)
        self._seen = now
        _add(self.deltas, self._deltas)
        _add(self.flush_repeats, self._repeats)
        _add(self.redis_errors, self._redis_errors)
        self._deltas = self._repeats = self._redis_errors = 0
        finished, self._finished = self._finished, {}
        for status, count in finished.items():
            self.exchanges.labels(status).inc(count)
        refused, self._refused = self._refused, {}
        for code, count in refused.items():
            self.refusals.labels(code).inc(count)
        charged, self._charged = self._charged, {}
        for principal, (exchanges, tokens) in charged.items():
            self.principal_exchanges.labels(principal).inc(exchanges)
            _add(self.principal_tokens.labels(principal), tokens)
        self._first_token.drain_into(self.first_token_latency)
        self._delivery.drain_into(self.delivery_latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process stops: its live gauges leave the sums; its counters stay in them."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def _files_registry(directory: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def _add(counter: Counter, amount: float) -> None:
    if amount > 0:
        counter.inc(amount)


@dataclass(frozen=True)
class MetricsExporter:
    """Ties the metrics to the running service: a publisher task per process, and scrapes."""

    metrics: Metrics
    read: Callable[[], Readings]
    every: float = PUBLISH_EVERY

    def scrape(self) -> bytes:
        self.metrics.publish(self.read())
        return self.metrics.render()

    @asynccontextmanager
    async def lifespan(self, _: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(self._publish_forever(), name="parley-metrics")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.metrics.publish(self.read())
            self.metrics.close()

    async def _publish_forever(self) -> None:
        """Every worker publishes on its own, so a scrape on any one sees them all."""
        while True:
            await asyncio.sleep(self.every)
            try:
                self.metrics.publish(self.read())
            except Exception:
                log.exception("publishing metrics failed")
