"""Helpers for agent and upstream tests: a Parley server wired to the fake upstream, and calls.

The server's keys are fake but distinctive, so a test can grep every response body and the
server's log files for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

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


async def new_session(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> str:
    response = await client.post("/v1/sessions", json={"agentId": agent_id, **fields})
    assert response.status_code == 201, response.text
    sid: str = response.json()["conversationId"]
    return sid


async def ask(client: httpx.AsyncClient, sid: str, text: str) -> dict[str, Any]:
    """blockingContinue; asserts 200 and returns the Exchange."""
    response = await client.post(
        f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": text}}
    )
    assert response.status_code == 200, response.text
    exchange: dict[str, Any] = response.json()
    return exchange


async def ask_streaming(
    client: httpx.AsyncClient, sid: str, text: str
) -> tuple[httpx.Response, list[SseEvent]]:
    return await stream_events(
        client,
        "POST",
        f"/v1/sessions/{sid}/streamingContinue",
        json_body={"userInput": {"text": text}},
        max_seconds=20,
    )


async def session(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/sessions/{sid}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def exchanges(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/sessions/{sid}/exchanges", params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def usage_sum(items: list[Mapping[str, Any]]) -> dict[str, int]:
    fields = (
        "inputTokens",
        "outputTokens",
        "cacheReadInputTokens",
        "cacheCreationInputTokens",
        "totalTokens",
    )
    return {name: sum(int(item["usage"][name]) for item in items) for name in fields}
