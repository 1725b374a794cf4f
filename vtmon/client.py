"""The small library an application imports to send metrics to vtmon.

    from vtmon.client import Client
    client = Client()                      # the default socket, as `vtmon socket` prints it
    client.record("api.request_latency", 12.5, component="api-server")
    with client.timer("api.request_latency", component="api-server"):
        handle()
    client.count("api.throughput")
    client.gauge("memory_heap_used", 123_456_789, component="api-server")

Recording only appends to an in-memory buffer; a background thread sends batches of
StatsD lines. The application never blocks on vtmon: when vtmon is gone or slow, the bounded
buffer drops the oldest samples, counts them, and reports the count when it reconnects.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from vtmon.config import resolve_socket_path

DEFAULT_BUFFER = 100_000
FLUSH_INTERVAL_S = 0.1


class Client:
    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        max_buffer: int = DEFAULT_BUFFER,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.socket_path = os.fspath(socket_path or resolve_socket_path(None))
        self._buf: deque[str] = deque(maxlen=max_buffer)
        self._max = max_buffer
        self.dropped = 0  # samples lost to a full buffer, since the last report to vtmon
        self._unreported = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._interval = flush_interval
        self._thread = threading.Thread(target=self._run, name="vtmon-client", daemon=True)
        self._thread.start()

    # -- recording (the application's side: never blocks on I/O) -----------------------------

    def _put(self, line: str) -> None:
        buf = self._buf
        if len(buf) >= self._max:
            self.dropped += 1  # deque(maxlen) drops the oldest for us
            self._unreported += 1
        buf.append(line)

    def record(self, name: str, value: float, **tags: str) -> None:
        """One sample of a distribution (a latency in milliseconds, usually)."""
        if not math.isfinite(value):
            return
        self._put(f"{name}:{value!r}|ms{_tags(tags)}")

    def count(self, name: str, value: float = 1, **tags: str) -> None:
        self._put(f"{name}:{value!r}|c{_tags(tags)}")

    def gauge(self, name: str, value: float, **tags: str) -> None:
        if not math.isfinite(value):
            return
        self._put(f"{name}:{value!r}|g{_tags(tags)}")

    def error(self, exc: BaseException | str, component: str | None = None) -> None:
        """Count one error of the component, typed by the exception's class name."""
        etype = exc if isinstance(exc, str) else type(exc).__name__
        tags = {"error_type": etype}
        if component:
            tags["component"] = component
        prefix = f"{component}." if component else ""
        self._put(f"{prefix}error_count:1|c{_tags(tags)}")

    @contextmanager
    def timer(self, name: str, **tags: str) -> Iterator[None]:
        """Record how long the block took, in milliseconds (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, (time.perf_counter() - t0) * 1000.0, **tags)

    # -- sending (the background thread) ------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is buffered now; True when the buffer was emptied."""
        deadline = time.monotonic() + timeout
        while self._buf and time.monotonic() < deadline:
            if not self._send_some():
                return False
        return not self._buf

    def _send_some(self) -> bool:
        with self._lock:
            lines = []
            buf = self._buf
            for _ in range(min(len(buf), 20_000)):
                lines.append(buf.popleft())
            reported, self._unreported = self._unreported, 0
            if reported:
                lines.append(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "client.dropped",
                            "params": {"count": reported},
                        }
                    )
                )
            if not lines:
                return True
            payload = ("\n".join(lines) + "\n").encode()
            try:
                if self._sock is None:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(2.0)
                    s.connect(self.socket_path)
                    self._sock = s
                self._sock.sendall(payload)
                return True
            except OSError:
                if self._sock is not None:
                    self._sock.close()
                self._sock = None
                # Put the lines back (oldest first) so nothing is lost while vtmon restarts;
                # the bounded buffer decides what goes when it is full.
                samples = [ln for ln in lines if not ln.startswith("{")]
                room = self._max - len(buf)
                lost = max(0, len(samples) - room)
                if lost:
                    self.dropped += lost
                self._unreported += lost + reported
                buf.extendleft(reversed(samples[lost:]))
                return False

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._buf or self._unreported:
                self._send_some()

    def close(self) -> None:
        self.flush()
        self._closed.set()
        self._wake.set()
        self._thread.join(5)
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tags(tags: dict[str, str]) -> str:
    if not tags:
        return ""
    return "|#" + ",".join(f"{k}:{v}" for k, v in tags.items())
