"""One running vtmon: the engine and what serves it, built from a Config, started and stopped
in one order. `vtmon`, `vtmon serve`, `vtmon demo` and `vtmon replay` run one; tests that are
about the whole engine run one too.

    with Runtime(config, socket_path, history=History()) as rt:
        ...  # rt.monitor, rt.server, rt.exporter, rt.store

Built (``Runtime(...)``): the open-file limit raised (every connection is one), the history
file opened, the Monitor made (its tuner takes in what a previous run left applied and learns
its fate, ``recovered``). Started (``start()``): the
Prometheus endpoint (before the socket opens, so that every batch is exported), the socket,
then the engine's thread. Stopped (``stop()``): the tuner reverts what it applied while the
applications are still connected and can answer, then whatever feeds the socket from this
process (``on_stop``: the demo's workload), then the socket, the engine, the endpoint and the
history file.

The caller owns a recorder it passes in (it closes it after ``stop()`` and says what it holds),
and says in words what the runtime reports (``recovered``, its exceptions: one sentence each).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from vtmon.clock import Clock
from vtmon.config import APP, Config
from vtmon.engine.collector import SystemCollector
from vtmon.engine.monitor import Collector, Monitor, SensorSource
from vtmon.export.prometheus import PrometheusExporter
from vtmon.export.replay import ReplayEndpoint
from vtmon.ingest.server import IngestServer, ReadRecorder, server_options
from vtmon.model import TuningAction
from vtmon.process import open_file_warning, raise_open_file_limit
from vtmon.store.history import DB_NAME, DEMO_DB_NAME, HistoryStore

log = logging.getLogger(__name__)

RECOVERY_POLICIES = ("offer", "revert", "keep")


class ProcessNotFound(Exception):
    """``pid`` names no process (the message is one sentence for the user)."""


@dataclass(frozen=True)
class History:
    """Where the history file is kept: ``folder`` (None: the user data folder, which vtmon
    keeps private), named vtmon.db, or demo.db for the demo's."""

    folder: str | os.PathLike[str] | None = None
    demo: bool = False

    def open(self, config: Config, clock: Clock | None = None) -> HistoryStore:
        """Never fails: an unusable folder gives a store that keeps history in memory and
        says why."""
        folder = self.folder if self.folder is not None else platformdirs.user_data_dir(APP)
        return HistoryStore.open(
            folder,
            config.retention,
            clock,
            name=DEMO_DB_NAME if self.demo else DB_NAME,
            own_folder=self.folder is None,
        )


class Runtime:
    """The engine (``monitor``), its socket server (``server``; None without a socket path),
    its Prometheus endpoint (``exporter``; None without ``prometheus``) and its history
    (``store``; None without ``history``: a History to open, or a store the caller opened),
    built from ``config``. ``pid`` is a process to watch too (``watching_process`` checks it
    and says so).

    ``clock``, ``collector`` and ``sensors`` replace the real ones (a replay's, a test's);
    ``engine`` is the Monitor class to build (a test's subclass). ``recovery`` decides what
    becomes of tuning actions a previous run left applied (offer: the console asks; revert;
    keep). ``read_only`` serves a replay: the socket answers the engine's read-only methods,
    ignores metrics and stays its user's alone whatever ``[server]`` admits. With
    ``run_engine`` False the caller drives the engine (ticks it, as a replay or a test does)
    and stops it: the runtime neither starts nor stops it.
    """

    def __init__(
        self,
        config: Config,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        watching: str = "",
        pid: int | None = None,
        clock: Clock | None = None,
        collector: Collector | None = None,
        sensors: SensorSource | None = None,
        history: History | HistoryStore | None = None,
        recorder: ReadRecorder | None = None,
        prometheus: tuple[str, int] | None = None,
        recovery: str = "offer",
        read_only: bool = False,
        run_engine: bool = True,
        engine: type[Monitor] = Monitor,
    ) -> None:
        if recovery not in RECOVERY_POLICIES:
            raise ValueError(f"recovery must be one of {', '.join(RECOVERY_POLICIES)}")
        self.config = config
        self.path = Path(socket_path) if socket_path is not None else None
        if not watching and self.path is not None:
            watching = f"metrics on {self.path}"
        self.watching = watching
        self.run_engine = run_engine
        self.prometheus = prometheus
        # Called once the tuner has stopped and before the socket closes: what feeds the
        # socket from this process (the demo's workload) is still connected while the tuner
        # reverts.
        self.on_stop: list[Callable[[], None]] = []
        if self.path is not None:
            _raise_open_files(config)
        self.store = history.open(config, clock) if isinstance(history, History) else history
        self.monitor = engine(
            config,
            clock=clock,
            socket_path=str(self.path or ""),
            watching=watching,
            collector=collector if collector is not None else SystemCollector(pid=pid),
            sensors=sensors,
            store=self.store,
        )
        self.monitor.tuner.set_recovery(recovery)
        self.exporter: PrometheusExporter | None = None
        self.server: IngestServer | None = None
        if self.path is not None:
            endpoint: Any = ReplayEndpoint(self.monitor) if read_only else self.monitor
            self.server = IngestServer(
                self.path,
                endpoint,
                recorder=recorder,
                **server_options(config, private=read_only),
            )

    @property
    def recovered(self) -> list[TuningAction]:
        """The tuning actions a previous run left applied (found in the journal)."""
        return [a for a in self.monitor.tuner.actions() if a.recovered and a.in_effect]

    def start(self) -> None:
        """Serve /metrics, open the socket, start the engine. Raises ExporterError,
        SocketInUse or SocketError (one sentence each) having closed what it opened."""
        try:
            if self.prometheus is not None:
                self.exporter = PrometheusExporter(self.monitor)
                self.exporter.serve(*self.prometheus)
                log.info("Prometheus metrics on %s", self.exporter.url)
            if self.server is not None:
                self.server.start()
        except BaseException:
            self._close_outputs(store=True)
            raise
        if self.run_engine:
            self.monitor.start()

    def stop(self) -> str:
        """Stop in order (the module docstring has it); returns what became of the tuning
        actions applied, in one sentence ("" for an engine the caller drives). Idempotent."""
        said = ""
        try:
            if self.run_engine:
                said = self.monitor.stop_tuning()
            for fn in self.on_stop:
                fn()
            if self.server is not None:
                self.server.stop()
            if self.run_engine:
                self.monitor.stop()
        finally:
            # A driven engine's Monitor.stop, the caller's, writes its last second first.
            self._close_outputs(store=self.run_engine)
        return said

    def _close_outputs(self, store: bool) -> None:
        if self.exporter is not None:
            self.exporter.stop()
        if store and self.store is not None:
            self.store.close()  # Monitor.stop closed it already; this covers a failed start

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def watching_process(pid: int, watching: str) -> str:
    """``pid 1234 (name) and WATCHING``: what a runtime watching process ``pid`` says it
    watches; ProcessNotFound when there is no such process."""
    try:
        name = psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        raise ProcessNotFound(
            f"No process has pid {pid}; pass the pid of the running application."
        ) from None
    except psutil.AccessDenied:
        name = "?"
    return f"pid {pid} ({name}) and {watching}"


def _raise_open_files(config: Config) -> None:
    """As many open files as the system allows this process (every connection is one), and a
    warning when that is still too few for ``[limits] max_connections``."""
    warning = open_file_warning(raise_open_file_limit(), config.max_connections)
    if warning:
        log.warning(warning)
