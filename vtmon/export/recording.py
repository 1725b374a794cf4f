"""Recordings: every byte that arrived on the socket, with its arrival time, and replaying it.

A recording is what ``vtmon record`` (or ``--record``) writes: the reads of every connection
exactly as the socket server got them, so a replay goes through the same framing detection,
line splitting and parsing as the live data did and the engine sees the same batches at the
same (recorded) times. The format is in docs/recording.md:

    VTMREC 1\\n                                   magic and format version
    {"format": "vtmon recording", ...}\\n         one JSON header line
    record*                                      <d I B I> time, connection, kind, length; bytes

This module writes (``Recorder``) and reads (``RecordingReader``) the format;
vtmon.export.replay feeds what is read through the ingest code path into a Monitor.
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from vtmon import __version__
from vtmon.ingest.server import READ_CLOSE, READ_DATA, READ_OPEN

if TYPE_CHECKING:
    from vtmon.clock import Clock

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
            f"Recorded {size_text(self.bytes)} in {self.reads:,} "
            f"read{'' if self.reads == 1 else 's'}"
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


# -- words ------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    try:
        return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}"


def size_text(n: int) -> str:
    """A number of bytes in words: ``3.2 MB``, ``1 byte``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} byte{'' if n == 1 else 's'}"


__all__ = [
    "KIND_CLOSE",
    "KIND_DATA",
    "KIND_END",
    "KIND_OPEN",
    "MAGIC",
    "RECORD",
    "VERSION",
    "Record",
    "Recorder",
    "Recording",
    "RecordingError",
    "RecordingReader",
    "read_recording",
]
