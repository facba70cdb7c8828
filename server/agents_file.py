"""``PARLEY_AGENTS_FILE``: agents declared in a TOML file, so a deployment keeps them in git.

The file is a list of ``[[agents]]`` tables with the same camelCase fields as
``POST /v1/agents``. It is validated whole before anything is written; a bad file stops the
server with one message naming the file, the agent and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from server.surfaces.native.agent_wire import CreateAgent
from server.toml_file import TomlFileError, read_tables
from streams.agents import Agent
from streams.errors import InvalidInput


class AgentsFileError(TomlFileError):
    pass


def load_agents_file(path: str, check: Callable[[Agent], None]) -> list[Agent]:
    """Every agent of the file, validated; :class:`AgentsFileError` for the first problem."""
    where = f"PARLEY_AGENTS_FILE {path}"
    _, entries = read_tables(path, "agents", where, AgentsFileError)
    agents: list[Agent] = []
    for index, entry in enumerate(entries):
        agent = _agent(entry, f'{where}: agent "{_label(entry, index)}"', check)
        if any(seen.agent_id == agent.agent_id for seen in agents):
            raise AgentsFileError(f'{where}: agent "{agent.agent_id}" is declared twice')
        agents.append(agent)
    return agents


def _label(entry: dict[str, Any], index: int) -> str:
    agent_id = entry.get("agentId")
    return agent_id if isinstance(agent_id, str) and agent_id else f"#{index + 1}"


def _field_of(error: msgspec.ValidationError) -> tuple[str, str]:
    """The message and the dotted field path of a validation error, named field included."""
    message, _, path = str(error).partition(" - at `$")
    parts = [path.rstrip("`").lstrip(".")]
    named = re.match(r"Object (?:missing required|contains unknown) field `([^`]+)`", message)
    if named:
        parts.append(named.group(1))
    return message, ".".join(p for p in parts if p) or "(agent)"


def _agent(entry: dict[str, Any], where: str, check: Callable[[Agent], None]) -> Agent:
    try:
        agent = msgspec.convert(entry, CreateAgent).agent()
    except msgspec.ValidationError as error:
        message, field = _field_of(error)
        raise AgentsFileError(f"{where}, field {field}: {message}") from None
    try:
        check(agent)
    except InvalidInput as error:
        field = error.field or error.details.get("field", "(agent)")
        raise AgentsFileError(f"{where}, field {field}: {error.problem}") from None
    return agent
