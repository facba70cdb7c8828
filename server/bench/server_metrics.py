"""What Parley's own ``/metrics`` says after a bench: the server's side of the same run."""

from __future__ import annotations

import math

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


class Quantiles(msgspec.Struct, rename="camel", kw_only=True):
    """From histogram buckets, so each figure is the bucket's upper bound: "at most"."""

    count: int
    p50_ms_at_most: float | None
    p99_ms_at_most: float | None


class ServerMetrics(msgspec.Struct, rename="camel", kw_only=True):
    exchanges: dict[str, int]
    deltas_published: int
    flushes: int
    redis_errors: int
    hub_reconnects: int
    delivery_latency: Quantiles
    first_token: Quantiles

    @property
    def deltas_per_flush(self) -> float | None:
        return self.deltas_published / self.flushes if self.flushes else None


def read_server_metrics(url: str) -> ServerMetrics:
    response = httpx.get(f"{url}/metrics", timeout=10.0)
    response.raise_for_status()
    return parse(response.text)


def parse(text: str) -> ServerMetrics:
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        samples[family.name] = list(family.samples)

    def total(name: str) -> int:
        return int(sum(s.value for s in samples.get(name, [])))

    return ServerMetrics(
        exchanges={s.labels["status"]: int(s.value) for s in samples.get("parley_exchanges", [])},
        deltas_published=total("parley_deltas_published"),
        flushes=total("parley_flushes"),
        redis_errors=total("parley_redis_errors"),
        hub_reconnects=total("parley_hub_reconnects"),
        delivery_latency=quantiles(samples.get("parley_delivery_latency_seconds", [])),
        first_token=quantiles(samples.get("parley_first_token_seconds", [])),
    )


def quantiles(samples: list[Sample]) -> Quantiles:
    buckets = sorted(
        (float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")
    )
    count = int(buckets[-1][1]) if buckets else 0

    def at_most(q: float) -> float | None:
        for bound, cumulative in buckets:
            if count and cumulative >= q * count:
                return None if math.isinf(bound) else bound * 1000
        return None

    return Quantiles(count=count, p50_ms_at_most=at_most(0.5), p99_ms_at_most=at_most(0.99))


def summary(m: ServerMetrics) -> str:
    ended = ", ".join(f"{status} {n:,}" for status, n in sorted(m.exchanges.items()))
    per_flush = m.deltas_per_flush
    batching = f" ({per_flush:.1f} per round trip)" if per_flush else ""
    return "\n".join(
        [
            "Parley /metrics (all workers, whole run)",
            f"  exchanges ended      {ended}",
            f"  deltas published     {m.deltas_published:,} in {m.flushes:,} flush round "
            f"trips{batching}",
            f"  publish to delivery  {_quantile_line(m.delivery_latency)}",
            f"  first token          {_quantile_line(m.first_token)}",
            f"  Redis errors         {m.redis_errors:,}; hub reconnects {m.hub_reconnects:,}",
        ]
    )


def _quantile_line(q: Quantiles) -> str:
    def bound(value: float | None) -> str:
        return "over the top bucket" if value is None else f"<= {value:g} ms"

    if not q.count:
        return "no observations"
    return f"p50 {bound(q.p50_ms_at_most)}, p99 {bound(q.p99_ms_at_most)} ({q.count:,} observed)"
