"""What each continue sends upstream, as the fake upstream received it: instructions, history
in order, truncation by the agent's budget, and how cancelled and failed turns count."""

from __future__ import annotations

import httpx

from tests.support.agents import agent_session
from tests.support.native import blocking_continue, get_session, list_exchanges
from tests.support.sse import iter_events, open_stream
from tests.support.upstream import Reply, UpstreamServer

HELLO = "Hello, world!"  # the fake upstream's default reply: 4 tokens


def sent(upstream: UpstreamServer) -> list[tuple[str, str]]:
    """(role, text) of every message of the last request, the system prompt included."""
    return [(m["role"], m["content"]) for m in upstream.requests[-1].body["messages"]]


def turn(user: str, reply: str = HELLO) -> list[tuple[str, str]]:
    return [("user", user), ("assistant", reply)]


async def test_instructions_come_first_then_the_history_in_order(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.")
    upstream.queue(Reply(pieces=("One",)), Reply(pieces=("Two",)))

    for text in ("first", "second", "third"):
        await blocking_continue(http, sid, text)

    assert sent(upstream) == [
        ("system", "Be brief."),
        *turn("first", "One"),
        *turn("second", "Two"),
        ("user", "third"),
    ]


async def test_anthropic_gets_the_instructions_as_its_system_prompt(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "anthropic", instructions="Be brief.")

    await blocking_continue(http, sid, "first")
    await blocking_continue(http, sid, "second")

    body = upstream.requests[-1].body
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": HELLO},
        {"role": "user", "content": "second"},
    ]


async def test_the_oldest_exchanges_are_dropped_first_to_fit_the_budget(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    # 3 tokens of instructions + 1 of input leave room for two past turns of 5 tokens each.
    sid = await agent_session(http, instructions="Be brief.", contextBudgetTokens=14)

    for text in ("one", "two", "three", "four", "five"):
        await blocking_continue(http, sid, text)

    assert sent(upstream) == [
        ("system", "Be brief."),
        *turn("three"),
        *turn("four"),
        ("user", "five"),
    ]


async def test_the_instructions_stay_when_no_history_fits(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.", contextBudgetTokens=8)

    await blocking_continue(http, sid, "one")
    await blocking_continue(http, sid, "two three four five")

    assert sent(upstream) == [("system", "Be brief."), ("user", "two three four five")]


async def test_an_input_too_large_for_the_budget_is_400_and_nothing_is_stored(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.", contextBudgetTokens=14)

    response = await http.post(
        f"/v1/sessions/{sid}/blockingContinue",
        json={"userInput": {"text": " ".join(f"w{i}" for i in range(12))}},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_too_large"
    assert await list_exchanges(http, sid) == []
    assert (await get_session(http, sid))["messageCount"] == 0
    assert upstream.requests == []


async def test_a_failed_exchange_counts_as_far_as_it_produced_text(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.")
    upstream.queue(Reply(drop_after=2))

    failed = await blocking_continue(http, sid, "first")
    await blocking_continue(http, sid, "second")

    assert (failed["status"], failed["response"]["text"]) == ("failed", "Hello,")
    assert sent(upstream) == [("system", "Be brief."), *turn("first", "Hello,"), ("user", "second")]


async def test_an_exchange_that_failed_before_any_text_is_left_out(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.")
    upstream.queue(Reply(status=400, error_message="This model does not exist."))

    failed = await blocking_continue(http, sid, "first")
    await blocking_continue(http, sid, "second")

    assert (failed["status"], failed["response"]["text"]) == ("failed", "")
    assert sent(upstream) == [("system", "Be brief."), ("user", "second")]


async def test_a_cancelled_exchange_counts_as_far_as_it_got(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, instructions="Be brief.")
    upstream.queue(Reply(pieces=[f" w{i}" for i in range(60)], token_delay=0.05))

    async with open_stream(
        http,
        "POST",
        f"/v1/sessions/{sid}/streamingContinue",
        json_body={"userInput": {"text": "go"}},
    ) as stream:
        async for event in iter_events(stream):
            if event.event == "delta":
                cancelled = (await http.post(f"/v1/sessions/{sid}/cancel", json={})).json()
                break
    await blocking_continue(http, sid, "next")

    partial = cancelled["response"]["text"]
    assert cancelled["status"] == "cancelled"
    assert partial and len(partial) < len(" w0") * 60
    assert sent(upstream) == [("system", "Be brief."), *turn("go", partial), ("user", "next")]
