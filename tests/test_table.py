"""The Snapshot's series as a table: the same objects, numbers and JSON as one object per
series, from columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vtmon.engine.series import SeriesStore
from vtmon.model import Batch, DistBuf, Kind, SeriesKey, Snapshot, TimedRun, make_tags
from vtmon.model.snapshot import _plain

T0 = 1_700_000_000.0


def busy_store() -> SeriesStore:
    """Every kind, tags and none, empty windows, a late sample, chart points."""
    rng = np.random.default_rng(5)
    s = SeriesStore(lambda comp: {"api": 100.0}.get(comp, 50.0))
    lat = SeriesKey(
        "api.latency", make_tags({"route": '/x"y', "component": "api"}), Kind.DISTRIBUTION
    )
    old = SeriesKey("db.query", (), Kind.DISTRIBUTION)
    neg = SeriesKey("db.skew", (), Kind.DISTRIBUTION)
    c = SeriesKey("api.requests", (), Kind.COUNTER)
    g = SeriesKey("api.queue", (), Kind.GAUGE)
    m = SeriesKey("api.users", (), Kind.SET)
    s.apply(Batch(dist={old: DistBuf([3.0, 4.0])}), T0)  # empty in 10 s and 1 m later
    for sec in range(90):
        now = T0 + sec + 0.5
        b = Batch(
            dist={
                lat: DistBuf(rng.lognormal(3, 1, 20).tolist()),
                neg: DistBuf([-1.5, 0.0, 2.25], [1.0, 3.0, 0.5]),
            },
            counts={c: 2.0},
        )
        b.gauges[g] = [(False, float(sec))]
        b.sets[m] = {str(sec % 7)}
        s.apply(b, now)
        s.record_history(now)
    s.apply(Batch(timed=[TimedRun(lat, [1e6], [T0 + 40.5], 1.0)]), T0 + 89.7)
    return s


@pytest.mark.parametrize("history", [False, True])
def test_the_json_of_the_columns_is_the_json_of_the_objects(history: bool) -> None:
    table = busy_store().stats(T0 + 89.9)
    assert len(table) == 6
    snap = Snapshot(t=T0, host="h", socket="/s.sock", started=T0 - 5, series=table)
    want = json.dumps(_plain(snap, () if history else ("history", "resource_history")),
                      separators=(",", ":"))  # fmt: skip
    got = snap.to_json(history)
    assert json.loads(got) == json.loads(want)
    assert got == want  # key order and number text too
    assert snap.to_dict(history) == json.loads(want)


def test_columns_hold_what_the_objects_say() -> None:
    table = busy_store().stats(T0 + 89.9)
    for name in ("10s", "1m", "5m"):
        for field in ("count", "rate", "p50", "p95", "p999", "mean", "min", "max"):
            col = table.column(name, field)
            for i, s in enumerate(table):
                v = getattr(s.windows[name], field)
                assert (v is None and np.isnan(col[i])) or v == col[i]
    dist = table.of_kind(Kind.DISTRIBUTION)
    assert [table[int(i)].name for i in dist] == ["api.latency", "db.query", "db.skew"]
    assert [table.components[c] for c in table.component_codes] == [s.component for s in table]
    q = table[table.ids.index("db.query")]
    assert q.windows["10s"].count == 0 and q.windows["5m"].count == 2
    assert q.windows["10s"].p50 is None and q.target_ms == 50.0
