"""The chat page as the tests see it (by its ids and data-testid attributes), and the API beside it.

`ChatPage` installs a recorder before the page's own script runs: a MutationObserver that
keeps every distinct state of the current reply (text, status badge, output counter), so a
test can check what the reply looked like while it streamed, not only how it ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.async_api import Locator, Page, expect

from tests.support.sse import iter_events, open_stream

FINISHED = re.compile(r"^(completed|cancelled|failed)$")

# Runs in the page before app.js; `window.__replyStates` survives until the next navigation.
REPLY_RECORDER = """
(() => {
  const states = [];
  window.__replyStates = states;
  const textOf = (id) => {
    const node = document.getElementById(id);
    return node ? node.textContent : null;
  };
  const snapshot = () => {
    const text = textOf('current-reply-text');
    if (text === null) return;
    const state = {
      text,
      status: textOf('current-reply-status') || '',
      output: textOf('usage-output') || '',
    };
    const last = states[states.length - 1];
    if (!last || last.text !== state.text || last.status !== state.status) states.push(state);
  };
  document.addEventListener('DOMContentLoaded', () => {
    new MutationObserver(snapshot).observe(document.body, {
      subtree: true, childList: true, characterData: true, attributes: true,
    });
  });
})();
"""


@dataclass(frozen=True)
class ReplyState:
    """One distinct look of the current reply, as recorded in the page."""

    text: str
    status: str
    output: str


def numbered_words(count: int) -> str:
    """A long input whose every word is unique, so any repeated or lost text is visible."""
    return " ".join(f"w{n:04d}" for n in range(1, count + 1))


class Api:
    """The public /v1 API, for setting up a scenario and reading back what the server stored."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def create_session(self, agent_id: str = "default", **fields: Any) -> str:
        response = await self.client.post("/v1/sessions", json={"agentId": agent_id, **fields})
        assert response.status_code == 201, response.text
        sid: str = response.json()["conversationId"]
        return sid

    async def exchanges(self, sid: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/sessions/{sid}/exchanges", params={"limit": 100})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def last_exchange(self, sid: str) -> dict[str, Any]:
        exchanges = await self.exchanges(sid)
        assert exchanges, f"session {sid} has no exchanges"
        return exchanges[-1]

    async def blocking_continue(self, sid: str, text: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": text}}
        )
        assert response.status_code == 200, response.text
        exchange: dict[str, Any] = response.json()
        return exchange

    async def start_reply(self, sid: str, text: str) -> str:
        """Start a streamed reply and hang up after `started`; the reply keeps running."""
        url = f"/v1/sessions/{sid}/streamingContinue"
        body = {"userInput": {"text": text}}
        async with open_stream(self.client, "POST", url, json_body=body) as response:
            assert response.status_code == 200, await response.aread()
            async for event in iter_events(response):
                if event.event == "started":
                    exchange_id: str = event.json()["exchangeId"]
                    return exchange_id
        raise AssertionError("the stream ended before `started`")

    async def cancel(self, sid: str) -> None:
        response = await self.client.post(f"/v1/sessions/{sid}/cancel", json={})
        assert response.status_code in (200, 409), response.text


class ChatPage:
    """The chat page in one tab, addressed through its stable ids and test ids."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self._recorder_installed = False

    # ---- elements ----

    def by_test_id(self, test_id: str) -> Locator:
        return self.page.get_by_test_id(test_id)

    @property
    def reply_text(self) -> Locator:
        return self.page.locator("#current-reply-text")

    @property
    def reply_status(self) -> Locator:
        return self.page.locator("#current-reply-status")

    @property
    def reply(self) -> Locator:
        return self.page.locator("#current-reply")

    @property
    def error_text(self) -> Locator:
        return self.by_test_id("error-text")

    # ---- actions ----

    async def open(self, sid: str | None = None) -> None:
        """Load the page (on a session when given) and wait until it has shown that session."""
        if not self._recorder_installed:
            await self.page.context.add_init_script(script=REPLY_RECORDER)
            self._recorder_installed = True
        await self.page.goto(f"{self.base_url}/" + (f"#s={sid}" if sid else ""))
        if sid:
            await self.wait_for_session(sid)
        else:
            await expect(self.by_test_id("new-session")).to_be_enabled()

    async def wait_for_session(self, sid: str) -> None:
        """Wait until the page shows the session and its history is in (Send is enabled then)."""
        await expect(self.by_test_id("session-id")).to_have_text(sid)
        await expect(self.by_test_id("composer")).to_be_visible()
        await expect(self.by_test_id("send-button")).to_be_enabled()

    async def create_session(self, *, agent_id: str, refresh_ms: int, title: str) -> str:
        """Create a session with the sidebar form; returns its id once the page shows it."""
        await self.by_test_id("new-session").click()
        # The page may swap the agent text field for a list of the server's agents first.
        await expect(self.page.locator("#agent-field")).to_have_attribute("data-state", "ready")
        agent = self.by_test_id("new-agent")
        if await agent.evaluate("node => node.tagName") == "SELECT":
            await agent.select_option(agent_id)
        else:
            await agent.fill(agent_id)
        await self.by_test_id("new-interval").fill(str(refresh_ms))
        await self.by_test_id("new-title").fill(title)
        await self.by_test_id("create-session").click()
        await expect(self.by_test_id("session-title")).to_have_text(title)
        sid = await self.by_test_id("session-id").text_content()
        assert sid
        await self.wait_for_session(sid)
        return sid

    async def send(self, text: str) -> None:
        """Type a message and press Enter, as a person would."""
        box = self.by_test_id("message-input")
        await box.fill(text)
        await box.press("Enter")

    async def wait_until_finished(self, timeout_ms: float = 60_000) -> str:
        await expect(self.reply_status).to_have_text(FINISHED, timeout=timeout_ms)
        status = await self.reply_status.text_content()
        assert status
        return status

    async def wait_for_reply_words(self, words: int) -> None:
        """Wait until the running reply shows at least `words` words."""
        await self.page.wait_for_function(
            """(words) => {
              const text = document.getElementById('current-reply-text');
              const status = document.getElementById('current-reply-status');
              if (!text || !status) return false;
              const ended = status.textContent !== 'running';
              if (ended) throw new Error(`the reply ended before ${words} words`);
              return text.textContent.trim().split(/\\s+/).filter(Boolean).length >= words;
            }""",
            arg=words,
            timeout=60_000,
        )

    async def states(self) -> list[ReplyState]:
        """Every distinct state of the current reply since this page load."""
        raw = await self.page.evaluate("window.__replyStates || []")
        return [ReplyState(**state) for state in raw]

    async def streaming_states(self) -> list[ReplyState]:
        """The recorded states while the reply was running and had some text."""
        return [s for s in await self.states() if s.status == "running" and s.text]

    async def counters(self) -> dict[str, int]:
        """The usage counters above the conversation, as numbers."""
        shown = {}
        for name in ("input", "output", "total"):
            value = await self.by_test_id(f"usage-{name}").text_content()
            assert value is not None and value.isdigit(), f"usage-{name} shows {value!r}"
            shown[name] = int(value)
        return shown

    async def is_generating(self) -> bool:
        return await self.page.evaluate("document.body.dataset.generating === 'true'")
