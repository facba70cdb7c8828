"""Palantir AIP Agents v2 over a real model upstream (the fake OpenAI server): what the model
is sent for a turn's parameters, and the SDK's own errors when the model fails."""

from __future__ import annotations

import foundry_sdk
import httpx
import pytest
from foundry_sdk.v2.aip_agents import errors as palantir_errors

from tests.support.agents import agent_body, create_agent
from tests.support.palantir import agent_rid, foundry
from tests.support.servers import ServerProcess
from tests.support.upstream import Reply, UpstreamServer


async def openai_agent(http: httpx.AsyncClient) -> str:
    agent = await create_agent(http, **agent_body("openai", instructions="Be brief."))
    return agent_rid(agent["agentId"])


async def test_string_parameters_reach_the_model_after_the_instructions(
    http: httpx.AsyncClient, parley: ServerProcess, upstream: UpstreamServer
) -> None:
    agent = await openai_agent(http)
    sessions = foundry(parley).aip_agents.Agent.Session
    session = sessions.create(agent)

    sessions.blocking_continue(
        agent,
        session.rid,
        user_input={"text": "Summarise"},
        parameter_inputs={
            "tone": {"type": "string", "value": "dry"},
            "audience": {"type": "string", "value": "engineers"},
        },
    )

    system, user = upstream.requests[-1].body["messages"]
    assert system == {
        "role": "system",
        "content": "Be brief.\n\nParameters:\ntone: dry\naudience: engineers",
    }
    assert user == {"role": "user", "content": "Summarise"}


async def test_a_rate_limited_model_raises_rate_limit_exceeded(
    http: httpx.AsyncClient, parley: ServerProcess, upstream: UpstreamServer
) -> None:
    agent = await openai_agent(http)
    sessions = foundry(parley).aip_agents.Agent.Session
    session = sessions.create(agent)
    upstream.queue(*(Reply(status=429, retry_after="0", error_message="Slow down."),) * 2)

    with pytest.raises(palantir_errors.RateLimitExceeded) as raised:
        sessions.blocking_continue(
            agent, session.rid, user_input={"text": "hi"}, parameter_inputs={}
        )
    assert "Slow down." in raised.value.parameters["details"]


async def test_a_failing_model_answers_session_execution_failed(
    http: httpx.AsyncClient, parley: ServerProcess, upstream: UpstreamServer
) -> None:
    agent = await openai_agent(http)
    sessions = foundry(parley).aip_agents.Agent.Session
    session = sessions.create(agent)
    upstream.queue(Reply(pieces=("Half",), drop_after=1))

    with pytest.raises(foundry_sdk.InternalServerError) as raised:
        sessions.blocking_continue(
            agent, session.rid, user_input={"text": "hi"}, parameter_inputs={}
        )
    assert raised.value.name == "SessionExecutionFailed"
    assert raised.value.parameters["details"] == "upstream_disconnected"
