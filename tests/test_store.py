"""The history store: a real SQLite file in tmp_path, real sketches, an injected clock.

Nothing sleeps: the tests call ``flush`` and ``maintain`` themselves and move the clock.
"""

from __future__ import annotations

import math
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.history import damage_middle, fill, filled_file, latency_keys
from tests.serve import poll
from vtmon.clock import ManualClock
from vtmon.config import EXAMPLE_CONFIG, ConfigError, RetentionConfig, config_from_dict
from vtmon.engine.monitor import Monitor
from vtmon.engine.series import SeriesStore
from vtmon.model import (
    Batch,
    DistBuf,
    Kind,
    Pressure,
    Resources,
    Sensors,
    SeriesKey,
    Temperature,
    TimedRun,
    make_tags,
)
from vtmon.sketch import Sketch
from vtmon.store.bound import on_disk
from vtmon.store.history import HistoryStore
from vtmon.store.rollup import CorruptBlob, decode, encode, tiers_for


def timed_sample(key: SeriesKey, value: float, weight: float, ts: float) -> TimedRun:
    """One timed sample, as a run of one."""
    return TimedRun(key, [value], [ts], weight)


QS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
LAT = SeriesKey("api.request_latency", make_tags({"component": "api"}), Kind.DISTRIBUTION)
REQS = SeriesKey("api.requests", make_tags({"component": "api"}), Kind.COUNTER)
HEAP = SeriesKey("api.heap_mb", (), Kind.GAUGE)
USERS = SeriesKey("api.users", (), Kind.SET)


def exact(values: np.ndarray, q: float) -> float:
    """The sample of rank ceil(q * n): what the sketch promises to be within 1 % of."""
    return float(np.quantile(values, q, method="inverted_cdf"))


def within_1pct(got: float | None, want: float) -> bool:
    return got is not None and abs(got - want) <= 0.01 * abs(want) + 1e-12


def series_store() -> SeriesStore:
    return SeriesStore(lambda comp: 100.0)


def open_store(path: Path, clock: ManualClock, **retention: float) -> HistoryStore:
    store = HistoryStore.open(path, RetentionConfig(**retention), clock=clock)
    assert store.persistent, store.warning
    return store


def test_every_kind_round_trips_through_the_file(tmp_path: Path, clock: ManualClock) -> None:
    series = series_store()
    store = open_store(tmp_path, clock)
    t0 = int(clock.time())
    rng = np.random.default_rng(3)
    lat = {}
    for i in range(3):
        now = t0 + i + 0.5
        lat[t0 + i] = v = rng.lognormal(3, 1, 200)
        b = Batch(dist={LAT: DistBuf(list(v))})
        b.counts[REQS] = 10.0 * (i + 1)
        b.gauges[HEAP] = [(False, 100.0 + i), (False, 90.0 + i), (True, 5.0)]
        b.sets[USERS] = {f"u{j}" for j in range(i + 2)}
        series.apply(b, now)
    store.add_seconds(series.closed_seconds(t0 + 3))
    assert store.flush() == 12
    store.close()

    again = open_store(tmp_path, clock)  # a new process would see the same
    pts = again.points(LAT, t0, t0 + 3, resolution=1)
    assert [p["t"] for p in pts] == [t0, t0 + 1, t0 + 2]
    for p in pts:
        v = lat[int(p["t"])]
        assert p["count"] == 200
        assert p["sum"] == pytest.approx(v.sum())
        assert (p["min"], p["max"]) == (v.min(), v.max())
        for name, q in QS.items():
            assert within_1pct(p[name], exact(v, q)), (name, p[name], exact(v, q))
    reqs = again.points(REQS, t0, t0 + 3, resolution=1)
    assert [(p["count"], p["rate"]) for p in reqs] == [(10, 10), (20, 20), (30, 30)]
    heap = again.points(HEAP, t0, t0 + 3, resolution=1)
    assert heap[0] == {
        "t": t0,
        "res": 1.0,
        "count": 3.0,
        "mean": pytest.approx((100 + 90 + 95) / 3),
        "min": 90.0,
        "max": 100.0,
        "last": 95.0,
    }
    assert [p["count"] for p in again.points(USERS, t0, t0 + 3, resolution=1)] == [2, 3, 4]
    # one point for the three seconds at a coarser resolution (they are in one minute)
    (whole,) = again.points(LAT, t0, t0 + 3, resolution=60)
    assert (whole["t"], whole["res"]) == (t0 - t0 % 60, 60.0)
    allv = np.concatenate(list(lat.values()))
    assert whole["count"] == 600 and within_1pct(whole["p99"], exact(allv, 0.99))
    assert [s.key for s in again.series(t0, t0 + 3)] == [HEAP, LAT, REQS, USERS]
    assert again.series(t0 + 10, t0 + 20) == []
    again.close()


def test_machine_readings_are_stored_per_layer(tmp_path: Path, clock: ManualClock) -> None:
    store = open_store(tmp_path, clock)
    t0 = int(clock.time()) // 60 * 60
    for i in range(60):
        store.add_resources(
            Resources(
                t=t0 + i + 0.1,
                cpu_percent=float(i % 10),
                mem_percent=50.0,
                net_rx_rate=1000.0,
                pressure=(Pressure("cpu", 12.0, 0.0, 0.0),),
            )
        )
        if i % 5 == 0:
            temp = Temperature("coretemp", "Package", 40.0 + i)
            store.add_sensors(Sensors(temperatures=(temp,)), t0 + i)
    store.flush()
    layers = {s.key.name: s.layer for s in store.series(t0, t0 + 60)}
    assert layers["system.cpu"] == "system"
    assert layers["network.rx"] == "network"
    assert layers["hardware.temperature"] == "hardware"
    res = store.resources(t0, t0 + 60)
    assert res["t"] == [float(t0 + 10 * k) for k in range(6)]  # network's 10 s sets the pace
    assert res["cpu"] == [4.5] * 6  # mean of 0..9
    assert res["mem"] == [50.0] * 6 and res["net_rx"] == [1000.0] * 6
    assert res["psi_cpu"] == [12.0] * 6
    assert res["disk_read"] == [None] * 6  # never read: None, not 0
    cpu5 = store.points(SeriesKey("system.cpu", (), Kind.GAUGE), t0, t0 + 60, 5, "system")
    assert [p["res"] for p in cpu5] == [5.0] * 12
    temp_key = SeriesKey(
        "hardware.temperature", (("chip", "coretemp"), ("label", "Package")), Kind.GAUGE
    )
    temps = store.points(temp_key, t0, t0 + 60, layer="hardware")
    assert [(p["res"], p["min"], p["max"]) for p in temps] == [(30.0, 40, 65), (30.0, 70, 95)]
    store.close()


def test_rollups_keep_every_quantile_within_1pct_and_the_totals(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = open_store(tmp_path, clock)
    t0 = int(clock.time()) // 3600 * 3600 + 3600
    clock.advance(t0 - clock.time())
    rng = np.random.default_rng(7)
    values: dict[int, np.ndarray] = {}
    for i in range(2 * 3600):
        # a drifting lognormal: the median doubles over the two hours, the tail is long
        v = rng.lognormal(math.log(20) + i / 7200 * math.log(2), 0.8, 40)
        values[t0 + i] = v
        store.add_seconds([(LAT, Kind.DISTRIBUTION, t0 + i, Sketch.of(v))])
        clock.advance(1)
        if i % 60 == 59:
            store.flush()
            store.maintain()
    end = t0 + 7200
    clock.advance(400)  # past the rollup lag: everything rolled into 10 s, 1 min, 10 min
    store.maintain()
    before = store.summary(LAT, t0, end)
    assert before is not None

    clock.advance(2 * 86400)  # 1 s (1 h), 10 s (6 h) and 1 min (1 d) points are gone now
    store.maintain()
    fine = store.points(LAT, t0, end, resolution=1)
    assert {p["res"] for p in fine} == {600.0}  # only the 10-minute rollups are left
    after = store.summary(LAT, t0, end)
    assert after is not None
    assert after["count"] == before["count"] == 7200 * 40
    assert after["sum"] == pytest.approx(before["sum"], rel=1e-12)
    allv = np.concatenate([values[s] for s in range(t0, end)])
    assert after["sum"] == pytest.approx(allv.sum(), rel=1e-12)
    assert (after["min"], after["max"]) == (allv.min(), allv.max())
    for name, q in QS.items():
        assert within_1pct(after[name], exact(allv, q)), (name, after[name], exact(allv, q))
    # and every 10-minute point on its own, after 1 s -> 10 s -> 1 min -> 10 min merges
    assert len(fine) == 12
    for p in fine:
        s = int(p["t"])
        part = np.concatenate([values[u] for u in range(s, s + 600)])
        assert p["count"] == part.size
        for name, q in QS.items():
            assert within_1pct(p[name], exact(part, q)), (s, name, p[name], exact(part, q))
    store.close()


def test_retention_deletes_what_is_past_it(tmp_path: Path, clock: ManualClock) -> None:
    store = open_store(tmp_path, clock)
    t0 = int(clock.time())
    for i in range(120):
        store.add_seconds([(LAT, Kind.DISTRIBUTION, t0 + i, Sketch.of([10.0, 20.0]))])
        store.add_resources(Resources(t=t0 + i, cpu_percent=30.0))
        clock.advance(1)
    store.flush()
    store.maintain()
    cpu = SeriesKey("system.cpu", (), Kind.GAUGE)

    def rows(layer: str, res: int | None = None) -> int:
        """Points on disk (not what a query chooses to read)."""
        conn = sqlite3.connect(tmp_path / "vtmon.db")
        try:
            return conn.execute(
                "SELECT count(*) FROM points p JOIN series s ON s.id = p.series_id "
                "WHERE s.layer = ? AND p.res = coalesce(?, p.res)",
                (layer, res),
            ).fetchone()[0]
        finally:
            conn.close()

    assert rows("application", 1) == 120 and rows("system", 5) == 24

    clock.advance(3 * 3600)  # 1 s points are kept an hour: now only rollups remain
    store.maintain()
    assert store.summary(LAT, t0, t0 + 120)["count"] == 240
    assert {p["res"] for p in store.points(LAT, t0, t0 + 120, resolution=1)} == {10.0}
    assert rows("application", 1) == 0  # gone from the disk, not just from queries
    assert rows("application", 10) == 12 + (t0 % 10 > 0)
    assert rows("system", 5) == 24  # system readings keep 5 s points for 5 hours

    clock.advance(8 * 86400)  # application metrics are kept 7 days, system readings 30
    store.maintain()
    assert store.points(LAT, t0, t0 + 120) == []
    assert store.summary(LAT, t0, t0 + 120) is None
    assert [s.layer for s in store.series(t0, t0 + 120)] == ["system"]
    assert rows("application") == 0
    assert store.summary(cpu, t0, t0 + 120, layer="system")["mean"] == 30.0

    clock.advance(30 * 86400)
    store.maintain()
    assert store.series(t0, t0 + 120) == [] and rows("system") == 0
    store.close()


def _idle_work(store: HistoryStore, clock: ManualClock, minutes: int) -> int:
    """SQLite's work (virtual machine steps, in hundreds) of ``minutes`` of the writer's idle
    routine: a machine reading a second, a flush every 5 s, rollups and retention each minute.
    A count rather than a time, so that the comparison holds on any machine under any load."""
    conn = store._conn
    assert conn is not None
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 100)
    for _ in range(minutes):
        for sec in range(60):
            store.add_resources(Resources(t=clock.time(), cpu_percent=5.0))
            clock.advance(1)
            if sec % 5 == 4:
                store.flush()
        store.maintain()
    conn.set_progress_handler(None, 0)
    return steps


def test_idle_upkeep_does_not_grow_with_the_history(tmp_path: Path, clock: ManualClock) -> None:
    """An idle vtmon's writer does the same work whatever the file holds: with 20 times the
    series (and the rows) of a small history, within 10 %."""
    work = {}
    for n in (10, 200):
        at = ManualClock(clock.time())
        store = open_store(tmp_path / str(n), at)
        fill(store, at, latency_keys(n), 180, samples=5)
        at.advance(2 * 3600)
        store.maintain()  # the catch-up as the writer starts: the 1 s points expire
        work[n] = _idle_work(store, at, 10)
        store.close()
    assert work[200] <= 1.1 * work[10], work


@pytest.mark.parametrize("made_before", [False, True], ids=["new file", "file from before"])
def test_the_file_stays_within_its_size_bound_and_the_oldest_points_go(
    tmp_path: Path, clock: ManualClock, made_before: bool
) -> None:
    store = open_store(tmp_path, clock, max_size_mb=3)
    path = tmp_path / "vtmon.db"
    if made_before:  # vtmon used not to set incremental vacuum: such a file is switched once
        conn = store._conn
        assert conn is not None
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    keys = latency_keys(10)
    t0 = int(clock.time())
    sizes = []
    for _ in range(45):  # 45 minutes of 10 busy series: about 6 MB of points
        fill(store, clock, keys, 60, maintain=False)
        store.maintain()
        sizes.append(on_disk(path))
    now = int(clock.time())
    assert max(sizes) <= 3_000_000  # the file and its WAL, each time the writer looked
    assert sizes[-1] < 0.95 * 3_000_000  # space given back, not only reused
    assert store._conn is not None
    assert store._conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    # the oldest went first, whatever the resolution; the last ten minutes are all there
    assert store.points(keys[5], t0, t0 + 600, resolution=1) == []
    recent = store.points(keys[5], now - 600, now, resolution=1)
    assert [p["t"] for p in recent] == list(range(now - 600, now))
    assert all(p["count"] == 100 for p in recent)
    first = min(s.first for s in store.series(t0, now))
    assert t0 + 600 < first < now - 600  # the series say where their data starts now
    notice = "History is at its 3 MB bound; trimming the oldest 1 s points."
    assert store.notice == store.warning == notice
    monitor = Monitor(clock=clock, socket_path="t.sock", store=store)
    assert monitor.tick().store_warning == notice  # the console shows it
    clock.advance(2 * 3600)  # nothing more comes; the 1 s points expire
    store.maintain()
    assert store.notice == store.warning == ""  # well below the bound: no longer trimming
    monitor.stop()


def test_a_bound_too_small_for_ten_minutes_says_so(tmp_path: Path, clock: ManualClock) -> None:
    store = open_store(tmp_path, clock, max_size_mb=1)
    fill(store, clock, latency_keys(40), 660)
    assert store.notice == (
        "History is at its 1 MB bound and keeps only its last 10 min; raise [retention] "
        "max_size_mb to keep more."
    )
    now = int(clock.time())
    assert len(store.points(latency_keys(40)[0], now - 600, now, resolution=1)) == 600
    store.close()


def test_tiers_follow_the_retention_config() -> None:
    assert [(t.res, t.keep_s) for t in tiers_for(1, 7 * 86400)] == [
        (1, 3600),
        (10, 6 * 3600),
        (60, 86400),
        (600, 7 * 86400),
    ]
    assert [(t.res, t.keep_s) for t in tiers_for(30, 2 * 86400)] == [
        (30, 30 * 3600),
        (300, 2 * 86400),
    ]


def test_a_late_timed_sample_corrects_the_stored_second(tmp_path: Path, clock: ManualClock) -> None:
    series = series_store()
    store = open_store(tmp_path, clock)
    t0 = int(clock.time())
    series.apply(Batch(dist={LAT: DistBuf([10.0])}, counts={REQS: 1.0}), t0 + 0.5)
    store.add_seconds(series.closed_seconds(t0 + 1))
    store.flush()
    late = Batch(
        timed=[timed_sample(LAT, 30.0, 1.0, t0 + 0.2), timed_sample(REQS, 4.0, 1.0, t0 + 0.7)]
    )
    series.apply(late, t0 + 3.5)  # two seconds after its second was written
    store.add_seconds(series.closed_seconds(t0 + 4))
    store.flush()
    (p,) = store.points(LAT, t0, t0 + 1, resolution=1)
    assert (p["count"], p["min"], p["max"]) == (2.0, 10.0, 30.0)
    assert store.points(REQS, t0, t0 + 1, resolution=1)[0]["count"] == 5.0
    # handed out once: nothing more until something new arrives
    assert series.closed_seconds(t0 + 5) == []
    store.close()


def test_a_corrupt_file_is_moved_aside_and_a_fresh_one_works(
    tmp_path: Path, clock: ManualClock
) -> None:
    garbage = b"this is not an SQLite file " * 200
    (tmp_path / "vtmon.db").write_bytes(garbage)
    store = HistoryStore.open(tmp_path, clock=clock)
    assert store.persistent
    aside = list(tmp_path.glob("vtmon.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert aside[0].name in store.notice and "a new one started" in store.notice
    assert store.notice.count(". ") == 0 and store.notice.endswith(".")  # one sentence
    t = int(clock.time())
    store.add_seconds([(LAT, Kind.DISTRIBUTION, t, Sketch.of([1.0, 2.0, 3.0]))])
    assert store.flush() == 1
    assert store.summary(LAT, t, t + 1)["count"] == 3
    store.close()


def _moved_aside(folder: Path) -> Path:
    (aside,) = folder.glob("vtmon.db.corrupt-*[0-9]Z")  # its -wal and -shm go with it
    return aside


def test_damage_inside_the_file_is_found_at_start_and_the_file_moved_aside(
    tmp_path: Path, clock: ManualClock
) -> None:
    keys = filled_file(tmp_path, clock)
    damage_middle(tmp_path / "vtmon.db")
    damaged = (tmp_path / "vtmon.db").read_bytes()
    store = HistoryStore.open(tmp_path, clock=clock)
    monitor = Monitor(clock=clock, socket_path="t.sock", store=store)
    store.start()  # the writer checks the file before anything else
    notice = poll("the damage noticed", lambda: store.notice, timeout=30)
    aside = _moved_aside(tmp_path)
    assert aside.read_bytes() == damaged  # kept as it was, for whoever wants to look
    assert "damaged" in notice and aside.name in notice and "a new one started" in notice
    assert notice.count(". ") == 0 and notice.endswith(".")  # one sentence
    assert monitor.tick().store_warning == notice  # the console's header and a notification
    store.close()
    again = open_store(tmp_path, clock)  # the new file works
    t = int(clock.time())
    again.add_seconds([(keys[0], Kind.DISTRIBUTION, t, Sketch.of([4.0, 5.0]))])
    assert again.flush() == 1
    assert again.summary(keys[0], t, t + 1)["count"] == 2
    again.close()


def test_a_query_that_fails_has_the_file_checked_and_a_damaged_one_moved_aside(
    tmp_path: Path, clock: ManualClock
) -> None:
    keys = filled_file(tmp_path, clock)
    t0 = int(clock.time()) - 600
    damage_middle(tmp_path / "vtmon.db")
    store = HistoryStore.open(tmp_path, clock=clock)  # no writer thread: no check at start
    assert store.persistent and store.notice == ""
    answers = [store.points(k, t0, t0 + 600, resolution=1) for k in keys]
    assert any(a == [] for a in answers)  # some series sit on the damaged pages
    # the failed read had the file checked: moved aside, and said
    assert _moved_aside(tmp_path).exists()
    assert "damaged" in store.notice and store.warning == store.notice
    t = int(clock.time())
    store.add_seconds([(keys[0], Kind.DISTRIBUTION, t, Sketch.of([1.0]))])
    assert store.flush() == 1
    assert store.points(keys[0], t, t + 1, resolution=1)[0]["count"] == 1
    store.close()


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder vtmon cannot write to: read-only, or (as root, who may write anyway) below a
    regular file, which no one can create a folder in."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        (ro / "probe").touch()
    except OSError:
        return ro
    (ro / "probe").unlink()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "history"


def test_an_unwritable_folder_keeps_vtmon_running_in_memory(
    tmp_path: Path, clock: ManualClock
) -> None:
    where = _unwritable_dir(tmp_path)
    try:
        store = HistoryStore.open(where, clock=clock)
        assert not store.persistent
        assert store.warning.startswith("History is not being saved: ")
        assert store.warning.endswith("vtmon keeps running in memory.")
        assert str(where) in store.warning and "\n" not in store.warning
        monitor = Monitor(clock=clock, socket_path="t.sock", store=store)
        monitor.submit(Batch(dist={LAT: DistBuf([5.0])}, accepted=1))
        snap = monitor.tick()
        clock.advance(1)
        snap = monitor.tick()
        assert [s.name for s in snap.series] == [LAT.name]
        assert snap.store_warning == store.warning
        assert snap.to_dict()["store_warning"] == store.warning
        monitor.stop()
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_a_full_disk_keeps_vtmon_running_and_writing_resumes(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = open_store(tmp_path, clock)
    monitor = Monitor(clock=clock, socket_path="t.sock", store=store)
    conn = store._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    rng = np.random.default_rng(1)
    for _ in range(30):
        monitor.submit(Batch(dist={LAT: DistBuf(list(rng.lognormal(3, 1, 500)))}, accepted=500))
        monitor.tick()
        clock.advance(1)
    assert store.flush() == 0
    assert "the disk is full" in store.warning
    snap = monitor.tick()
    assert snap.store_warning == store.warning
    assert snap.series[0].windows["1m"].count == 30 * 500  # the live view is untouched

    conn.execute("PRAGMA max_page_count = 1073741823")  # room again
    monitor.submit(Batch(dist={LAT: DistBuf([7.0])}, accepted=1))
    clock.advance(61)  # the next attempt comes a minute later
    monitor.tick()
    assert store.flush() > 0
    assert store.warning == ""
    assert monitor.tick().store_warning == ""
    monitor.stop()


def test_the_monitor_hands_over_every_second_and_stop_writes_the_last(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = open_store(tmp_path, clock)
    monitor = Monitor(clock=clock, socket_path="t.sock", store=store)
    t0 = int(clock.time())
    for i in range(5):
        monitor.submit(Batch(dist={LAT: DistBuf([float(i + 1)] * 10)}, accepted=10))
        monitor.tick()
        clock.advance(1)
    monitor.submit(Batch(dist={LAT: DistBuf([99.0])}, accepted=1))
    monitor.drain()  # in the current second: only stop() hands it over
    monitor.stop()
    again = open_store(tmp_path, clock)
    pts = again.points(LAT, t0, t0 + 6, resolution=1)
    assert [(p["t"] - t0, p["count"]) for p in pts] == [(i, 10.0) for i in range(5)] + [(5, 1.0)]
    machine = {s.key.name for s in again.series(t0, t0 + 6, layer="system")}
    assert "system.mem" in machine  # real psutil readings, stored too
    again.close()


def test_restart_seeds_the_chart_history(tmp_path: Path, clock: ManualClock) -> None:
    first = Monitor(clock=clock, socket_path="t.sock", store=open_store(tmp_path, clock))
    rng = np.random.default_rng(5)
    for _ in range(90):
        first.submit(Batch(dist={LAT: DistBuf(list(rng.lognormal(3, 0.5, 50)))}, accepted=50))
        first.tick()
        clock.advance(1)
    live = [s for s in first.tick().series if s.name == LAT.name][0].history
    first.stop()

    clock.advance(20)  # vtmon was down for 20 s
    second = Monitor(clock=clock, socket_path="t.sock", store=open_store(tmp_path, clock))
    assert second.store is not None
    second.series.seed_history(second.store.recent_history(clock.time()))
    snap = second.tick()
    (lat,) = [s for s in snap.series if s.name == LAT.name]
    seeded = [p for p in lat.history if p.t < clock.time() - 20]
    # what the first run drew for each of its seconds, the second run draws again
    assert len(seeded) == 90
    for got, want in zip(seeded, live[:-1], strict=True):
        assert got.t == want.t
        assert (got.p50, got.p95, got.p99) == pytest.approx((want.p50, want.p95, want.p99))
    assert lat.history[-1].t == clock.time()  # followed by the live point
    second.stop()


def test_the_schema_leaves_room_for_the_tuning_journal(tmp_path: Path, clock: ManualClock) -> None:
    open_store(tmp_path, clock).close()
    conn = sqlite3.connect(tmp_path / "vtmon.db")

    def columns(table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    assert {
        "id",
        "proposed",
        "applied",
        "reverted",
        "strategy",
        "target_kind",
        "target",
        "previous_value",
        "new_value",
        "state",
        "before_value",
        "after_value",
        "effectiveness",
        "decision",
    } <= columns("actions")
    assert {"strategy", "tries", "mean_effectiveness", "updated"} <= columns(
        "strategy_effectiveness"
    )
    conn.close()


@pytest.mark.parametrize(
    "values,weights",
    [
        ([1.0, 1.0, 2.0, 1e6, 3e-9], None),  # a wide span: deltas, not a bitmap
        (list(np.random.default_rng(2).lognormal(3, 1, 5000)), None),
        (list(np.random.default_rng(2).lognormal(3, 0.3, 300_000)), None),  # counts > 255
        ([5.0] * 100_000 + [6.0, 1e9], None),  # counts > 65,535
        ([0.0, 0.0, -5.0, -0.001, 7.0], None),  # zeros and negatives
        ([1.0, 2.0, 3.0], [0.5, 2.25, 1e-3]),  # sample-rate weights: float counts
        ([0.0], None),
    ],
)
def test_sketch_blobs_round_trip_exactly(values: list[float], weights: list[float] | None) -> None:
    s = Sketch.of(values, weights)
    keys, counts = decode(encode(s.keys, s.counts))
    assert keys.tolist() == s.keys.tolist()
    assert counts.tolist() == s.counts.tolist()


@pytest.mark.parametrize(
    "counts", [[1e39, 2.0], [3.5e38, 1.0], [2.5, 1e300, 0.5], [2.0**24 + 1, 3.0e38]]
)
def test_counts_beyond_float32_are_stored_wide_not_overflowed(counts: list[float]) -> None:
    # A history file written before weights were bounded may hold such counts; narrowing them
    # to float32 overflowed (RuntimeWarning: overflow encountered in cast) and lost them.
    keys = np.arange(len(counts)) + 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_keys, got = decode(encode(keys, np.array(counts)))
        s = Sketch.of([1.0, 2.0, 3.0], [1e300, 1.0, 1e39])  # weights once allowed
        again = decode(encode(s.keys, s.counts))
    assert got_keys.tolist() == keys.tolist() and got.tolist() == counts
    assert again[1].tolist() == s.counts.tolist() == [1e300, 1.0, 1e39]


def test_a_damaged_blob_is_reported_not_misread() -> None:
    s = Sketch.of(np.random.default_rng(4).lognormal(3, 1, 100))
    blob = encode(s.keys, s.counts)
    with pytest.raises(CorruptBlob):
        decode(blob[:5])
    with pytest.raises(CorruptBlob):
        decode(blob[:-3])


def test_retention_config_is_read_and_checked() -> None:
    cfg = config_from_dict({"retention": {"flush_interval_s": 2, "system_days": 10}})
    assert cfg.retention.flush_interval_s == 2.0
    assert cfg.retention.retention_s("system") == 10 * 86400
    assert cfg.retention.resolution_s("hardware") == 30
    with pytest.raises(ConfigError, match=r"\[retention\] has no setting 'system_weeks'"):
        config_from_dict({"retention": {"system_weeks": 2}})
    with pytest.raises(
        ConfigError, match="application_resolution_s must be a whole number at least 1"
    ):
        config_from_dict({"retention": {"application_resolution_s": 0.5}})
    with pytest.raises(
        ConfigError, match="network_days must be a number above 0 and at most 36,500"
    ):
        config_from_dict({"retention": {"network_days": -1}})
    import tomllib

    example = config_from_dict(tomllib.loads(EXAMPLE_CONFIG))
    assert example.retention == RetentionConfig()


def test_the_demo_keeps_its_own_file_and_no_history_keeps_none(tmp_path: Path) -> None:
    import click

    from vtmon.cli import main
    from vtmon.cli.console import open_store as _open_store
    from vtmon.config import Config

    with click.Context(main) as ctx:
        ctx.meta["vtmon.data_dir"] = str(tmp_path)
        demo = _open_store(Config(), demo=True)
        real = _open_store(Config(), demo=False)
        assert (demo.path, real.path) == (tmp_path / "demo.db", tmp_path / "vtmon.db")
        assert demo.persistent and real.persistent
        ctx.meta["vtmon.no_history"] = True
        assert _open_store(Config(), demo=False) is None
    assert not demo.persistent and not real.persistent  # closed with the command
    for cmd in ([], ["serve"], ["demo"]):
        out = CliRunner().invoke(main, [*cmd, "--help"]).output
        assert "--data-dir DIR" in out and "--no-history" in out
