"""The live progress line on stderr: rewritten every second on a terminal, else every 5 s."""

from __future__ import annotations

import asyncio
import sys
import time

from server.bench.stats import Collector

_PLAIN_EVERY = 5


class Progress:
    def __init__(self, label: str, collector: Collector, started: float) -> None:
        self._label = label
        self._collector = collector
        self._started = started
        self._tty = sys.stderr.isatty()

    async def run(self) -> None:
        tally = self._collector.tally
        last_events, ticks = tally.events, 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            rate, last_events = tally.events - last_events, tally.events
            if self._tty:
                sys.stderr.write(f"\r{self._line(rate)}\x1b[K")
            elif ticks % _PLAIN_EVERY == 0:
                sys.stderr.write(self._line(rate) + "\n")
            sys.stderr.flush()

    def _line(self, events_per_s: int) -> str:
        c = self._collector
        errors = sum(c.errors.values())
        return (
            f"[{self._label}] {time.monotonic() - self._started:6.1f}s  "
            f"open {c.open_streams:>6}  events/s {events_per_s:>7}  "
            f"done {c.completed:>7}  failed {c.failed:>5}  errors {errors:>5}"
        )

    @staticmethod
    def clear() -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
