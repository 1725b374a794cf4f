"""Files are private: what vtmon writes (history and journal, WAL, log, recordings, reports in
its own places) is readable by its user alone, from the moment it exists (docs/security.md)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest

from vtmon.clock import ManualClock
from vtmon.export.recording import Recorder
from vtmon.model import Kind, SeriesKey
from vtmon.sketch import Sketch
from vtmon.store.history import HistoryStore
from vtmon.store.journal import open_journal

LAT = SeriesKey("api.request_latency", (("component", "api-server"),), Kind.DISTRIBUTION)
NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask of most desktops and servers (0022: new files 0644, folders 0755)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_history_file_its_wal_and_the_journal_are_private(tmp_path: Path) -> None:
    clock = ManualClock()
    folder = tmp_path / "share" / "vtmon"
    store = HistoryStore.open(folder, clock=clock)
    assert store.persistent, store.warning
    journal = open_journal(store)
    try:
        t = int(clock.time())
        store.add_seconds([(LAT, Kind.DISTRIBUTION, t, Sketch.of([1.0, 2.0]))])
        assert store.flush() == 1
        assert journal.persistent and journal.next_number() == 1
        db = folder / "vtmon.db"
        assert mode(folder) == 0o700
        found = {p.name: mode(p) for p in folder.iterdir()}
        assert found == {"vtmon.db": 0o600, "vtmon.db-wal": 0o600, "vtmon.db-shm": 0o600}
        assert db.stat().st_size > 0
    finally:
        journal.close()
        store.close()


def test_vtmon_s_own_folder_is_tightened_once_a_named_one_is_left_as_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vtmon.store")
    own, named = tmp_path / "own", tmp_path / "named"
    for folder in (own, named):
        folder.mkdir(mode=0o755)
    for _ in range(2):
        HistoryStore.open(own, own_folder=True).close()
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{own} could be read by other users (mode 0755); vtmon made it private (0700)."
    ]
    assert mode(own) == 0o700 and mode(own / "vtmon.db") == 0o600
    HistoryStore.open(named).close()
    assert mode(named) == 0o755  # the user chose it; what vtmon writes in it is private still
    assert mode(named / "vtmon.db") == 0o600


def test_a_data_folder_of_another_user_is_refused_in_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)
    store = HistoryStore.open(folder, own_folder=True)
    assert not store.persistent
    assert store.warning == (
        f"History is not being saved: {folder} belongs to uid {NOBODY}, not to this user "
        f"(uid {os.geteuid()}), so vtmon keeps no files there (pass --data-dir); vtmon keeps "
        "running in memory."
    )
    assert os.listdir(folder) == [] and mode(folder) == 0o700
    store.close()


def test_an_older_wider_file_is_narrowed_and_one_moved_aside_stays_private(
    tmp_path: Path,
) -> None:
    (tmp_path / "vtmon.db").write_bytes(b"this is not an SQLite file " * 200)  # 0644
    store = HistoryStore.open(tmp_path)
    try:
        assert store.persistent and "a new one started" in store.notice
        (aside,) = tmp_path.glob("vtmon.db.corrupt-*")
        assert mode(aside) == 0o600
        assert mode(tmp_path / "vtmon.db") == 0o600
    finally:
        store.close()


@pytest.mark.parametrize("name", ["incident.vtmrec", "incident.vtmrec.gz"])
def test_a_recording_is_private_also_when_it_replaces_a_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    rec = Recorder(path)
    rec.close()
    assert mode(path) == 0o600
    path.unlink()
    path.write_text("an older file anyone could read")  # 0644
    rec = Recorder(path, overwrite=True)
    rec.close()
    assert mode(path) == 0o600


def test_the_log_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    log_dir = Path(platformdirs.user_log_dir("vtmon"))
    code = (
        "import logging; from vtmon.cli.console import log_to_file as _log_to_file; "
        "_log_to_file(); "
        "logging.getLogger('vtmon').warning('a line for the log')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    log = log_dir / "vtmon.log"
    assert "a line for the log" in log.read_text()
    assert mode(log_dir) == 0o700 and mode(log) == 0o600
    # One an older vtmon left open is closed, and its folder too, which the log then says.
    log.chmod(0o644)
    log_dir.chmod(0o755)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert mode(log_dir) == 0o700 and mode(log) == 0o600
    assert "could be read by other users (mode 0755); vtmon made it private" in log.read_text()
