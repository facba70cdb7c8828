"""A minimal Redis connection for the two hot paths: pipelined script calls and pub/sub.

redis-py's asyncio client parses each reply through several layers, each read under its own
timeout; here one read hands hiredis everything that has arrived and takes every complete
reply at once, and commands are packed in C.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

from hiredis import Reader, pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_READ_SIZE = 1 << 16


class RespConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, decode: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = Reader(replyError=ResponseError, encoding="utf-8" if decode else None)

    @classmethod
    async def open(cls, url: str, *, decode: bool, timeout: float = 2.0) -> RespConnection:
        """Connect, authenticate and select the database named by a ``redis://`` URL."""
        parts = urlsplit(url)
        try:
            if parts.scheme == "unix":
                opening = asyncio.open_unix_connection(parts.path)
            elif parts.scheme in ("redis", "rediss"):
                tls = ssl.create_default_context() if parts.scheme == "rediss" else None
                host = parts.hostname or "localhost"
                opening = asyncio.open_connection(host, parts.port or 6379, ssl=tls)
            else:
                raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
            reader, writer = await asyncio.wait_for(opening, timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        conn = cls(reader, writer, decode=decode)
        await conn._handshake(parts.username, parts.password, parts.path, timeout)
        return conn

    async def _handshake(
        self, username: str | None, password: str | None, path: str, timeout: float
    ) -> None:
        if password:
            user = [unquote(username)] if username else []
            await self.call(timeout, "AUTH", *user, unquote(password))
        database = path.strip("/")
        if database.isdigit() and database != "0":
            await self.call(timeout, "SELECT", database)

    async def call(self, timeout: float, *args: Any) -> Any:
        """One command and its reply; only before the connection is shared."""
        self.write(args)
        replies = await asyncio.wait_for(self.replies(), timeout)
        if isinstance(replies[0], ResponseError):
            raise replies[0]
        return replies[0]

    def write(self, *commands: tuple[Any, ...]) -> None:
        self._writer.write(b"".join(pack_command(command) for command in commands))

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError as exc:
            raise RedisConnectionError(f"lost the Redis connection: {exc}") from exc

    async def replies(self) -> list[Any]:
        """Every complete reply that has arrived, waiting for at least one."""
        while True:
            replies = []
            while (reply := self._parser.gets()) is not False:
                replies.append(reply)
            if replies:
                return replies
            try:
                data = await self._reader.read(_READ_SIZE)
            except OSError as exc:
                raise RedisConnectionError(f"lost the Redis connection: {exc}") from exc
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            self._parser.feed(data)

    def close(self) -> None:
        self._writer.close()
