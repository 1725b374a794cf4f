"""History across a real restart: `vtmon serve` fed through its socket, killed with SIGKILL
after a flush, started again on the same data folder.

Nothing sleeps for a fixed time: every wait polls the database file or the socket with a
deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serve import poll, serve
from vtmon.model import Kind, SeriesKey, make_tags
from vtmon.protocol.jsonrpc import rpc_call
from vtmon.store.history import HistoryStore

NAME = "restart.latency"
KEY = SeriesKey(NAME, make_tags({"component": "api"}), Kind.DISTRIBUTION)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[retention]\nflush_interval_s = 0.2\n")
    return cfg


def stored_count(db: Path) -> float:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT sum(p.n) FROM points p JOIN series s ON s.id = p.series_id "
            "WHERE s.name = ? AND p.res = 1",
            (NAME,),
        ).fetchone()
        return row[0] or 0.0
    finally:
        conn.close()


def test_history_survives_sigkill_and_seeds_the_charts(
    sock_dir: Path, tmp_path: Path, config: Path, procs: list[subprocess.Popen[str]]
) -> None:
    sock, data = sock_dir / "r.sock", tmp_path / "data"
    procs.append(first := serve(sock, data, "--config", str(config)))
    values = np.random.default_rng(11).lognormal(3, 0.7, 300)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock))
        s.sendall(b"".join(f"{NAME}:{v:.6f}|ms|#component:api\n".encode() for v in values))
    db = data / "vtmon.db"
    poll("the samples to be flushed", lambda: stored_count(db) == len(values))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = time.time()

    # what the killed process wrote is all there
    store = HistoryStore.open(data)
    summary = store.summary(KEY, killed_at - 600, killed_at + 1)
    store.close()
    assert summary is not None and summary["count"] == len(values)
    assert summary["p50"] == pytest.approx(np.quantile(values, 0.5, method="inverted_cdf"), 0.01)

    procs.append(second := serve(sock, data, "--config", str(config)))
    snap = poll(
        "the series in the new process's snapshot",
        lambda: [
            s for s in rpc_call(sock, "snapshot", {"history": True})["series"] if s["name"] == NAME
        ],
    )[0]
    before = [p for p in snap["history"] if p["t"] < killed_at]
    assert before, "the chart shows nothing from before the restart"
    exact_p50 = np.quantile(values, 0.5, method="inverted_cdf")
    # all samples arrived within a second or two, so the 10 s window held them all
    assert any(abs(p["p50"] - exact_p50) <= 0.01 * exact_p50 for p in before)
    assert snap["windows"]["1m"]["count"] == 0  # the live windows start empty
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0


def test_a_data_dir_that_cannot_be_used_serves_in_memory_with_a_warning(
    sock_dir: Path, tmp_path: Path, config: Path, procs: list[subprocess.Popen[str]]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sock = sock_dir / "m.sock"
    procs.append(proc := serve(sock, blocker / "history", "--config", str(config)))
    said = "".join(proc.said)  # type: ignore[attr-defined]
    assert "History is not being saved: cannot create" in said
    assert "Traceback" not in said
    # every published Snapshot carries it (one asked for before the first tick may not)
    warning = poll("the warning in a snapshot", lambda: rpc_call(sock, "snapshot")["store_warning"])
    assert warning.startswith("History is not being saved")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not os.path.exists(blocker / "history")
