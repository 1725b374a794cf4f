"""The history with many series at once: the sketch blobs of a whole flush or rollup, encoded
and decoded together, are byte for byte those of one at a time (and of the files written
before), and a rollup of many series in one pass gives each series exactly its own seconds
merged."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

from vtmon.clock import ManualClock
from vtmon.config import RetentionConfig
from vtmon.model import Kind, SeriesKey
from vtmon.sketch import Sketch
from vtmon.store.history import HistoryStore
from vtmon.store.history.maintenance import ROLL_IDS
from vtmon.store.rollup import CorruptBlob, decode, decode_rows, encode, encode_many

# Blobs as vtmon wrote them before sketches were encoded in bulk, one of each coding of keys
# (bitmap, 1/2/4-byte deltas) and counts (1/2/4-byte integers, float32, float64, varints),
# with and without a bucket of zeros: a history file holding them must stay readable.
WRITTEN: list[tuple[list[int], list[float], str]] = [
    ([1500], [1.0], "01dc0500000100000001"),
    (
        [10, 11, 12, 14, 15, 17, 18, 19, 20],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        "000a00000009000000010203040506070809ede0",
    ),
    ([-300, -200, -100, 5, 100], [3.0, 1.0, 4.0, 1.0, 5.0], "01d4feffff0500000003010401056464695f"),
    ([100, 5000, 40000], [300.0, 1000.0, 65000.0], "0664000000030000002c01e803e8fd2413b888"),
    (
        [-2000000, 100, 3000000],
        [70000.0, 1.0, 2147483648.0],
        "17807be1ff03000000e0c508ddc508feffffff0fe4841e005cc62d00",
    ),
    (
        [1, 2, 3, 4],
        [2.0**31, 1.0, 2.0**31, 1.0],
        "08010000000400000000000080010000000000008001000000f0",
    ),
    (
        list(range(100, 140)),
        [1000.0 + i for i in range(40)],
        "146400000028000000d00f" + "02" * 39 + "ffffffffff",
    ),
    ([7, 8, 9], [0.5, 2.25, 0.125], "0c07000000030000000000003f000010400000003ee0"),
    ([7, 8], [0.1, 1e300], "1107000000020000009a9999999999b93f9c7500883ce4377e01"),
    ([-5, -1, 0, 3], [1.0, 2.0, 3.0, 4.0], "21fbffffff0300000000000000000008400102040404"),
    ([0], [2.0], "2000000000000000000000000000000040"),
    ([], [], "000000000000000000"),
]


def buckets(rng: np.random.Generator, shape: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and their counts, of one of several shapes."""
    if shape == 0:
        s = Sketch.of(rng.lognormal(3, 1, size))
        return s.keys, s.counts
    if shape == 1:  # values of both signs and zeros
        s = Sketch.of(np.round(rng.normal(0, 50, size)))
        return s.keys, s.counts
    if shape == 2:  # far apart, counts beyond 32 bits
        k = np.unique(rng.integers(-(2**31) + 1, 2**31 - 1, size))
        return k, rng.integers(1, 2**33, k.size).astype(float)
    if shape == 3:  # counts that neighbour each other (varints)
        k = np.unique(rng.integers(1000, 1000 + 8 * max(size, 1), size))
        return k, np.cumsum(rng.integers(-3, 4, k.size)).astype(float) + 100_000
    if shape == 4:  # weighted counts, some beyond float32
        k = np.unique(rng.integers(-30, 30, size))
        return k, rng.random(k.size) * rng.choice([1.0, 1e10, 1e39, 1e300])
    if shape == 5:  # halves: exact in float32
        k = np.unique(rng.integers(0, 5, size))
        return k, rng.integers(1, 4, k.size) * 0.5
    k = np.unique(rng.integers(-70_000, 70_000, size))  # wide deltas
    return k, rng.integers(1, 70_000, k.size).astype(float)


def many_buckets(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 1, 2, 3, 5, 20, 200, 2000]
    return [buckets(rng, int(rng.integers(0, 7)), int(rng.choice(sizes))) for _ in range(n)]


def test_blobs_in_files_written_before_stay_readable_and_are_written_the_same() -> None:
    keys = [np.array(k, dtype=np.int64) for k, _, _ in WRITTEN]
    counts = [np.array(c, dtype=np.float64) for _, c, _ in WRITTEN]
    blobs = [bytes.fromhex(h) for _, _, h in WRITTEN]
    assert [b.hex() for b in encode_many(keys, counts)] == [h for _, _, h in WRITTEN]
    assert [encode(k, c) for k, c in zip(keys, counts, strict=True)] == blobs
    got_keys, got_counts, sizes = decode_rows(blobs)
    assert sizes.tolist() == [len(k) for k in keys]
    assert got_keys.tolist() == [v for k, _, _ in WRITTEN for v in k]
    assert got_counts.tolist() == [v for _, c, _ in WRITTEN for v in c]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blobs_made_together_are_the_blobs_made_one_at_a_time(seed: int) -> None:
    rows = many_buckets(1500, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in a narrowing cast either
        together = encode_many([k for k, _ in rows], [c for _, c in rows])
        assert together == [encode(k, c) for k, c in rows]
        keys, counts, sizes = decode_rows(together)
    at = 0
    for (k, c), size in zip(rows, sizes.tolist(), strict=True):
        assert keys[at : at + size].tolist() == k.tolist()
        assert counts[at : at + size].tolist() == c.tolist()
        at += size


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # damaged counts may be NaN
def test_a_damaged_blob_among_many_is_reported_as_one_alone_is() -> None:
    rows = many_buckets(300, 4)
    blobs = encode_many([k for k, _ in rows], [c for _, c in rows])
    reported = 0
    for b in blobs:
        for damaged in (b[:5], b[:-1], b[:-3], b + b"\x01", bytes([b[0] ^ 0x1C]) + b[1:]):
            try:
                decode(damaged)
            except CorruptBlob:
                reported += 1
                with pytest.raises(CorruptBlob):
                    decode_rows([*blobs[:3], damaged, *blobs[3:6]])
    assert reported > 500  # most damage shows; what decodes alone decodes among others too


T0 = 1_700_000_000


def history(path: Path, clock: ManualClock) -> HistoryStore:
    store = HistoryStore.open(path, RetentionConfig(), clock=clock)
    assert store.persistent, store.warning
    return store


def points_of(path: Path, res: int) -> dict[tuple[str, int], tuple[float, ...]]:
    """Every point of resolution ``res`` in the file: (series name, t) -> the columns."""
    conn = sqlite3.connect(path / "vtmon.db")
    try:
        rows = conn.execute(
            "SELECT s.name, p.t, p.n, p.total, p.lo, p.hi, p.last, p.sketch FROM points p "
            "JOIN series s ON s.id = p.series_id WHERE p.res = ?",
            (res,),
        ).fetchall()
    finally:
        conn.close()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_a_rollup_of_many_series_gives_each_exactly_its_own_seconds(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    store = history(tmp_path, clock)
    rng = np.random.default_rng(9)
    n_lat = ROLL_IDS * 2 + 100  # more than one batch of series
    lat = [SeriesKey(f"svc.ep{i}.latency", (), Kind.DISTRIBUTION) for i in range(n_lat)]
    heap = [SeriesKey(f"svc.heap{i}", (), Kind.GAUGE) for i in range(40)]
    values: dict[tuple[str, int], np.ndarray] = {}
    gauges: dict[tuple[str, int], float] = {}
    for sec in range(30):
        t = T0 + sec
        items: list[tuple[SeriesKey, Kind, int, object]] = []
        for i, k in enumerate(lat):
            if (i + sec) % 7 == 0:
                continue  # a quiet second
            v = rng.lognormal(3, 1, 1 + i % 5)
            values[k.name, t] = v
            items.append((k, Kind.DISTRIBUTION, t, Sketch.of(v)))
        for k in heap:
            g = float(rng.normal(300, 20))
            gauges[k.name, t] = g
            items.append((k, Kind.GAUGE, t, (1, g, g, g, g)))
        store.add_seconds(items)
        clock.advance(1)
        if sec % 5 == 4:
            store.flush()
    clock.advance(400)  # past the rollup lag of the application layer
    store.maintain()
    store.close()
    tens = points_of(tmp_path, 10)
    for k in lat:
        for start in (T0, T0 + 10, T0 + 20):
            v = np.concatenate(
                [values[k.name, s] for s in range(start, start + 10) if (k.name, s) in values]
            )
            n, total, lo, hi, last, blob = tens[k.name, start]
            assert (n, lo, hi, last) == (v.size, v.min(), v.max(), None)
            assert total == pytest.approx(v.sum(), rel=1e-12)
            assert isinstance(blob, bytes)
            want = Sketch.of(v)
            got_keys, got_counts = decode(blob)
            assert got_keys.tolist() == want.keys.tolist()
            assert got_counts.tolist() == want.counts.tolist()
    for k in heap:
        for start in (T0, T0 + 10, T0 + 20):
            g = [gauges[k.name, s] for s in range(start, start + 10)]
            n, total, lo, hi, last, blob = tens[k.name, start]
            assert (n, lo, hi, last, blob) == (10, min(g), max(g), g[-1], None)
            assert total == pytest.approx(sum(g), rel=1e-12)


def test_an_unreadable_sketch_is_left_out_and_every_other_series_rolls_up(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    store = history(tmp_path, clock)
    keys = [SeriesKey(f"svc.ep{i}.latency", (), Kind.DISTRIBUTION) for i in range(50)]
    for sec in range(10):
        store.add_seconds([(k, Kind.DISTRIBUTION, T0 + sec, Sketch.of([10.0, 20.0])) for k in keys])
        clock.advance(1)
    store.flush()
    conn = sqlite3.connect(tmp_path / "vtmon.db")
    conn.execute(
        "UPDATE points SET sketch = x'0501' WHERE t = ? AND series_id = "
        "(SELECT id FROM series WHERE name = 'svc.ep7.latency')",
        (T0 + 3,),
    )
    conn.commit()
    conn.close()
    clock.advance(400)
    store.maintain()
    damaged = store.points(keys[7], T0, T0 + 10, resolution=1)
    store.close()
    assert [int(p["t"]) for p in damaged] == [T0 + s for s in range(10) if s != 3]
    tens = points_of(tmp_path, 10)
    assert {name: cols[0] for (name, _), cols in tens.items()} == {
        k.name: 18.0 if k.name == "svc.ep7.latency" else 20.0 for k in keys
    }
