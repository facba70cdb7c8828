"""A streamed run as AgentOS sends it: ``event: <Name>`` and one line of compact JSON.

RunStarted, then a RunContent per delta (at the session's refresh interval), then
RunCompleted, RunError or RunCancelled. Keepalives are SSE comments, which Agno's client
skips. There is no resume in Agno, so at shutdown the stream just ends. Each item's frame is
rendered once and cached on the item for every Agno watcher of the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypedDict

import msgspec

from server.surfaces.agno.wire import (
    RunCancelled,
    RunCompleted,
    RunContent,
    RunError,
    RunStarted,
    run_metrics,
    seconds,
)
from streams.agents import Agent
from streams.events import Item, stream_key
from streams.watch import Ping, Reconnect, Watch

SURFACE = "agno"
PING_FRAME = b": ping\n\n"
_encode = msgspec.json.Encoder().encode


class Head(TypedDict):
    """The fields every agent run event starts with, in Agno's order."""

    created_at: int
    event: str
    agent_id: str
    agent_name: str
    run_id: str
    session_id: str
    nested_depth: int


@dataclass(frozen=True, slots=True)
class Run:
    """What every event of one run repeats."""

    agent: Agent
    session_id: str
    run_id: str

    def head(self, event: str, created_ms: int) -> Head:
        return Head(
            created_at=seconds(created_ms),
            event=event,
            agent_id=self.agent.agent_id,
            agent_name=self.agent.name,
            run_id=self.run_id,
            session_id=self.session_id,
            nested_depth=0,
        )


def frame(event: RunStarted | RunContent | RunCompleted | RunError | RunCancelled) -> bytes:
    return b"event: " + event.event.encode() + b"\ndata: " + _encode(event) + b"\n\n"


def started_frame(run: Run, created_ms: int) -> bytes:
    model = run.agent.model
    head = run.head("RunStarted", created_ms)
    return frame(RunStarted(**head, model=model.name, model_provider=model.provider))


def item_frame(item: Item, run: Run) -> bytes:
    cached = item.frames.get(SURFACE)
    if cached is None:
        cached = item.frames[SURFACE] = _render(item, run)
    return cached


def _render(item: Item, run: Run) -> bytes:
    """An event is stamped with the time Redis logged its item: the same for every watcher."""
    at = stream_key(item.id)[0]
    if item.kind == "delta":
        text = item.delta().text
        head = run.head("RunContent", at)
        return frame(RunContent(**head, content=text, workflow_agent=False, content_type="str"))
    x = item.exchange()
    if x.status == "completed":
        head = run.head("RunCompleted", at)
        metrics = run_metrics(x)
        return frame(
            RunCompleted(**head, content=x.reply_text, content_type="str", metrics=metrics)
        )
    if x.status == "cancelled":
        reason = f"Run {run.run_id} was cancelled"
        head = run.head("RunCancelled", at)
        return frame(RunCancelled(**head, content=x.reply_text or reason, reason=reason))
    message = x.error.message if x.error else "the run failed"
    error_type = x.error.code if x.error else None
    return frame(RunError(**run.head("RunError", at), content=message, error_type=error_type))


async def run_frames(
    watch: Watch, run: Run, opening: bytes, on_sent: Callable[[Item], None] | None = None
) -> AsyncIterator[bytes]:
    """``on_sent(item)`` runs once an item's frame is written."""
    yield opening
    async for event in watch.events():
        if isinstance(event, Ping):
            yield PING_FRAME
        elif isinstance(event, Reconnect):
            return
        else:
            yield item_frame(event, run)
            if on_sent is not None:
                on_sent(event)
