"""Counters and samples of one load run, filled as streams finish.

Delta spacing is judged against the spacing the flush policy promises: one delta per
refresh interval, or one per token when the model is slower than the interval, i.e.
``expected = max(interval, 1 / tokensPerSecond)``. Two views of it are kept:

- ``lateness``: ``max(0, gap - expected)`` over every gap between consecutive deltas. Only
  the positive part is meaningful for a bar: one delta held up by ``x`` makes its gap
  ``expected + x`` and the next one ``expected - x``; counting both would cancel out.
- ``spacing``: the signed ``gap - expected`` of the primary streams (watchers start with a
  replay burst). Strongly negative values are deltas that arrived closer together than the
  interval: a throttle bug, or a burst after a stall (the client's or the server's).

Lateness sees jitter, not a constant delay; ``delivery`` (arrival wall time minus the
millisecond stamp in the delta's ``id``) sees the whole flush-to-client delay, and is only
meaningful with client and server on one clock, i.e. on one machine.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

from server.bench.probe import StreamProbe, Tally, judge


class Collector:
    """Live counters (read by the progress line) and samples (read by the report)."""

    def __init__(self, expected_spacing_s: float) -> None:
        self.expected_spacing = expected_spacing_s
        self.open_streams = 0
        self.peak_open = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.exchanges = 0  # ended, however: what a server's Redis keeps logs of
        self.tally = Tally()
        self.resumes = 0
        self.errors: Counter[str] = Counter()
        self.integrity: Counter[str] = Counter()
        self.ttfd_ms = array("d")
        self.lateness_ms = array("d")
        self.spacing_ms = array("d")
        self.delivery_ms = array("d")
        self.blocking_ms = array("d")
        self.client_lag_ms = array("d")

    def stream_started(self) -> None:
        self.started += 1

    def opened(self) -> None:
        self.open_streams += 1
        if self.open_streams > self.peak_open:
            self.peak_open = self.open_streams

    def closed(self) -> None:
        self.open_streams -= 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def finish_stream(self, probe: StreamProbe, expected: str | None, failure: str | None) -> bool:
        """Record a finished SSE response; True when it completed with the right text."""
        self._record_timing(probe)
        kind = failure or _failure_of(probe)
        if kind is not None:
            self.failed += 1
            self.error(kind)
            return False
        assert probe.done is not None
        verdict = judge(probe.text(), probe.done.response.text, expected, probe.out_of_order)
        self.integrity[verdict] += 1
        self.completed += 1
        return verdict == "ok"

    def finish_blocking(
        self, latency_ms: float, text: str | None, expected: str | None, failure: str | None
    ) -> bool:
        if failure is not None or text is None:
            self.failed += 1
            self.error(failure or "no_body")
            return False
        self.blocking_ms.append(latency_ms)
        verdict = judge(text, text, expected, False)
        self.integrity[verdict] += 1
        self.completed += 1
        return verdict == "ok"

    def _record_timing(self, probe: StreamProbe) -> None:
        arrivals = probe.arrivals
        if not arrivals:
            return
        if probe.role == "stream":
            self.ttfd_ms.append((arrivals[0] - probe.sent_at) * 1000.0)
        self.delivery_ms.extend(probe.delivery_ms)
        expected = self.expected_spacing
        primary = probe.role == "stream"
        for i in range(1, len(arrivals)):
            error_ms = (arrivals[i] - arrivals[i - 1] - expected) * 1000.0
            self.lateness_ms.append(error_ms if error_ms > 0.0 else 0.0)
            if primary:
                self.spacing_ms.append(error_ms)

    def integrity_failures(self) -> int:
        return sum(n for verdict, n in self.integrity.items() if verdict != "ok")


def _failure_of(probe: StreamProbe) -> str | None:
    if probe.error_code is not None:
        return f"error_event:{probe.error_code}"
    if probe.done is None:
        return "no_done_event"
    if probe.done.status != "completed":
        return f"status:{probe.done.status}"
    return None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[rank]
