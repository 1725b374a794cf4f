"""The Unix socket server: framing, parsing off the UI's loop, batches into the engine.

It runs an asyncio loop in its own thread. Each connection is framed either by newlines or,
as DogStatsD clients do on stream sockets, by a 4-byte little-endian length before each
packet; the first bytes decide which (text never contains a NUL byte, a length below 16 MiB
always does). A ``hello`` request as the first line switches a connection to binary frames
(vtmon.ingest.frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vtmon.ingest import frames
from vtmon.ingest.parse import parse_block
from vtmon.model import REJECT_TOO_LONG, Batch
from vtmon.process import OUT_OF_RESOURCES, Backoff

log = logging.getLogger(__name__)

LINES = "lines"
LENGTH = "length"
BINARY = "binary"
REJECT_BAD_FRAME = frames.REJECT_BAD_FRAME

# What a recorder is told about each connection: ``recorder(conn_id, kind, data)``, called in
# the server's thread as it happens (vtmon.store.recording.Recorder stamps and stores it).
READ_DATA = 0  # bytes exactly as one read returned them
READ_OPEN = 1
READ_CLOSE = 2
ReadRecorder = Callable[[int, int, bytes], None]

ACCEPT_BURST = 128  # connections taken per wake-up before other connections get a turn


class SocketInUse(Exception):
    """Another live vtmon listens on the path (message is one sentence for the user)."""


class SocketError(Exception):
    """The socket cannot be set up (message is one sentence for the user)."""


class Engine(Protocol):
    """What the server needs from the engine (vtmon.engine.monitor.Monitor provides it).

    ``connections`` holds the counters the server keeps: ``open``, ``total``, ``bytes`` and
    ``refused`` (connections closed at once: ``max_connections`` were open).

    ``handle_rpc`` gets the connection a request came on as a second argument when it takes
    one (the connection is a ``vtmon.engine.actuators.Connection``). Two more methods are used
    when the engine has them: ``handle_rpc_response(message, conn)`` for JSON-RPC responses
    an application sends back (answers to ``knobs.set``), and ``connection_closed(conn_id)``
    once a connection is gone and its last batch was submitted.
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


def prepare_path(path: Path) -> None:
    """Create the folder 0700, refuse a live socket, replace a stale one."""
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise SocketError(f"Cannot create the socket folder {folder}: {e.strerror}.") from e
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.opened()

    def opened(self) -> None:
        c = self.server.engine.connections
        c.open += 1
        c.total += 1
        if self.server.recorder is not None:
            self.server.recorder(self.id, READ_OPEN, b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # send() refuses from now on
        # An unterminated last line is still a line the sender meant.
        if self.pending and self.mode in (LINES, None) and not self.skipping:
            batch = Batch(received=time.time())
            parse_block(self.pending, batch, self.server.max_line)
            self._submit(batch)
        elif self.pending and self.mode == LENGTH:
            batch = Batch(received=time.time())
            batch.rejected[REJECT_BAD_FRAME] += 1  # a frame cut short by the close
            self._submit(batch)
        elif self.frames is not None and self.frames.pending:
            batch = Batch(received=time.time())
            self.frames.close(batch)
            self._submit(batch)
        self.pending = b""
        self.server.engine.connections.open -= 1
        self.server._conns.discard(self)
        if self.server.recorder is not None:
            self.server.recorder(self.id, READ_CLOSE, b"")
        closed = self.server._on_closed
        if closed is not None:
            try:
                closed(self.id)  # after the last batch: its knobs go, its sets in flight fail
            except Exception:
                log.exception("connection_closed failed")

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
            t.write(data)

    def data_received(self, data: bytes) -> None:
        if self.server.recorder is not None:  # one test per read, not per line
            self.server.recorder(self.id, READ_DATA, data)
        self.server.engine.connections.bytes += len(data)
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
        answer, binary = frames.hello_answer(req, self.server.max_frame)
        if binary:
            self.mode = BINARY
            self.frames = frames.FrameReader(self.server.max_frame, self.server.max_line)
        if req.get("id") is not None:
            self._write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
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
            self.pending = b""
            self.skipping = True

    def _frames(self, data: bytes, batch: Batch) -> None:
        buf = self.pending + data if self.pending else data
        pos = 0
        end = len(buf)
        limit = self.server.max_frame
        blocks = []
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

    def _submit(self, batch: Batch) -> None:
        rpcs = batch.rpc
        batch.rpc = []
        # Control requests are answered here, not counted as metric lines: "in" on screen and
        # what `vtmon send` reports are the lines that carried metrics.
        batch.accepted -= len(rpcs)
        self.accepted += batch.accepted
        if batch.rejected:
            self.rejected.update(batch.rejected)
        if not batch.is_empty() or batch.accepted:
            self.server.engine.submit(batch)
        # Answer after handing the batch over: every line before a request on this connection
        # is counted and in the engine's queue by the time the answer arrives.
        for req in rpcs:
            if "method" not in req and ("result" in req or "error" in req):
                self._response(req)  # an application answering vtmon (knobs.set)
                continue
            resp = self._answer(req)
            if resp is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.write(json.dumps(resp, separators=(",", ":")).encode() + b"\n")

    def _response(self, message: dict[str, Any]) -> None:
        fn = self.server._on_response
        if fn is None:
            return
        try:
            fn(message, self)
        except Exception:  # an engine bug must not take the connection down
            log.exception("rpc response failed")

    def _answer(self, req: dict[str, Any]) -> dict[str, Any] | None:
        if req.get("method") == "hello":
            if req.get("id") is None:
                return None
            msg = "hello must be the first line on a connection."
            return {
                "jsonrpc": "2.0",
                "id": req.get("id"),
                "error": {"code": -32600, "message": msg},
            }
        if req.get("method") == "connection.stats":
            # This connection's own counters, so a sender can report what became of its lines.
            if req.get("id") is None:
                return None
            return {
                "jsonrpc": "2.0",
                "id": req.get("id"),
                "result": {"accepted": self.accepted, "rejected": dict(self.rejected)},
            }
        try:
            if self.server._rpc_with_conn:
                return self.server.engine.handle_rpc(req, self)
            return self.server.engine.handle_rpc(req)
        except Exception as e:  # an engine bug must not take the connection down
            log.exception("rpc failed")
            if req.get("id") is None:
                return None
            return {
                "jsonrpc": "2.0",
                "id": req.get("id"),
                "error": {"code": -32603, "message": f"Internal error: {e}."},
            }


class IngestServer:
    """Serves one Unix stream socket from a background thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        engine: Engine,
        *,
        max_line: int = 65_536,
        max_frame: int = 8 * 1024 * 1024,
        recorder: ReadRecorder | None = None,
        max_connections: int = 1_000,
    ) -> None:
        self.path = Path(path)
        self.engine = engine
        self.max_line = max_line
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.recorder = recorder  # told of every open, read and close (vtmon record)
        # What the engine can hear beyond requests (a replay's endpoint hears none of it).
        self._rpc_with_conn = _takes_conn(engine.handle_rpc)
        self._on_response: Callable[[dict[str, Any], Any], Any] | None = getattr(
            engine, "handle_rpc_response", None
        )
        self._on_closed: Callable[[int], Any] | None = getattr(engine, "connection_closed", None)
        self._last_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
        self._accepted = 0  # accepted, protocol not made yet (counts towards the limit)
        self._tasks: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references
        self._backoff = Backoff()
        self._refusal = (
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": -32000,
                        "message": f"vtmon already has {max_connections} connections open "
                        "([limits] max_connections); this one is closed.",
                    },
                }
            ).encode()
            + b"\n"
        )
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Bind and serve; raises SocketInUse / SocketError with a user-facing sentence."""
        prepare_path(self.path)
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
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for t in list(self._conns):
                if t.transport is not None:
                    t.transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

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
        os.chmod(self.path, 0o600)
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


def rpc_call(
    path: str | os.PathLike[str],
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> Any:
    """Call one JSON-RPC method on a running vtmon; raises ConnectionError / RuntimeError."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(path))
        req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        s.sendall(json.dumps(req).encode() + b"\n")
        line = _read_line(s)
    finally:
        s.close()
    resp = json.loads(line)
    if "error" in resp:
        raise RuntimeError(resp["error"].get("message", "unknown error"))
    return resp["result"]


def _read_line(s: socket.socket) -> bytes:
    chunks = []
    while True:
        data = s.recv(1 << 20)
        if not data:
            raise ConnectionError("vtmon closed the connection before answering.")
        nl = data.find(b"\n")
        if nl >= 0:
            chunks.append(data[:nl])
            return b"".join(chunks)
        chunks.append(data)
