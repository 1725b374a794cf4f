"""The Unix socket server: framing, parsing off the UI's loop, batches into the engine.

It runs an asyncio loop in its own thread. Each connection is framed either by newlines or,
as DogStatsD clients do on stream sockets, by a 4-byte little-endian length before each
packet; the first bytes decide which (text never contains a NUL byte, a length below 16 MiB
always does). A ``hello`` request as the first line switches a connection to binary frames
(vtmon.ingest.frames).

The connections are vtmon.ingest.connection's; the socket file and the peer's credentials
vtmon.ingest.socket_file's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import inspect
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vtmon.config import Config
from vtmon.ingest.connection import (
    FOR_ENGINE,
    READ_CLOSE,
    READ_DATA,
    READ_OPEN,
    Connection,
    ReadRecorder,
)
from vtmon.ingest.socket_file import (
    SocketError,
    SocketInUse,
    peer_uid,
    prepare_path,
    probe,
    resolve_group,
)
from vtmon.model import CLOSED_BUFFER_FULL, CLOSED_FRAME_TIMEOUT, CLOSED_UNREAD, Batch
from vtmon.process import OUT_OF_RESOURCES, Backoff
from vtmon.protocol import jsonrpc
from vtmon.protocol.frames import MAX_FRAME

__all__ = [
    "READ_CLOSE",
    "READ_DATA",
    "READ_OPEN",
    "Engine",
    "IngestServer",
    "SocketError",
    "SocketInUse",
    "peer_uid",
    "prepare_path",
    "probe",
    "resolve_group",
    "server_options",
]

log = logging.getLogger(__name__)

ACCEPT_BURST = 128  # connections taken per wake-up before other connections get a turn
_DEFAULTS = Config()  # the [limits] defaults
SWEEP_S = 1.0  # how often idle connections inside an unfinished frame are looked for
STOP_WAIT_S = 5.0  # how long a stopping server waits for the engine to take what is left


class Engine(Protocol):
    """What the server needs from the engine (vtmon.engine.monitor.Monitor provides it).

    ``connections`` holds the counters the server keeps: ``open``, ``total``, ``bytes``,
    ``refused`` (connections closed at once: ``max_connections`` were open) and ``closed``
    (connections closed for a limit, by reason).

    ``handle_rpc`` gets the connection a request came on as a second argument when it takes
    one (the connection is a ``vtmon.tuning.actuators.Connection``; its ``owner`` says whether
    the peer is vtmon's own user); it is called in the server's RPC thread, one request at a
    time. More methods are used when the engine has them: ``handle_rpc_response(message,
    conn)`` for JSON-RPC responses an application sends back (answers to ``knobs.set``),
    ``connection_closed(conn_id)`` once a connection is gone, its last batch was submitted and
    its last request answered, and ``offer(batch)`` with ``on_room(fn)``: ``offer`` queues a
    batch only if there is room at once (False: the server keeps it) and ``fn`` is called,
    from any thread, when a batch refused may be offered again. Without them, ``submit`` is
    called and may wait.
    """

    connections: Any

    def submit(self, batch: Batch, timeout: float = ...) -> bool: ...

    def handle_rpc(self, request: dict[str, Any], conn: Any = ...) -> dict[str, Any] | None: ...


class IngestServer:
    """Serves one Unix stream socket from a background thread.

    Limits (docs/protocol.md, "Limits"): a connection whose answers wait unread beyond
    ``max_unread_kib`` is closed; unfinished lines and frames and the binary series declared,
    over all connections, hold at most ``max_buffered_mb`` (past it the connection holding the
    most is closed); a connection idle inside an unfinished line or frame for
    ``frame_timeout_s`` is closed; a binary connection declares at most
    ``max_declared_series`` series. Each close is counted by reason in
    ``engine.connections.closed``. ``clock`` (monotonic seconds) times the idleness; ``sweep``
    checks it, every ``SWEEP_S`` on its own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        engine: Engine,
        *,
        max_line: int = _DEFAULTS.max_line_bytes,
        max_frame: int = MAX_FRAME,
        recorder: ReadRecorder | None = None,
        max_connections: int = _DEFAULTS.max_connections,
        max_unread_kib: int = _DEFAULTS.max_unread_kib,
        max_buffered_mb: int = _DEFAULTS.max_buffered_mb,
        frame_timeout_s: float = _DEFAULTS.frame_timeout_s,
        max_declared_series: int = _DEFAULTS.max_declared_series,
        clock: Callable[[], float] = time.monotonic,
        socket_mode: int = 0o600,
        socket_group: str | int | None = None,
    ) -> None:
        self.path = Path(path)
        self.socket_mode = socket_mode  # [server]: who else may connect (docs/security.md)
        self.socket_group = socket_group
        self.engine = engine
        self.max_line = max_line
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.recorder = recorder  # told of every open, read and close (vtmon record)
        self.max_unread = max_unread_kib * 1024
        self.max_buffered = max_buffered_mb * 1024 * 1024
        self.frame_timeout_s = frame_timeout_s
        self.max_declared = max_declared_series
        self.clock = clock
        self.buffered = 0  # bytes the connections hold unfinished (their ``held``)
        # What the engine can hear beyond requests (a replay's endpoint hears none of it).
        self._rpc_with_conn = _takes_conn(engine.handle_rpc)
        self._on_response: Callable[[dict[str, Any], Any], Any] | None = getattr(
            engine, "handle_rpc_response", None
        )
        self._on_closed: Callable[[int], Any] | None = getattr(engine, "connection_closed", None)
        # Batches the engine's queue had no room for, in the order they came, each with the
        # connection it came on (which reads no more until it is queued) and its requests.
        self._waiting: deque[tuple[Connection, Batch, list[Any]]] = deque()
        self._offer: Callable[[Batch], bool] | None = getattr(engine, "offer", None)
        self._rpc_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[Connection] = set()
        self._accepted = 0  # accepted, protocol not made yet (counts towards the limit)
        self._tasks: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references
        self._backoff = Backoff()
        said = (
            f"vtmon already has {max_connections} connections open ([limits] max_connections); "
            "this one is closed."
        )
        self._refusal = jsonrpc.encode(jsonrpc.error(None, jsonrpc.REFUSED, said))
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._gid: int | None = None

    def start(self) -> None:
        """Bind and serve; raises SocketInUse / SocketError with a user-facing sentence."""
        self._gid = resolve_group(self.socket_group)
        prepare_path(self.path, self.socket_mode, self._gid)
        self._thread = threading.Thread(target=self._run, name="vtmon-ingest", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            sock = self._bind()
            sock.listen(128)
            self._listening = sock
            self._listen()
        except BaseException as e:
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._rpc_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vtmon-rpc")
        room = getattr(self.engine, "on_room", None)
        if room is not None:
            room(self._room)
        loop.call_later(self._sweep_every(), self._sweep_tick)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for t in list(self._conns):
                if t.transport is not None:
                    t.transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            self._flush()
            self._rpc_pool.shutdown(wait=True, cancel_futures=True)
            loop.close()

    # -- back-pressure: the engine's queue is full ------------------------------------------

    def _hand(self, conn: Connection, batch: Batch, rpcs: list[Any]) -> None:
        """Queue a batch for the engine, or keep it (behind any kept before it) and stop
        reading its connection until the engine has room: the sender waits on the socket,
        nothing is dropped, and the loop goes on answering every other connection."""
        if self._waiting or not self._queue(batch):
            self._waiting.append((conn, batch, rpcs))
            conn.waiting += 1
            conn._pause(FOR_ENGINE)
            return
        if rpcs:
            conn.queued(rpcs)

    @property
    def waiting(self) -> int:
        """Batches kept for the engine, their connections not read meanwhile."""
        return len(self._waiting)

    def _queue(self, batch: Batch) -> bool:
        if batch.is_empty() and not batch.accepted:
            return True  # only kept to keep its requests behind the batch before it
        if self._offer is None or self._loop is None:
            self.engine.submit(batch)  # an engine that waits itself, or a replay's connection
            return True
        return self._offer(batch)

    def _room(self) -> None:
        """The engine has room again (called from its thread)."""
        loop = self._loop
        if loop is not None and self._waiting:
            with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped
                loop.call_soon_threadsafe(self._retry)

    def _retry(self) -> None:
        w = self._waiting
        while w:
            conn, batch, rpcs = w[0]
            if not self._queue(batch):
                return
            w.popleft()
            conn.waiting -= 1
            if not conn.waiting:
                conn._resume(FOR_ENGINE)
            if rpcs:
                conn.queued(rpcs)
            conn._done()

    def _flush(self) -> None:
        """The server stops: what still waits goes to the engine if it takes it within
        ``STOP_WAIT_S``, else it is counted as dropped (Monitor.submit counts it)."""
        deadline = time.monotonic() + STOP_WAIT_S
        while self._waiting:
            conn, batch, _ = self._waiting.popleft()
            if not batch.is_empty() or batch.accepted:
                self.engine.submit(batch, max(0.0, deadline - time.monotonic()))
            conn.waiting -= 1
            conn._done()

    # -- what the connections hold ----------------------------------------------------------

    def _account(self, conn: Connection, held: int) -> None:
        """``conn`` now holds ``held`` bytes. Past the budget the connection holding the most
        is closed (``buffer full``), until the rest fit: to have a connection that holds n
        bytes closed, a client must hold the whole budget in connections of less than n bytes
        each, so many small well-behaved connections cannot be evicted cheaply."""
        grew = held > conn.held
        self.buffered += held - conn.held
        conn.held = held
        while grew and self.buffered > self.max_buffered:
            most = max(self._conns, key=lambda c: (c.held, c is conn), default=None)
            if most is None or not most.held or most.limit:
                break
            most.close_for(CLOSED_BUFFER_FULL)

    def sweep(self) -> int:
        """Close the connections idle inside an unfinished line or frame for
        ``frame_timeout_s`` of ``clock`` (``frame timeout``), and those that left their answers
        unread as long (``unread answers``); returns how many. Runs every
        ``SWEEP_S`` on the server's loop; any thread may call it (tests, after moving the
        clock), and it then runs on the loop and is waited for."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return self._sweep()

        async def run() -> int:
            return self._sweep()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    def _sweep(self) -> int:
        now = self.clock()
        limit = self.frame_timeout_s
        idle = [
            c for c in self._conns if c.unfinished and not c.paused and now - c.last_read >= limit
        ]
        for c in idle:
            c.close_for(CLOSED_FRAME_TIMEOUT)
        unread = [
            c for c in self._conns if c.unread_since is not None and now - c.unread_since >= limit
        ]
        for c in unread:
            c.close_for(CLOSED_UNREAD)
        return len(idle) + len(unread)

    def _sweep_every(self) -> float:
        return min(SWEEP_S, self.frame_timeout_s / 2)

    def _sweep_tick(self) -> None:
        self._sweep()
        if self._loop is not None:
            self._loop.call_later(self._sweep_every(), self._sweep_tick)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The socket file must never exist with wider permissions, not even for a moment.
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(self.path))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise SocketInUse(
                    f"Another vtmon is already listening on {self.path}; stop it or pass "
                    "--socket to use another path."
                ) from e
            raise SocketError(f"Cannot listen on {self.path}: {e.strerror}.") from e
        finally:
            os.umask(old)
        try:
            # Before listen(): nobody can connect until the mode is the configured one.
            if self._gid is not None:
                os.chown(self.path, -1, self._gid)
            os.chmod(self.path, self.socket_mode)
        except OSError as e:
            sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            who = "others"
            if self._gid is not None:
                who = f"group {self.socket_group} (vtmon's user must belong to it)"
            raise SocketError(f"Cannot open the socket {self.path} to {who}: {e.strerror}.") from e
        sock.setblocking(False)
        return sock

    # Connections are accepted here rather than by loop.create_unix_server: asyncio's accept
    # (3.11) carries on after EMFILE and schedules a retry for each failed try, so at the
    # open-file limit it spins and logs a traceback thousands of times a second.

    def _listen(self) -> None:
        sock = self._listening
        if sock is not None and self._loop is not None and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPT_BURST):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                # Out of files (or anything else that would fail again at once): stop
                # watching the socket for a while; waiting clients stay in its backlog.
                loop.remove_reader(sock.fileno())
                delay = self._backoff.failed()
                why = "no file descriptor left" if e.errno in OUT_OF_RESOURCES else "failed"
                log.warning(
                    "Cannot accept connections on %s (%s: %s, %d open); trying again in %.2f s.",
                    self.path,
                    why,
                    e.strerror or e,
                    len(self._conns) + self._accepted,
                    delay,
                )
                loop.call_later(delay, self._listen)
                return
            self._backoff.succeeded()
            if len(self._conns) + self._accepted >= self.max_connections:
                self._refuse(conn)
                continue
            self._accepted += 1
            task = loop.create_task(loop.connect_accepted_socket(self._protocol, sock=conn))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._started, conn))

    def _protocol(self) -> Connection:
        # The first thing connect_accepted_socket does; only a stopping loop skips it.
        self._accepted -= 1
        return self._make_conn()

    def _started(self, conn: socket.socket, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            conn.close()
            return
        exc = task.exception()
        if exc is not None:
            conn.close()
            log.warning("Could not start a connection on %s: %s", self.path, exc)

    def _refuse(self, conn: socket.socket) -> None:
        """Close a connection beyond ``max_connections`` at once, counted, after one JSON-RPC
        error line saying why: one send into a new socket's empty buffer, which never waits
        (a client that does not read simply never sees it)."""
        self.engine.connections.refused += 1
        try:
            conn.setblocking(False)
            conn.send(self._refusal)
        except OSError:
            pass
        conn.close()
        log.warning(
            "Refused a connection on %s: %d are open ([limits] max_connections).",
            self.path,
            self.max_connections,
        )

    def is_owner(self, uid: int | None) -> bool:
        """Whether a peer of ``uid`` is vtmon's own user (or root). Without peer credentials
        (None: a platform that gives none) only a socket no one else may open vouches for it."""
        if uid is None:
            return self.socket_mode == 0o600
        return uid in (os.geteuid(), 0)

    def _make_conn(self) -> Connection:
        c = Connection(self)
        self._conns.add(c)
        return c

    def connection(self) -> asyncio.Protocol:
        """A connection with no socket behind it, already counted as open: feed it with
        ``data_received(bytes)`` and end it with ``connection_lost(None)``. Replays use it, so
        recorded reads go through exactly the framing and parsing of a live read."""
        c = self._make_conn()
        c.opened()
        return c

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and loop.is_running():

            def _close() -> None:
                sock, self._listening = self._listening, None
                if sock is not None:
                    loop.remove_reader(sock.fileno())
                    sock.close()
                loop.stop()

            loop.call_soon_threadsafe(_close)
            self._thread.join(5)
        self._thread = None
        with contextlib.suppress(FileNotFoundError):
            # Only remove the file if it is still ours (another instance may have replaced it).
            if self.path.exists() and stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    def __enter__(self) -> IngestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_options(config: Config, *, private: bool = False) -> dict[str, Any]:
    """The ``[limits]`` and ``[server]`` settings as IngestServer's keyword arguments;
    ``private`` keeps the socket its user's alone whatever ``[server]`` says (a replay's)."""
    return {
        "socket_mode": 0o600 if private else config.server.socket_mode,
        "socket_group": None if private else config.server.socket_group,
        "max_line": config.max_line_bytes,
        "max_connections": config.max_connections,
        "max_unread_kib": config.max_unread_kib,
        "max_buffered_mb": config.max_buffered_mb,
        "frame_timeout_s": config.frame_timeout_s,
        "max_declared_series": config.max_declared_series,
    }


def _takes_conn(fn: Callable[..., Any]) -> bool:
    """Whether ``handle_rpc`` takes the connection as a second positional argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in params) >= 2
