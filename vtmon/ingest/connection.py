"""One connection of the socket server: its framing, its reading (paused for the engine's
queue or for answers it leaves unread), its limits, and the answers to its requests.

Each connection is framed either by newlines or, as DogStatsD clients do on stream sockets,
by a 4-byte little-endian length before each packet; the first bytes decide which (text
never contains a NUL byte, a length below 16 MiB always does). A ``hello`` request as the
first line switches a connection to binary frames (vtmon.ingest.frames). A connection is
its server's part: it runs on the server's loop and reads and updates the server's state
(its budget, its queue for the engine, its RPC thread) directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtmon.ingest import frames
from vtmon.ingest.parse import parse_block, too_long_request
from vtmon.ingest.socket_file import peer_uid
from vtmon.model import (
    CLOSED_UNREAD,
    REJECT_REQUEST,
    REJECT_TOO_LONG,
    Batch,
    RpcRefusal,
)
from vtmon.protocol import jsonrpc

if TYPE_CHECKING:
    from vtmon.ingest.server import IngestServer

# The server's logger: what it logs keeps the name it had before the server was split.
log = logging.getLogger("vtmon.ingest.server")

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

# Why a connection's reading is paused (bits): its batch waits for room in the engine's queue,
# its answers wait in the write buffer above the high-water mark (asyncio's pause_writing), or
# more than REQUESTS_MAX of its requests wait to be answered.
FOR_ENGINE = 1
_FOR_WRITES = 2
_FOR_ANSWERS = 4
REQUESTS_MAX = 1024
RUN_MAX = 256  # requests answered in one trip to the RPC thread
ANSWERS_BYTES = 256 * 1024  # a trip ends once its answers are this long


class Connection(asyncio.Protocol):
    """One connection of ``server``, from its first byte until its last request is answered."""

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
        self.paused = 0  # FOR_ENGINE | _FOR_WRITES | _FOR_ANSWERS
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
