"""``GET /metrics``: every family present, counters moving with real exchanges, workers summed."""

from __future__ import annotations

import asyncio
import glob
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from server.cli import metrics_dir
from server.metrics import DELIVERY_BUCKETS, Metrics, Readings, Tally
from streams.events import Item
from tests.support.native import (
    blocking_continue,
    create_session,
    own_server,
    stream_reply,
    streaming,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess

KEY = "metrics-test-key"
FAMILIES = {
    "parley_open_streams": "gauge",
    "parley_running_exchanges": "gauge",
    "parley_hub_subscribers": "gauge",
    "parley_subscriber_backlog": "gauge",
    "parley_exchanges": "counter",
    "parley_deltas_published": "counter",
    "parley_flushes": "counter",
    "parley_redis_errors": "counter",
    "parley_hub_reconnects": "counter",
    "parley_delivery_latency_seconds": "histogram",
    "parley_first_token_seconds": "histogram",
}
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scraped:
    """One /metrics answer, by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f.type for f in text_string_to_metric_families(text)}
        self.samples: Scrape = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]


async def scrape(base_url: str) -> Scraped:
    """On a connection of its own, with no API key: scrapers do not authenticate."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scraped(response.text)


async def scrape_until(
    base_url: str, done: str, check: Callable[[Scraped], bool], timeout: float = 5.0
) -> Scraped:
    """Scrape until ``check(scraped)`` holds: hooks land just after the client sees the end."""
    deadline = time.monotonic() + timeout
    while True:
        scraped = await scrape(base_url)
        if check(scraped):
            return scraped
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics never showed {done}: {scraped.samples}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    """A server of this module's own, so the gauges count only this module's streams."""
    env = {"PARLEY_API_KEYS": KEY}
    with own_server(tmp_path_factory.mktemp("metrics-server"), redis_url, env) as started:
        yield started


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client(headers={"Authorization": f"Bearer {KEY}"}) as http:
        yield http


async def test_metrics_answers_every_family_without_an_api_key(server: ServerProcess) -> None:
    scraped = await scrape(server.base_url)
    assert scraped.families.items() >= FAMILIES.items()
    assert {scraped("parley_exchanges_total", status=s) for s in ("completed", "failed")} == {0}


async def test_a_streamed_exchange_moves_the_counters(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    before = await scrape(server.base_url)
    sid = (await create_session(client, agentId="echo"))["conversationId"]
    reply = await stream_reply(client, sid, words(20))
    assert reply.done["status"] == "completed"

    def completed(s: Scraped) -> bool:
        ended = s("parley_exchanges_total", status="completed")
        return ended == before("parley_exchanges_total", status="completed") + 1

    after = await scrape_until(server.base_url, "the exchange completed", completed)
    moved = {
        name: after(name) - before(name)
        for name in (
            "parley_deltas_published_total",
            "parley_flushes_total",
            "parley_first_token_seconds_count",
        )
    }
    assert moved["parley_deltas_published_total"] >= len(reply.deltas) > 1
    assert moved["parley_flushes_total"] >= 1
    assert moved["parley_first_token_seconds_count"] == 1
    assert after("parley_redis_errors_total") == before("parley_redis_errors_total") == 0


async def test_every_event_a_streaming_client_receives_is_timed_from_its_publish(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    before = await scrape(server.base_url)
    sid = (await create_session(client, agentId="echo"))["conversationId"]
    reply = await stream_reply(client, sid, words(20))
    events = len(reply.deltas) + 1  # and the done event

    def delivered(s: Scraped) -> bool:
        count = s("parley_delivery_latency_seconds_count")
        return count == before("parley_delivery_latency_seconds_count") + events

    after = await scrape_until(server.base_url, f"{events} more deliveries", delivered)
    seconds = after("parley_delivery_latency_seconds_sum") - before(
        "parley_delivery_latency_seconds_sum"
    )
    assert 0 <= seconds / events < 0.5


async def test_first_token_latency_counts_from_the_request_to_the_models_first_token(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    before = await scrape(server.base_url)
    sid = (await create_session(client, agentId="echo"))["conversationId"]
    await blocking_continue(client, sid, words(3))

    def observed(s: Scraped) -> bool:
        count = s("parley_first_token_seconds_count")
        return count == before("parley_first_token_seconds_count") + 1

    after = await scrape_until(server.base_url, "one more first token", observed)
    seconds = after("parley_first_token_seconds_sum") - before("parley_first_token_seconds_sum")
    assert 0.05 <= seconds < 2.0  # the echo model waits 50 ms before its first token


async def test_a_stream_in_flight_is_an_open_stream_and_a_running_exchange(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    sid = (await create_session(client, agentId="echo"))["conversationId"]
    async with streaming(client, sid, words(150)):  # three seconds of reply
        during = await scrape(server.base_url)
    assert during("parley_open_streams") == 1
    assert during("parley_running_exchanges") == 1
    assert during("parley_hub_subscribers") == 1
    assert during("parley_subscriber_backlog") >= 0
    await scrape_until(
        server.base_url, "the stream closed", lambda s: s("parley_open_streams") == 0
    )


async def test_two_workers_add_up_their_counters_in_the_shared_directory(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = server_factory({"PROMETHEUS_MULTIPROC_DIR": str(directory)}, workers=2)
    done = 0
    # Each request on a new connection, so either worker may take it; go on until both have.
    async with server.client(limits=httpx.Limits(max_keepalive_connections=0)) as fresh:
        while len(_exchanges_by_worker(directory)) < 2 and done < 40:
            done += await _four_exchanges(fresh)
            await scrape_until(server.base_url, f"{done} exchanges", _completed(done))
    by_worker = _exchanges_by_worker(directory)
    assert len(by_worker) == 2 and sum(by_worker.values()) == done, by_worker
    for _ in range(6):  # whichever worker answers, it reports both
        assert (await scrape(server.base_url))("parley_exchanges_total", status="completed") == done
    server.terminate()
    assert not glob.glob(str(directory / "gauge_live*")), "a stopped worker's gauges stay summed"


async def _four_exchanges(client: httpx.AsyncClient) -> int:
    sids = [(await create_session(client, agentId="echo"))["conversationId"] for _ in range(4)]
    await asyncio.gather(*(blocking_continue(client, sid, words(3)) for sid in sids))
    return len(sids)


def _completed(count: int) -> Callable[[Scraped], bool]:
    return lambda s: s("parley_exchanges_total", status="completed") == count


def _exchanges_by_worker(directory: Path) -> dict[int, float]:
    """Completed exchanges in each worker's own counter file (pid -> count), where above 0."""
    counts: dict[int, float] = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(re.findall(r"counter_(\d+)\.db$", path)[0])
        for family in MultiProcessCollector.merge([path]):
            for sample in family.samples:
                if sample.name == "parley_exchanges_total" and sample.value:
                    counts[pid] = counts.get(pid, 0) + sample.value
    return counts


# --- in-process pieces ------------------------------------------------------------------------


def test_a_drained_tally_equals_observing_one_by_one() -> None:
    values = [0.0, 0.0004, 0.001, 0.003, 0.05, 0.05, 0.7, 4.9, 5.0, 12.0]
    one_by_one, drained = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "h", buckets=DELIVERY_BUCKETS, registry=one_by_one)
    target = Histogram("h", "h", buckets=DELIVERY_BUCKETS, registry=drained)
    tally = Tally(DELIVERY_BUCKETS)
    for value in values:
        reference.observe(value)
        tally.observe(value)
    tally.drain_into(target)
    tally.drain_into(target)  # drained once: nothing more the second time
    assert _histogram_samples(drained) == _histogram_samples(one_by_one)


def _histogram_samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def test_delivery_latency_is_measured_from_the_publish_time_in_the_event_id() -> None:
    metrics = Metrics()
    published_ms = int(time.time() * 1000) - 40
    metrics.delivered(Item("delta", f"{published_ms}-3", b"{}"))
    metrics.delivered(Item("end", f"{published_ms + 10_000}-0", b"{}"))  # clock skew: 0
    metrics.publish(Readings())
    sample = metrics.registry.get_sample_value
    assert sample("parley_delivery_latency_seconds_count") == 2
    assert sample("parley_delivery_latency_seconds_bucket", {"le": "0.0025"}) == 1
    assert sample("parley_delivery_latency_seconds_bucket", {"le": "0.025"}) == 1
    assert sample("parley_delivery_latency_seconds_bucket", {"le": "0.05"}) == 2
    assert 0.04 <= (sample("parley_delivery_latency_seconds_sum") or 0) < 0.05


def test_readings_become_gauges_and_growing_totals_become_counters() -> None:
    metrics = Metrics()
    metrics.publish(Readings(open_streams=3, backlog=7, hub_reconnects=2, flush_round_trips=10))
    metrics.publish(Readings(open_streams=1, backlog=0, hub_reconnects=3, flush_round_trips=25))
    sample = metrics.registry.get_sample_value
    assert (sample("parley_open_streams"), sample("parley_subscriber_backlog")) == (1, 0)
    assert sample("parley_hub_reconnects_total") == 3
    assert sample("parley_flushes_total") == 25


def test_parley_serve_gives_several_workers_a_fresh_directory_and_removes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with metrics_dir(workers=2):
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir() and not any(made.iterdir())
    assert not made.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_one_worker_needs_no_directory_and_a_named_one_is_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with metrics_dir(workers=1):
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    named = tmp_path / "mine"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(named))
    with metrics_dir(workers=2):
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(named)
    assert named.is_dir()
