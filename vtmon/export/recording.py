"""Recordings: every byte that arrived on the socket, with its arrival time, and replaying it.

A recording is what ``vtmon record`` (or ``--record``) writes: the reads of every connection
exactly as the socket server got them, so a replay goes through the same framing detection,
line splitting and parsing as the live data did and the engine sees the same batches at the
same (recorded) times. The format is in docs/recording.md:

    VTMREC 1\\n                                   magic and format version
    {"format": "vtmon recording", ...}\\n         one JSON header line
    record*                                      <d I B I> time, connection, kind, length; bytes

Nothing here imports the screen. ``replay_into`` drives a Monitor that is *not* started: it
steps a ManualClock through the recorded times, hands each read to a socket-less connection of
the real ingest server, applies the batches and ticks the Monitor once per recorded second.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from vtmon import __version__
from vtmon.clock import SystemClock
from vtmon.ingest.server import READ_CLOSE, READ_DATA, READ_OPEN, IngestServer, server_options
from vtmon.model import Batch, ConnectionCounters, ResourceHistory, Resources, Sensors
from vtmon.protocol import jsonrpc

if TYPE_CHECKING:
    from vtmon.clock import Clock, ManualClock
    from vtmon.engine.monitor import Monitor

log = logging.getLogger(__name__)

MAGIC = b"VTMREC"
VERSION = 1
FORMAT = "vtmon recording"
# One record's head: arrival time (epoch seconds), connection id, kind, length of the bytes.
RECORD = struct.Struct("<dIBI")
KIND_DATA = READ_DATA  # 0: bytes exactly as one read returned them
KIND_OPEN = READ_OPEN  # 1: a connection was accepted
KIND_CLOSE = READ_CLOSE  # 2: a connection ended
KIND_END = 3  # the recorder was closed cleanly (connection 0, no bytes)
KIND_NAMES = {KIND_DATA: "data", KIND_OPEN: "open", KIND_CLOSE: "close", KIND_END: "end"}
# No single read is this long (asyncio reads at most 256 KiB); a longer record is damage.
MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
FLUSH_INTERVAL_S = 0.5
# A replay moves on at most this much between two recorded events: a jump in the recorded
# timestamps (a clock step, a suspend, an edited file) would otherwise be hours of ticks.
MAX_GAP_S = 60.0
_WAKE_BYTES = 1 << 20  # the writer thread writes early once this much is waiting
_MAX_BUFFER = 64 << 20  # beyond this the socket thread writes itself (back-pressure)
_CHUNK = 1 << 16
_IOV_MAX = 1024  # parts per writev (the POSIX minimum of IOV_MAX)


class RecordingError(Exception):
    """A recording cannot be written or read (the message is one sentence for the user)."""


class Record(NamedTuple):
    t: float  # arrival time, epoch seconds, on the recording engine's clock
    conn: int  # connection id, unique within the recording (0 for the end mark)
    kind: int  # KIND_*
    data: bytes


# -- writing ----------------------------------------------------------------------------------


class Recorder:
    """Appends every open, read and close the socket server reports to a recording file.

    Pass it to ``IngestServer(..., recorder=rec)``; it is called in the server's thread and only
    stamps the arrival time and appends to a buffer. A writer thread puts the buffer in the
    file at least every ``flush_interval`` seconds, so a killed vtmon loses at most that much
    (and the reader tolerates the cut). A name ending in ``.gz`` is written gzip-compressed.
    ``close()`` writes the end mark. Times come from ``clock.time()`` (the engine's clock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        socket_path: str = "",
        overwrite: bool = False,
        flush_interval: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.path = Path(path)
        self._time: Callable[[], float] = clock.time if clock is not None else time.time
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            # What the applications sent may be private: readable by this user only, like the
            # socket itself.
            fd = os.open(self.path, flags, 0o600)
            try:
                if overwrite:  # the file replaced may have been wider; it is empty now
                    os.fchmod(fd, 0o600)
                self._raw: BinaryIO = os.fdopen(fd, "wb", buffering=0)
            except OSError:
                os.close(fd)
                raise
        except FileExistsError:
            raise RecordingError(
                f"{self.path} already exists; choose another name, or pass --force to "
                "`vtmon record` to overwrite it."
            ) from None
        except OSError as e:
            raise RecordingError(f"Cannot write the recording {self.path}: {e.strerror}.") from e
        self._out: BinaryIO = self._raw
        if self.path.name.endswith(".gz"):
            self._out = gzip.GzipFile(  # type: ignore[assignment]
                filename="", fileobj=self._raw, mode="wb", compresslevel=1
            )
        self.started = self._time()
        self.header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "started": self.started,
            "started_iso": _iso(self.started),
            "host": socket.gethostname(),
            "vtmon": __version__,
            "socket": socket_path,
            "record": "little-endian float64 time, uint32 connection, uint8 kind "
            "(0 data, 1 open, 2 close, 3 end), uint32 length, then length bytes",
        }
        self.records = 0
        self.reads = 0
        self.bytes = 0
        self.connections = 0
        self.error = ""  # set when writing failed; recording stopped there
        self._parts: list[bytes] = []  # record heads and the reads themselves, not copied
        self._size = 0
        self._lock = threading.Lock()  # the parts
        self._io_lock = threading.Lock()  # the file: one writer at a time, in order
        self._closed = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._interval = flush_interval
        head = MAGIC + b" %d\n" % VERSION + json.dumps(self.header).encode() + b"\n"
        self._write([head])
        self._thread = threading.Thread(target=self._run, name="vtmon-recorder", daemon=True)
        self._thread.start()

    def __call__(self, conn: int, kind: int, data: bytes) -> None:
        """Record one event of connection ``conn`` now (the server's ``ReadRecorder``)."""
        t = self._time()
        if type(data) is not bytes:
            data = bytes(data)  # kept until written: must not change meanwhile
        n = len(data)
        head = RECORD.pack(t, conn, kind, n)
        with self._lock:
            if self._closed:
                return
            self._parts.append(head)
            if n:
                self._parts.append(data)
            self._size += len(head) + n
            self.records += 1
            if kind == KIND_DATA:
                self.reads += 1
                self.bytes += n
            elif kind == KIND_OPEN:
                self.connections += 1
            size = self._size
        if size >= _WAKE_BYTES:
            self._wake.set()
            if size >= _MAX_BUFFER:
                self.flush()  # the disk cannot keep up: slow the socket down, not memory up

    def flush(self) -> None:
        """Write what is buffered to the file and flush it (any thread)."""
        with self._io_lock:
            with self._lock:
                parts = self._parts
                self._parts = []
                self._size = 0
            if parts:
                self._write(parts)
            if not self.error:
                try:
                    self._out.flush()
                    if self._out is not self._raw:
                        self._raw.flush()
                except (OSError, ValueError) as e:
                    self._fail(e)

    def close(self) -> None:
        """Write the end mark, flush and close the file (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._parts.append(RECORD.pack(self._time(), 0, KIND_END, 0))
            self.records += 1
            self._closed = True
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.flush()
        with self._io_lock:
            for f in (self._out, self._raw) if self._out is not self._raw else (self._raw,):
                try:
                    f.close()
                except OSError as e:
                    self._fail(e)

    def summary(self) -> str:
        """One sentence: what was recorded where."""
        n = self.connections
        return (
            f"Recorded {_size(self.bytes)} in {self.reads:,} read{'' if self.reads == 1 else 's'}"
            f" from {n:,} connection{'' if n == 1 else 's'} to {self.path}."
        )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.flush()

    def _write(self, parts: list[bytes]) -> None:
        if self.error:
            return
        try:
            if self._out is self._raw:
                _writev(self._raw.fileno(), parts)
            else:
                self._out.write(b"".join(parts))
        except (OSError, ValueError) as e:
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        if not self.error:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.error = f"Writing the recording {self.path} failed: {why}."
            log.error("%s Recording stopped.", self.error)
        with self._lock:
            self._closed = True
            self._parts = []
            self._size = 0


def _writev(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` in order with as few system calls as possible, without joining them
    (one ``writev`` releases the GIL for a whole batch of reads)."""
    i = 0
    while i < len(parts):
        batch = parts[i : i + _IOV_MAX]
        written = os.writev(fd, batch)
        want = sum(map(len, batch))
        if written < want:  # a short write: finish this batch the slow way
            rest = b"".join(batch)[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        i += len(batch)


# -- reading ----------------------------------------------------------------------------------


class RecordingReader:
    """Opens a recording, checks its header, then yields its records as it reads them.

    A file that is missing, is not a recording or has another format version raises
    ``RecordingError`` here, with one sentence. A recording that was cut short (vtmon killed, a
    damaged tail) is read up to the last whole record; ``note`` then says so in one line once
    the iteration is over, and ``end`` is None. gzip is recognised from the content.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.note = ""
        self.end: float | None = None  # the time of the end mark, when the recording has one
        self.last: float | None = None  # the time of the last record read so far
        self.count = 0  # records read so far
        self._cut = ""  # why the byte stream stopped early
        try:
            self._raw: BinaryIO = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise RecordingError(f"There is no recording at {self.path}.") from None
        except IsADirectoryError:
            raise RecordingError(f"{self.path} is a folder, not a vtmon recording.") from None
        except OSError as e:
            raise RecordingError(f"Cannot read {self.path}: {e.strerror}.") from None
        try:
            self._in: Any = self._raw
            if self._raw.read(2) == b"\x1f\x8b":
                self._in = gzip.GzipFile(filename="", fileobj=self._raw, mode="rb")
            self._raw.seek(0)
            self._chunks = self._read_chunks()
            self._rest, self.header = self._read_header()
        except BaseException:
            self.close()
            raise
        started = self.header.get("started")
        if not isinstance(started, int | float) or not math.isfinite(started):
            self.close()
            raise RecordingError(f"{self.path} is a damaged vtmon recording (no start time).")
        self.started = float(started)

    @property
    def socket_path(self) -> str:
        return str(self.header.get("socket") or "")

    def _read_chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._in.read1(_CHUNK)
            except EOFError:
                self._cut = "cut"
                return
            except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
                self._cut = f"unreadable ({e})"
                return
            if not chunk:
                return
            yield chunk

    def _read_header(self) -> tuple[bytearray, dict[str, Any]]:
        buf = bytearray()
        name = self.path
        while buf.count(b"\n") < 2 and len(buf) < MAX_HEADER_BYTES:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            buf += chunk
            if not buf.startswith(MAGIC[: len(buf)]):
                break
        if not buf.startswith(MAGIC + b" "):
            if self._cut and self._in is not self._raw:
                raise RecordingError(f"{name} is not a vtmon recording (a damaged gzip file).")
            raise RecordingError(
                f"{name} is not a vtmon recording (it does not start with {MAGIC.decode()})."
            )
        first, _, rest = bytes(buf).partition(b"\n")
        word = first[len(MAGIC) + 1 :].strip()
        if not word.isdigit():
            raise RecordingError(f"{name} is a damaged vtmon recording (no format version).")
        if int(word) != VERSION:
            raise RecordingError(
                f"{name} is a version {int(word)} vtmon recording; this vtmon ({__version__}) "
                f"reads version {VERSION}."
            )
        line, nl, rest = rest.partition(b"\n")
        try:
            header = json.loads(line) if nl else None
        except ValueError:
            header = None
        if not isinstance(header, dict):
            raise RecordingError(f"{name} is a damaged vtmon recording (its header is unreadable).")
        return bytearray(rest), header

    def __iter__(self) -> Iterator[Record]:
        buf = self._rest
        self._rest = bytearray()
        head = RECORD.size
        unpack = RECORD.unpack_from
        pos = 0
        damaged = ""
        while True:
            end = len(buf)
            while end - pos >= head:
                t, conn, kind, n = unpack(buf, pos)
                if n > MAX_RECORD_BYTES or not math.isfinite(t):
                    damaged = f"record {self.count + 1:,} is damaged"
                    break
                if end - pos - head < n:
                    break
                data = bytes(buf[pos + head : pos + head + n])
                pos += head + n
                self.count += 1
                self.last = t
                if kind == KIND_END:
                    self.end = t
                elif kind in KIND_NAMES:  # other kinds come from a newer writer: skipped
                    self.end = None  # records after an end mark: the recording went on
                    yield Record(t, conn, kind, data)
            if damaged:
                break
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            del buf[:pos]
            pos = 0
            buf += chunk
        partial = not damaged and len(buf) > pos
        self.note = self._make_note(damaged, partial)
        self.close()

    def _make_note(self, damaged: str, partial: bool) -> str:
        name = self.path.name
        n = self.count
        if damaged:
            return f"{name}: {damaged}; replayed the {n:,} records before it."
        if self.end is not None and not partial and not self._cut.startswith("unreadable"):
            return ""
        when = f" (up to {_iso(self.last)})" if self.last is not None else ""
        if self._cut.startswith("unreadable"):
            how = f"its compressed data is {self._cut}"
        elif partial or self._cut:
            how = "it ends in the middle of a record"
        else:
            how = "it has no end mark"
        return (
            f"{name} was cut short ({how}; vtmon was probably killed): "
            f"replayed the {n:,} complete records{when}."
        )

    def close(self) -> None:
        for f in (self._in, self._raw) if hasattr(self, "_in") else (self._raw,):
            try:
                f.close()
            except (OSError, EOFError, zlib.error):
                pass

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory (tests, small files)."""

    path: Path
    header: dict[str, Any]
    records: tuple[Record, ...]
    end: float | None  # the end mark's time; None when the recording was cut short
    note: str  # one line when the recording was cut short or damaged, else ""

    @property
    def started(self) -> float:
        return float(self.header["started"])


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a whole recording; raises RecordingError (one sentence) for a bad file."""
    reader = RecordingReader(path)
    records = tuple(reader)
    return Recording(reader.path, reader.header, records, reader.end, reader.note)


# -- replaying --------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    records: int = 0
    reads: int = 0
    bytes: int = 0
    connections: int = 0
    ticks: int = 0
    start: float = 0.0  # recorded time the replay started at
    end: float = 0.0  # recorded time it reached
    stopped: bool = False  # stopped early through ``stop``
    note: str = ""  # the reader's note on a cut-short recording
    header: dict[str, Any] = field(default_factory=dict)
    jumps: int = 0  # gaps between recorded events longer than MAX_GAP_S, each replayed as that
    skipped_s: float = 0.0  # recorded seconds those jumps lost

    def summary(self) -> str:
        span = max(0.0, self.end - self.start)
        n = self.connections
        jumped = ""
        if self.jumps:
            gap = _duration(self.skipped_s + self.jumps * MAX_GAP_S)
            jumped = (
                f" (a {gap} jump in its timestamps was replayed as {MAX_GAP_S:.0f} s)"
                if self.jumps == 1
                else f" ({self.jumps:,} jumps in its timestamps, {gap} in all, were replayed as "
                f"{MAX_GAP_S:.0f} s each)"
            )
        return (
            f"Replayed {_size(self.bytes)} in {self.reads:,} read{'' if self.reads == 1 else 's'}"
            f" from {n:,} connection{'' if n == 1 else 's'}, {_duration(span)} of recorded time"
            f"{jumped}."
        )


def replay_into(
    monitor: Monitor,
    source: str | os.PathLike[str] | RecordingReader,
    clock: ManualClock,
    speed: float | None = None,
    *,
    wall: Clock | None = None,
    stop: threading.Event | None = None,
    end_text: str = "",
) -> ReplayStats:
    """Feed a recording through the ingest code path into ``monitor``, on recorded time.

    ``monitor`` must use ``clock`` and must not be started (the replay drives it). The clock is
    moved forward to each record's arrival time (never back); each read goes to a socket-less
    connection of a real ``IngestServer`` (same framing and parsing as live), its batch is
    applied at once, and the Monitor ticks at every ``config.snapshot_interval_s`` of recorded
    time from the start, as the live engine did, plus once at the end so ``monitor.latest``
    holds everything. ``speed`` paces the replay on ``wall`` (real time by default): recorded
    seconds / speed; None, 0 or infinity replays as fast as possible. ``stop`` ends it early.
    ``end_text``, when given, becomes the Monitor's ``watching`` text for the final Snapshot
    (the console's header then says the replay is over).

    A gap of more than ``MAX_GAP_S`` between two recorded events (or the start and the first)
    is replayed as ``MAX_GAP_S``: every later event comes that much earlier on ``clock``, so a
    recording whose timestamps jump by hours neither waits nor ticks through them.
    """
    reader = source if isinstance(source, RecordingReader) else RecordingReader(source)
    stop = stop or threading.Event()
    pace = bool(speed) and speed is not None and math.isfinite(speed) and speed > 0
    wall_clock: Clock = wall if wall is not None else SystemClock()
    feeder = IngestServer(reader.socket_path or "replay", monitor, **server_options(monitor.config))
    conns: dict[int, Any] = {}
    interval = monitor.config.snapshot_interval_s
    _move(clock, reader.started)
    stats = ReplayStats(start=clock.time(), end=clock.time(), header=reader.header)
    t_first = clock.time()
    wall_first = wall_clock.monotonic()
    next_tick = t_first
    dirty = True
    shift = 0.0  # recorded seconds cut out of the jumps so far
    last = t_first  # the latest replayed time of an event

    def replayed(t: float) -> float:
        nonlocal shift, last
        t -= shift
        if t - last > MAX_GAP_S:
            stats.jumps += 1
            stats.skipped_s += t - last - MAX_GAP_S
            shift += t - last - MAX_GAP_S
            t = last + MAX_GAP_S
        last = max(last, t)
        return t

    def wait_until(t: float) -> bool:
        if not pace:
            return stop.is_set()
        assert speed is not None
        return wall_clock.sleep_until(wall_first + (t - t_first) / speed, stop)

    def ticks_until(t: float, inclusive: bool) -> bool:
        nonlocal next_tick, dirty
        while next_tick < t or (inclusive and next_tick == t):
            if wait_until(next_tick):
                return True
            _move(clock, next_tick)
            monitor.tick()
            stats.ticks += 1
            dirty = False
            next_tick += interval
        return False

    try:
        for rec in reader:
            t = replayed(rec.t)
            # A read at a tick's instant is in that tick's Snapshot.
            if ticks_until(t, False) or wait_until(t):
                stats.stopped = True
                break
            _move(clock, t)
            stats.records += 1
            conn = conns.get(rec.conn)
            if rec.kind == KIND_OPEN or conn is None:
                if conn is not None:  # an id used twice: the old one must have ended
                    conn.connection_lost(None)
                conn = conns[rec.conn] = feeder.connection()
                stats.connections += 1
            if rec.kind == KIND_DATA:
                stats.reads += 1
                stats.bytes += len(rec.data)
                conn.data_received(rec.data)
            elif rec.kind == KIND_CLOSE:
                conn.connection_lost(None)
                del conns[rec.conn]
            monitor.drain()
            dirty = True
            stats.end = clock.time()
        else:
            end = replayed(reader.end) if reader.end is not None else clock.time()
            stats.stopped = ticks_until(end, True)
            if not stats.stopped:
                _move(clock, end)
                stats.end = clock.time()
                if end_text:
                    monitor.watching = end_text
                if dirty or end_text:
                    monitor.tick()
                    stats.ticks += 1
    finally:
        reader.close()
    stats.note = reader.note
    return stats


def _move(clock: ManualClock, t: float) -> None:
    """Set a ManualClock forward to ``t`` (recorded time never goes back)."""
    d = t - clock.time()
    if d > 0:
        clock.advance(d)


# -- what a replay's engine reads instead of this machine --------------------------------------

NO_MACHINE_NOTE = (
    "A replay has no machine readings: the recording holds only what came in on the socket."
)


class NullCollector:
    """A system collector with nothing to read: a replay shows the recorded metrics, not the
    machine it is replayed on (whose CPU would mix into the recorded timeline)."""

    history_len = 0  # no readings, so none kept for the charts

    def collect(self, now: float) -> Resources:
        return Resources(t=now, pressure_note=NO_MACHINE_NOTE)

    def history(self) -> ResourceHistory:
        return ResourceHistory()

    def seed_history(self, seed: ResourceHistory, span_s: float) -> int:
        return 0  # a replay charts no machine, the last run's neither


class NullSensors:
    """A sensor reader with nothing to read (see NullCollector)."""

    def read(self, now: float) -> Sensors:
        return Sensors(note=NO_MACHINE_NOTE)


class ReplayEndpoint:
    """What a replay's socket serves (``vtmon replay --serve``): the replayed Monitor's read-only
    methods (``snapshot``, ``ingest``, ``ping``). Metrics sent to it are counted and ignored, so
    nothing live mixes into the recorded timeline; its own connections are not the replay's."""

    READ_ONLY = frozenset({"snapshot", "ingest", "ping"})

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.connections = ConnectionCounters()
        self.ignored_lines = 0

    def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
        if self.ignored_lines == 0:
            log.warning("metrics sent to a replay's socket are ignored")
        self.ignored_lines += batch.accepted + sum(batch.rejected.values())
        return True

    def handle_rpc(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if request.get("method") in self.READ_ONLY:
            return self.monitor.handle_rpc(request)
        rid = request.get("id")
        if rid is None:
            return None
        method = request.get("method")
        return jsonrpc.error(
            rid, jsonrpc.METHOD_NOT_FOUND, f"This vtmon replays a recording and takes no {method}."
        )


# -- words ------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} byte{'' if n == 1 else 's'}"


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


__all__ = [
    "KIND_CLOSE",
    "KIND_DATA",
    "KIND_END",
    "KIND_OPEN",
    "MAGIC",
    "RECORD",
    "VERSION",
    "NullCollector",
    "NullSensors",
    "Record",
    "Recorder",
    "Recording",
    "RecordingError",
    "RecordingReader",
    "ReplayEndpoint",
    "ReplayStats",
    "read_recording",
    "replay_into",
]
