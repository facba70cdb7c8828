"""Helpers for agent and upstream tests: a Parley server wired to the fake upstream, and agents.

Sessions and exchanges are read and written with the helpers of tests/support/native.py.

The server's keys are fake but distinctive, so a test can grep every response body and the
server's log files for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.native import continue_body, create_sid
from tests.support.servers import ServerProcess, new_key_prefix, start_server
from tests.support.sse import SseEvent, stream_events
from tests.support.upstream import UpstreamServer

OPENAI_KEY = "sk-parley-e2e-SECRET-openai-7d1e9b"
ANTHROPIC_KEY = "sk-ant-parley-e2e-SECRET-4c2f80"
TEAM_KEY = "sk-parley-e2e-SECRET-team-a91f3c"
TEAM_KEY_ENV = "PARLEY_UPSTREAM_KEY_TEAM"
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, TEAM_KEY)


def upstream_env(upstream: UpstreamServer, **overrides: str | None) -> dict[str, str | None]:
    """Settings pointing both providers at the fake upstream, with short upstream deadlines."""
    env: dict[str, str | None] = {
        "PARLEY_OPENAI_BASE_URL": upstream.openai_base_url,
        "PARLEY_OPENAI_API_KEY": OPENAI_KEY,
        "PARLEY_ANTHROPIC_BASE_URL": upstream.anthropic_base_url,
        "PARLEY_ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        TEAM_KEY_ENV: TEAM_KEY,
        "PARLEY_UPSTREAM_CONNECT_TIMEOUT_SECONDS": "1",
        "PARLEY_UPSTREAM_FIRST_TOKEN_TIMEOUT_SECONDS": "0.8",
        "PARLEY_UPSTREAM_IDLE_TIMEOUT_SECONDS": "0.5",
        "PARLEY_UPSTREAM_MAX_RETRIES": "1",
        "PARLEY_UPSTREAM_MAX_RETRY_WAIT_SECONDS": "5",
        "PARLEY_LOG_LEVEL": "debug",
    }
    env.update(overrides)
    return env


def start_upstream_server(
    log_dir: Path, redis_url: str, upstream: UpstreamServer, **overrides: str | None
) -> ServerProcess:
    return start_server(
        log_dir,
        redis_url=redis_url,
        key_prefix=new_key_prefix("a"),
        env=upstream_env(upstream, **overrides),
    )


def new_agent_id(stem: str = "agent") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def agent_body(provider: str = "openai", **fields: Any) -> dict[str, Any]:
    """A POST /v1/agents body; ``fields`` (camelCase) override the defaults."""
    model_names = {"openai": "gpt-test", "anthropic": "claude-test", "synthetic": "synthetic-echo"}
    body: dict[str, Any] = {
        "agentId": new_agent_id(provider),
        "name": f"{provider} test agent",
        "instructions": "You are a test agent.",
        "model": {"provider": provider, "name": model_names[provider], "params": {}},
        "defaultRefreshIntervalMs": 50,
    }
    body.update(fields)
    return body


async def create_agent(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def agent_session(client: httpx.AsyncClient, provider: str = "openai", **fields: Any) -> str:
    """A new agent of ``provider`` (``fields`` override ``agent_body``'s), and a session on it."""
    agent = await create_agent(client, **agent_body(provider, **fields))
    return await create_sid(client, agentId=agent["agentId"])


async def ask_streaming(
    client: httpx.AsyncClient, sid: str, text: str
) -> tuple[httpx.Response, list[SseEvent]]:
    return await stream_events(
        client,
        "POST",
        f"/v1/sessions/{sid}/streamingContinue",
        json_body=continue_body(text),
        max_seconds=20,
    )


def usage_sum(items: list[Mapping[str, Any]]) -> dict[str, int]:
    fields = (
        "inputTokens",
        "outputTokens",
        "cacheReadInputTokens",
        "cacheCreationInputTokens",
        "totalTokens",
    )
    return {name: sum(int(item["usage"][name]) for item in items) for name in fields}
