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
import inspect
import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from vtmon.client.access import UnsafeFolder, check_folder
from vtmon.ingest import frames
from vtmon.ingest.parse import parse_block
from vtmon.model import REJECT_TOO_LONG, Batch

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


class SocketInUse(Exception):
    """Another live vtmon listens on the path (message is one sentence for the user)."""


class SocketError(Exception):
    """The socket cannot be set up (message is one sentence for the user)."""


class Engine(Protocol):
    """What the server needs from the engine (vtmon.engine.monitor.Monitor provides it).

    ``handle_rpc`` gets the connection a request came on as a second argument when it takes
    one (the connection is a ``vtmon.engine.actuators.Connection``; its ``owner`` says whether
    the peer is vtmon's own user). Two more methods are used when the engine has them:
    ``handle_rpc_response(message, conn)`` for JSON-RPC responses an application sends back
    (answers to ``knobs.set``), and ``connection_closed(conn_id)`` once a connection is gone
    and its last batch was submitted.
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
    """Check the socket's folder (vtmon.client.access), creating it 0700 when it is missing;
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
        socket_mode: int = 0o600,
        socket_group: str | int | None = None,
    ) -> None:
        self.path = Path(path)
        self.socket_mode = socket_mode  # [server]: who else may connect (docs/security.md)
        self.socket_group = socket_group
        self.engine = engine
        self.max_line = max_line
        self.max_frame = max_frame
        self.recorder = recorder  # told of every open, read and close (vtmon record)
        # What the engine can hear beyond requests (a replay's endpoint hears none of it).
        self._rpc_with_conn = _takes_conn(engine.handle_rpc)
        self._on_response: Callable[[dict[str, Any], Any], Any] | None = getattr(
            engine, "handle_rpc_response", None
        )
        self._on_closed: Callable[[int], Any] | None = getattr(engine, "connection_closed", None)
        self._last_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
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
            self._server = loop.run_until_complete(
                loop.create_unix_server(self._make_conn, sock=sock, backlog=128)
            )
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
                if self._server is not None:
                    self._server.close()
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


def rpc_call(
    path: str | os.PathLike[str],
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float = 5.0,
    named: bool = True,
) -> Any:
    """Call one JSON-RPC method on a running vtmon; raises ConnectionError / RuntimeError, and
    UnsafeFolder when the socket's folder fails vtmon.client.access's check (``named``: the
    caller chose the path; False: it is the default, whose folder must be the caller's)."""
    check_folder(path, named=named)
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
