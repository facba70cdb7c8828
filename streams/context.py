"""What the model is sent: instructions, archive summaries, prior turns, then the new input,
within budget.

The history is :func:`streams.history.messages_of`'s: cancelled and failed exchanges count as
far as they produced text, imported messages count as they are. Messages past the last
commit's cut only: archived ones are represented by their archive's summary, which follows
the instructions. When the budget is short the oldest exchanges go first, then the oldest
summaries; the instructions and the new input always stay. Consecutive messages of one role
are merged, so no API sees two user turns in a row. A turn's named parameters follow the
instructions, one ``name: value`` line each.
"""

from __future__ import annotations

import itertools

from streams.agents import Agent
from streams.backends.base import Message, ModelRequest
from streams.errors import InvalidInput
from streams.history import merged
from streams.tokens import count_tokens
from streams.types import Archive, HistoryMessage, SessionContext

SUMMARY_HEAD = "Summary of the earlier conversation:"


def build_request(
    agent: Agent,
    live: list[HistoryMessage],
    user_text: str,
    parameters: dict[str, str],
    archives: list[Archive] | None = None,
) -> ModelRequest:
    budget = agent.context_budget_tokens
    base = _with_parameters(agent.instructions, parameters)
    fixed = count_tokens(base) + count_tokens(user_text)
    if fixed > budget:
        raise InvalidInput(
            f"needs {fixed} tokens with the instructions; the agent's context budget is {budget}",
            field="input_text",
            code="context_too_large",
            details={"tokens": fixed, "budget": budget},
        )
    chosen = select_context(live, archives or [], budget - fixed)
    messages = [Message(role=m.role, text=m.text) for m in chosen.messages]
    messages.append(Message(role="user", text=user_text))
    instructions = _with_summaries(base, chosen.summaries)
    return ModelRequest(instructions=instructions, messages=merged(messages), model=agent.model)


def select_context(
    live: list[HistoryMessage], archives: list[Archive], budget: int
) -> SessionContext:
    """The newest whole exchanges that fit ``budget``, then the newest summaries that fit
    what is left; both oldest first."""
    used = 0
    kept: list[list[HistoryMessage]] = []
    for _, group in itertools.groupby(reversed(live), key=lambda m: m.exchange_id):
        turn = list(group)
        cost = sum(count_tokens(m.text) for m in turn)
        if used + cost > budget:
            break
        used += cost
        kept.append(turn[::-1])
    summaries: list[Archive] = []
    for archive in reversed(archives):
        cost = count_tokens(archive.summary)
        if used + cost > budget:
            break
        used += cost
        summaries.append(archive)
    messages = [m for turn in reversed(kept) for m in turn]
    return SessionContext(
        summaries=summaries[::-1], messages=messages, tokens=used, archives_total=len(archives)
    )


def _with_summaries(instructions: str, archives: list[Archive]) -> str:
    if not archives:
        return instructions
    text = "\n\n".join(a.summary for a in archives)
    head = f"{instructions}\n\n" if instructions else ""
    return f"{head}{SUMMARY_HEAD}\n{text}"


def _with_parameters(instructions: str, parameters: dict[str, str]) -> str:
    if not parameters:
        return instructions
    lines = "\n".join(f"{name}: {value}" for name, value in parameters.items())
    head = f"{instructions}\n\n" if instructions else ""
    return f"{head}Parameters:\n{lines}"
