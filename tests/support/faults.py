"""A TCP proxy between a Parley server and Redis that misbehaves on command, for fault tests.

Start a server with ``PARLEY_REDIS_URL`` at the proxy and every connection it opens (the
command pool, the pub/sub hub, the flush batcher) goes through the proxy, so a test decides
when Redis hangs, vanishes or answers late without touching the Redis process. The proxy runs
in the test's own event loop, so anything that blocks while the server talks to Redis (its
start-up, its shutdown) must run in a worker thread::

    async with FaultProxy(redis_url) as proxy:
        server = await asyncio.to_thread(server_factory, redis_url=proxy.url)
        await proxy.pause(8)            # returns when forwarding has resumed
        proxy.blackhole(True)           # ... proxy.blackhole(False)
        proxy.delay_replies(2000)       # ... proxy.delay_replies(0)
        cut = proxy.cut_mid_batch()     # an Event, set once the cut happened
        proxy.drop_all()

What each fault does, and why:

- ``pause``: nothing moves either way, nothing is lost. As with a hung Redis, bytes a client
  wrote before giving up on its connection still reach Redis (and run) when forwarding resumes.
- ``blackhole``: bytes either way are read and thrown away, as a network losing every packet
  would; connections stay open and new ones are accepted. A connection that lost bytes is
  broken for good (its replies no longer match its commands), so lifting the blackhole closes
  it, as TCP gives up on one whose retransmissions went nowhere.
- ``delay_replies``: each chunk from Redis is delivered that long after it arrived, in order
  (one that arrived before the delay was turned off keeps it).
- ``cut_mid_batch``: the next client write carrying two or more commands (a pipelined batch)
  is forwarded only halfway; then Redis sees the end of the stream (it runs the commands that
  arrived whole) and the client sees its connection reset (it never gets their replies).
- ``drop_all``: every open connection is reset on both sides; new ones are accepted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from server.embedded_redis import free_port

_CHUNK = 1 << 16
# One chunk read from a socket, with the loop time it arrived; None is the end of the stream.
_Queue = asyncio.Queue[tuple[float, bytes] | None]


@dataclass
class ProxyStats:
    accepted: int = 0
    to_redis: int = 0  # bytes delivered to Redis
    from_redis: int = 0  # bytes delivered to clients
    dropped: int = 0  # bytes a blackhole threw away
    cuts: list[list[str]] = field(default_factory=list)  # command names of each cut write


def command_names(data: bytes) -> list[str]:
    """The name of each top-level RESP command that starts in ``data`` (a client's write).

    Stops at the first thing that is not a well-formed command start, e.g. a chunk that
    begins in the middle of a large command.
    """
    names: list[str] = []
    at = 0
    try:
        while data.startswith(b"*", at):
            end = data.index(b"\r\n", at)
            count, at = int(data[at + 1 : end]), end + 2
            for i in range(count):
                end = data.index(b"\r\n", at)
                size = int(data[at + 1 : end])
                if i == 0:
                    names.append(data[end + 2 : end + 2 + size].decode(errors="replace").upper())
                at = end + 2 + size + 2
    except ValueError:  # a header cut short by the chunk's end, or not RESP at all
        pass
    return names


class _Link:
    """One proxied connection: the client's socket, Redis's socket and four pump tasks."""

    def __init__(self, client: asyncio.StreamWriter, redis: asyncio.StreamWriter) -> None:
        self.client = client
        self.redis = redis
        self.tasks: list[asyncio.Task[None]] = []
        self.lost = False  # a blackhole threw some of its bytes away

    def reset(self) -> None:
        for writer in (self.client, self.redis):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Forwards loopback connections to the Redis at ``target_url``, with faults on demand."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.port = free_port()
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._blackholed = False
        self._reply_delay = 0.0
        self._cut: asyncio.Event | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for link in self._links for task in link.tasks]
        self.drop_all()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # --- faults ------------------------------------------------------------------------------

    async def pause(self, seconds: float) -> None:
        """Hold every byte, both ways, for ``seconds``; return once forwarding has resumed."""
        self._flowing.clear()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._flowing.set()

    def drop_all(self) -> int:
        """Reset every open connection, both sides; return how many there were."""
        links, self._links = self._links, set()
        for link in links:
            link.reset()
        return len(links)

    def blackhole(self, on: bool) -> None:
        """Throw away every byte while on; lifting it closes the connections that lost some."""
        self._blackholed = on
        if not on:
            for link in [link for link in self._links if link.lost]:
                self._links.discard(link)
                link.reset()

    def delay_replies(self, ms: float) -> None:
        """Deliver each chunk from Redis ``ms`` after it arrived (0: at once), in order."""
        self._reply_delay = ms / 1000

    def cut_mid_batch(self) -> asyncio.Event:
        """Arm the cut of the next pipelined write; the Event is set once it happened."""
        self._cut = asyncio.Event()
        return self._cut

    # --- forwarding ----------------------------------------------------------------------------

    async def _accept(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        try:
            redis_in, redis = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        link = _Link(client, redis)
        self._links.add(link)
        upstream: _Queue = asyncio.Queue()
        downstream: _Queue = asyncio.Queue()
        link.tasks = [
            asyncio.create_task(self._read(link, client_in, upstream)),
            asyncio.create_task(self._read(link, redis_in, downstream)),
        ]
        writers = [
            asyncio.create_task(self._write(link, upstream, redis, to_redis=True)),
            asyncio.create_task(self._write(link, downstream, client, to_redis=False)),
        ]
        link.tasks += writers
        # Each direction ends on its own (a client gone does not stop its last commands from
        # reaching Redis); the link goes once both have.
        await asyncio.gather(*writers, return_exceptions=True)
        self._links.discard(link)
        link.reset()

    async def _read(self, link: _Link, source: asyncio.StreamReader, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await source.read(_CHUNK):
                if self._blackholed:
                    link.lost = True
                    self.stats.dropped += len(data)
                else:
                    queue.put_nowait((loop.time(), data))
        except OSError:
            pass
        finally:
            queue.put_nowait(None)

    async def _write(
        self, link: _Link, queue: _Queue, target: asyncio.StreamWriter, *, to_redis: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                arrived, data = item
                await self._flowing.wait()
                if to_redis and self._cut is not None and len(names := command_names(data)) > 1:
                    await self._cut_here(link, data, names, self._cut)
                    return
                if not to_redis and self._reply_delay:
                    await asyncio.sleep(arrived + self._reply_delay - loop.time())
                target.write(data)
                await target.drain()
                if to_redis:
                    self.stats.to_redis += len(data)
                else:
                    self.stats.from_redis += len(data)
            if target.can_write_eof():
                target.write_eof()
        except OSError:
            pass

    async def _cut_here(
        self, link: _Link, data: bytes, names: list[str], cut: asyncio.Event
    ) -> None:
        self._cut = None
        half = data[: len(data) // 2]
        link.redis.write(half)
        await link.redis.drain()
        self.stats.to_redis += len(half)
        self.stats.cuts.append(names)
        link.redis.write_eof()  # Redis runs what arrived whole and drops the torn command
        link.client.transport.abort()  # the client never sees those replies
        cut.set()
