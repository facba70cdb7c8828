"""Runs the script calls that fall due in the same loop tick as one pipelined write.

Many exchanges flush on the same interval boundary; sharing a write keeps the flush path
cheap at thousands of concurrent streams. The batcher owns one connection: batches are
written as they come, without waiting for earlier replies, and a reader task hands each
reply to its caller in order. A Redis that stops answering is cut off after ``timeout``.

:meth:`ScriptBatcher.submit` returns the reply as a future, so a caller can react to it in a
callback instead of keeping a task waiting; a script Redis has lost (a restart, ``SCRIPT
FLUSH``) is loaded again and the call resent by the reader, so callers never see
``NOSCRIPT``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError

from streams.resp import RespConnection
from streams.scripts import Script


class Batcher(Protocol):
    """What the runner and the store need of a batcher: one Redis, or one per cluster node."""

    @property
    def batches(self) -> int: ...

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any: ...

    def submit(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]: ...

    async def close(self) -> None: ...


class _Call:
    """A command and its caller's future; ``script`` when the command runs one by its sha."""

    __slots__ = ("command", "future", "script", "sent_at")

    def __init__(
        self, command: tuple[Any, ...], future: asyncio.Future[Any], script: Script | None
    ) -> None:
        self.command = command
        self.future = future
        self.script = script
        self.sent_at = 0.0


class _Line:
    """One connection and the calls written on it that still await their replies."""

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn
        self.waiting: deque[_Call] = deque()
        self.closed = False

    def fail(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.close()
        waiting, self.waiting = self.waiting, deque()
        for call in waiting:
            if not call.future.done():
                call.future.set_exception(error)


class ScriptBatcher:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._queue: list[_Call] = []
        self._scheduled = False
        self._line: _Line | None = None
        self._connecting: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return await self.submit(script, keys, args)

    def submit(
        self, script: Script, keys: list[str], args: list[Any], *, asking: bool = False
    ) -> asyncio.Future[Any]:
        """Queue a script call for this tick's batch; its reply (or error) is the future's.

        ``asking``: a cluster node redirected the call here with ``ASK`` (a slot on the
        move); ``ASKING`` goes right before it, in the same write.
        """
        future = asyncio.get_running_loop().create_future()
        if asking:
            self._queue_call(_Call(("ASKING",), self._loop_future(), None))
        self._queue_call(_Call(("EVALSHA", script.sha, len(keys), *keys, *args), future, script))
        return future

    def _queue_call(self, call: _Call) -> None:
        self._queue.append(call)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn)

    def _spawn(self) -> None:
        batch, self._queue = self._queue, []
        self._scheduled = False
        self._start(self._send(batch))

    def _start(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        self.batches += 1
        try:
            line = await self._connected_line()
            if line.closed:
                raise RedisConnectionError("lost the Redis connection")
        except RedisConnectionError as exc:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        line.conn.write(*(call.command for call in batch))
        now = asyncio.get_running_loop().time()
        for call in batch:
            call.sent_at = now
        line.waiting.extend(batch)
        try:
            await line.conn.drain()  # a Redis that reads slowly holds the callers back
        except RedisConnectionError as exc:
            line.fail(exc)

    async def _connected_line(self) -> _Line:
        if self._line is not None and not self._line.closed:
            return self._line
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._line is None or self._line.closed:
                line = _Line(await RespConnection.open(self._url, decode=True))
                self._line = line
                self._start(self._read(line))
                self._start(self._watch(line))
            return self._line

    async def _read(self, line: _Line) -> None:
        try:
            while True:
                for reply in await line.conn.replies():
                    self._answer(line.waiting.popleft(), reply)
        except (RedisConnectionError, IndexError) as exc:
            line.fail(RedisConnectionError(str(exc)))

    def _answer(self, call: _Call, reply: Any) -> None:
        if call.future.done():
            return
        if not isinstance(reply, Exception):
            call.future.set_result(reply)
        elif call.script is not None and str(reply).startswith("NOSCRIPT"):
            # Redis lost its scripts: load this one, then send the call once more.
            load = _Call(("SCRIPT", "LOAD", call.script.source), self._loop_future(), None)
            self._queue_call(load)
            self._queue_call(_Call(call.command, call.future, None))
        else:
            call.future.set_exception(reply)

    @staticmethod
    def _loop_future() -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        return future

    async def _watch(self, line: _Line) -> None:
        """Cut a connection whose oldest call has waited past the timeout."""
        loop = asyncio.get_running_loop()
        while not line.closed:
            await asyncio.sleep(1.0)
            if line.waiting and loop.time() - line.waiting[0].sent_at > self._timeout:
                line.fail(RedisConnectionError("Redis did not answer in time"))

    async def close(self) -> None:
        if self._line is not None:
            self._line.fail(RedisConnectionError("closed"))
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
