"""Replaying a recording (vtmon.export.recording): every recorded read goes through the ingest
code path into a Monitor, on recorded time.

``replay_into`` drives a Monitor that is *not* started: it steps a ManualClock through the
recorded times, hands each read to a socket-less connection of the real ingest server, applies
the batches and ticks the Monitor once per recorded second. ``NullCollector`` and
``NullSensors`` stand in for the machine, which a replay does not read; ``ReplayEndpoint`` is
what a replay's own socket serves.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vtmon.clock import SystemClock
from vtmon.config import Config
from vtmon.export.recording import (
    KIND_CLOSE,
    KIND_DATA,
    KIND_OPEN,
    RecordingReader,
    size_text,
)
from vtmon.ingest.server import Engine, IngestServer, server_options
from vtmon.model import Batch, ConnectionCounters, ResourceHistory, Resources, Sensors
from vtmon.protocol import jsonrpc

if TYPE_CHECKING:
    from vtmon.clock import Clock, ManualClock

log = logging.getLogger(__name__)


class Replayed(Engine, Protocol):
    """What a replay drives (vtmon.engine.monitor.Monitor provides it): an engine the ingest
    server feeds, ticked and drained by the replay rather than by its own thread."""

    config: Config
    watching: str  # the header's words; a replay's end says it is over

    def tick(self, drain: bool = ...) -> object: ...

    def drain(self) -> int: ...


# A replay moves on at most this much between two recorded events: a jump in the recorded
# timestamps (a clock step, a suspend, an edited file) would otherwise be hours of ticks.
MAX_GAP_S = 60.0


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
            f"Replayed {size_text(self.bytes)} in {self.reads:,} "
            f"read{'' if self.reads == 1 else 's'}"
            f" from {n:,} connection{'' if n == 1 else 's'}, {_duration(span)} of recorded time"
            f"{jumped}."
        )


def replay_into(
    monitor: Replayed,
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

    def __init__(self, monitor: Engine) -> None:
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


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


__all__ = [
    "MAX_GAP_S",
    "NullCollector",
    "NullSensors",
    "ReplayEndpoint",
    "ReplayStats",
    "replay_into",
]
