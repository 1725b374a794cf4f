from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vtmon.clock import ManualClock
from vtmon.demo import demo_config
from vtmon.engine.monitor import Monitor
from vtmon.ingest.server import IngestServer
from vtmon.model import Batch


class RecordingMonitor(Monitor):
    """A real Monitor that lets a test wait until the server has handed it N lines."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lines_in = 0
        self.rpcs_in = 0
        self._cond = threading.Condition()

    def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
        ok = super().submit(batch, timeout)
        self._handed(batch)
        return ok

    def offer(self, batch: Batch) -> bool:
        ok = super().offer(batch)
        if ok:  # a batch refused is kept by the server and offered again
            self._handed(batch)
        return ok

    def _handed(self, batch: Batch) -> None:
        with self._cond:
            self.lines_in += batch.accepted + sum(batch.rejected.values())
            self._cond.notify_all()

    def handle_rpc(self, request: dict, conn: object = None) -> dict | None:
        resp = super().handle_rpc(request, conn)
        with self._cond:
            self.rpcs_in += 1
            self._cond.notify_all()
        return resp

    def wait_rpcs(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.rpcs_in >= n, timeout):
                raise AssertionError(f"server handed over {self.rpcs_in} of {n} requests")

    def wait_lines(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.lines_in >= n, timeout):
                raise AssertionError(f"server handed over {self.lines_in} of {n} lines")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="vt-") as d:
        yield Path(d)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def monitor(clock: ManualClock) -> RecordingMonitor:
    return RecordingMonitor(demo_config(), clock=clock, socket_path="test.sock")


@pytest.fixture
def server(sock_dir: Path, monitor: RecordingMonitor) -> Iterator[IngestServer]:
    srv = IngestServer(sock_dir / "vtmon.sock", monitor)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never read the developer's own config, themes or socket.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("VTMON_SOCKET", raising=False)
    os.environ.setdefault("TERM", "xterm-256color")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test started; killed and reaped after it."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
        if p.stderr is not None:
            p.stderr.close()
