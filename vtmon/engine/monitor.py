"""The background worker: applies batches, reads the machine, publishes one Snapshot a second.

Everything from outside comes in through ``submit`` or ``offer`` (a thread-safe queue) or
``handle_rpc``; nothing reaches into the state directly. Subscribers get each new Snapshot,
called from the monitor's thread, and must only hand it over (the screen posts a message,
never renders here).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from vtmon.analysis.analyzer import Analyzer
from vtmon.clock import Clock, SystemClock
from vtmon.config import Config
from vtmon.engine.collector import SystemCollector
from vtmon.engine.rpc import Caller, Dispatcher
from vtmon.engine.sensors import SensorReader
from vtmon.engine.series import SeriesStore
from vtmon.model import (
    Batch,
    ChartHistory,
    ConnectionCounters,
    Event,
    HistoryPoint,
    IngestStats,
    ResourceHistory,
    Resources,
    Sensors,
    SeriesKey,
    Snapshot,
    gauge_updates,
)
from vtmon.protocol.jsonrpc import RawJSON
from vtmon.store.journal import open_journal
from vtmon.tuning.actuators import (
    CommandActuator,
    KnobActuator,
    KnobRegistry,
    ProcessActuator,
)
from vtmon.tuning.actuators.base import TunerActuator
from vtmon.tuning.tuner import Tuner

if TYPE_CHECKING:
    from vtmon.store.history import HistoryStore

log = logging.getLogger(__name__)

# How many batches may wait for the engine. A batch is one read of at most 256 KiB, so this
# holds at most ~16 MiB of samples (a fraction of a second of a flood); past it the socket
# server keeps the batch that did not fit and stops reading its connection until there is
# room (``offer``, ``on_room``): the kernel's back-pressure slows the sender, rather than
# memory growing.
QUEUE_BATCHES = 64
RECENT_EVENTS = 50
SWITCH_INTERVAL_S = 0.001
# A person's key press goes first: the socket's reader waits while the screen answers it
# (hold_ingest: the screen draws a new view while the reader waits, not behind it), at most a
# second in a row when keys keep coming.
HOLD_S = 0.2
HOLD_RUN_MAX_S = 1.0
# Long-span charts: at most this many points, each a round number of seconds (a multiple of
# the stored resolutions with the default tiers: 1 h in 10 s points, 7 days in 30 min).
CHART_POINTS = 400
CHART_RESOLUTIONS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def chart_resolution(span_s: float) -> int:
    """A round resolution that draws ``span_s`` in at most ``CHART_POINTS`` points."""
    want = span_s / CHART_POINTS
    return next((r for r in CHART_RESOLUTIONS_S if r >= want), CHART_RESOLUTIONS_S[-1])


class Collector(Protocol):
    """What the monitor reads the machine through: vtmon.engine.collector.SystemCollector, or
    a replay's collector with nothing to read (vtmon.export.replay.NullCollector)."""

    history_len: int  # readings the live resource charts keep

    def collect(self, now: float) -> Resources: ...

    def history(self) -> ResourceHistory: ...

    def seed_history(self, seed: ResourceHistory, span_s: float) -> int:
        """Put readings from before a restart in front of the live ones; how many it took."""
        ...


class SensorSource(Protocol):
    """What the monitor reads sensors through (vtmon.engine.sensors.SensorReader)."""

    def read(self, now: float) -> Sensors: ...


class Monitor:
    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        socket_path: str = "",
        watching: str = "",
        collector: Collector | None = None,
        sensors: SensorSource | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        self.config = config or Config()
        self.clock: Clock = clock or SystemClock()
        self.socket_path = socket_path
        self.watching = watching or "metrics on the socket"
        self.host = socket.gethostname()
        self.started = self.clock.time()
        self.collector: Collector = collector if collector is not None else SystemCollector()
        self.sensor_reader: SensorSource = sensors if sensors is not None else SensorReader()
        self.series = SeriesStore(self.config.target_ms, max_series=self.config.max_series)
        self.connections = ConnectionCounters()
        self.analyzer = Analyzer(self.config, self.started)
        self.latest: Snapshot | None = None
        self.store = store  # the history file; None keeps nothing beyond the windows
        # Knobs applications register on their connections (the socket server's thread
        # registers and answers; the tuner sets through vtmon.tuning.actuators.KnobActuator).
        self.knobs = KnobRegistry(
            clock=self.clock.monotonic, timeout_s=self.config.tuner.knob_timeout_s
        )
        # The tuner (vtmon/tuning/tuner.py) and its journal, in the history file when there is
        # one; what a previous run left applied is taken in now (set_recovery decides its fate).
        self.journal = open_journal(store)
        self.tuner = Tuner(
            self.config,
            self.journal,
            self._actuators(),
            run=f"{os.getpid()}@{self.started:.0f}",
        )
        self.knobs.on_lost = self.tuner.knobs_lost
        self.knobs.on_registered = self.tuner.knob_registered
        self.tuner.recover(self.journal.open_actions(), self.started)

        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._room_listeners: list[Callable[[], None]] = []
        self._wanted = False  # an offer was refused: tell the listeners when there is room
        # The serialised Snapshot by ``history``: (the Snapshot, its JSON), built at the first
        # request after each Snapshot and sent to every request until the next.
        self._snap_json: dict[bool, tuple[Snapshot, RawJSON]] = {}
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._batch_listeners: list[Callable[[Batch, float], None]] = []
        self._sub_lock = threading.Lock()
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._events_total = 0
        self._dropped = 0
        self._events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._resources = Resources()
        self._sensors = Sensors(note="Sensors have not been read yet.")
        self._next_system = 0.0
        self._next_sensors = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Holds for the screen (hold_ingest) run on real time, not on self.clock: a replay's
        # clock may stand still while its reader must not.
        self.hold_clock: Callable[[], float] = time.monotonic
        self._hold = threading.Condition()  # notified when a hold ends early
        self._hold_until = 0.0  # hold_clock() until which the reader and the engine wait
        self._timed_until = 0.0  # the part of it that release_ingest does not end
        self._hold_started = 0.0
        self.holds = 0  # batches that waited for the screen (tests, debugging)
        self._rpc = Dispatcher(self)

    # -- input -------------------------------------------------------------------------------

    def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
        """Hand a batch to the engine (any thread). Waits while the engine is behind or the
        screen holds the input (``hold_ingest``); a batch that still cannot be queued is
        dropped and its samples counted. The socket server uses ``offer`` instead, which
        never waits and never drops."""
        if self._hold_until:
            self._wait_for_screen()
        try:
            self._queue.put(batch, timeout=timeout)
            return True
        except queue.Full:
            self._dropped += _sample_count(batch)
            if batch.rejected:  # lines rejected are rejected whether or not the rest goes in
                self._rejected.update(batch.rejected)
            return False

    def offer(self, batch: Batch) -> bool:
        """Queue a batch only if there is room now and the screen holds no input (any
        thread). False leaves the batch with the caller, dropping nothing: ``on_room``
        listeners are called once it may offer it again."""
        if self._hold_until and self.held:
            self._wanted = True
            if self.held:
                self.holds += 1
                return False
        try:
            self._queue.put_nowait(batch)
            return True
        except queue.Full:
            pass
        self._wanted = True  # before trying again: a batch taken from now on tells them
        try:
            self._queue.put_nowait(batch)
            return True
        except queue.Full:
            return False

    def on_room(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` (from the engine's thread, or whichever ended a hold) when a batch
        ``offer`` refused may be offered again. It must be quick."""
        self._room_listeners.append(fn)

    def _tell_room(self) -> None:
        if self._wanted:
            self._wanted = False
            for fn in self._room_listeners:
                try:
                    fn()
                except Exception:  # a listener's bug must not stop the engine
                    log.exception("room listener failed")

    def hold_ingest(self, *, until_released: bool = False) -> bool:
        """Let the screen go first: for ``HOLD_S`` from now (or, ``until_released``, until
        ``release_ingest`` if sooner) the socket's reader stops reading (``offer`` refuses)
        and the engine thread waits between batches, so the interpreter is the screen's. The
        reader's senders wait on the socket meanwhile, as when the engine is behind: nothing
        is lost. Each call extends the hold, up to ``HOLD_RUN_MAX_S`` in a row; after a hold
        that long, the next one starts no sooner than as long again (keys held down must not
        stop the input). False when refused for that."""
        with self._hold:
            now = self.hold_clock()
            if now >= self._hold_until:  # a new hold
                ran = self._hold_until - self._hold_started
                if ran >= HOLD_RUN_MAX_S and now < self._hold_until + HOLD_RUN_MAX_S:
                    return False
                self._hold_started = now
            until = min(now + HOLD_S, self._hold_started + HOLD_RUN_MAX_S)
            self._hold_until = max(self._hold_until, until)
            if not until_released:
                self._timed_until = max(self._timed_until, until)
            return True

    @property
    def held(self) -> bool:
        """True while a hold_ingest lasts."""
        return self.hold_clock() < self._hold_until

    def release_ingest(self) -> None:
        """End the holds taken ``until_released`` (any thread); a timed one runs its time."""
        with self._hold:
            now = self.hold_clock()
            if self._hold_until > now:
                self._hold_until = max(self._timed_until, now)
                self._hold.notify_all()
        if not self.held:
            self._tell_room()

    def _wait_for_screen(self, most: float = math.inf) -> None:
        """Wait while a hold lasts, ``most`` seconds at most."""
        with self._hold:
            end = self.hold_clock() + most
            left = min(self._hold_until, end) - self.hold_clock()
            if left > 0:
                self.holds += 1
            while left > 0:
                self._hold.wait(left)
                left = min(self._hold_until, end) - self.hold_clock()

    def subscribe(self, fn: Callable[[Snapshot], None]) -> Callable[[], None]:
        with self._sub_lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._sub_lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def on_batch(self, fn: Callable[[Batch, float], None]) -> None:
        """Call ``fn(batch, now)`` for every batch the engine applies, on the engine's thread,
        after the series have it (exporters, recorders). It must be quick and must not keep
        the batch's lists, which the engine owns."""
        self._batch_listeners.append(fn)

    def handle_rpc(
        self, request: dict[str, Any], conn: Caller | None = None
    ) -> dict[str, Any] | None:
        """Answer one JSON-RPC 2.0 request (vtmon.engine.rpc); None for notifications (no
        ``id``). ``conn`` is the connection it came on, which the knob methods need and whose
        ``owner`` decides what it may call; None when it came from no application connection.
        The result of ``snapshot`` is a RawJSON: the Snapshot already serialised."""
        return self._rpc.handle(request, conn)

    def snapshot_json(
        self, history: bool, series: Sequence[str] | None = None, columns: Sequence[str] = ()
    ) -> RawJSON:
        """The latest Snapshot as JSON (``Snapshot.to_json``). With every series, serialised
        once, then the same bytes for every request until the next Snapshot (a busy one takes
        long to serialise); a selection is small and made for its request."""
        snap = self.latest or self.tick_preview()
        if series is not None or columns:
            return RawJSON(snap.to_json(history, series, columns).encode())
        hit = self._snap_json.get(history)
        if hit is not None and hit[0] is snap:
            return hit[1]
        raw = RawJSON(snap.to_json(history).encode())
        self._snap_json[history] = (snap, raw)
        return raw

    def live_ingest(self) -> dict[str, Any]:
        """The ingest counters now, newer than the last Snapshot (the ``ingest`` method)."""
        return {
            "accepted": self._accepted,
            "rejected": dict(self._rejected),
            "samples_dropped": self._dropped,
            "queued_batches": self._queue.qsize(),
            "connections": self.connections.open,
            "connections_total": self.connections.total,
            "refused": self.connections.refused,
            "closed": dict(self.connections.closed),
        }

    def _actuators(self) -> list[TunerActuator]:
        """What the tuner may change: knobs always, the watched process with --pid, the
        configured commands when there are some."""
        found: list[TunerActuator] = [KnobActuator(self.knobs)]
        # only the system collector watches a process (--pid); a replay's or a test's does not
        if isinstance(self.collector, SystemCollector) and self.collector.pid is not None:
            found.append(ProcessActuator(self.collector.pid))
        if self.config.actions:
            found.append(CommandActuator(self.config.actions))
        return found

    def stop_tuning(self, revert: bool | None = None) -> str:
        """Revert what the tuner applied (unless ``revert`` is False or the console chose to
        keep it) and stop the tuner; waits, bounded, for applications to answer, so call it
        while the socket still serves. Returns what happened in one sentence; idempotent."""
        return self.tuner.stop(self.clock.time(), revert)

    def handle_rpc_response(self, message: dict[str, Any], conn: Any) -> None:
        """An application's answer to a request vtmon sent it (``knobs.set``); any thread."""
        self.knobs.handle_response(conn.id, message)

    def connection_closed(self, conn_id: int) -> None:
        """The socket server says a connection is gone (after its last batch)."""
        self.knobs.connection_closed(conn_id)

    # -- the work ----------------------------------------------------------------------------

    def drain(self) -> int:
        """Apply the batches queued now; returns how many were applied.

        Bounded by the queue's length at the start: under a flood new batches keep coming, and
        a tick must not wait for the flood to end.
        """
        n = 0
        now = self.clock.time()
        for _ in range(self._queue.qsize()):
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return n
            self._apply(batch, now)
            n += 1
        self._tell_room()
        return n

    def _apply(self, batch: Batch, now: float) -> None:
        self._dropped += self.series.apply(batch, now)
        self.analyzer.observe_batch(batch, now)
        for fn in self._batch_listeners:
            try:
                fn(batch, now)
            except Exception:  # an exporter's bug must not stop the engine
                log.exception("batch listener failed")
        self._accepted += batch.accepted
        if batch.rejected:
            self._rejected.update(batch.rejected)
        if batch.events:
            self._events.extend(batch.events)
            self._events_total += len(batch.events)

    def tick(self, drain: bool = True) -> Snapshot:
        """Drain, read the machine when due, build and publish a Snapshot.

        The thread applies batches as they come and ticks with ``drain=False``: under a flood
        the Snapshot must still come on time, showing what has been applied so far.
        """
        if drain:
            self.drain()
        now = self.clock.time()
        mono = self.clock.monotonic()
        self.knobs.expire(mono)  # knob sets not answered in time fail
        if mono >= self._next_system:
            self._resources = self.collector.collect(now)
            self.analyzer.observe_resources(self._resources)
            if self.store is not None:
                self.store.add_resources(self._resources)
            self._next_system = mono + self.config.system_interval_s
        if mono >= self._next_sensors:
            self._sensors = self.sensor_reader.read(now)
            if self.store is not None:
                self.store.add_sensors(self._sensors, now)
            self._next_sensors = mono + self.config.sensors_interval_s
        self.series.record_history(now)
        snap = self._build(now)
        found = self.analyzer.evaluate(snap, now).as_fields()
        if self.store is not None:
            # every second closed since the last tick (an append; the store's thread writes)
            self.store.add_seconds(self.series.closed_seconds(math.floor(now)))
            found["store_warning"] = self.store.warning
            seed = self.store.take_seed()  # charts continue where the last run left them
            if seed:
                self.series.seed_history(seed)
            machine = self.store.take_resource_seed()
            if machine:
                self.collector.seed_history(_resource_history(machine), self._resource_span_s())
        self._tune(replace(snap, **found), now, found)
        snap = replace(snap, **found)
        if self.store is not None:  # what it found, kept for reports (vtmon/store/findings.py)
            self.store.observe(snap)
        self.latest = snap
        with self._sub_lock:
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(snap)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("snapshot subscriber failed")
        return snap

    def _tune(self, snap: Snapshot, now: float, found: dict[str, Any]) -> None:
        """The tuner's step on what the analysis found; its fields go into the Snapshot."""
        try:
            self.tuner.step(snap, now)
        except Exception:  # a tuner bug must not stop the Snapshots
            log.exception("tuning step failed")
        found["proposals"] = self.tuner.proposals()
        found["actions"] = self.tuner.actions()
        found["tuner_modes"] = self.tuner.modes()
        found["alerts"] = self.tuner.merge_alerts(found["alerts"])

    def tick_preview(self) -> Snapshot:
        """A Snapshot of the current state without publishing (for early RPC callers)."""
        return self._build(self.clock.time())

    def _build(self, now: float) -> Snapshot:
        c = self.connections
        return Snapshot(
            t=now,
            host=self.host,
            socket=self.socket_path,
            started=self.started,
            series=self.series.stats(now),
            errors=self.series.errors(now),
            resources=self._resources,
            resource_history=self.collector.history(),
            sensors=self._sensors,
            ingest=IngestStats(
                accepted=self._accepted,
                rejected=dict(self._rejected),
                connections=c.open,
                connections_total=c.total,
                bytes=c.bytes,
                events=self._events_total,
                samples_dropped=self._dropped,
                client_dropped=c.client_dropped,
                refused=c.refused,
                closed=dict(c.closed),
                max_series=self.config.max_series,
                series_refused=self.series.refused_now(),
            ),
            events=tuple(self._events),
            targets_ms=dict(self.config.targets_ms),
            watching=self.watching,
            knobs=self.knobs.knobs(),
        )

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # The engine shares the GIL with the socket reader. Under a flood the default 5 ms
        # switch interval lets the reader starve this thread's many short steps (file reads,
        # numpy calls) for long enough to delay a Snapshot visibly; 1 ms keeps it
        # on time (bench/ingest.py measures the largest gap) at no measurable cost to ingest.
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.start_store()
        self._thread = threading.Thread(target=self._run, name="vtmon-monitor", daemon=True)
        self._thread.start()

    def start_store(self) -> None:
        """Start the history writer (``start`` does). Its thread first reads the stored last
        minutes of chart points and machine readings, for ``tick`` to seed the charts with."""
        if self.store is not None:
            self.store.start(seed_at=self.clock.time(), resources_s=self._resource_span_s())

    def _resource_span_s(self) -> float:
        """How far back the live resource charts reach (their readings times the interval)."""
        return self.collector.history_len * self.config.system_interval_s

    # -- history for the screen (any thread) -------------------------------------------------

    @property
    def history_on(self) -> bool:
        """True when a history file keeps more than the Snapshot's last five minutes."""
        return self.store is not None and self.store.persistent

    def chart_history(self, key: SeriesKey, span_s: float) -> ChartHistory | None:
        """The stored p50/p95/p99 of ``key`` over the last ``span_s`` seconds, in at most
        ``CHART_POINTS`` points, including what earlier runs stored; None when history is off.

        It reads the file (longer for a long span, and while the writer holds the file), so
        the screen calls it from a worker thread; the store serialises
        it with its writer. The seconds not flushed yet (at most ``flush_interval_s``) are not
        in it.
        """
        store = self.store
        if store is None or not store.persistent:
            return None
        now = self.clock.time()
        res = chart_resolution(span_s)
        pts: list[HistoryPoint] = []
        shown = math.inf  # the store may round to its tiers; older points may be coarser
        for p in store.points(key, now - span_s, now, resolution=res):
            t, r = p["t"] or 0.0, p["res"] or float(res)
            shown = min(shown, r)
            pts.append(HistoryPoint(min(t + r, now), p["p50"], p["p95"], p["p99"]))
        shown = shown if math.isfinite(shown) else float(res)
        return ChartHistory(key, float(span_s), shown, now, tuple(pts))

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_tuning()  # a no-op when the caller already did, as it should (socket open)
        self._stop.set()
        alive = False
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
            self._thread = None
        if not alive:
            self.drain()  # what the socket handed over is applied, not lost
        if self.store is not None:
            # the current second too: nothing received is left unwritten
            self.store.add_seconds(self.series.closed_seconds(math.floor(self.clock.time()) + 1))
            self.store.close()
        self.journal.close()

    def _run(self) -> None:
        interval = self.config.snapshot_interval_s
        deadline = self.clock.monotonic()
        while not self._stop.is_set():
            self._tell_room()  # e.g. a hold for the screen ended while the queue was empty
            wait = deadline - self.clock.monotonic()
            if wait <= 0:
                try:
                    self.tick(drain=False)
                except Exception:  # keep publishing: one bad tick must not end the engine
                    log.exception("monitor tick failed")
                # Schedule from the previous deadline so ticks do not drift (nvitop); when far
                # behind (a stall), start again from now instead of bursting to catch up.
                deadline += interval
                if deadline < self.clock.monotonic() - interval:
                    deadline = self.clock.monotonic() + interval
                continue
            if self._hold_until > self.hold_clock():  # the screen goes first, until the tick
                self._wait_for_screen(wait)
                continue
            try:
                batch = self._queue.get(timeout=min(wait, 0.25))
            except queue.Empty:
                continue
            self._tell_room()
            self._apply(batch, self.clock.time())


def _resource_history(cols: dict[str, list[float | None]]) -> ResourceHistory:
    """``HistoryStore.resources`` columns as the collector's chart history: the points where
    anything charted was read, missing values 0.0 as in live readings."""
    names = ("cpu", "mem", "disk_read", "disk_write", "net_rx", "net_tx")
    rows = [
        (t, *(v or 0.0 for v in vals))
        for t, *vals in zip(cols["t"], *(cols[n] for n in names), strict=True)
        if t is not None and any(v is not None for v in vals)
    ]
    return (
        ResourceHistory(*(tuple(c) for c in zip(*rows, strict=True))) if rows else ResourceHistory()
    )


def _sample_count(batch: Batch) -> int:
    n = sum(len(b.values) for b in batch.dist.values())
    n += len(batch.counts)
    n += sum(map(gauge_updates, batch.gauges.values()))
    n += sum(len(r.values) for r in batch.timed)
    return n + sum(len(s) for s in batch.sets.values())
