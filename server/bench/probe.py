"""What the load generator records about one response, and how a finished one is judged."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import msgspec

Role = Literal["stream", "watcher", "blocking"]
Verdict = Literal["ok", "lost", "duplicated", "corrupt"]

_WALL_OFFSET = time.time() - time.monotonic()


class DeltaWire(msgspec.Struct, gc=False):
    seq: int
    text: str


class ResponseWire(msgspec.Struct, gc=False):
    text: str


class ExchangeWire(msgspec.Struct, gc=False, rename="camel"):
    status: str
    response: ResponseWire
    exchange_id: str = ""


class ErrorWire(msgspec.Struct, gc=False):
    code: str = "unknown"
    message: str = ""
    retryable: bool = False


_decode_delta = msgspec.json.Decoder(DeltaWire).decode
_decode_exchange = msgspec.json.Decoder(ExchangeWire).decode
_decode_error = msgspec.json.Decoder(ErrorWire).decode


class Tally:
    """Live totals shared by every probe and reader of a run, for progress and rates."""

    __slots__ = ("bytes", "deltas", "events")

    def __init__(self) -> None:
        self.events = 0
        self.deltas = 0
        self.bytes = 0


class StreamProbe:
    """The record of one SSE response (or one resumed series of them), fed event by event.

    Kept lean: ``on_event`` runs for every delta of every stream in one process.
    """

    __slots__ = (
        "arrivals",
        "delivery_ms",
        "done",
        "error_code",
        "events",
        "exchange_id",
        "last_id",
        "on_started",
        "out_of_order",
        "parts",
        "reconnect",
        "role",
        "sent_at",
        "seq",
        "tally",
    )

    def __init__(self, role: Role, sent_at: float, tally: Tally) -> None:
        self.role: Role = role
        self.tally = tally
        self.sent_at = sent_at
        self.arrivals: list[float] = []
        self.delivery_ms: list[float] = []
        self.parts: list[str] = []
        self.events = 0
        self.seq = -1
        self.last_id: tuple[int, int] = (-1, -1)
        self.out_of_order = False
        self.exchange_id = ""
        self.done: ExchangeWire | None = None
        self.error_code: str | None = None
        self.reconnect = False
        self.on_started: Callable[[], None] | None = None

    @property
    def last_event_id(self) -> str | None:
        return None if self.last_id[0] < 0 else f"{self.last_id[0]}-{self.last_id[1]}"

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error_code is not None

    def on_event(self, event: bytes, data: bytes, event_id: bytes | None, now: float) -> None:
        self.events += 1
        self.tally.events += 1
        if event == b"delta":
            self._on_delta(data, event_id, now)
        elif event == b"done":
            self._track_id(event_id)
            self.done = _decode_exchange(data)
        elif event == b"started":
            self._on_started(data)
        elif event == b"error":
            self._track_id(event_id)
            self.error_code = _decode_error(data).code if data else "unknown"
        elif event == b"reconnect":
            self.reconnect = True

    def _on_delta(self, data: bytes, event_id: bytes | None, now: float) -> None:
        delta = _decode_delta(data)
        self.tally.deltas += 1
        if delta.seq <= self.seq:
            self.out_of_order = True
        self.seq = delta.seq
        self.parts.append(delta.text)
        self.arrivals.append(now)
        if event_id is not None:
            millis = self._track_id(event_id)
            self.delivery_ms.append((now + _WALL_OFFSET) * 1000.0 - millis)

    def _track_id(self, event_id: bytes | None) -> int:
        if event_id is None:
            return 0
        millis, _, counter = event_id.partition(b"-")
        key = (int(millis), int(counter or 0))
        if key <= self.last_id:
            self.out_of_order = True
        self.last_id = key
        return key[0]

    def _on_started(self, data: bytes) -> None:
        if data:
            started = msgspec.json.decode(data)
            if isinstance(started, dict):
                self.exchange_id = str(started.get("exchangeId", ""))
        if self.on_started is not None:
            self.on_started()
            self.on_started = None

    def text(self) -> str:
        return "".join(self.parts)


def judge(reassembled: str, done_text: str, expected: str | None, out_of_order: bool) -> Verdict:
    """Classify a completed stream.

    ``duplicated``: ids or seqs went backwards, or text repeats past the expected end;
    ``lost``: the deltas are a strict prefix of the final text, or text is missing from them;
    ``corrupt``: anything else that does not match. ``expected`` None skips the model check.
    """
    truth = done_text if expected is None else expected
    if reassembled == done_text == truth and not out_of_order:
        return "ok"
    if out_of_order or len(reassembled) > len(truth):
        return "duplicated"
    if len(reassembled) < len(truth) and _is_subsequence(reassembled, truth):
        return "lost"
    return "corrupt"


def _is_subsequence(part: str, whole: str) -> bool:
    it = iter(whole)
    return all(ch in it for ch in part)
