"""Runs one exchange: consumes the backend, flushes deltas on the refresh interval, stores the end.

The runner is a background task owned by the service, not by any HTTP request: a client that
disconnects does not stop it; a cancel, the shutdown deadline or a long Redis outage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import RedisError

from streams.backends.base import Backend, BackendError, ModelRequest
from streams.batcher import Batcher
from streams.clock import now_ms
from streams.config import EngineConfig
from streams.ending import FINISH_SCRIPT, finish_args, finish_keys
from streams.events import Delta
from streams.keys import Keys
from streams.scripts import FLUSH, Script
from streams.types import ErrorInfo, Exchange, ExchangeStatus, Usage
from streams.usage import UsageMeter

log = logging.getLogger("parley.runner")

_FLUSH = Script(FLUSH)
_OUTAGE_RETRY = 0.25
_FINISH_RETRY_MAX = 2.0


def flush_keys(keys: Keys, sid: str, xid: str) -> list[str]:
    """FLUSH's KEYS, in its order."""
    return [
        keys.session(sid),
        keys.exchange(sid, xid),
        keys.log(sid, xid),
        keys.channel(sid),
        keys.cancel(sid),
        keys.lock(sid),
    ]


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    owner: str
    sid: str
    xid: str
    user_text: str
    created_ms: int
    interval_ms: int
    request: ModelRequest
    parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delta's FLUSH call, frozen until Redis confirms it.

    A call whose reply was lost is sent again exactly as it was: the script applies a seq
    once, so the retry is skipped when the first try ran, and runs when it did not. Text that
    arrives meanwhile waits for the next delta.
    """

    args: list[Any]
    shown: Usage
    taken: int


@dataclass(slots=True)
class Outcome:
    status: ExchangeStatus = "completed"
    finish_reason: str | None = None
    error: ErrorInfo | None = None


class ExchangeRunner:
    """One task per exchange: it reads the backend; flushes run from a timer and finish in a
    callback on the reply's future, so a delta costs no task wakeup of its own, and deltas
    of every exchange due in the same loop tick share the batcher's one write."""

    def __init__(
        self,
        spec: ExchangeSpec,
        backend: Backend,
        batcher: Batcher,
        keys: Keys,
        config: EngineConfig,
        observer: RunObserver | None = None,
    ) -> None:
        self.spec = spec
        self._backend = backend
        self._batcher = batcher
        self._config = config
        self._observer = observer or RunObserver()
        sid, xid = spec.sid, spec.xid
        self._flush_keys = flush_keys(keys, sid, xid)
        self._finish_keys = finish_keys(keys, sid, xid)
        self._interval = spec.interval_ms / 1000
        self._parts: list[str] = []
        self._pending: list[str] = []
        self._pending_chars = 0
        self._frozen: Attempt | None = None
        self._landing: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._end: tuple[Exchange, list[Any], Usage] | None = None
        self._seq = 0
        self._meter = UsageMeter()
        self._outcome = Outcome()
        self._last_flush = -1e9
        self._outage_since: float | None = None
        self._task: asyncio.Task[Any] | None = None
        self._consuming = False
        self._halted = False
        self._stop_outcome: Outcome | None = None
        self._closing = False
        self._first_token_ms: int | None = None
        self.done = asyncio.Event()
        # Called once with the finished exchange just before its end is stored, so whatever
        # it releases is free by the time a watcher sees the end.
        self.on_end: Callable[[Exchange], Awaitable[None]] | None = None

    # --- control -------------------------------------------------------------------------

    def request_cancel(self) -> None:
        self._halt(Outcome(status="cancelled", finish_reason="cancelled"))

    def abort(self, code: str, message: str, reason: str) -> None:
        """Stop the generation as failed, e.g. at the shutdown deadline."""
        self._halt(Outcome("failed", reason, ErrorInfo(code=code, message=message)))

    def _halt(self, outcome: Outcome) -> None:
        """The first stop wins; it cuts the backend short if it is still being read."""
        if self._stop_outcome is not None:
            return
        self._stop_outcome = outcome
        if self._consuming and self._task is not None:
            self._halted = True
            self._task.cancel()

    # --- the run ---------------------------------------------------------------------------

    async def run(self) -> Exchange | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._task = asyncio.current_task()
        try:
            await self._consume_until_halted()
            await self._stop_flushing()
            return await self._finish()
        finally:
            self._observer.finished(self._outcome.status, loop.time() - started)
            self.done.set()

    async def _consume_until_halted(self) -> None:
        if self._stop_outcome is not None:  # stopped before it began
            self._outcome = self._stop_outcome
            return
        try:
            await self._consume()
        except asyncio.CancelledError:
            assert self._task is not None
            if not self._halted or self._task.uncancel() > 0:
                raise  # cancelled from outside, not by a halt
            self._outcome = self._stop_outcome or Outcome("cancelled", "cancelled")

    async def _consume(self) -> None:
        stream = self._backend.stream(self.spec.request)
        self._consuming = True
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    self._meter.report(chunk.usage)
                if chunk.text:
                    self._add_text(chunk.text)
                if chunk.finish_reason:
                    self._outcome.finish_reason = chunk.finish_reason
        except BackendError as exc:
            extra = {"exchangeId": self.spec.xid, "code": exc.code, "reason": exc.message}
            log.warning("model backend failed", extra=extra)  # messages carry no credentials
            info = ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable)
            self._outcome = Outcome("failed", "error", info)
        except Exception as exc:
            log.exception("backend crashed", extra={"exchangeId": self.spec.xid})
            info = ErrorInfo(code="internal_error", message=f"the model backend failed: {exc}")
            self._outcome = Outcome("failed", "error", info)
        finally:
            self._consuming = False
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
        if self._outcome.status == "completed" and self._outcome.finish_reason is None:
            self._outcome.finish_reason = "stop"

    def _add_text(self, text: str) -> None:
        if self._first_token_ms is None:
            self._first_token_ms = now_ms()
            self._observer.first_token()
        self._parts.append(text)
        self._pending.append(text)
        self._pending_chars += len(text)
        self._meter.add_text(text)
        over = self._pending_chars > self._config.backlog_max_chars
        if self._outage_since is not None and over:
            self.abort("redis_unavailable", "Redis is unreachable and the backlog is full", "error")
        self._schedule()

    # --- flushing --------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Flush now if the last flush is an interval old (the leading edge), else when it
        is. A flush in flight schedules the next one as it lands."""
        if self._closing or self._landing is not None or self._timer is not None:
            return
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        due = self._last_flush + self._retry_interval()
        if due <= loop.time():
            self._send()
        else:
            self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._send()

    def _retry_interval(self) -> float:
        if self._outage_since is None:
            return self._interval
        return max(self._interval, _OUTAGE_RETRY)

    async def _stop_flushing(self) -> None:
        """Cut a waiting flush short; let one in flight land, so its outcome is known."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._landing is not None:
            await asyncio.shield(self._landing)

    def _attempt(self) -> Attempt:
        text = "".join(self._pending)
        shown = self._meter.shown()
        data = msgspec.json.encode(Delta(self._seq + 1, text, shown))
        log_ttl = self._config.replay_retention_seconds + self._config.lock_ttl_ms // 1000
        args = [
            self._seq + 1,
            data,
            *self._meter.unwritten(shown),
            self._config.lock_ttl_ms,
            log_ttl,
        ]
        return Attempt(args, shown, len(self._pending))

    def _send(self) -> asyncio.Future[bool] | None:
        """Send the pending text as the next delta (or resend the one in doubt); the future
        says whether Redis has it now. None when there is nothing to send."""
        if not self._pending or self._landing is not None:
            return self._landing
        attempt = self._frozen = self._frozen or self._attempt()
        loop = asyncio.get_running_loop()
        landing = self._landing = loop.create_future()
        started = loop.time()
        reply = self._submit(_FLUSH, self._flush_keys, attempt.args)
        reply.add_done_callback(lambda done: self._flushed(done, attempt, landing, started))
        return landing

    def _flushed(
        self,
        reply: asyncio.Future[Any],
        attempt: Attempt,
        landing: asyncio.Future[bool],
        started: float,
    ) -> None:
        self._landing = None
        now = asyncio.get_running_loop().time()
        try:
            stream_id, cancel, repeated = reply.result()
        except (RedisError, OSError, TimeoutError) as exc:
            self._last_flush = now  # the retry waits from the failed attempt
            self._on_outage(exc, started)
            _resolve(landing, False)
            self._schedule()
            return
        except BaseException as exc:  # not Redis's doing: let whoever waits see it
            if not landing.done():
                landing.set_exception(exc)
            return
        self._frozen = None
        self._outage_since = None
        self._last_flush = now
        del self._pending[: attempt.taken]
        self._pending_chars = sum(map(len, self._pending))
        self._seq += 1
        self._meter.mark_written(attempt.shown)
        self._observer.flushed(repeated=bool(repeated))
        _resolve(landing, True)
        if not stream_id:
            self.abort("session_deleted", "the session was deleted", "cancelled")
        elif cancel:
            self.request_cancel()
        self._schedule()

    async def _flush(self) -> bool:
        """Flush the pending text and wait for the outcome; True if Redis has it now."""
        landing = self._send()
        return True if landing is None else await asyncio.shield(landing)

    def _submit(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """A script call; during an outage it gives up when the outage bound is reached, so
        a Redis that accepts calls but never answers cannot stretch the bound. Past the bound
        (the end still to store) only the batcher's own timeout applies, so a Redis that is
        back but slow still gets the end stored."""
        reply = self._batcher.submit(script, keys, args)
        if self._outage_since is None:
            return reply
        loop = asyncio.get_running_loop()
        left = self._outage_since + self._config.redis_outage_bound_seconds - loop.time()
        if left > 0:
            timer = loop.call_later(left + _OUTAGE_RETRY, _expire, reply)
            reply.add_done_callback(lambda _: timer.cancel())
        return reply

    def _on_outage(self, exc: BaseException, started: float) -> None:
        """A call sent at ``started`` failed: the outage began then, at the latest."""
        now = asyncio.get_running_loop().time()
        self._observer.redis_error()
        if self._outage_since is None:
            self._outage_since = started
            log.warning("flush failed", extra={"exchangeId": self.spec.xid, "error": str(exc)})
        if now - self._outage_since > self._config.redis_outage_bound_seconds:
            self.abort(
                "redis_unavailable",
                f"Redis was unreachable for over {self._config.redis_outage_bound_seconds:g}s",
                "error",
            )

    # --- the end ---------------------------------------------------------------------------

    def exchange(self, usage: Usage, completed_ms: int) -> Exchange:
        return Exchange(
            exchange_id=self.spec.xid,
            session_id=self.spec.sid,
            input_text=self.spec.user_text,
            reply_text="".join(self._parts),
            status=self._outcome.status,
            finish_reason=self._outcome.finish_reason,
            usage=usage,
            created_ms=self.spec.created_ms,
            completed_ms=completed_ms,
            error=self._outcome.error,
            parameters=self.spec.parameters,
            first_token_ms=self._first_token_ms,
        )

    async def _finish(self) -> Exchange | None:
        """Flush the rest and store the end; retried until Redis answers."""
        delay = _OUTAGE_RETRY
        while True:
            started = asyncio.get_running_loop().time()
            try:
                return await self._store_end()
            except (RedisError, OSError, TimeoutError) as exc:
                self._on_outage(exc, started)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _FINISH_RETRY_MAX)

    async def _store_end(self) -> Exchange | None:
        while self._pending:
            # The last delta keeps the interval too, except when the shutdown deadline is up.
            wait = self._last_flush + self._interval - asyncio.get_running_loop().time()
            if wait > 0 and self._outcome.finish_reason != "shutdown":
                await asyncio.sleep(wait)
            if not await self._flush():
                raise RedisError("final flush failed")
        if self._end is None:  # like a delta, the end is frozen until Redis confirms it
            final = self._meter.final(complete=self._outcome.status == "completed")
            completed = now_ms()
            exchange = self.exchange(final, completed)
            args = finish_args(exchange, self._meter.unwritten(final), completed, self._config)
            self._end = (exchange, args, final)
            if self.on_end:
                await self.on_end(exchange)
        exchange, args, final = self._end
        stream_id = await self._submit(FINISH_SCRIPT, self._finish_keys, args)
        self._meter.mark_written(final)
        return exchange if stream_id else None


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _expire(reply: asyncio.Future[Any]) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError("Redis did not answer within the outage bound"))


class RunObserver:
    """Hooks for metrics; the default does nothing."""

    def first_token(self) -> None: ...

    def flushed(self, *, repeated: bool) -> None:
        """A delta reached Redis; ``repeated``: an earlier try had already written it."""

    def redis_error(self) -> None: ...

    def finished(self, status: str, seconds: float) -> None: ...

    def charged(self, principal: str, tokens: int) -> None:
        """An exchange of ``principal`` ended, having used ``tokens``."""

    def refused(self, code: str) -> None:
        """A request or exchange was refused by a limit (``rate_limited``, ...)."""
