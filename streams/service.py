"""The facade every API surface calls. Surfaces map wire formats; the logic lives here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import uuid
from typing import Any

import msgspec
from redis.exceptions import RedisError

from streams.agents import AgentCatalog
from streams.backends.registry import BackendRegistry
from streams.batcher import Batcher
from streams.clock import now_ms
from streams.compaction import summarize, summary_request
from streams.config import EngineConfig
from streams.connect import RedisClient
from streams.context import build_request, select_context
from streams.errors import InvalidInput, NotFound, NotRunning, Unavailable
from streams.events import Item
from streams.guard import redis_guarded
from streams.history import messages_of
from streams.hub import Hub, Subscription
from streams.keys import Keys
from streams.limits import ID, ID_RULE
from streams.paging import every_item
from streams.quotas import Quotas
from streams.reaper import Reaper
from streams.runner import ExchangeRunner, ExchangeSpec, RunObserver
from streams.session_watch import SessionWatch, Step, history
from streams.store import LogEntry, Store
from streams.types import (
    Archive,
    Counted,
    Exchange,
    ImportedMessage,
    NewSession,
    Page,
    Session,
    SessionContext,
    SessionPatch,
    SessionQuery,
    SessionSearch,
    Transcript,
    Turn,
    Usage,
)
from streams.watch import Watch

log = logging.getLogger("parley.service")

_ID = re.compile(ID)
_CANCEL_WAIT = 10.0
_RELEASE_WAIT = 2.0  # an end is not held up longer than this by its lease
_MAX_PARAMETERS = 64
MAX_IMPORTED = 100
MAX_STATE_BYTES = 65_536


def check_id(value: str, field: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidInput(f"must be {ID_RULE}", field=field)
    return value


class ConversationService:
    """Sessions and exchanges for every surface. The app factory builds the pieces."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        keys: Keys,
        config: EngineConfig,
        agents: AgentCatalog,
        backends: BackendRegistry,
        hub: Hub,
        store: Store,
        batcher: Batcher,
        reaper: Reaper,
        observer: RunObserver | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.redis = redis
        self.hub = hub
        hub.on_control = self.on_control
        self.keys = keys
        self.config = config
        self.agents = agents
        self.backends = backends
        self.observer = observer or RunObserver()
        self.store = store
        self.batcher = batcher
        self.reaper = reaper
        self.quotas = quotas
        self.closing = asyncio.Event()
        self._runners: dict[str, ExchangeRunner] = {}
        self._tasks: dict[str, asyncio.Task[Exchange | None]] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None
        self._leases: dict[str, tuple[str, str]] = {}  # sid -> (owner, xid) of a leased run

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.hub.start()
        self._keeper = asyncio.create_task(self._keep_locks(), name="parley-lock-keeper")

    def begin_shutdown(self) -> None:
        """Tell open streams to reconnect elsewhere and give generations their grace period."""
        if self._drain is None:
            self.closing.set()
            self.hub.wake_all()
            self._drain = asyncio.create_task(self._drain_runners(), name="parley-drain")

    async def close(self) -> None:
        self.begin_shutdown()
        assert self._drain is not None
        await self._drain
        if self._keeper:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.hub.stop()
        await self.batcher.close()

    async def _drain_runners(self) -> None:
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.shutdown_grace_seconds)
        late = [sid for sid, task in self._tasks.items() if not task.done()]
        for sid in late:
            self._runners[sid].abort(
                "shutdown", "the server shut down before the reply was finished", "shutdown"
            )
        if late:
            await asyncio.wait([self._tasks[s] for s in late], timeout=5.0)

    async def _keep_locks(self) -> None:
        period = self.config.lock_ttl_ms / 3000
        while True:
            await asyncio.sleep(period)
            if not self._runners:
                continue
            with contextlib.suppress(RedisError, OSError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid in self._runners:
                        pipe.pexpire(self.keys.lock(sid), self.config.lock_ttl_ms)
                    await pipe.execute()
                if self.quotas and self._leases:
                    await self.quotas.renew(list(self._leases.values()))

    @property
    def running_count(self) -> int:
        return len(self._runners)

    async def ready(self) -> bool:
        if not self.hub.connected:
            return False
        try:
            return await asyncio.wait_for(self.store.ping(), 1.0)
        except (RedisError, OSError, TimeoutError):
            return False

    # --- sessions --------------------------------------------------------------------------

    @redis_guarded
    async def create_session(
        self, owner: str, new: NewSession, sid: str | None = None, *, exclusive: bool = False
    ) -> Session:
        """A new session (``sid`` when given); see :meth:`Store.create_session`."""
        if sid is not None:
            check_id(sid, "session_id")
        _check_state(new.state)
        _check_state(new.attributes, "attributes")
        agent = await self.agents.resolve(new.agent_id, new.agent_version)
        new = msgspec.structs.replace(
            new,
            agent_version=agent.version,
            refresh_interval_ms=new.refresh_interval_ms or agent.default_refresh_interval_ms,
        )
        return await self.store.create_session(owner, new, sid, exclusive=exclusive)

    @redis_guarded
    async def get_session(self, owner: str, sid: str) -> Session:
        return await self.store.get_session(owner, sid)

    @redis_guarded
    async def get_or_create_session(self, owner: str, sid: str, new: NewSession) -> Session:
        check_id(sid, "session_id")
        try:
            return await self.store.get_session(owner, sid)
        except NotFound:
            return await self.create_session(owner, new, sid)

    @redis_guarded
    async def list_sessions(self, owner: str, query: SessionQuery) -> Page[Session]:
        return await self.store.list_sessions(owner, query)

    @redis_guarded
    async def search_sessions(self, owner: str, search: SessionSearch) -> Counted[Session]:
        """A numbered page with the exact number of matches; reads all of ``owner``'s
        sessions, so prefer :meth:`list_sessions` where cursors do."""
        return await self.store.search_sessions(owner, search)

    @redis_guarded
    async def update_session(self, owner: str, sid: str, patch: SessionPatch) -> Session:
        if not isinstance(patch.state, msgspec.UnsetType):
            _check_state(patch.state)
        if not isinstance(patch.attributes, msgspec.UnsetType):
            _check_state(patch.attributes, "attributes")
        return await self.store.update_session(owner, sid, patch)

    @redis_guarded
    async def delete_session(self, owner: str, sid: str) -> bool:
        running = await self.store.running_exchange_id(sid)
        deleted = await self.store.delete_session(owner, sid)
        if deleted and running:
            await self._signal_cancel(sid, running)
        return deleted

    @redis_guarded
    async def list_exchanges(
        self, owner: str, sid: str, limit: int, cursor: str | None
    ) -> Page[Exchange]:
        """The session's exchanges, oldest first, a page at a time."""
        return await self.store.list_exchanges(owner, sid, limit, cursor)

    async def all_exchanges(self, owner: str, sid: str) -> list[Exchange]:
        """Every exchange of the session, oldest first, for APIs that answer with all."""
        return await every_item(lambda cursor: self.list_exchanges(owner, sid, 100, cursor))

    @redis_guarded
    async def get_exchange(self, owner: str, sid: str, xid: str) -> Exchange:
        await self.store.get_session(owner, sid)
        exchange = await self.store.get_exchange(sid, xid)
        if exchange is None:
            raise NotFound(
                f"exchange {xid} not found",
                resource="exchange",
                details={"session_id": sid, "exchange_id": xid},
            )
        return exchange

    # --- history without the model: imports, compaction, context -------------------------

    def check_messages(self, messages: list[ImportedMessage]) -> None:
        """Refuse messages :meth:`import_messages` would refuse, before a caller creates the
        session they go to."""
        if not 1 <= len(messages) <= MAX_IMPORTED:
            raise InvalidInput(f"must hold 1 to {MAX_IMPORTED} messages", field="messages")
        for m in messages:
            self._check_input(Turn(text=m.text))

    @redis_guarded
    async def import_messages(
        self, owner: str, sid: str, messages: list[ImportedMessage]
    ) -> Session:
        """Append user and assistant messages to the history without running the model; the
        next exchange sends them as history. Refused (busy) while an exchange runs."""
        self.check_messages(messages)
        await self.store.import_messages(owner, sid, messages, now_ms())
        return await self.store.get_session(owner, sid)

    @redis_guarded
    async def transcript(self, owner: str, sid: str) -> Transcript:
        session = await self.store.get_session(owner, sid)
        history = await self.store.completed_history(sid)
        archives = await self.store.archives(sid) if session.commit_count else []
        return Transcript(session=session, messages=messages_of(history), archives=archives)

    @redis_guarded
    async def archive(self, owner: str, sid: str, number: int) -> Archive:
        found = await self.transcript(owner, sid)
        for archive in found.archives:
            if archive.number == number:
                return archive
        raise NotFound(
            f"archive {number} of session {sid} not found",
            resource="archive",
            details={"session_id": sid, "archive": number},
        )

    @redis_guarded
    async def context(self, owner: str, sid: str, budget: int) -> SessionContext:
        """The summaries and live messages the next exchange would send within ``budget``
        tokens (besides the instructions and the new input)."""
        if budget < 0:
            raise InvalidInput("must be 0 or more", field="token_budget")
        found = await self.transcript(owner, sid)
        return select_context(found.live, found.archives, budget)

    @redis_guarded
    async def commit(self, owner: str, sid: str, keep_recent_count: int) -> Archive | None:
        """Archive the live messages before the newest ``keep_recent_count``: the agent writes
        their summary, which takes their place in the model's context. None: nothing was
        outside the keep window, and nothing changed."""
        if keep_recent_count < 0:
            raise InvalidInput("must be 0 or more", field="keep_recent_count")
        found = await self.transcript(owner, sid)
        live = found.live
        doomed = live[: max(0, len(live) - keep_recent_count)]
        if not doomed:
            return None
        session = found.session
        agent = await self.agents.resolve(session.agent_id, session.agent_version)
        request = summary_request(agent, doomed)
        summary, usage = await summarize(self.backends.for_agent(agent), request)
        first = session.archived_messages
        archive = Archive(
            number=session.commit_count + 1,
            summary=summary,
            first=first,
            last=first + len(doomed),
            created_ms=now_ms(),
            usage=usage,
        )
        await self.store.commit(owner, sid, archive, keep_recent_count)
        return archive

    # --- continues -------------------------------------------------------------------------

    def check_turn(self, turn: Turn) -> None:
        """Refuse a turn the service would refuse, before a caller creates what it needs
        (a session to run it in): a refused request changes nothing."""
        self._check_input(turn)

    def _check_input(self, turn: Turn) -> None:
        limit = self.config.max_input_chars
        if not turn.text.strip():
            raise InvalidInput("must not be empty", field="input_text")
        if len(turn.text) > limit:
            raise InvalidInput(
                f"is longer than {limit} characters", field="input_text", details={"limit": limit}
            )
        if len(turn.parameters) > _MAX_PARAMETERS:
            raise InvalidInput(f"holds more than {_MAX_PARAMETERS} values", field="parameters")
        if sum(len(k) + len(v) for k, v in turn.parameters.items()) > limit:
            raise InvalidInput(
                f"are longer than {limit} characters in all",
                field="parameters",
                details={"limit": limit},
            )

    async def _begin(self, owner: str, sid: str, turn: Turn) -> tuple[ExchangeRunner, bool]:
        """The runner of a new exchange, and whether it holds a lease of its owner's limits."""
        self._check_input(turn)
        if self.closing.is_set():
            raise Unavailable("the server is shutting down", retry_after=1)
        xid = check_id(turn.exchange_id, "exchange_id") if turn.exchange_id else uuid.uuid4().hex
        leased = await self.quotas.admit(owner, xid) if self.quotas else False
        try:
            return await self._runner(owner, sid, xid, turn), leased
        except BaseException:
            if leased:
                await self._release(owner, xid, 0, began=False)
            raise

    async def _runner(self, owner: str, sid: str, xid: str, turn: Turn) -> ExchangeRunner:
        session, history = await self.store.turn_context(owner, sid)
        agent = await self.agents.resolve(session.agent_id, session.agent_version)
        live = messages_of(history)[session.archived_messages :]
        archives = await self.store.archives(sid) if session.commit_count else []
        request = build_request(agent, live, turn.text, turn.parameters, archives)
        backend = self.backends.for_agent(agent)
        created = now_ms()
        await self.store.begin_exchange(owner, sid, xid, turn.text, turn.parameters, created)
        spec = ExchangeSpec(
            owner,
            sid,
            xid,
            turn.text,
            created,
            session.refresh_interval_ms,
            request,
            turn.parameters,
        )
        return ExchangeRunner(spec, backend, self.batcher, self.keys, self.config, self.observer)

    def _launch(self, runner: ExchangeRunner, leased: bool) -> asyncio.Task[Exchange | None]:
        sid = runner.spec.sid
        task = asyncio.create_task(self._run(runner, leased), name=f"parley-run-{runner.spec.xid}")
        self._runners[sid] = runner
        self._tasks[sid] = task

        def forget(_: asyncio.Task[Exchange | None]) -> None:
            if self._runners.get(sid) is runner:
                del self._runners[sid]
                del self._tasks[sid]

        task.add_done_callback(forget)
        return task

    async def _run(self, runner: ExchangeRunner, leased: bool) -> Exchange | None:
        """Run; a leased run keeps its lease renewed and gives it back with its tokens as
        the exchange ends (or, should the run fail outright, with none)."""
        owner, sid, xid = runner.spec.owner, runner.spec.sid, runner.spec.xid
        ended = False

        async def on_end(exchange: Exchange) -> None:
            nonlocal ended
            ended = True
            self.observer.charged(owner, exchange.usage.total_tokens)
            if leased:
                await self._release(owner, xid, exchange.usage.total_tokens)

        runner.on_end = on_end
        if leased:
            self._leases[sid] = (owner, xid)
        try:
            return await runner.run()
        finally:
            if leased:
                del self._leases[sid]
                if not ended:
                    await self._release(owner, xid, 0)

    async def _release(self, owner: str, xid: str, tokens: int, *, began: bool = True) -> None:
        """A lease that cannot be given back runs out on its own; its tokens go uncharged."""
        assert self.quotas is not None
        try:
            async with asyncio.timeout(_RELEASE_WAIT):
                await self.quotas.release(owner, xid, tokens, began=began)
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("could not release an exchange lease", extra={"reason": str(error)})

    @redis_guarded
    async def blocking_continue(self, owner: str, sid: str, turn: Turn) -> Exchange:
        runner, leased = await self._begin(owner, sid, turn)
        exchange = await asyncio.shield(self._launch(runner, leased))
        if exchange is None:
            raise NotFound(
                f"session {sid} was deleted", resource="session", details={"session_id": sid}
            )
        return exchange

    @redis_guarded
    async def streaming_continue(self, owner: str, sid: str, turn: Turn) -> Watch:
        self._check_input(turn)
        sub = await self._subscribe(sid)
        try:
            runner, leased = await self._begin(owner, sid, turn)
        except BaseException:
            sub.close()
            raise
        self._launch(runner, leased)
        return self._watch(sub, runner.spec.xid, None, [])

    @redis_guarded
    async def start_continue(self, owner: str, sid: str, turn: Turn) -> Exchange:
        """Begin a turn and run it in the background; return the exchange as it began. For
        APIs whose clients follow a session's events elsewhere (:meth:`watch_session`)."""
        runner, leased = await self._begin(owner, sid, turn)
        self._launch(runner, leased)
        spec = runner.spec
        return Exchange(
            exchange_id=spec.xid,
            session_id=sid,
            input_text=spec.user_text,
            reply_text="",
            status="running",
            usage=Usage(),
            created_ms=spec.created_ms,
            parameters=spec.parameters,
        )

    @redis_guarded
    async def watch_session(
        self, owner: str, sid: str, resume: tuple[str, str | None] | None = None
    ) -> SessionWatch:
        """Follow the whole session: its history, then each exchange as it runs, until the
        client leaves. ``resume`` (xid, log entry id or None) starts at that exchange, after
        that entry; :class:`NotFound` (an exchange) when the session has no such exchange."""
        await self.store.get_session(owner, sid)
        start = await self._position_of(sid, resume[0]) if resume else 0
        sub = await self._subscribe(sid)
        watch = SessionWatch(
            self.store,
            self.reaper,
            sub,
            owner,
            start=start,
            after=resume[1] if resume else None,
            closing=self.closing,
        )
        try:
            await watch.prime()
        except BaseException:
            sub.close()
            raise
        return watch

    @redis_guarded
    async def session_history(
        self, owner: str, sid: str, count: int, resume: tuple[str, str | None] | None = None
    ) -> tuple[list[Step], str | None]:
        """The steps of up to ``count`` exchanges, oldest first, from the first one or from
        ``resume`` (as in :meth:`watch_session`); and the id of the exchange that follows,
        None when there is none (yet)."""
        await self.store.get_session(owner, sid)
        start = await self._position_of(sid, resume[0]) if resume else 0
        steps, more = await history(self.store, sid, start, count, resume[1] if resume else None)
        if not more:
            return steps, None
        following, _ = await self.store.exchanges_from(sid, start + count, 1)
        return steps, following[0].exchange_id if following else None

    async def _position_of(self, sid: str, xid: str) -> int:
        position = await self.store.exchange_index(sid, xid)
        if position is None:
            raise NotFound(
                f"exchange {xid} not found",
                resource="exchange",
                details={"session_id": sid, "exchange_id": xid},
            )
        return position

    async def _subscribe(self, sid: str) -> Subscription:
        if not self.hub.connected:
            raise Unavailable("the event hub is reconnecting to Redis")
        return await self.hub.subscribe(sid)

    def _watch(self, sub: Subscription, xid: str, after: str | None, replay: list[Item]) -> Watch:
        return Watch(
            self.store,
            sub,
            xid,
            after,
            initial=replay,
            closing=self.closing,
            alive=functools.partial(self.reaper.alive, sub.sid, xid),
        )

    @redis_guarded
    async def watch(self, owner: str, sid: str, last_event_id: str | None) -> Watch | None:
        """Join the exchange in flight, or resume after ``last_event_id``; None: nothing to send."""
        await self.store.get_session(owner, sid)
        sub = await self._subscribe(sid)
        try:
            running = await self.store.running_exchange_id(sid)
            xid, entries = await self._resume_point(sid, running, last_event_id)
            if xid is not None and xid != running and not _ends(entries):
                entries = await self._reaped_log(sid, xid, last_event_id, entries)
        except BaseException:
            sub.close()
            raise
        if xid is None or (not entries and running is None):
            sub.close()
            return None
        replay = [Item(e.kind, e.id, e.data) for e in entries]
        return self._watch(sub, xid, last_event_id, replay)

    async def _reaped_log(
        self, sid: str, xid: str, after: str | None, entries: list[LogEntry]
    ) -> list[LogEntry]:
        """An exchange nobody runs any more gets its end stored first, so the watch ends."""
        if await self.reaper.reap(sid, xid):
            return await self.store.read_log(sid, xid, after)
        return entries

    async def _resume_point(
        self, sid: str, running: str | None, last_event_id: str | None
    ) -> tuple[str | None, list[LogEntry]]:
        """The exchange to replay and its entries after ``last_event_id``.

        A client that lost an exchange midway first gets the rest of that one, even when a
        newer exchange has started or finished since; after its end event, the next one.
        """
        if last_event_id:
            lost = await self.store.exchange_of_event(sid, last_event_id)
            if lost is not None and lost != running:
                entries = await self.store.read_log(sid, lost, last_event_id)
                if entries:
                    return lost, entries
        xid = running or (await self.store.latest_exchange_id(sid) if last_event_id else None)
        if xid is None:
            return None, []
        return xid, await self.store.read_log(sid, xid, last_event_id)

    # --- cancel ----------------------------------------------------------------------------

    @redis_guarded
    async def cancel(
        self,
        owner: str,
        sid: str,
        xid: str | None = None,
        *,
        reply: str | None = None,
        drop: bool = False,
    ) -> Exchange:
        """Stop the running exchange (``xid``, when given, must be it) and wait for its end.

        ``reply`` replaces what the model had said, and the exchange counts as answered;
        ``drop`` leaves it out of the history the model sees. Neither: the partial reply stays.
        """
        await self.store.get_session(owner, sid)
        running = await self.store.running_exchange_id(sid)
        if running is None or (xid is not None and xid != running):
            what = f"exchange {xid} is not" if xid else "no exchange is"
            raise NotRunning(
                f"{what} running in session {sid}",
                details={"session_id": sid, "exchange_id": xid},
            )
        sub = await self._subscribe(sid)
        try:
            await self._signal_cancel(sid, running)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until_end(sub), _CANCEL_WAIT)
        finally:
            sub.close()
        if reply is not None or drop:
            await self.store.settle_cancelled(sid, running, reply)
        return await self.get_exchange(owner, sid, running)

    @redis_guarded
    async def interrupt(self, owner: str, sid: str) -> str | None:
        """Ask the running exchange to stop, without waiting for its end; its id, or None
        when nothing runs. For APIs that answer "canceling" at once."""
        await self.store.get_session(owner, sid)
        running = await self.store.running_exchange_id(sid)
        if running is not None:
            await self._signal_cancel(sid, running)
        return running

    @redis_guarded
    async def running_session_of(self, owner: str, xid: str) -> str | None:
        """Which of ``owner``'s sessions runs exchange ``xid`` now, for APIs that cancel a run
        by its id alone. Looks through the owner's sessions, most recently active first."""
        return await self.store.running_session_of(owner, xid)

    async def _signal_cancel(self, sid: str, xid: str) -> None:
        runner = self._runners.get(sid)
        if runner is not None and runner.spec.xid == xid:
            runner.request_cancel()
            return
        await self.store.request_cancel(sid)
        await self.redis.publish(self.keys.control(), f"cancel|{sid}|{xid}")

    def on_control(self, payload: bytes) -> None:
        kind, _, rest = payload.decode().partition("|")
        if kind != "cancel":
            return
        sid, _, xid = rest.partition("|")
        runner = self._runners.get(sid)
        if runner is not None and runner.spec.xid == xid:
            runner.request_cancel()

    def cancel_local(self, sid: str, xid: str) -> bool:
        """Cancel an exchange this process runs; used when its stream's client goes away."""
        runner = self._runners.get(sid)
        if runner is None or runner.spec.xid != xid:
            return False
        runner.request_cancel()
        return True


def _check_state(state: dict[str, Any] | None, field: str = "state") -> None:
    """A session's state (or attributes) is read with the session on every listing, so it
    stays small."""
    if state is not None and len(msgspec.json.encode(state)) > MAX_STATE_BYTES:
        raise InvalidInput(
            f"is larger than {MAX_STATE_BYTES} bytes as JSON",
            field=field,
            details={"limit": MAX_STATE_BYTES},
        )


def _ends(entries: list[LogEntry]) -> bool:
    return bool(entries) and entries[-1].kind == "end"


async def _until_end(sub: Subscription) -> None:
    while True:
        await sub.wakeup.wait()
        if any(item.terminal for item in sub.take()):
            return
