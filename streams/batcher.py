"""Runs the script calls that fall due in the same loop tick as one pipelined write.

Many exchanges flush on the same interval boundary; sharing a write keeps the flush path
cheap at thousands of concurrent streams. The batcher owns one connection: batches are
written as they come, without waiting for earlier replies, and a reader task hands each
reply to its caller in order. A Redis that stops answering is cut off after ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from streams.resp import RespConnection
from streams.scripts import Script


class _Line:
    """One connection and the calls written on it that still await their replies."""

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.closed = False

    def fail(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.close()
        waiting, self.waiting = self.waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)


class ScriptBatcher:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._line: _Line | None = None
        self._connecting: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._submit(command)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted and lost its scripts: load this one, then run the call again.
        await self._submit(("SCRIPT", "LOAD", script.source))
        return await self._submit(command)

    def _submit(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._spawn)
        return future

    def _spawn(self) -> None:
        batch, self._queue = self._queue, []
        self._scheduled = False
        self._start(self._send(batch))

    def _start(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        try:
            line = await self._connected_line()
            if line.closed:
                raise RedisConnectionError("lost the Redis connection")
        except RedisConnectionError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        line.conn.write(*(command for command, _ in batch))
        now = asyncio.get_running_loop().time()
        line.waiting.extend((future, now) for _, future in batch)
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
                    future, _ = line.waiting.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (RedisConnectionError, IndexError) as exc:
            line.fail(RedisConnectionError(str(exc)))

    async def _watch(self, line: _Line) -> None:
        """Cut a connection whose oldest call has waited past the timeout."""
        loop = asyncio.get_running_loop()
        while not line.closed:
            await asyncio.sleep(1.0)
            if line.waiting and loop.time() - line.waiting[0][1] > self._timeout:
                line.fail(RedisConnectionError("Redis did not answer in time"))

    async def close(self) -> None:
        if self._line is not None:
            self._line.fail(RedisConnectionError("closed"))
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
