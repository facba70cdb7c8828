"""PARLEY_AGENTS_FILE: agents load at start, versions bump only on change, bad files are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.agents_file import AgentsFileError, load_agents_file
from streams.agent_checks import check_agent
from streams.agents import Agent
from streams.backends.makers import ProviderDefaults, UpstreamMakers
from streams.backends.upstreams import UpstreamBackends
from tests.support.agents import new_agent_id, upstream_env
from tests.support.native import blocking_continue, create_sid
from tests.support.servers import ServerFactory, ServerStartError
from tests.support.upstream import UpstreamServer

SUPPORT_AGENT = """
[[agents]]
agentId = "{agent_id}"
name = "Support"
description = "Answers questions about the product."
instructions = \"\"\"{instructions}\"\"\"
defaultRefreshIntervalMs = 100
contextBudgetTokens = 8000
metadata = {{ team = "support" }}

[agents.model]
provider = "openai"
name = "gpt-4o-mini"
params = {{ temperature = 0.2, maxOutputTokens = 512 }}
"""

ECHO_AGENT = """
[[agents]]
agentId = "{agent_id}"
name = "Echo"
model = {{ provider = "synthetic", name = "synthetic-echo", params = {{ mode = "echo" }} }}
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def support_file(path: Path, agent_id: str, instructions: str = "Be helpful.") -> str:
    return write(path, SUPPORT_AGENT.format(agent_id=agent_id, instructions=instructions))


def load(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[Agent]:
    makers = UpstreamMakers(
        UpstreamBackends(),
        {"openai": ProviderDefaults("http://127.0.0.1:9/v1", "k"), "anthropic": ProviderDefaults()},
        environ or {},
    )
    path = write(tmp_path / "agents.toml", text)
    return load_agents_file(path, lambda agent: check_agent(agent, makers.check))


# --- served at start ------------------------------------------------------------------------


async def test_the_file_s_agents_are_served_from_the_start(
    server_factory: ServerFactory, upstream: UpstreamServer, tmp_path: Path
) -> None:
    support, echo = new_agent_id("support"), new_agent_id("echo")
    path = write(
        tmp_path / "agents.toml",
        SUPPORT_AGENT.format(agent_id=support, instructions="Be helpful.")
        + ECHO_AGENT.format(agent_id=echo),
    )
    server = server_factory(upstream_env(upstream, PARLEY_AGENTS_FILE=path))

    async with server.client() as client:
        listed = (await client.get("/v1/agents", params={"limit": 100})).json()["data"]
        sid = await create_sid(client, agentId=support)
        await blocking_continue(client, sid, "hello")
        echoed = await blocking_continue(
            client, await create_sid(client, agentId=echo), "back at you"
        )

    by_id = {agent["agentId"]: agent for agent in listed}
    assert by_id[support]["version"] == 1
    assert by_id[support]["model"]["params"] == {"temperature": 0.2, "maxOutputTokens": 512}
    assert by_id[support]["metadata"] == {"team": "support"}
    assert upstream.requests[-1].body["messages"][0]["content"] == "Be helpful."
    assert upstream.requests[-1].body["max_completion_tokens"] == 512
    assert echoed["response"]["text"] == "back at you"


async def test_versions_follow_changes_to_the_file_not_restarts(
    server_factory: ServerFactory, upstream: UpstreamServer, tmp_path: Path
) -> None:
    agent_id = new_agent_id("support")
    path = support_file(tmp_path / "agents.toml", agent_id, "First rules.")
    env = upstream_env(upstream, PARLEY_AGENTS_FILE=path)

    server_factory(env).terminate()
    server_factory(env).terminate()
    support_file(tmp_path / "agents.toml", agent_id, "Second rules.")
    server = server_factory(env)

    async with server.client() as client:
        versions = (await client.get(f"/v1/agents/{agent_id}/versions")).json()["data"]

    assert [(v["version"], v["instructions"]) for v in versions] == [
        (1, "First rules."),
        (2, "Second rules."),
    ]


# --- refused --------------------------------------------------------------------------------


def test_a_bad_file_stops_the_server_naming_the_file_the_agent_and_the_field(
    server_factory: ServerFactory, upstream: UpstreamServer, tmp_path: Path
) -> None:
    agent_id = new_agent_id("broken")
    bad = SUPPORT_AGENT.replace("temperature = 0.2", "temprature = 0.2")
    path = write(tmp_path / "broken.toml", bad.format(agent_id=agent_id, instructions="x"))

    with pytest.raises(ServerStartError) as failed:
        server_factory(upstream_env(upstream, PARLEY_AGENTS_FILE=path))

    message = str(failed.value)
    assert path in message
    assert f'agent "{agent_id}"' in message
    assert "model.params" in message
    assert "temprature" in message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentsFileError, match="cannot read it"):
        load_agents_file(str(tmp_path / "nowhere.toml"), lambda _agent: None)


def test_broken_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentsFileError, match="not valid TOML"):
        load('[[agents]]\nagentId = "a\n', tmp_path)


def test_a_misspelt_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentsFileError, match=r"unknown top-level key 'agent'; use \[\[agents\]\]"):
        load('[[agent]]\nagentId = "a"\nname = "A"\n', tmp_path)


def test_an_unknown_field_names_the_agent_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(AgentsFileError) as failed:
        load('[[agents]]\nagentId = "helper"\nname = "H"\ninstruction = "typo"\n', tmp_path)

    assert 'agent "helper"' in str(failed.value)
    assert "instruction" in str(failed.value)


def test_an_out_of_range_value_names_the_field(tmp_path: Path) -> None:
    text = '[[agents]]\nagentId = "fast"\nname = "F"\ndefaultRefreshIntervalMs = 5\n'

    with pytest.raises(AgentsFileError, match='agent "fast", field defaultRefreshIntervalMs'):
        load(text, tmp_path)


def test_an_agent_without_an_id_is_named_by_its_position(tmp_path: Path) -> None:
    text = '[[agents]]\nagentId = "one"\nname = "One"\n\n[[agents]]\nname = "Two"\n'

    with pytest.raises(AgentsFileError, match='agent "#2", field agentId'):
        load(text, tmp_path)


def test_the_same_agent_twice_is_refused(tmp_path: Path) -> None:
    text = '[[agents]]\nagentId = "twin"\nname = "A"\n\n[[agents]]\nagentId = "twin"\nname = "B"\n'

    with pytest.raises(AgentsFileError, match='agent "twin" is declared twice'):
        load(text, tmp_path)


def test_a_key_variable_that_is_unset_is_refused(tmp_path: Path) -> None:
    text = SUPPORT_AGENT.format(agent_id="keyed", instructions="x")
    text += '\n[agents.upstream]\napiKeyEnv = "PARLEY_UPSTREAM_KEY_SUPPORT"\n'

    with pytest.raises(AgentsFileError) as failed:
        load(text, tmp_path)
    agents = load(text, tmp_path, {"PARLEY_UPSTREAM_KEY_SUPPORT": "sk-file"})

    assert 'agent "keyed", field upstream.apiKeyEnv' in str(failed.value)
    assert "PARLEY_UPSTREAM_KEY_SUPPORT" in str(failed.value)
    assert agents[0].upstream is not None
    assert agents[0].upstream.api_key_env == "PARLEY_UPSTREAM_KEY_SUPPORT"
