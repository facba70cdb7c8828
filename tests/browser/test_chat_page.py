"""The chat page in real headless Chromium: streaming, stop, reload, safe rendering, errors.

Everything is checked against what the server stored, read back through the public API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from tests.browser.chromium import why_no_browser

_missing = why_no_browser()
if _missing:
    pytest.skip(_missing, allow_module_level=True)

from playwright.async_api import Page, Route, expect  # noqa: E402

from server.embedded_redis import RedisProcess  # noqa: E402
from tests.browser.chat import Api, ChatPage, numbered_words  # noqa: E402
from tests.support.servers import ServerFactory  # noqa: E402

# --- streaming a reply ---------------------------------------------------------------------------

LONG_ECHO = numbered_words(400)  # 400 tokens: 8 s at the echo agent's 50 tokens/s


async def test_reply_and_counters_grow_in_place_while_streaming(chat: ChatPage, api: Api) -> None:
    await chat.open()
    sid = await chat.create_session(agent_id="default", refresh_ms=100, title="Growing reply")
    await chat.send("Tell me something long.")

    assert await chat.wait_until_finished() == "completed"

    stored = (await api.last_exchange(sid))["response"]["text"]
    growing = await chat.streaming_states()
    assert len({s.text for s in growing}) >= 3, f"too few intermediate states: {growing}"
    assert all(stored.startswith(s.text) for s in growing), "streamed text is not the reply's"
    for before, after in pairwise(growing):
        assert len(after.text) > len(before.text), "the reply shrank or repeated while streaming"
        assert int(after.output) >= int(before.output), "the output counter went backwards"
    assert int(growing[-1].output) > int(growing[0].output), "the output counter never moved"


async def test_finished_reply_shows_the_stored_text_and_usage(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("default", title="Final state")
    await chat.open(sid)
    await chat.send("What does the stored exchange say?")

    assert await chat.wait_until_finished() == "completed"

    stored = await api.last_exchange(sid)
    assert stored["status"] == "completed"
    assert await chat.reply_text.text_content() == stored["response"]["text"]
    assert await chat.reply.get_attribute("data-stream-mismatch") is None, (
        "the streamed text differed from the stored exchange"
    )
    usage = stored["usage"]
    assert await chat.counters() == {
        "input": usage["inputTokens"],
        "output": usage["outputTokens"],
        "total": usage["totalTokens"],
    }
    assert not await chat.is_generating()


async def test_stop_cancels_the_reply_and_keeps_the_partial_text(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Stop")
    await chat.open(sid)
    await chat.send(LONG_ECHO)
    await chat.wait_for_reply_words(20)

    await chat.by_test_id("stop-button").click()

    assert await chat.wait_until_finished() == "cancelled"
    stored = await api.last_exchange(sid)
    assert stored["status"] == "cancelled"
    partial = stored["response"]["text"]
    assert partial and len(partial) < len(LONG_ECHO)
    assert await chat.reply_text.text_content() == partial
    await expect(chat.by_test_id("reply-note")).to_have_text("Stopped. The reply above is partial.")
    await expect(chat.by_test_id("send-button")).to_be_visible()
    await expect(chat.by_test_id("stop-button")).to_be_hidden()


async def test_reload_mid_stream_finishes_the_same_reply_without_duplicates(
    chat: ChatPage, api: Api
) -> None:
    sid = await api.create_session("echo", title="Reload")
    await chat.open(sid)
    await chat.send(LONG_ECHO)
    await chat.wait_for_reply_words(30)
    joins: list[str] = []
    chat.page.on("request", lambda r: joins.append(r.url) if "/stream?" in r.url else None)

    await chat.page.reload()

    assert await chat.wait_until_finished() == "completed"
    stored = (await api.last_exchange(sid))["response"]["text"]
    assert stored == LONG_ECHO
    assert await chat.reply_text.text_content() == stored
    resumed = await chat.streaming_states()
    assert resumed, "the page did not stream after the reload"
    for state in resumed:
        assert stored.startswith(state.text), f"duplicated or foreign text: {state.text[-80:]!r}"
    assert await chat.reply.get_attribute("data-stream-mismatch") is None
    assert any("lastEventId=" in url for url in joins), f"no resume from an event id: {joins}"


SHOWN_FIRST = """**Hello!** What can Parley do? In short:

- stream replies as *deltas* over SSE
- resume a dropped stream where it stopped"""

SHOWN_STREAMING = """## Joining a stream from another tab

Every reply is stored as it streams, so any tab can **join** it:

1. ask for a stream token, with your key in the header
2. open an `EventSource` on the session's stream

```js
const { token } = await post(`/v1/sessions/${sid}/streamTokens`);
const events = new EventSource(`/v1/sessions/${sid}/stream?token=${token}`);
```

A dropped connection resumes after its `Last-Event-ID`,
so no text is lost or repeated; the counters above move
with every delta, and so do the session's totals,
whichever worker serves the reply."""


async def test_midstream_screenshot_is_kept_as_an_artifact(
    page: Page, server_factory: ServerFactory, artifacts: Path
) -> None:
    """The README's picture (server/static/screenshot.png is a copy): a Markdown reply
    streaming in, its code block already rendered."""
    server = server_factory()  # its own key prefix: the sidebar shows only this test's sessions
    chat = ChatPage(page, server.base_url)
    async with server.client() as client:
        api = Api(client)
        for title in ("Load test notes", "Lorem check"):
            await api.create_session("default", title=title)
        sid = await api.create_session("echo", title="Trying Parley", refreshIntervalMs=100)
        await api.blocking_continue(sid, SHOWN_FIRST)
    await chat.open(sid)
    await chat.send(SHOWN_STREAMING)
    await page.wait_for_function(
        """() => document.querySelector('#current-reply-status')?.textContent === 'running'
              && document.querySelector('#current-reply-text > p:last-child')
                   ?.previousElementSibling?.classList.contains('code-block')""",
        timeout=60_000,
    )

    shot = artifacts / "chat-midstream.png"
    await page.screenshot(path=str(shot))

    assert shot.stat().st_size > 10_000
    assert await chat.wait_until_finished() == "completed"


async def test_sending_waits_until_the_history_is_in(chat: ChatPage, api: Api) -> None:
    """A history that lands after a send must not wipe the new reply out of the page."""
    sid = await api.create_session("echo", title="Early send")
    fetched, release = asyncio.Event(), asyncio.Event()

    async def late_history(route: Route) -> None:
        response = await route.fetch()  # taken before the send, delivered after it
        fetched.set()
        await release.wait()
        await route.fulfill(response=response)

    await chat.page.route("**/exchanges?*", late_history)
    await chat.page.goto(f"{chat.base_url}/#s={sid}")
    await asyncio.wait_for(fetched.wait(), 30)
    await chat.send("Too early?")
    release.set()
    await chat.wait_for_session(sid)

    await expect(chat.by_test_id("exchange")).to_have_count(0)
    await expect(chat.by_test_id("message-input")).to_have_value("Too early?")
    await chat.by_test_id("message-input").press("Enter")
    assert await chat.wait_until_finished() == "completed"
    assert await chat.reply_text.text_content() == "Too early?"


# --- safe rendering ------------------------------------------------------------------------------

# Each part sets `window.__xss` if the page ever treats it as HTML.
PAYLOAD = (
    "<img src=x onerror=\"window.__xss='img'\">"
    "<script>window.__xss='script'</script>"
    "<svg onload=\"window.__xss='svg'\"></svg>"
    '"><b>bold?</b>'
)
MARKUP = "img, script, svg, b, iframe"  # the page's own body has none of these


async def markup_created(chat: ChatPage) -> int:
    count: int = await chat.page.evaluate(
        "(selector) => document.body.querySelectorAll(selector).length", MARKUP
    )
    return count


async def test_markup_in_input_and_reply_renders_as_literal_text(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Escaping")
    await chat.open(sid)

    await chat.send(PAYLOAD)

    assert await chat.wait_until_finished() == "completed"
    assert (await api.last_exchange(sid))["response"]["text"] == PAYLOAD
    assert await chat.by_test_id("user-text").last.text_content() == PAYLOAD
    assert await chat.reply_text.text_content() == PAYLOAD
    assert await chat.page.evaluate("window.__xss") is None, "a payload ran as script"
    assert await markup_created(chat) == 0, "a payload became elements in the page"


async def test_markup_stored_in_a_session_renders_as_text_from_history(
    chat: ChatPage, api: Api
) -> None:
    sid = await api.create_session("echo", title=PAYLOAD)
    await api.blocking_continue(sid, PAYLOAD)

    await chat.open(sid)

    await chat.wait_until_finished()
    assert await chat.by_test_id("session-title").text_content() == PAYLOAD
    item = chat.page.locator(f'[data-session-id="{sid}"] [data-testid=session-item-title]')
    assert await item.text_content() == PAYLOAD
    assert await chat.by_test_id("user-text").last.text_content() == PAYLOAD
    assert await chat.reply_text.text_content() == PAYLOAD
    assert await chat.page.evaluate("window.__xss") is None, "a payload ran as script"
    assert await markup_created(chat) == 0, "a payload became elements in the page"


# --- errors in plain words -----------------------------------------------------------------------


async def test_busy_session_409_is_explained_in_plain_words(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Busy")
    await chat.open(sid)
    await api.start_reply(sid, numbered_words(400))

    try:
        await chat.send("Am I next?")

        await expect(chat.error_text).to_have_text(
            "This session is busy: it is still generating a reply. "
            "Wait for it to finish or press Stop, then send again."
        )
        await expect(chat.by_test_id("error-banner")).to_have_attribute("data-code", "session_busy")
        await expect(chat.by_test_id("message-input")).to_have_value("Am I next?")
    finally:
        await api.cancel(sid)
    # The page then follows the reply that made it busy, to its end.
    assert await chat.wait_until_finished() == "cancelled"


async def test_unreachable_storage_503_is_explained_in_plain_words(
    page: Page,
    server_factory: ServerFactory,
    redis_factory: Callable[..., RedisProcess],
) -> None:
    redis = redis_factory()
    server = server_factory(redis_url=redis.url)
    chat = ChatPage(page, server.base_url)
    async with server.client() as client:
        sid = await Api(client).create_session("echo", title="Storage down")
    await chat.open(sid)
    redis.stop()

    await chat.send("Is anyone there?")

    await expect(chat.error_text).to_contain_text(
        "The server is temporarily unavailable (it cannot reach its storage). Please try again in"
    )
    await expect(chat.by_test_id("send-button")).to_be_visible()
    await expect(chat.by_test_id("stop-button")).to_be_hidden()
    assert not await chat.is_generating()
