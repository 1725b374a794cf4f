"""The HTTP side of the Prometheus exporter: one thread takes connections and reads their
requests, and a thread for each complete one (``max_requests`` at most) answers it.

prometheus-client's own server (wsgiref, a thread per connection, no timeout) holds a thread
for as long as a connection sends nothing: a few hundred half-open connections are a few
hundred threads, for ever. Here a connection costs a thread only once its request is in, so
connections that send nothing or half a request cost a file each, for at most ``timeout``
seconds, and a real scrape is answered meanwhile. What is closed or refused is counted by
reason (``vtmon_exporter_connections_refused_total``) and logged.

Limits: at most ``max_requests`` requests are answered at once (beyond: 503 at once), at most
``max_waiting`` connections may still be sending their request (beyond: the oldest is
closed, so a flood of idle connections cannot keep a fresh one out), a request's line and
headers must arrive within ``timeout`` and hold at most ``MAX_HEAD`` bytes.
"""

from __future__ import annotations

import io
import logging
import re
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from vtmon.process import OUT_OF_RESOURCES, Backoff

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0  # to send a complete request line and headers
MAX_REQUESTS = 16  # answered at the same time, one thread each
MAX_WAITING = 64  # connections still sending their request
MAX_HEAD = 16 * 1024  # bytes of request line and headers
WRITE_TIMEOUT_S = 60.0  # a client that stops reading its (possibly large) answer
ACCEPT_BURST = 64

BUSY = "busy"
WAITING = "too many waiting"
TIMEOUT = "timeout"
TOO_LARGE = "too large"
REASONS = (BUSY, WAITING, TIMEOUT, TOO_LARGE)

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")

_SAID = {
    BUSY: "Prometheus exporter: answered 503 to a request: %d are being answered already.",
    WAITING: "Prometheus exporter: closed the oldest of %d connections that had not sent a "
    "request yet.",
    TIMEOUT: "Prometheus exporter: closed a connection that sent no complete request in %g s.",
    TOO_LARGE: "Prometheus exporter: closed a connection whose request head was over %d bytes.",
}


def _response(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@dataclass(eq=False)
class _Waiting:
    sock: socket.socket
    addr: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class MetricsServer(WSGIServer):
    """Serves one WSGI application (prometheus-client's ``make_wsgi_app``) on ``host:port``.

    ``serve_forever()`` runs the loop (in a thread of its own); ``shutdown()`` ends it, and
    ``server_close()`` after that closes the port. ``refused`` counts by reason; it may be
    shared with the caller so that counts outlive the server.
    """

    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        app: Callable[..., Any],
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        max_requests: int = MAX_REQUESTS,
        max_waiting: int = MAX_WAITING,
        refused: Counter[str] | None = None,
    ) -> None:
        if timeout <= 0 or max_requests < 1 or max_waiting < 1:
            raise ValueError("timeout, max_requests and max_waiting must be positive")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        self.address_family = family
        # Before binding: a failed bind calls server_close(), which closes these too.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        super().__init__((str(sockaddr[0]), int(sockaddr[1])), _Handler)
        self.set_app(app)
        self.timeout_s = timeout
        self.max_requests = max_requests
        self.max_waiting = max_waiting
        self.refused: Counter[str] = refused if refused is not None else Counter()
        for reason in REASONS:  # every reason present: a scrape reads the dict while it grows
            self.refused.setdefault(reason, 0)
        self._clock = time.monotonic
        self._waiting: dict[socket.socket, _Waiting] = {}  # oldest first
        self._busy = 0
        self._lock = threading.Lock()
        self._backoff = Backoff()
        self._resume_at: float | None = None  # accept again then (after running out of files)
        self._stopping = threading.Event()
        self._done = threading.Event()

    # -- the loop thread ---------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run until ``shutdown()`` (``poll_interval`` is unused: the loop wakes at its own
        deadlines)."""
        sel = selectors.DefaultSelector()
        self.socket.setblocking(False)
        sel.register(self.socket, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                try:
                    self._step(sel)
                except Exception:  # a bug here must not end /metrics for good, nor spin
                    log.exception("Prometheus exporter: the connection loop failed")
                    self._stopping.wait(0.1)
        finally:
            for w in list(self._waiting.values()):
                self._close(sel, w)
            sel.close()
            self._done.set()

    def _step(self, sel: selectors.BaseSelector) -> None:
        for key, _ in sel.select(self._until_next()):
            if key.fileobj is self.socket:
                self._accept(sel)
            elif key.fileobj is self._wake_r:
                self._drain()
            else:
                w: _Waiting = key.data
                if self._waiting.get(w.sock) is w:  # not closed by an earlier event
                    self._read(sel, w)
        self._expire(sel)

    def _until_next(self) -> float | None:
        # Every connection waits the same timeout, so the oldest has the first deadline.
        times = [next(iter(self._waiting.values())).deadline] if self._waiting else []
        if self._resume_at is not None:
            times.append(self._resume_at)
        return max(0.0, min(times) - self._clock()) if times else None

    def _accept(self, sel: selectors.BaseSelector) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                conn, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                sel.unregister(self.socket)
                delay = self._backoff.failed()
                self._resume_at = self._clock() + delay
                why = "no file descriptor left" if e.errno in OUT_OF_RESOURCES else "failed"
                log.warning(
                    "Prometheus exporter: cannot accept connections (%s: %s); trying again "
                    "in %.2f s.",
                    why,
                    e.strerror or e,
                    delay,
                )
                return
            self._backoff.succeeded()
            if len(self._waiting) >= self.max_waiting:
                self._refuse(sel, next(iter(self._waiting.values())), WAITING, self.max_waiting)
            conn.setblocking(False)
            w = _Waiting(conn, addr, self._clock() + self.timeout_s)
            self._waiting[conn] = w
            sel.register(conn, selectors.EVENT_READ, w)

    def _read(self, sel: selectors.BaseSelector, w: _Waiting) -> None:
        try:
            data = w.sock.recv(MAX_HEAD + 1 - len(w.head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client gave up
            self._close(sel, w)
            return
        start = max(0, len(w.head) - 3)  # the end of the head may straddle two reads
        w.head += data
        if _END_OF_HEAD.search(w.head, start) is None:
            if len(w.head) > MAX_HEAD:
                self._refuse(sel, w, TOO_LARGE, MAX_HEAD, _TOO_LARGE)
            return
        with self._lock:
            busy = self._busy >= self.max_requests
            if not busy:
                self._busy += 1
        if busy:
            self._refuse(sel, w, BUSY, self.max_requests, _BUSY)
            return
        self._forget(sel, w)
        threading.Thread(
            target=self._answer,
            args=(w.sock, w.addr, bytes(w.head)),
            name="vtmon-metrics",
            daemon=True,
        ).start()

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = self._clock()
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            sel.register(self.socket, selectors.EVENT_READ)
        while self._waiting:
            w = next(iter(self._waiting.values()))
            if w.deadline > now:
                break
            self._refuse(sel, w, TIMEOUT, self.timeout_s, _TIMED_OUT)

    def _refuse(
        self,
        sel: selectors.BaseSelector,
        w: _Waiting,
        reason: str,
        limit: float,
        answer: bytes = b"",
    ) -> None:
        """Close ``w`` after at most one non-blocking send of ``answer``; counted, logged."""
        self.refused[reason] += 1
        log.warning(_SAID[reason], limit)
        if answer:
            try:
                w.sock.send(answer)
            except OSError:
                pass
        self._close(sel, w)

    def _forget(self, sel: selectors.BaseSelector, w: _Waiting) -> None:
        del self._waiting[w.sock]
        sel.unregister(w.sock)

    def _close(self, sel: selectors.BaseSelector, w: _Waiting) -> None:
        self._forget(sel, w)
        w.sock.close()

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass

    # -- worker threads ------------------------------------------------------------------------

    def _answer(self, sock: socket.socket, addr: Any, head: bytes) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(WRITE_TIMEOUT_S)
            _Handler(sock, addr, self, head)
        except OSError as e:  # the client went away or stopped reading
            log.warning("Prometheus exporter: an answer was not delivered: %s", e)
        except Exception:  # an exporter bug must not end the thread with a bare traceback
            log.exception("Prometheus exporter: a request failed")
        finally:
            sock.close()
            with self._lock:
                self._busy -= 1

    # -- from other threads --------------------------------------------------------------------

    def shutdown(self) -> None:
        """End the loop (and wait for it, when it runs); requests being answered finish."""
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._done.wait(5)

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()


_BUSY = _response("503 Service Unavailable", "vtmon is answering other scrapes; try again.\n")
_TIMED_OUT = _response("408 Request Timeout", "The request did not arrive in time.\n")
_TOO_LARGE = _response("431 Request Header Fields Too Large", "The request head is too large.\n")


class _Handler(WSGIRequestHandler):
    """wsgiref's handler on a request already read: it parses ``head`` and writes its answer
    to the socket; it logs nothing per request, and what wsgiref would print to stderr (a
    failed scrape's traceback) goes to the log (stderr would tear the console's screen)."""

    # ``head`` has a default only so that the class is the handler socketserver's type names;
    # the server always passes the head it read.
    def __init__(self, request: Any, client_address: Any, server: Any, head: bytes = b"") -> None:
        self._head = head
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self._head)
        self.wfile = self.connection.makefile("wb")

    def get_stderr(self) -> Any:
        return _ErrorLog()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ErrorLog(io.StringIO):
    """Collects what wsgiref writes about a failed request; one log record per flush."""

    def flush(self) -> None:
        text = self.getvalue().strip()
        if text:
            log.error("Prometheus exporter: a scrape failed:\n%s", text)
        self.seek(0)
        self.truncate()
