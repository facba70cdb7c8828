"""Agno AgentOS tests: the official ``AgentOSClient`` on a Parley process, raw run frames, and
Agno's own serializer to hold them against.

The client is async and shares one global httpx client per event loop (agno's own), which
is fine here: every test runs on the session's loop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from agno.client import AgentOSClient
from agno.os.utils import format_sse_event
from agno.run.agent import run_output_event_from_dict

from tests.support.servers import ServerProcess


def agno_client(server: ServerProcess) -> AgentOSClient:
    return AgentOSClient(base_url=server.base_url, timeout=30)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def dashed(hex_id: str) -> str:
    """The dashed UUID an Agno client would use for Parley's undashed id."""
    return str(uuid.UUID(hex_id))


async def new_agent(http: httpx.AsyncClient, **fields: Any) -> str:
    """A synthetic echo agent of the test's own, so listings filtered by it hold only its
    sessions. ``fields`` (camelCase) override the native POST /v1/agents body."""
    agent_id = f"agno-{uuid.uuid4().hex[:10]}"
    body = {
        "agentId": agent_id,
        "name": "Agno test agent",
        "model": {
            "provider": "synthetic",
            "name": "synthetic-echo",
            "params": {"mode": "echo", "tokensPerSecond": 50},
        },
        **fields,
    }
    response = await http.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return agent_id


@dataclass(frozen=True)
class Frame:
    """One SSE block of a run: its ``event:`` name, its ``data:`` JSON and its exact bytes."""

    event: str
    data: dict[str, Any]
    raw: bytes
    received_at: float

    def as_agno_sends_it(self) -> bytes:
        """The bytes AgentOS itself would send for this event (agno's own classes)."""
        event = run_output_event_from_dict(json.loads(json.dumps(self.data)))
        return format_sse_event(event).encode()


@dataclass
class RunFrames:
    response: httpx.Response
    frames: list[Frame] = field(default_factory=list)
    comments: list[bytes] = field(default_factory=list)

    @property
    def events(self) -> list[str]:
        return [frame.event for frame in self.frames]

    @property
    def content(self) -> str:
        return "".join(f.data["content"] for f in self.frames if f.event == "RunContent")

    def last(self, event: str) -> Frame:
        return [frame for frame in self.frames if frame.event == event][-1]


def parse_block(block: bytes, received_at: float) -> Frame:
    """``event: Name\\ndata: {one line}``, nothing else, or the test fails."""
    head, _, data = block.partition(b"\ndata: ")
    assert head.startswith(b"event: ") and b"\n" not in data, block
    event = head.removeprefix(b"event: ").decode()
    payload = json.loads(data)
    assert payload["event"] == event, block
    return Frame(event, payload, block + b"\n\n", received_at)


async def read_frames(response: httpx.Response, into: RunFrames) -> None:
    """Read blocks as they arrive until the stream ends."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            if block.startswith(b":"):
                into.comments.append(block + b"\n\n")
            else:
                into.frames.append(parse_block(block, time.monotonic()))
    assert buffer == b"", buffer


@asynccontextmanager
async def open_run(
    http: httpx.AsyncClient, agent_id: str, message: str, **form: str
) -> AsyncIterator[httpx.Response]:
    data = {"message": message, "stream": "true", **form}
    async with http.stream("POST", f"/agents/{agent_id}/runs", data=data) as response:
        yield response


async def run_frames(
    http: httpx.AsyncClient, agent_id: str, message: str, **form: str
) -> RunFrames:
    """A streamed run read to its end with raw httpx."""
    async with open_run(http, agent_id, message, **form) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        received = RunFrames(response)
        await read_frames(response, received)
    return received
