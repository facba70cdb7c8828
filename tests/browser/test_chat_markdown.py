"""Replies as Markdown, rendered safely; stream tokens on rejoin; header counts that move.

The echo agent answers with the user's own text, so a message written in Markdown comes back
as a Markdown reply: the user's copy stays plain text, the reply is rendered.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.chromium import why_no_browser

_missing = why_no_browser()
if _missing:
    pytest.skip(_missing, allow_module_level=True)

from playwright.async_api import Page, expect  # noqa: E402

from tests.browser.chat import Api, ChatPage, numbered_words  # noqa: E402
from tests.support.servers import ServerFactory  # noqa: E402

# --- rendering -----------------------------------------------------------------------------------

MARKDOWN = """# Release plan

Ship it **today**, then *rest*.

- build the wheel
- run `make test`

```python
print("hi")
```

See [the docs](https://example.com/docs).
"""


async def test_a_markdown_reply_renders_headings_lists_and_code(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Markdown")
    await chat.open(sid)

    await chat.send(MARKDOWN)

    assert await chat.wait_until_finished() == "completed"
    reply = chat.reply_text
    await expect(reply.locator("h1")).to_have_text("Release plan")
    await expect(reply.locator("strong")).to_have_text("today")
    await expect(reply.locator("li")).to_have_text(["build the wheel", "run make test"])
    await expect(reply.locator("pre code")).to_have_text('print("hi")\n')
    await expect(reply.get_by_test_id("copy-code")).to_have_count(1)
    link = reply.locator("a")
    await expect(link).to_have_attribute("href", "https://example.com/docs")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")


async def test_the_users_own_markdown_stays_plain_text(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Plain user text")
    await chat.open(sid)

    await chat.send(MARKDOWN)

    assert await chat.wait_until_finished() == "completed"
    user = chat.by_test_id("user-text").last
    assert await user.text_content() == MARKDOWN
    await expect(user.locator("*")).to_have_count(0)


async def test_the_copy_button_copies_the_code_block(chat: ChatPage, api: Api) -> None:
    await chat.page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=chat.base_url
    )
    sid = await api.create_session("echo", title="Copy")
    await api.blocking_continue(sid, MARKDOWN)
    await chat.open(sid)
    await chat.wait_until_finished()

    button = chat.reply_text.get_by_test_id("copy-code")
    await button.click()

    await expect(button).to_have_attribute("data-state", "copied")
    assert await chat.page.evaluate("navigator.clipboard.readText()") == 'print("hi")\n'


async def test_a_reply_rendered_while_streaming_keeps_a_reader_who_scrolled_up_in_place(
    chat: ChatPage, api: Api
) -> None:
    sid = await api.create_session("echo", title="Scroll")
    for n in range(6):
        await api.blocking_continue(sid, numbered_words(60) + f" history{n}")
    await chat.open(sid)
    await chat.send("\n\n".join(f"Paragraph {n}: " + numbered_words(12) for n in range(30)))
    await chat.wait_for_reply_words(20)
    box = chat.by_test_id("conversation")
    await box.evaluate("node => { node.scrollTop = 0; }")

    assert await chat.wait_until_finished() == "completed"

    assert await box.evaluate("node => node.scrollTop") == 0


# --- what must not run ---------------------------------------------------------------------------

# Each part sets `window.__xss` if the page ever runs it.
MARKDOWN_PAYLOAD = """[a link](javascript:window.__xss='link')

[another](JaVaScRiPt:window.__xss='mixed-case')

<script>window.__xss='script'</script>

<img src=x onerror="window.__xss='img'">

![an image](x" onerror="window.__xss='image')

![a javascript image](javascript:window.__xss='image-url')

<a href="javascript:window.__xss='raw-link'">raw link</a> and <b onclick="window.__xss='b'">b</b>

<iframe src="javascript:window.__xss='iframe'"></iframe>

![a tracking pixel](https://example.com/pixel.png)
"""
FORBIDDEN = "img, script, svg, iframe, b, [onerror], [onclick], [onload]"


async def test_markdown_links_and_raw_html_never_run(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Markdown XSS")
    await chat.open(sid)

    await chat.send(MARKDOWN_PAYLOAD)

    assert await chat.wait_until_finished() == "completed"
    reply = chat.reply_text
    for link in await reply.locator("a:not([href])").all():
        await link.click(no_wait_after=True)
    assert await chat.page.evaluate("window.__xss") is None, "a payload ran as script"
    forbidden = await chat.page.evaluate(
        "(selector) => document.body.querySelectorAll(selector).length", FORBIDDEN
    )
    assert forbidden == 0, "a payload became elements in the page"
    hrefs = await reply.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://example.com/pixel.png"], "an image must become a link, not a fetch"


async def test_raw_html_in_a_reply_shows_as_text(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Raw HTML")
    await chat.open(sid)

    await chat.send(MARKDOWN_PAYLOAD)

    assert await chat.wait_until_finished() == "completed"
    shown = await chat.reply_text.text_content()
    assert shown is not None
    assert "<script>window.__xss='script'</script>" in shown
    assert "<img src=x onerror=\"window.__xss='img'\">" in shown
    assert "<b onclick=\"window.__xss='b'\">b</b>" in shown


# --- stream tokens -------------------------------------------------------------------------------

KEY = "browser-key-0123456789"


async def test_rejoining_after_a_reload_uses_a_stream_token_never_the_key(
    page: Page, server_factory: ServerFactory
) -> None:
    server = server_factory({"PARLEY_API_KEYS": f"{KEY}=browser"})
    chat = ChatPage(page, server.base_url)
    await page.context.add_init_script(
        f"try {{ localStorage.setItem('parley.apiKey', {KEY!r}); }} catch {{}}"
    )
    async with server.client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        sid = await Api(client).create_session("echo", title="Token rejoin")
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    await chat.open(sid)
    await chat.send(numbered_words(400))
    await chat.wait_for_reply_words(30)

    await page.reload()

    assert await chat.wait_until_finished() == "completed"
    joins = [url for url in urls if "/stream?" in url]
    assert joins and all(re.search(r"[?&]token=[\w-]+\.[\w-]+", url) for url in joins), joins
    assert not [url for url in urls if "access_token" in url or KEY in url], urls
    assert any(url.endswith(f"/v1/sessions/{sid}/streamTokens") for url in urls)


# --- the header's counts -------------------------------------------------------------------------

COUNTS = re.compile(r"(\d+) messages? · (\d+) tokens")


async def header_counts(chat: ChatPage) -> tuple[int, int]:
    text = await chat.page.locator("#session-meta").text_content()
    found = COUNTS.search(text or "")
    assert found, text
    return int(found[1]), int(found[2])


async def test_the_header_counts_move_while_a_reply_streams(chat: ChatPage, api: Api) -> None:
    sid = await api.create_session("echo", title="Counting", refreshIntervalMs=100)
    await api.blocking_continue(sid, "Hello there")
    await chat.open(sid)
    messages, tokens = await header_counts(chat)
    assert messages == 1 and tokens > 0

    await chat.send(numbered_words(150))
    seen: list[int] = []
    await chat.wait_for_reply_words(10)
    while await chat.reply_status.text_content() == "running":
        shown_messages, shown_tokens = await header_counts(chat)
        assert shown_messages == 2, "the new exchange is not counted while it streams"
        seen.append(shown_tokens)
        await chat.page.wait_for_timeout(150)

    assert len(set(seen)) >= 3, f"the token count did not move: {seen}"
    assert seen == sorted(seen) and seen[0] > tokens, seen
    stored = await api.client.get(f"/v1/sessions/{sid}")
    final = stored.json()
    await expect(chat.page.locator("#session-meta")).to_contain_text(
        f"{final['messageCount']} messages · {final['usage']['totalTokens']} tokens"
    )
