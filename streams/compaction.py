"""Compaction: the summary a commit replaces archived messages with, written by the
session's own agent, so a session keeps its gist in the model's context while its oldest
messages leave it.
"""

from __future__ import annotations

from streams.agents import Agent
from streams.backends.base import Backend, BackendError, Message, ModelRequest
from streams.errors import Unavailable
from streams.tokens import count_tokens
from streams.types import HistoryMessage, Usage
from streams.usage import UsageMeter

SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below for your own later reference. Keep facts, names, "
    "decisions and open questions; leave out pleasantries. Answer with the summary only."
)


def summary_request(agent: Agent, messages: list[HistoryMessage]) -> ModelRequest:
    """The archived messages as one transcript, newest lines kept when they do not all fit
    the agent's context budget."""
    room = agent.context_budget_tokens - count_tokens(SUMMARY_INSTRUCTIONS)
    lines: list[str] = []
    for m in reversed(messages):
        line = f"{m.role}: {m.text}"
        room -= count_tokens(line)
        if room < 0 and lines:
            break
        lines.append(line)
    transcript = "\n".join(reversed(lines))
    turns = [Message(role="user", text=transcript)]
    return ModelRequest(instructions=SUMMARY_INSTRUCTIONS, messages=turns, model=agent.model)


async def summarize(backend: Backend, request: ModelRequest) -> tuple[str, Usage]:
    """The model's whole reply and its exact usage (the upstream's report when it gave one)."""
    meter = UsageMeter()
    parts: list[str] = []
    try:
        async for chunk in backend.stream(request):
            if chunk.text:
                parts.append(chunk.text)
                meter.add_text(chunk.text)
            if chunk.usage is not None:
                meter.report(chunk.usage)
    except BackendError as error:
        raise Unavailable(f"the model could not write the summary: {error.message}") from error
    return "".join(parts), meter.final()
