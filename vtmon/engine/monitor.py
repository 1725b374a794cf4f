"""The background worker: applies batches, reads the machine, publishes one Snapshot a second.

Everything from outside comes in through ``submit`` (a thread-safe queue) or ``handle_rpc``;
nothing reaches into the state directly. Subscribers get each new Snapshot, called from the
monitor's thread, and must only hand it over (the screen posts a message, never renders here).
"""

from __future__ import annotations

import logging
import math
import queue
import socket
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vtmon.config import Config
from vtmon.engine.analysis import Analyzer
from vtmon.engine.clock import Clock, SystemClock
from vtmon.engine.collector import SystemCollector
from vtmon.engine.sensors import SensorReader
from vtmon.engine.series import SeriesStore
from vtmon.model import Batch, Event, IngestStats, Resources, Sensors, Snapshot

if TYPE_CHECKING:
    from vtmon.store.db import HistoryStore

log = logging.getLogger(__name__)

# How many batches may wait for the engine. At ~3,000 lines per batch this is seconds of a
# flood; past it the socket reader waits (back-pressure) rather than growing memory.
QUEUE_BATCHES = 2048
RECENT_EVENTS = 50
SWITCH_INTERVAL_S = 0.001


class ConnectionCounters:
    """Counters the socket server updates from its own thread (plain int updates, GIL-atomic)."""

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        self.bytes = 0
        self.client_dropped = 0


class Monitor:
    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        socket_path: str = "",
        watching: str = "",
        collector: SystemCollector | None = None,
        sensors: SensorReader | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        self.config = config or Config()
        self.clock: Clock = clock or SystemClock()
        self.socket_path = socket_path
        self.watching = watching or "metrics on the socket"
        self.host = socket.gethostname()
        self.started = self.clock.time()
        self.collector = collector if collector is not None else SystemCollector()
        self.sensor_reader = sensors if sensors is not None else SensorReader()
        self.series = SeriesStore(self.config.target_ms, max_series=self.config.max_series)
        self.connections = ConnectionCounters()
        self.analyzer = Analyzer(self.config, self.started)
        self.latest: Snapshot | None = None
        self.store = store  # the history file; None keeps nothing beyond the windows

        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=QUEUE_BATCHES)
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

    # -- input -------------------------------------------------------------------------------

    def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
        """Hand a batch to the engine (any thread). Waits while the engine is behind;
        a batch that still cannot be queued is dropped and its samples counted."""
        try:
            self._queue.put(batch, timeout=timeout)
            return True
        except queue.Full:
            self._dropped += _sample_count(batch)
            return False

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

    def handle_rpc(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Answer one JSON-RPC 2.0 request; None for notifications (no ``id``)."""
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(method, str):
            return _rpc_error(rid, -32600, "Invalid request: method must be a string.")
        if method == "snapshot":
            snap = self.latest or self.tick_preview()
            history = bool(params.get("history", False)) if isinstance(params, dict) else False
            result: Any = snap.to_dict(history=history)
        elif method == "client.dropped":
            n = params.get("count", 0) if isinstance(params, dict) else 0
            if isinstance(n, int) and n > 0:
                self.connections.client_dropped += n
            result = True
        elif method == "ingest":
            # Live counters, newer than the last Snapshot (benchmarks and `vtmon send` use it).
            result = {
                "accepted": self._accepted,
                "rejected": dict(self._rejected),
                "samples_dropped": self._dropped,
                "queued_batches": self._queue.qsize(),
            }
        elif method == "ping":
            result = "pong"
        else:
            return _rpc_error(rid, -32601, f"Method not found: {method}.")
        if rid is None:
            return None
        return {"jsonrpc": "2.0", "id": rid, "result": result}

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
        snap = replace(snap, **found)
        self.latest = snap
        with self._sub_lock:
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(snap)
            except Exception:  # a broken subscriber must not stop the engine
                log.exception("snapshot subscriber failed")
        return snap

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
            ),
            events=tuple(self._events),
            targets_ms=dict(self.config.targets_ms),
            watching=self.watching,
        )

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # The engine shares the GIL with the socket reader. Under a flood the default 5 ms
        # switch interval lets the reader starve this thread's many short steps (file reads,
        # numpy calls) for long enough to delay a Snapshot by half a second; 1 ms keeps it
        # on time (bench/ingest.py measures the largest gap) at no measurable cost to ingest.
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        if self.store is not None:
            # its thread reads the stored last 5 minutes of chart points for tick() to seed
            self.store.start(seed_at=self.clock.time())
        self._thread = threading.Thread(target=self._run, name="vtmon-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.store is not None:
            # the current second too: nothing received is left unwritten
            self.store.add_seconds(self.series.closed_seconds(math.floor(self.clock.time()) + 1))
            self.store.close()

    def _run(self) -> None:
        interval = self.config.snapshot_interval_s
        deadline = self.clock.monotonic()
        while not self._stop.is_set():
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
            try:
                batch = self._queue.get(timeout=min(wait, 0.25))
            except queue.Empty:
                continue
            self._apply(batch, self.clock.time())


def _sample_count(batch: Batch) -> int:
    n = sum(len(b.values) for b in batch.dist.values())
    n += len(batch.counts) + sum(len(g) for g in batch.gauges.values()) + len(batch.timed)
    return n + sum(len(s) for s in batch.sets.values())


def _rpc_error(rid: Any, code: int, message: str) -> dict[str, Any] | None:
    if rid is None:
        return None
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
