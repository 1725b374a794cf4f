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

Knobs are values vtmon may tune (docs/protocol.md, "Knobs"):

    def resize(n: float) -> None:
        pool.resize(int(n))                # raise to refuse; vtmon is told why
    pool_size = client.knob("api.db_pool_size", 16, 4, 64, step=1, kind="connection_pools",
                            component="api-server", on_change=resize)
    pool_size.value                        # the value in effect, a float

The knob is registered on the client's connection, and again after every reconnect. Sets
from vtmon are handled on a background reader thread: the value is checked against the
bounds, ``on_change(value)`` is called (there), then ``knob.value`` changes and vtmon gets
the answer.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vtmon.config import resolve_socket_path

DEFAULT_BUFFER = 100_000
FLUSH_INTERVAL_S = 0.1
KNOB_KINDS = ("buffers", "caching", "connection_pools", "workers", "quality", "gc", "custom")
MAX_MESSAGE = 1 << 20  # a longer line from vtmon is dropped


class Knob:
    """A tunable value of the application, registered with vtmon (``Client.knob``).

    ``value`` is the value in effect (a float; reading it costs an attribute access).
    ``registered`` is True once vtmon accepted the registration on the current connection;
    ``error`` says why vtmon refused it ("" otherwise).
    """

    def __init__(
        self,
        client: Client,
        name: str,
        value: float,
        min: float,
        max: float,
        *,
        step: float | None,
        unit: str,
        component: str,
        kind: str,
        on_change: Callable[[float], Any] | None,
    ) -> None:
        self.name = name
        self.value = value
        self.min = min
        self.max = max
        self.step = step
        self.unit = unit
        self.component = component
        self.kind = kind
        self.on_change = on_change
        self.registered = False
        self.error = ""
        self._client = client
        self._ready = threading.Event()

    def update(self, value: float) -> None:
        """The application changed the value itself: keep it and tell vtmon (re-register)."""
        v = _number(value, "value")
        if not self.min <= v <= self.max:
            raise ValueError(f"{v:g} is outside {self.name}'s bounds [{self.min:g}, {self.max:g}].")
        self.value = v
        self._client._register(self)

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until vtmon accepted the registration on the current connection."""
        return self._ready.wait(timeout)

    def params(self) -> dict[str, Any]:
        """The ``knobs.register`` params."""
        p: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "min": self.min,
            "max": self.max,
            "kind": self.kind,
        }
        if self.step is not None:
            p["step"] = self.step
        if self.unit:
            p["unit"] = self.unit
        if self.component:
            p["component"] = self.component
        return p

    def __repr__(self) -> str:
        return f"Knob({self.name!r}, value={self.value:g}, [{self.min:g}, {self.max:g}])"


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
        self._reader: threading.Thread | None = None
        self._knobs: dict[str, Knob] = {}
        self._control: deque[str] = deque()  # JSON-RPC lines sent ahead of the metrics
        self._register_ids: dict[int, str] = {}  # knobs.register in flight: id -> knob name
        self._last_id = 0
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

    # -- knobs -------------------------------------------------------------------------------

    def knob(
        self,
        name: str,
        value: float,
        min: float,
        max: float,
        *,
        step: float | None = None,
        unit: str = "",
        component: str = "",
        kind: str = "custom",
        on_change: Callable[[float], Any] | None = None,
    ) -> Knob:
        """Register a knob vtmon may tune. ``on_change(new_value)`` is called on the client's
        reader thread before ``knob.value`` changes; raising refuses the change (vtmon gets the
        exception's message), and a number it returns is taken as the value really in effect.
        Raises ValueError for bounds or a kind vtmon would refuse."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError("A knob's name is a non-empty string of at most 200 characters.")
        v, lo, hi = _number(value, "value"), _number(min, "min"), _number(max, "max")
        if not lo <= v <= hi:
            raise ValueError(f"Knob {name!r}: value {v:g} is outside [{lo:g}, {hi:g}].")
        if step is not None and not _number(step, "step") > 0:
            raise ValueError(f"Knob {name!r}: step must be positive.")
        if kind not in KNOB_KINDS:
            raise ValueError(f"Knob {name!r}: kind must be one of {', '.join(KNOB_KINDS)}.")
        knob = Knob(
            self,
            name,
            v,
            lo,
            hi,
            step=None if step is None else float(step),
            unit=unit,
            component=component,
            kind=kind,
            on_change=on_change,
        )
        with self._lock:
            if name in self._knobs:
                raise ValueError(f"This client already has a knob named {name!r}.")
            self._knobs[name] = knob
        self._register(knob)
        return knob

    def knobs(self) -> list[Knob]:
        with self._lock:
            return list(self._knobs.values())

    def _register(self, knob: Knob) -> None:
        with self._lock:
            self._control.append(self._register_line(knob))
        self._wake.set()

    def _register_line(self, knob: Knob) -> str:
        """A knobs.register request (call with the lock held)."""
        self._last_id += 1
        self._register_ids[self._last_id] = knob.name
        req = {
            "jsonrpc": "2.0",
            "id": self._last_id,
            "method": "knobs.register",
            "params": knob.params(),
        }
        return json.dumps(req, separators=(",", ":"))

    # -- reading (the reader thread of each connection) ----------------------------------------

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while not self._closed.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                if len(buf) > MAX_MESSAGE:
                    buf = b""
                for line in lines:
                    if line.strip():
                        self._handle(line, sock)
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                    self._unregistered()
            sock.close()  # only this thread closes a connection's socket
            self._wake.set()  # reconnect: the knobs register again

    def _handle(self, line: bytes, sock: socket.socket) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        rid = msg.get("id")
        if method is None:
            self._answered(msg, sock)
            return
        if method == "knobs.set":
            reply = self._knob_set(rid, msg.get("params"))
        else:
            reply = _error(rid, -32601, f"Method not found: {method}.")
        if rid is None:
            return
        data = (json.dumps(reply, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._sock is not sock:
                return  # that connection is gone; vtmon counts the set as failed
            try:
                sock.sendall(data)
            except OSError:
                self._abandon()

    def _knob_set(self, rid: Any, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            return _error(rid, -32602, "knobs.set needs params with name and value.")
        name = params.get("name")
        with self._lock:
            knob = self._knobs.get(name) if isinstance(name, str) else None
        if knob is None:
            return _error(rid, -32602, f"This application has no knob named {name!r}.")
        value = params.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _error(rid, -32602, f"{value!r} is not a number.")
        v = float(value)
        if not (math.isfinite(v) and knob.min <= v <= knob.max):
            return _error(
                rid, -32602, f"{v:g} is outside {name}'s bounds [{knob.min:g}, {knob.max:g}]."
            )
        if knob.on_change is not None:
            try:
                got = knob.on_change(v)
            except Exception as e:  # the application refuses; vtmon is told why
                return _error(rid, -32000, str(e) or type(e).__name__)
            if (
                isinstance(got, (int, float))
                and not isinstance(got, bool)
                and math.isfinite(got)
                and knob.min <= got <= knob.max
            ):
                v = float(got)
        knob.value = v
        return {"jsonrpc": "2.0", "id": rid, "result": {"value": v}}

    def _answered(self, msg: dict[str, Any], sock: socket.socket) -> None:
        """vtmon's answer to one of this client's knobs.register requests."""
        rid = msg.get("id")
        with self._lock:
            if self._sock is not sock or type(rid) is not int:
                return
            name = self._register_ids.pop(rid, None)
            knob = self._knobs.get(name) if name is not None else None
            if knob is None:
                return
            if "error" in msg:
                err = msg.get("error")
                text = err.get("message") if isinstance(err, dict) else None
                knob.error = text if isinstance(text, str) else "vtmon refused the knob."
                knob.registered = False
                knob._ready.clear()
            else:
                knob.error = ""
                knob.registered = True
                knob._ready.set()

    def _unregistered(self) -> None:
        """The connection is gone (call with the lock held)."""
        self._register_ids.clear()
        for knob in self._knobs.values():
            knob.registered = False
            knob._ready.clear()

    def _abandon(self) -> None:
        """Give up the current connection (lock held): its reader wakes and closes it."""
        sock, self._sock = self._sock, None
        self._unregistered()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- sending (the background thread) ------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is buffered now; True when the buffer was emptied."""
        deadline = time.monotonic() + timeout
        while (self._buf or self._control) and time.monotonic() < deadline:
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
            control = list(self._control)
            self._control.clear()
            if not lines and not control and not (self._knobs and self._sock is None):
                return True
            try:
                if self._sock is None:
                    self._connect()
                    # A new connection registers every knob afresh (vtmon may have restarted).
                    control = [self._register_line(k) for k in self._knobs.values()]
                if not lines and not control:
                    return True
                assert self._sock is not None
                self._sock.sendall(("\n".join(control + lines) + "\n").encode())
                return True
            except OSError:
                self._abandon()
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

    def _connect(self) -> None:
        """Open the connection and start its reader (lock held); raises OSError."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(self.socket_path)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._unregistered()
        self._reader = threading.Thread(
            target=self._read, args=(s,), name="vtmon-client-reader", daemon=True
        )
        self._reader.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed.is_set():
                break
            if self._buf or self._unreported or self._control:
                self._send_some()
            elif self._knobs and self._sock is None:
                self._send_some()  # reconnect, so vtmon can reach the knobs again

    def close(self) -> None:
        self.flush()
        self._closed.set()
        self._wake.set()
        self._thread.join(5)
        with self._lock:
            self._abandon()
            reader = self._reader
        if reader is not None:
            reader.join(5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"A knob's {what} must be a finite number, not {v!r}.")
    return float(v)


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _tags(tags: dict[str, str]) -> str:
    if not tags:
        return ""
    return "|#" + ",".join(f"{k}:{v}" for k, v in tags.items())
