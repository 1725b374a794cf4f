"""vtmon.client's Client: record into memory, send from a background thread (see the package's
docstring for the use and the costs)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from vtmon.client.batches import MAX_KEYS, prepare, unsent_pairs
from vtmon.client.connection import open_connection, read_lines
from vtmon.client.knobs import Knob, check
from vtmon.client.measure import Measurement, timer_type
from vtmon.client.registry import KnobRegistry
from vtmon.protocol import access, frames, jsonrpc, wire
from vtmon.protocol.frames import COUNTER, DIST, GAUGE
from vtmon.protocol.wire import LINE, Series

log = logging.getLogger("vtmon.client")

DEFAULT_BUFFER = 250_000  # samples: 40 bytes each (a float and two list slots), 10 MB
FLUSH_INTERVAL_S = 0.1  # the sender wakes this often, and as soon as WAKE_AT samples wait
WAKE_AT = 16_384  # (or a quarter of the buffer): small batches stay in the CPU's caches
RETRY_MAX_S = 1.0  # reconnect attempts back off to at most this
BATCH = 100_000  # samples taken from the buffer per send, at most (vtmon's ids per connection)
DROP_SHARE = 8  # a full buffer drops its oldest eighth at once: one memmove, not one each

_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """Sends an application's metrics to vtmon; see docs/client.md.

    ``socket_path``: vtmon's socket (default: as ``vtmon socket`` prints it).
    ``max_buffer``: samples held while vtmon is away or slow; beyond, the oldest are dropped.
    ``flush_interval``: seconds between the sender's rounds when the buffer is not filling.
    """

    # Slots: the recording methods read a few attributes per call, and a slot is the cheapest
    # attribute there is (an instance with this many attributes would get a plain dict).
    __slots__ = (
        "socket_path", "max_buffer", "dropped", "reported", "invalid", "sent", "last_error",
        "_buf", "_cap2", "_mark", "_three_quarters", "_high", "_unreported", "_buf_lock",
        "_counters", "_gauges", "_keys", "_names", "_Timer",
        "_named", "_sock", "_binary", "_gen", "_next_sid", "_max_frame", "_max_series", "_fresh",
        "_reader",
        "_send_lock", "_round_lock", "_registry",
        "_lock", "_warned", "_wake", "_closed", "_interval", "_thread", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        max_buffer: int = DEFAULT_BUFFER,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1.")
        path, self._named = access.socket_path(socket_path)  # named: see vtmon.protocol.access
        self.socket_path = os.fspath(path)
        self.max_buffer = int(max_buffer)
        # What became of the samples (docs/client.md, "When vtmon is away or slow").
        self.dropped = 0
        self.reported = 0
        self.invalid = 0
        self.sent = 0
        # The buffer: key, value, key, value, ... Recording extends it by one pair (one C call,
        # atomic under the GIL, so pairs never interleave; the pair's tuple is freed at once).
        # The sender takes pairs from the front with a slice copy and a slice delete, each
        # atomic too, and finds keys and values with two slices: no Python work per sample.
        self._buf: list[Any] = []
        self._cap2 = 2 * self.max_buffer  # the buffer's length when full
        # From the mark on, recording calls _full(): at the wake-up mark it wakes the sender and
        # moves the mark on (so that the next samples do not call it again), at three quarters
        # it lets the sender run; the sender moves the mark back when it took the samples.
        self._mark = 2 * max(1, min(self.max_buffer // 4, WAKE_AT))
        self._three_quarters = min(max(2 * (self.max_buffer * 3 // 4), self._mark + 2), self._cap2)
        self._high = self._mark
        self._unreported = 0
        self._buf_lock = threading.Lock()  # removals from the buffer and the drop counters
        # Series keys: untagged counters and gauges by name, everything tagged by its tags.
        self._counters: dict[Any, Series] = {}
        self._gauges: dict[Any, Series] = {}
        self._keys: dict[Any, Series] = {}
        self._names: dict[str, Series] = {}  # the sender's: record()'s names as series
        self._Timer = timer_type(self._buf)
        # The connection.
        self._sock: socket.socket | None = None
        self._binary = False
        self._gen = 0  # connection generation: series are declared once per connection
        self._next_sid = 0
        self._max_frame = frames.MAX_FRAME
        self._max_series = frames.MAX_SERIES  # ids the connection may declare (its hello says)
        self._fresh = False  # a new connection: register every knob before anything else
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()  # writes on the socket (sender, reader's answers)
        self._round_lock = threading.Lock()  # one sending round at a time
        self.last_error = ""  # why the last connection attempt or send failed
        # Knobs.
        self._lock = threading.Lock()  # knobs and the connection's state
        self._registry = KnobRegistry(self._lock)
        self._warned: set[str] = set()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._interval = flush_interval
        self._thread = threading.Thread(target=self._run, name="vtmon-client", daemon=True)
        self._thread.start()
        _open_clients.add(self)

    # -- recording (the application's side: never blocks on I/O) -----------------------------

    def record(self, name: str, value: float, **tags: Any) -> None:
        """One sample of a distribution (a latency in milliseconds, usually)."""
        buf = self._buf
        if len(buf) >= self._high:
            self._full()
        buf.extend((self._series(DIST, name, tags) if tags else name, value))

    def timer(self, name: str, **tags: Any) -> Any:
        """``with client.timer(name):`` records how long the block took, in milliseconds
        (also when it raises). The clock starts here: make one per block."""
        if len(self._buf) >= self._high:
            self._full()  # room for the sample the block will add
        timer = self._Timer
        t = timer()
        t.key = self._series(DIST, name, tags) if tags else name
        t.t0 = perf_counter()
        return t

    def count(self, name: str, value: float = 1, **tags: Any) -> None:
        """Add ``value`` to a counter (requests, operations, bytes)."""
        if tags:
            key = self._series(COUNTER, name, tags)
        else:
            try:
                key = self._counters[name]
            except (KeyError, TypeError):
                key = self._untagged(COUNTER, self._counters, name)
        buf = self._buf
        if len(buf) >= self._high:
            self._full()
        buf.extend((key, value))

    def gauge(self, name: str, value: float, **tags: Any) -> None:
        """Set a gauge (a level: memory in use, queue depth)."""
        if tags:
            key = self._series(GAUGE, name, tags)
        else:
            try:
                key = self._gauges[name]
            except (KeyError, TypeError):
                key = self._untagged(GAUGE, self._gauges, name)
        buf = self._buf
        if len(buf) >= self._high:
            self._full()
        buf.extend((key, value))

    def error(self, exc: BaseException | str, component: str | None = None) -> None:
        """Count one error of the component, typed by the exception's class name: the counter
        ``{component}.error_count`` (``error_count`` without one) with the tags
        ``error_type`` and ``component``, which vtmon reads as that component's errors."""
        etype = exc if isinstance(exc, str) else type(exc).__name__
        tags = {"error_type": etype}
        if component:
            tags["component"] = component
        name = f"{component}.error_count" if component else "error_count"
        self._put((self._series(COUNTER, name, tags), 1.0))

    def start_measurement(
        self,
        name: str,
        *,
        component: str | None = None,
        operation: str | None = None,
        user: str | None = None,
        session: str | None = None,
        request: str | None = None,
        **tags: Any,
    ) -> Measurement:
        """Start timing an operation with its context; pass what this returns to
        ``end_measurement``. docs/client.md says what vtmon keeps of the context."""
        return Measurement(name, component, operation, user, session, request, tags)

    def end_measurement(
        self, token: Measurement, error: BaseException | str | None = None
    ) -> float:
        """Record the milliseconds since ``start_measurement`` (with its context) and return
        them; ``error`` also counts one error of the measurement's component."""
        ms = (perf_counter() - token.t0) * 1000.0
        if token.value is not None:
            raise ValueError(f"{token!r} has already ended.")
        token.value = ms
        self._put((LINE, token))
        if error is not None:
            self.error(error, token.component)
        return ms

    def _put(self, item: tuple[Any, Any]) -> None:
        buf = self._buf
        if len(buf) >= self._high:
            self._full()
        buf.extend(item)

    def _full(self) -> None:
        """The buffer reached the mark (``_high``). At the wake-up mark: wake the sender. At
        three quarters (the sender has not run since, starved of the interpreter or of a
        core): let it run, once. When full: drop the oldest eighth (counted), so that the next
        samples have room."""
        buf = self._buf
        high = self._high
        if len(buf) >= self._cap2:
            with self._buf_lock:
                n = (len(buf) - self._cap2) // 2 + 1
                if n > 0:
                    self._drop(max(n, self.max_buffer // DROP_SHARE))
        if high == self._mark:
            self._high = self._three_quarters
            self._wake.set()
        elif high != self._cap2:
            self._high = self._cap2
            if self._sock is not None:
                time.sleep(0)  # a few microseconds: the sender may take the interpreter now

    def _drop(self, n: int) -> None:
        """Drop the ``n`` oldest samples (``_buf_lock`` held)."""
        del self._buf[: 2 * n]
        self.dropped += n
        self._unreported += n

    def _untagged(self, kind: int, cache: dict[Any, Series], name: Any) -> Series:
        """The series of an untagged counter or gauge not yet in ``cache`` (kept there)."""
        try:
            key = cache[name] = self._series(kind, name, {})
        except TypeError:  # an unhashable name: refused when sent, counted as invalid
            key = Series(kind, name)
        return key

    def _series(self, kind: int, name: Any, tags: dict[str, Any]) -> Series:
        """The series of ``name`` with ``tags`` (cached, one object per kind, name and tags)."""
        try:
            raw = (kind, name, *tags.items())
            s = self._keys.get(raw)
        except TypeError:  # an unhashable name or tag value
            raw, s = None, None
        if s is None:
            pairs = tuple(
                sorted((wire.clean_tag(k, key=True), wire.clean_tag(v)) for k, v in tags.items())
            )
            try:
                canonical = (kind, name, pairs)
                s = self._keys.get(canonical)
            except TypeError:
                return Series(kind, name, pairs)  # refused when sent: counted as invalid
            if s is None:
                if len(self._keys) >= MAX_KEYS:
                    self._keys.clear()
                    self._counters.clear()
                    self._gauges.clear()
                s = self._keys[canonical] = Series(kind, name, pairs)
            if raw is not None:
                self._keys[raw] = s
        return s

    @property
    def buffered(self) -> int:
        """Samples waiting in the buffer."""
        return len(self._buf) // 2

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def binary(self) -> bool:
        """Whether the current connection speaks binary frames (False: text lines, for a
        vtmon that refused the hello, or no connection)."""
        return self._sock is not None and self._binary

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
        v, lo, hi = check(name, value, min, max, step, kind)
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
        self._registry.add(knob)
        self._register(knob)
        return knob

    def knobs(self) -> list[Knob]:
        return self._registry.all()

    def _register(self, knob: Knob) -> None:
        self._registry.queue(knob)
        self._wake.set()

    # -- reading (the reader thread of each connection) ----------------------------------------

    def _read(self, sock: socket.socket, buf: bytes) -> None:
        try:
            read_lines(sock, buf, self._closed, lambda line: self._handle(line, sock))
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
                    self._registry.unregistered()
            sock.close()  # only this thread closes a connection's socket
            self._wake.set()  # reconnect: the knobs register again

    def _handle(self, line: bytes, sock: socket.socket) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(msg, dict):
            return
        if msg.get("method") is None:  # vtmon's answer to a knobs.register
            with self._lock:
                if self._sock is sock:
                    self._registry.answered(msg)
            return
        reply = self._registry.answer(msg)
        if msg.get("id") is None:
            return
        data = jsonrpc.encode(reply)
        with self._send_lock:
            if self._sock is not sock:
                return  # that connection is gone; vtmon counts the set as failed
            if self._binary:
                data = wire.frame(frames.LINES, data)
            try:
                sock.sendall(data)
                return
            except OSError as e:
                self.last_error = f"sending to vtmon failed: {e}"
        with self._lock:
            if self._sock is sock:
                self._abandon()

    def _abandon(self) -> None:
        """Give up the current connection (lock held): its reader wakes and closes it."""
        sock, self._sock = self._sock, None
        self._registry.unregistered()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- sending (the background thread, or flush) --------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is buffered now (and wait for it to be written to vtmon's socket); True
        when all of it was, False when vtmon could not be reached within ``timeout``."""
        deadline = time.monotonic() + timeout
        if not self._round_lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            return self._drain(len(self._buf) // 2, deadline)
        finally:
            self._round_lock.release()

    def _pending(self, connect: bool = False) -> bool:
        """Whether a round has something to do (``connect``: also when not connected)."""
        if self._sock is None and (connect or self._registry.knobs):
            return True
        return bool(self._buf or self._registry.pending or self._unreported)

    def _drain(self, target: int, deadline: float | None, connect: bool = False) -> bool:
        """Send rounds until ``target`` samples were taken and nothing else waits (round lock
        held); False when a round failed or the deadline passed first."""
        taken = 0
        while self._pending(connect):
            ok, n = self._round()
            if not ok:
                return False
            taken += n
            if taken >= target and not (self._registry.pending or self._unreported):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def _round(self) -> tuple[bool, int]:
        """One batch (round lock held): connect when needed, take up to BATCH samples and
        send them. Returns whether it worked and how many samples were taken."""
        if self._sock is None:
            try:
                self._connect()
            except OSError as e:
                self.last_error = f"cannot reach vtmon at {self.socket_path}: {e}"
                return False, 0
        buf = self._buf
        with self._buf_lock:
            n = min(len(buf) // 2, BATCH)
            items = buf[: 2 * n]
            del buf[: 2 * n]  # what was added meanwhile is behind them, and stays
            self._high = self._mark
            reported, self._unreported = self._unreported, 0
        with self._lock:
            sock, binary, gen = self._sock, self._binary, self._gen
            control = self._registry.take(self._fresh)
            self._fresh = False
        if sock is None:  # the reader saw the connection end meanwhile
            self._put_back(items, reported)
            return False, n
        if reported:
            control.append(
                json.dumps(
                    jsonrpc.request("client.dropped", {"count": reported}, rid=None),
                    separators=(",", ":"),
                )
            )
        batch = wire.group(items)
        series, lines, invalid = prepare(batch, binary, self._names, self._warn)
        new = sum(1 for _, s, _ in series if s.gen != gen)
        cap = self._max_series
        if binary and self._next_sid + new > cap and self._next_sid and len(series) <= cap:
            # The connection's ids are used up by series gone quiet: a new connection gives
            # this batch's series new ids. (A batch of more series than a connection may
            # declare sends the rest as lines instead: see wire.encode_binary.)
            self._put_back(items, reported)
            with self._lock:
                if self._sock is sock:
                    self._abandon()
            return True, 0
        if binary:
            enc, self._next_sid = wire.encode_binary(
                control, series, lines, gen, self._next_sid, self._max_frame, cap
            )
        else:
            enc = wire.encode_text(control, series, lines)
        written = self._write(sock, b"".join(enc.chunks))
        sizes = {key: len(a) for key, _, a in series}
        if written == enc.size:
            self.sent += sum(sizes.values()) + len(lines)
            self.invalid += invalid + sum(batch.bad.values())
            if reported:
                self.reported += reported
            return True, n
        # The connection broke part-way: what went out whole stays sent, the rest goes back.
        unsent = {key for end, key in enc.segments if end > written}
        done = [key for end, key in enc.segments if end <= written]
        self.sent += sum(sizes.get(k, 0) for k in done) + (len(lines) if LINE in done else 0)
        self.invalid += invalid + sum(batch.bad.get(k, 0) for k in done)
        if None in done:
            self.reported += reported
            reported = 0
        self._put_back(unsent_pairs(items, unsent), reported)
        with self._lock:
            if self._sock is sock:
                self._abandon()
        return False, n

    def _warn(self, why: str) -> None:
        if why not in self._warned and len(self._warned) < 100:
            self._warned.add(why)
            log.warning("vtmon.client drops samples: %s", why)

    def _put_back(self, items: list[Any], reported: int) -> None:
        """Samples taken but not sent go back to the front of the buffer (oldest first); what
        no longer fits is dropped (oldest first) and counted."""
        with self._buf_lock:
            self._unreported += reported
            if items:
                self._buf[0:0] = items
                over = (len(self._buf) - self._cap2) // 2
                if over > 0:
                    self._drop(over)

    def _write(self, sock: socket.socket, data: bytes) -> int:
        """Write ``data``; returns how many bytes vtmon's socket took (all, unless the
        connection broke or vtmon took nothing for connection.SEND_TIMEOUT_S)."""
        view = memoryview(data)
        off = 0
        with self._send_lock:
            if self._sock is not sock:
                return 0
            try:
                # A blocking socket: one send() is one system call (one release of the GIL)
                # that returns when vtmon's socket took everything, or after SO_SNDTIMEO.
                while off < len(data):
                    n = sock.send(view[off:])
                    if not n:
                        raise TimeoutError("vtmon takes nothing")
                    off += n
            except OSError as e:
                self.last_error = f"sending to vtmon failed: {e}"
        return off

    def _connect(self) -> None:
        """Open the connection, agree on the format, start its reader (round lock held);
        raises OSError."""
        try:
            s, hello = open_connection(self.socket_path, self._named)
        except access.UnsafeFolder as e:
            if str(e) not in self._warned:  # once: the sender retries every second
                self._warned.add(str(e))
                log.warning("vtmon.client does not connect: %s", e)
            raise
        max_frame, max_series = hello.max_frame, hello.max_series
        with self._lock:
            self._sock = s
            self._binary = hello.binary
            self._gen += 1
            self._next_sid = 0
            if isinstance(max_frame, int) and max_frame >= 1024:
                self._max_frame = min(max_frame, frames.MAX_FRAME)
            if isinstance(max_series, int) and not isinstance(max_series, bool):
                self._max_series = max(1, max_series)
            else:
                self._max_series = frames.MAX_SERIES
            self._fresh = True
            self._registry.unregistered()
            self._reader = threading.Thread(
                target=self._read, args=(s, hello.rest), name="vtmon-client-reader", daemon=True
            )
            self._reader.start()

    def _run(self) -> None:
        delay = self._interval
        while not self._closed.is_set():
            self._wake.clear()
            with self._round_lock:
                # Connected also while there is nothing to send: the first samples then go
                # out at once, rather than after a hello's round trip.
                ok = self._drain(len(self._buf) // 2, None, connect=True)
            if ok:
                delay = self._interval
                self._wake.wait(self._interval)
            else:  # vtmon is away: retry, backing off, whatever the buffer does
                delay = min(max(delay, 0.05) * 2, RETRY_MAX_S)
                self._closed.wait(delay)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is buffered (for up to ``timeout``), then stop."""
        if self._closed.is_set():
            return
        self.flush(timeout)
        self._closed.set()
        self._wake.set()
        self._thread.join(5)
        with self._lock:
            self._abandon()
            reader = self._reader
        if reader is not None:
            reader.join(5)
        _open_clients.discard(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _flush_at_exit() -> None:
    """Whatever a client still holds when the program ends goes out (briefly)."""
    for client in list(_open_clients):
        try:
            client.flush(1.0)
        except Exception:  # never in the way of the application's exit
            pass
