"""The official ``foundry_sdk`` client pointed at a Parley process, and Palantir names.

The SDK is synchronous (httpx underneath); tests call it from threads when something must
happen at the same time as a stream is read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import foundry_sdk

from tests.support.servers import ServerProcess

T = TypeVar("T")
SESSION_RID = "ri.aip-agents..session."


def agent_rid(agent_id: str) -> str:
    return f"ri.aip-agents..agent.{agent_id}"


def conversation_id(session_rid: str) -> str:
    assert session_rid.startswith(SESSION_RID), session_rid
    return session_rid[len(SESSION_RID) :]


def foundry(server: ServerProcess, token: str = "unused") -> foundry_sdk.FoundryClient:
    """What a user writes: the host and port, and plain HTTP set on the Config."""
    return foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(token),
        hostname=f"127.0.0.1:{server.port}",
        config=foundry_sdk.Config(scheme="http", timeout=30),
    )


@dataclass
class Streamed:
    """The byte chunks of a streamingContinue, each with when it arrived."""

    chunks: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


def read_stream(
    client: foundry_sdk.FoundryClient,
    agent: str,
    session: str,
    text: str,
    *,
    stop_after: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
    **options: Any,
) -> Streamed:
    """Read a streamingContinue as it arrives; ``stop_after`` chunks, then drop the stream."""
    streamed = Streamed()
    sessions = client.aip_agents.Agent.Session
    with sessions.with_streaming_response.streaming_continue(
        agent, session, user_input={"text": text}, parameter_inputs={}, **options
    ) as response:
        for chunk in response.iter_bytes():
            streamed.chunks.append(chunk)
            streamed.arrivals.append(time.monotonic())
            if on_chunk is not None:
                on_chunk(len(streamed.chunks))
            if stop_after is not None and len(streamed.chunks) >= stop_after:
                break
    return streamed


async def in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)
