"""The Unix socket server: framing, parsing off the UI's loop, batches into the engine.

It runs an asyncio loop in its own thread. Each connection is framed either by newlines or,
as DogStatsD clients do on stream sockets, by a 4-byte little-endian length before each
packet; the first bytes decide which (text never contains a NUL byte, a length below 16 MiB
always does). A ``hello`` request as the first line switches a connection to binary frames
(vtmon.ingest.frames).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import inspect
import itertools
import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vtmon.config import Config
from vtmon.ingest import frames
from vtmon.ingest.parse import parse_block, too_long_request
from vtmon.model import (
    CLOSED_BUFFER_FULL,
    CLOSED_FRAME_TIMEOUT,
    CLOSED_UNREAD,
    REJECT_REQUEST,
    REJECT_TOO_LONG,
    Batch,
    RpcRefusal,
)
from vtmon.process import OUT_OF_RESOURCES, Backoff
from vtmon.protocol import jsonrpc
from vtmon.protocol.access import UnsafeFolder, check_folder

log = logging.getLogger(__name__)

LINES = "lines"
LENGTH = "length"
BINARY = "binary"
REJECT_BAD_FRAME = frames.REJECT_BAD_FRAME

# What a recorder is told about each connection: ``recorder(conn_id, kind, data)``, called in
# the server's thread as it happens (vtmon.export.recording.Recorder stamps and stores it).
READ_DATA = 0  # bytes exactly as one read returned them
READ_OPEN = 1
READ_CLOSE = 2
ReadRecorder = Callable[[int, int, bytes], None]

ACCEPT_BURST = 128  # connections taken per wake-up before other connections get a turn
_DEFAULTS = Config()  # the [limits] defaults
SWEEP_S = 1.0  # how often idle connections inside an unfinished frame are looked for
STOP_WAIT_S = 5.0  # how long a stopping server waits for the engine to take what is left


class SocketInUse(Exception):
    """Another live vtmon listens on the path (message is one sentence for the user)."""


class SocketError(Exception):
    """The socket cannot be set up (message is one sentence for the user)."""


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


def probe(path: str | os.PathLike[str], timeout: float = 1.0) -> bool:
    """True when something accepts connections on the Unix socket at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def prepare_path(path: Path, socket_mode: int = 0o600, gid: int | None = None) -> None:
    """Check the socket's folder (vtmon.protocol.access), creating it 0700 when it is missing;
    refuse a live socket, replace a stale one. ``socket_mode`` and ``gid``: who else the socket
    admits (``[server]``): a folder created here lets them through, never write."""
    folder = path.parent
    created = False
    if not os.path.lexists(folder):
        try:
            folder.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            pass  # made meanwhile by someone else: the check decides
        except OSError as e:
            raise SocketError(f"Cannot create the socket folder {folder}: {e.strerror}.") from e
    try:
        check_folder(path, serving=True)
    except UnsafeFolder as e:
        raise SocketError(str(e)) from None
    if created:
        _admit(folder, socket_mode, gid)
    elif _traverse(socket_mode) & ~os.stat(folder).st_mode:
        log.warning(
            "The socket admits other users (mode %04o) but its folder %s does not let them "
            "through; a folder vtmon creates does.",
            socket_mode,
            folder,
        )
    if path.exists() or path.is_symlink():
        mode = path.lstat().st_mode
        if not stat.S_ISSOCK(mode):
            raise SocketError(
                f"{path} exists and is not a socket; remove it or pass --socket "
                "to use another path."
            )
        if probe(path):
            raise SocketInUse(
                f"Another vtmon is already listening on {path}; stop it or pass --socket "
                "to use another path."
            )
        path.unlink()  # stale: nothing listens


# Why a connection's reading is paused (bits): its batch waits for room in the engine's queue,
# its answers wait in the write buffer above the high-water mark (asyncio's pause_writing), or
# more than REQUESTS_MAX of its requests wait to be answered.
_FOR_ENGINE = 1
_FOR_WRITES = 2
_FOR_ANSWERS = 4
REQUESTS_MAX = 1024
RUN_MAX = 256  # requests answered in one trip to the RPC thread
ANSWERS_BYTES = 256 * 1024  # a trip ends once its answers are this long


def _traverse(socket_mode: int) -> int:
    """The folder's execute bits the socket's mode needs: the group's, the others'."""
    return (0o010 if socket_mode & 0o060 else 0) | (0o001 if socket_mode & 0o006 else 0)


def _admit(folder: Path, socket_mode: int, gid: int | None) -> None:
    """Let whom the socket admits through the folder vtmon created: to search it, not write."""
    try:
        if gid is not None:
            os.chown(folder, -1, gid)
        os.chmod(folder, 0o700 | _traverse(socket_mode))
    except OSError as e:
        who = f"group {gid} (vtmon's user must belong to it)" if gid is not None else "others"
        raise SocketError(f"Cannot open the socket folder {folder} to {who}: {e.strerror}.") from e


def resolve_group(group: str | int | None) -> int | None:
    """``[server] socket_group`` as a gid; SocketError (one sentence) for an unknown name."""
    if group is None or isinstance(group, int):
        return group
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketError(
            f"There is no group {group!r} ([server] socket_group); name an existing group or "
            "give its gid."
        ) from None


class _Conn(asyncio.Protocol):
    def __init__(self, server: IngestServer) -> None:
        self.server = server
        server._last_id += 1
        self.id = server._last_id
        self.mode: str | None = None
        self.pending = b""
        self.skipping = False  # inside an over-long line, dropping until its newline
        self.transport: asyncio.Transport | None = None
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.closed = False
        self.frames: frames.FrameReader | None = None  # once a hello chose binary frames
        self.held = 0  # bytes of unfinished lines, frames and declarations, in server.buffered
        self.last_read = server.clock()
        self.paused = 0  # _FOR_ENGINE | _FOR_WRITES | _FOR_ANSWERS
        self.waiting = 0  # batches of this connection waiting for room in the engine's queue
        self.limit = ""  # the limit it was closed for
        self.requests: deque[Any] = deque()  # to answer, in order, once their batch is queued
        self.busy = False  # an answer is being built in the server's RPC thread
        self.unread_since: float | None = None  # since when its answers wait unread
        self.told_closed = False  # the engine heard connection_closed
        # Who is at the other end (docs/protocol.md, "Who may call what"): only the owner may
        # steer or read. A connection with no socket (a replay's) is nobody's.
        self.peer_uid: int | None = None
        self.owner = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer_uid = peer_uid(transport.get_extra_info("socket"))
        self.owner = self.server.is_owner(self.peer_uid)
        self.opened()

    def opened(self) -> None:
        c = self.server.engine.connections
        c.open += 1
        c.total += 1
        if self.server.recorder is not None:
            self.server.recorder(self.id, READ_OPEN, b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # send() refuses from now on
        self._finish()
        if self.paused & _FOR_WRITES:  # no more writes to wait for: its last requests go on
            self.paused &= ~_FOR_WRITES
            self.unread_since = None
            self._answer_next()
        self.server.engine.connections.open -= 1
        self.server._conns.discard(self)
        if self.server.recorder is not None:
            self.server.recorder(self.id, READ_CLOSE, b"")
        self._done()

    def _finish(self) -> None:
        """Count what is left unfinished (the connection is closing) and let it go."""
        if self.pending and self.mode in (LINES, None) and not self.skipping:
            # An unterminated last line is still a line the sender meant.
            batch = Batch(received=time.time())
            parse_block(self.pending, batch, self.server.max_line)
            self.pending = b""
            self._submit(batch)
        elif self.pending and self.mode == LENGTH:
            batch = Batch(received=time.time())
            batch.rejected[REJECT_BAD_FRAME] += 1  # a frame cut short by the close
            self._submit(batch)
        elif self.frames is not None and self.frames.held:
            batch = Batch(received=time.time())
            self.frames.close(batch)
            self._submit(batch)
        self.pending = b""
        self.skipping = False
        if self.held:
            self.server._account(self, 0)

    @property
    def unfinished(self) -> bool:
        """Inside a line or frame that has not ended."""
        return bool(self.pending or self.skipping or (self.frames and self.frames.pending))

    def _done(self) -> None:
        """Tell the engine the connection is gone, once its last batch is queued and its last
        request answered (the knobs it registered go with it)."""
        if not self.closed or self.told_closed or self.waiting or self.busy or self.requests:
            return
        self.told_closed = True
        closed = self.server._on_closed
        if closed is not None:
            try:
                closed(self.id)  # after the last batch: its knobs go, its sets in flight fail
            except Exception:
                log.exception("connection_closed failed")

    def close_for(self, reason: str) -> None:
        """Close the connection for one of the server's limits, counted by ``reason``. What it
        held is counted (as at any close) and let go at once."""
        if self.closed or self.limit:
            return
        self.limit = reason
        self.server.engine.connections.closed[reason] += 1
        self.requests.clear()  # nobody reads the answers
        self._finish()
        if self.transport is not None:
            self.transport.abort()  # what waits to be written is not read either

    # -- reading, paused for the engine or for unread answers -------------------------------

    def _pause(self, why: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        was = self.paused
        self.paused &= ~why
        if was and not self.paused and self.transport is not None:
            self.transport.resume_reading()
            self.last_read = self.server.clock()  # it waited for vtmon, not the other way

    def pause_writing(self) -> None:
        # The application reads no answers: read no more of its requests and build no more
        # answers (they would only wait in memory) until it does; the sweep closes it when it
        # leaves them unread for frame_timeout_s.
        self.unread_since = self.server.clock()
        self._pause(_FOR_WRITES)

    def resume_writing(self) -> None:
        self.unread_since = None
        self._resume(_FOR_WRITES)
        self._answer_next()

    # -- writing ----------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one JSON-RPC message to the application, from any thread; False when the
        connection is closed (or has no socket: a replay's)."""
        loop = self.server._loop
        if self.closed or self.transport is None or loop is None:
            return False
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        try:
            loop.call_soon_threadsafe(self._write, data)
        except RuntimeError:  # the loop is closed: the server stopped
            return False
        return True

    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not self.closed and not t.is_closing():
            # Answers already waiting and this one past the limit: the application does not
            # read. One large answer (a Snapshot of many series) to a reader is no reason.
            waiting = t.get_write_buffer_size()
            t.write(data)
            if waiting and t.get_write_buffer_size() > self.server.max_unread:
                self.close_for(CLOSED_UNREAD)

    # -- reading ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        srv = self.server
        if srv.recorder is not None:  # one test per read, not per line
            srv.recorder(self.id, READ_DATA, data)
        srv.engine.connections.bytes += len(data)
        self.last_read = srv.clock()
        self._read(data)
        held = len(self.pending)
        if self.frames is not None:
            held += self.frames.held
        if held != self.held:
            srv._account(self, held)

    def _read(self, data: bytes) -> None:
        if self.mode is None:
            data = self.pending + data
            self.pending = b""
            head = data[:4]
            if b"\x00" in head:
                self.mode = LENGTH
            elif head[:1] == b"{" and b"\n" not in data and len(data) <= self.server.max_line:
                self.pending = data  # a first JSON line may be a hello: wait for all of it
                return
            elif len(head) == 4 or b"\n" in head:
                self.mode = LINES
                if head[:1] == b"{":
                    data = self._hello(data)
            else:
                self.pending = data
                return
        batch = Batch(received=time.time())
        if self.mode == LINES:
            self._lines(data, batch)
        elif self.mode == BINARY:
            assert self.frames is not None
            if not self.frames.feed(data, batch) and self.transport is not None:
                self.transport.close()  # framing is lost; nothing after this can be trusted
        else:
            self._frames(data, batch)
        self._submit(batch)

    def _hello(self, data: bytes) -> bytes:
        """Answer a first-line ``hello``; what follows it is then frames (or lines, when the
        format was refused). Returns the data still to be read in the connection's mode."""
        nl = data.find(b"\n")
        if nl < 0:
            return data
        req = frames.hello_request(data[:nl])
        if req is None:
            return data
        srv = self.server
        answer, binary = frames.hello_answer(req, srv.max_frame, srv.max_declared)
        if binary:
            self.mode = BINARY
            self.frames = frames.FrameReader(srv.max_frame, srv.max_line, srv.max_declared)
        if req.get("id") is not None:
            self._write(jsonrpc.encode(answer))
        return data[nl + 1 :]

    def _lines(self, data: bytes, batch: Batch) -> None:
        max_line = self.server.max_line
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self.skipping = False
        last = data.rfind(b"\n")
        if last < 0:
            self.pending += data
        else:
            block = self.pending + data[: last + 1] if self.pending else data[: last + 1]
            self.pending = data[last + 1 :]
            parse_block(block, batch, max_line)
        if len(self.pending) > max_line:
            batch.rejected[REJECT_TOO_LONG] += 1
            refusal = too_long_request(self.pending, max_line)
            if refusal is not None:
                batch.rpc.append(refusal)
            self.pending = b""
            self.skipping = True

    def _frames(self, data: bytes, batch: Batch) -> None:
        buf = self.pending + data if self.pending else data
        pos = 0
        end = len(buf)
        limit = self.server.max_frame
        blocks: list[bytes] = []
        while end - pos >= 4:
            n = int.from_bytes(buf[pos : pos + 4], "little")
            if n > limit:
                # Framing is lost; nothing after this can be trusted on this connection.
                batch.rejected[REJECT_BAD_FRAME] += 1
                self.pending = b""
                if blocks:
                    parse_block(b"\n".join(blocks), batch, self.server.max_line)
                if self.transport is not None:
                    self.transport.close()
                return
            if end - pos - 4 < n:
                break
            blocks.append(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
        self.pending = buf[pos:]
        if blocks:
            parse_block(b"\n".join(blocks), batch, self.server.max_line)

    # -- into the engine, then the answers --------------------------------------------------

    def _submit(self, batch: Batch) -> None:
        rpcs = batch.rpc
        if rpcs:
            batch.rpc = []
            rpcs = _requests(rpcs, batch)
        self.accepted += batch.accepted
        if batch.rejected:
            self.rejected.update(batch.rejected)
        if batch.is_empty() and not batch.accepted and not self.waiting:
            if rpcs:
                self.queued(rpcs)
            return
        self.server._hand(self, batch, rpcs)

    def queued(self, rpcs: list[Any]) -> None:
        """The batch these messages came with is in the engine's queue (or had nothing for it):
        every line before them on this connection is counted, so they may be answered now."""
        for m in rpcs:
            if type(m) is dict and "method" not in m and ("result" in m or "error" in m):
                self._response(m)  # an application answering vtmon (knobs.set): no waiting
            else:
                self.requests.append(m)
        if len(self.requests) > REQUESTS_MAX:
            self._pause(_FOR_ANSWERS)  # read no more requests until these are answered
        self._answer_next()

    def _answer_next(self) -> None:
        """Answer the requests in order. What the engine answers is built in the server's RPC
        thread (a Snapshot takes long to serialise), one run of requests at a time per
        connection, so that the event loop keeps reading and answering every other connection
        meanwhile."""
        srv = self.server
        requests = self.requests
        while requests and not self.busy and not self.paused & _FOR_WRITES:
            if _local(requests[0]):
                resp = self._local(requests.popleft())
                if resp is not None:
                    self._write(jsonrpc.encode(resp))
                continue
            run = list(itertools.takewhile(_for_engine, itertools.islice(requests, RUN_MAX)))
            pool, loop = srv._rpc_pool, srv._loop
            if pool is None or loop is None:  # no socket (a replay): answer at once
                self._engine_answers(run)
                for _ in run:
                    requests.popleft()
                continue
            try:
                fut = loop.run_in_executor(pool, self._engine_answers, run)
            except RuntimeError:  # the server or the interpreter is stopping
                requests.clear()
                break
            self.busy = True
            fut.add_done_callback(self._answered)
        if self.paused & _FOR_ANSWERS and len(requests) <= REQUESTS_MAX:
            self._resume(_FOR_ANSWERS)

    def _answered(self, fut: asyncio.Future[tuple[bytes, int]]) -> None:
        self.busy = False
        if fut.cancelled() or fut.exception() is not None:
            self.requests.clear()
        elif not self.limit:  # else they were let go with the connection
            data, n = fut.result()
            for _ in range(n):
                self.requests.popleft()
            if data:
                self._write(data)
        self._answer_next()
        self._done()

    def _local(self, req: Any) -> dict[str, Any] | None:
        """The answer the server gives itself (None for none) to a request ``_local`` takes."""
        if type(req) is RpcRefusal:
            return jsonrpc.error(req.id, req.code, req.message)
        rid = req.get("id")
        if rid is None:
            return None
        if req.get("method") == "hello":
            return jsonrpc.error(
                rid, jsonrpc.INVALID_REQUEST, "hello must be the first line on a connection."
            )
        # This connection's own counters, so a sender can report what became of its lines.
        result = {"accepted": self.accepted, "rejected": dict(self.rejected)}
        return jsonrpc.result(rid, result)

    def _engine_answers(self, run: list[dict[str, Any]]) -> tuple[bytes, int]:
        """The engine's answers to the first requests of ``run`` as lines, and how many were
        answered (in the RPC thread): they stop past ``ANSWERS_BYTES``, so that one trip
        holds little however large the answers."""
        out = []
        size = 0
        n = 0
        for req in run:
            line = self._engine_answer(req)
            n += 1
            if line is not None:
                out.append(line)
                size += len(line)
                if size > ANSWERS_BYTES:
                    break
        return b"".join(out), n

    def _engine_answer(self, req: dict[str, Any]) -> bytes | None:
        """The engine's answer as a line; None for a notification."""
        srv = self.server
        try:
            if srv._rpc_with_conn:
                resp = srv.engine.handle_rpc(req, self)
            else:
                resp = srv.engine.handle_rpc(req)
            # Gone: what it asked is still done (an approve, say), the answer is not built.
            return None if resp is None or self.closed else jsonrpc.encode(resp)
        except Exception as e:  # an engine bug must not take the connection down
            log.exception("rpc failed")
            if req.get("id") is None:
                return None
            return jsonrpc.encode(
                jsonrpc.error(req.get("id"), jsonrpc.INTERNAL_ERROR, f"Internal error: {e}.")
            )

    def _response(self, message: dict[str, Any]) -> None:
        fn = self.server._on_response
        if fn is None:
            return
        try:
            fn(message, self)
        except Exception:  # an engine bug must not take the connection down
            log.exception("rpc response failed")


def _local(req: Any) -> bool:
    """Whether the server answers this request itself."""
    return type(req) is RpcRefusal or req.get("method") in ("hello", "connection.stats")


def _for_engine(req: Any) -> bool:
    return not _local(req)


def _requests(rpcs: list[Any], batch: Batch) -> list[Any]:
    """The JSON-RPC messages of a batch to act on, counted: requests and answers are not metric
    lines (the parser counted them accepted); one that is not JSON-RPC 2.0 is rejected, and
    answered when it asked for something."""
    out = []
    for m in rpcs:
        if type(m) is RpcRefusal:  # the parser counted its line rejected
            out.append(m)
            continue
        batch.accepted -= 1
        if m.get("jsonrpc") == "2.0":
            out.append(m)
            continue
        batch.rejected[REJECT_REQUEST] += 1
        if "method" in m:
            msg = 'Invalid request: "jsonrpc" must be "2.0".'
            out.append(RpcRefusal(jsonrpc.INVALID_REQUEST, msg, jsonrpc.readable_id(m)))
    return out


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
        max_frame: int = 8 * 1024 * 1024,
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
        self._waiting: deque[tuple[_Conn, Batch, list[Any]]] = deque()
        self._offer: Callable[[Batch], bool] | None = getattr(engine, "offer", None)
        self._rpc_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
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

    def _hand(self, conn: _Conn, batch: Batch, rpcs: list[Any]) -> None:
        """Queue a batch for the engine, or keep it (behind any kept before it) and stop
        reading its connection until the engine has room: the sender waits on the socket,
        nothing is dropped, and the loop goes on answering every other connection."""
        if self._waiting or not self._queue(batch):
            self._waiting.append((conn, batch, rpcs))
            conn.waiting += 1
            conn._pause(_FOR_ENGINE)
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
                conn._resume(_FOR_ENGINE)
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

    def _account(self, conn: _Conn, held: int) -> None:
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

    def _protocol(self) -> _Conn:
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

    def _make_conn(self) -> _Conn:
        c = _Conn(self)
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


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, as the kernel
    recorded it when it connected; None where the platform does not say."""
    if sock is None:
        return None
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", data)[1])
        if hasattr(socket, "LOCAL_PEERCRED"):  # macOS, BSD: struct xucred {version, uid, ...}
            data = sock.getsockopt(0, socket.LOCAL_PEERCRED, 128)  # level 0: SOL_LOCAL
            return int(struct.unpack_from("=II", data)[1])
    except (OSError, struct.error):
        pass
    return None


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
