"""The series store: slots, windows, kinds, timed samples, limits, history and errors.

Time is passed in as numbers; nothing sleeps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtmon.engine.series import SeriesStore
from vtmon.model import Batch, DistBuf, Kind, SeriesKey, SeriesStats, TimedRun, make_tags
from vtmon.sketch import Sketch


def timed_sample(key: SeriesKey, value: float, weight: float, ts: float) -> TimedRun:
    """One timed sample, as a run of one."""
    return TimedRun(key, [value], [ts], weight)


T0 = 1_700_000_000.0  # a whole second: T0 + k.5 is the middle of second k
QS = (0.5, 0.9, 0.95, 0.99, 0.999)


def dkey(name: str, **tags: str) -> SeriesKey:
    return SeriesKey(name, make_tags(tags), Kind.DISTRIBUTION)


def ckey(name: str, **tags: str) -> SeriesKey:
    return SeriesKey(name, make_tags(tags), Kind.COUNTER)


def gkey(name: str) -> SeriesKey:
    return SeriesKey(name, (), Kind.GAUGE)


def skey(name: str) -> SeriesKey:
    return SeriesKey(name, (), Kind.SET)


def dist(key: SeriesKey, values, weights=None) -> Batch:
    return Batch(dist={key: DistBuf(list(values), None if weights is None else list(weights))})


def store(**kw) -> SeriesStore:
    return SeriesStore(lambda comp: {"api": 100.0}.get(comp, 50.0), **kw)


def by_id(stats: tuple[SeriesStats, ...]) -> dict[str, SeriesStats]:
    return {s.id: s for s in stats}


def test_windows_cover_exactly_their_seconds() -> None:
    s = store()
    k = dkey("api.latency")
    s.apply(dist(k, [1.0] * 10), T0 + 0.2)
    s.apply(dist(k, [100.0] * 10), T0 + 5.7)

    w = by_id(s.stats(T0 + 5.9))["api.latency"].windows
    assert w["10s"].count == 20 and w["10s"].min == 1.0 and w["10s"].max == 100.0
    assert w["10s"].rate == 2.0  # count over the full 10 s, by design

    w = by_id(s.stats(T0 + 10.0))["api.latency"].windows  # second 0 has left the 10 s window
    assert w["10s"].count == 10 and w["10s"].min == 100.0
    assert w["10s"].p50 == pytest.approx(100.0, rel=0.01)
    assert w["1m"].count == 20 and w["1m"].p50 == pytest.approx(1.0, rel=0.01)
    assert w["1m"].mean == pytest.approx(50.5)

    w = by_id(s.stats(T0 + 59.99))["api.latency"].windows
    assert w["1m"].count == 20
    w = by_id(s.stats(T0 + 60.0))["api.latency"].windows
    assert (w["10s"].count, w["1m"].count, w["5m"].count) == (0, 10, 20)
    assert w["10s"].p50 is None and w["10s"].mean is None and w["10s"].rate == 0
    w = by_id(s.stats(T0 + 299.5))["api.latency"].windows
    assert w["5m"].count == 20 and w["5m"].rate == pytest.approx(20 / 300)
    w = by_id(s.stats(T0 + 300.0))["api.latency"].windows
    assert w["5m"].count == 10
    w = by_id(s.stats(T0 + 305.7))["api.latency"].windows
    assert w["5m"].count == 0


def test_windows_match_a_brute_force_over_raw_samples() -> None:
    """Block caches, cached runs and late timed samples must never change an answer."""
    rng = np.random.default_rng(11)
    s = store()
    k = dkey("api.latency")
    c = ckey("api.requests")
    raw: list[tuple[int, float]] = []  # (second, value) of every distribution sample
    incs: list[tuple[int, float]] = []
    for sec in range(400):
        now = T0 + sec + 0.3
        if rng.random() < 0.8:
            vals = rng.lognormal(3, 1, rng.integers(1, 30))
            s.apply(Batch(dist={k: DistBuf(vals.tolist())}, counts={c: 2.0}), now)
            raw += [(sec, v) for v in vals]
            incs.append((sec, 2.0))
        if sec > 100 and rng.random() < 0.2:  # a late sample, often into a cached block
            back = int(rng.integers(0, 299))
            v = float(rng.lognormal(3, 1))
            s.apply(Batch(timed=[timed_sample(k, v, 1.0, T0 + sec - back + 0.5)]), now)
            raw.append((sec - back, v))
        if sec < 150 or rng.random() < 0.6:  # sometimes the screen skips a few seconds
            continue
        got = by_id(s.stats(now + 0.2))
        if rng.random() < 0.5:  # more of the same second after it was read
            v = float(rng.lognormal(3, 1))
            s.apply(dist(k, [v]), now + 0.5)
            raw.append((sec, v))
            got = by_id(s.stats(now + 0.6))
        secs = np.array([r[0] for r in raw])
        vals_all = np.array([r[1] for r in raw])
        for name, width in (("10s", 10), ("1m", 60), ("5m", 300)):
            inside = (secs > sec - width) & (secs <= sec)
            want = Sketch.of(vals_all[inside])
            w = got["api.latency"].windows[name]
            assert w.count == want.count
            assert [w.p50, w.p90, w.p95, w.p99, w.p999] == want.quantiles(QS)
            assert (w.min, w.max) == (want.min if want.count else None, want.max or None)
            n_inc = sum(v for t, v in incs if sec - width < t <= sec)
            assert got["api.requests"].windows[name].count == n_inc


def test_counters_give_counts_and_rates() -> None:
    s = store()
    k = ckey("api.requests")
    for i in range(20):
        s.apply(Batch(counts={k: 5.0}), T0 + i + 0.5)
    st = by_id(s.stats(T0 + 19.5))["api.requests"]
    assert st.kind is Kind.COUNTER
    assert st.windows["10s"].count == 50 and st.windows["10s"].rate == 5.0
    assert st.windows["1m"].count == 100 and st.windows["1m"].rate == pytest.approx(100 / 60)
    assert st.windows["10s"].p50 is None and st.windows["10s"].mean is None
    assert st.target_ms is None and st.history == ()


def test_gauges_apply_deltas_in_order_and_keep_their_value() -> None:
    s = store()
    k = gkey("api.queue")
    s.apply(Batch(gauges={k: [(False, 10.0), (True, 5.0), (True, -3.0)]}), T0 + 0.5)
    st = by_id(s.stats(T0 + 0.6))["api.queue"]
    assert st.last == 12.0
    assert (st.windows["10s"].min, st.windows["10s"].max) == (10.0, 15.0)
    assert st.windows["10s"].count == 3 and st.windows["10s"].mean is None
    s.apply(Batch(gauges={k: [(True, 1.0)]}), T0 + 30.5)  # a delta builds on the last value
    st = by_id(s.stats(T0 + 30.6))["api.queue"]
    assert st.last == 13.0
    assert (st.windows["10s"].min, st.windows["10s"].max) == (13.0, 13.0)
    assert (st.windows["1m"].min, st.windows["1m"].max) == (10.0, 15.0)
    st = by_id(s.stats(T0 + 400))["api.queue"]
    assert st.last == 13.0 and st.windows["5m"].count == 0 and st.windows["5m"].max is None
    # a delta on a gauge never set starts from zero
    s.apply(Batch(gauges={gkey("api.new"): [(True, -2.0)]}), T0 + 401)
    assert by_id(s.stats(T0 + 401))["api.new"].last == -2.0


def test_sets_count_unique_members_per_window() -> None:
    s = store()
    k = skey("api.users")
    s.apply(Batch(sets={k: {"a", "b"}}), T0 + 0.5)
    s.apply(Batch(sets={k: {"b", "c"}}), T0 + 1.5)
    s.apply(Batch(sets={k: {"c", "a"}}), T0 + 1.7)
    st = by_id(s.stats(T0 + 1.9))["api.users"]
    assert st.windows["10s"].count == 3 and st.last == 3
    s.apply(Batch(sets={k: {"d"}}), T0 + 30.5)
    st = by_id(s.stats(T0 + 30.5))["api.users"]
    assert (st.windows["10s"].count, st.windows["1m"].count, st.last) == (1, 4, 4)
    st = by_id(s.stats(T0 + 70.5))["api.users"]
    assert (st.windows["1m"].count, st.windows["5m"].count, st.last) == (1, 4, 1)
    # reading froze the old seconds into arrays; writing to them again still works
    s.apply(Batch(sets={k: {"e", "a"}}), T0 + 30.9)
    assert by_id(s.stats(T0 + 70.5))["api.users"].windows["5m"].count == 5


def test_set_slots_are_capped() -> None:
    s = store()
    k = skey("api.ids")
    s.apply(Batch(sets={k: {str(i) for i in range(25_000)}}), T0)
    assert by_id(s.stats(T0))["api.ids"].windows["10s"].count == 10_000


def test_timed_samples_land_in_their_second() -> None:
    s = store()
    k, c = dkey("api.latency"), ckey("api.requests")
    now = T0 + 100.4
    timed = [
        timed_sample(k, 7.0, 1.0, now - 30.0),  # second 70: in 1 m, not in 10 s
        timed_sample(k, 9.0, 1.0, now + 0.5),  # slightly ahead: its own second, 100
        timed_sample(k, 11.0, 1.0, now + 50.0),  # far ahead: clamped into now
        timed_sample(k, 5.0, 1.0, now - 301.0),  # too old: dropped
        timed_sample(c, 2.0, 10.0, now - 5.0),  # a counter sampled at 0.1 counts 20
        timed_sample(gkey("api.q"), 1.0, 1.0, now),  # no timestamped gauges: dropped
    ]
    assert s.apply(Batch(timed=timed), now) == 2
    st = by_id(s.stats(now))
    w = st["api.latency"].windows
    assert (w["10s"].count, w["1m"].count) == (2, 3)
    assert (w["10s"].min, w["1m"].min) == (9.0, 7.0)
    assert st["api.requests"].windows["10s"].count == 20
    assert s.apply(Batch(timed=[timed_sample(k, 1.0, 1.0, now - 299.0)]), now) == 0
    assert by_id(s.stats(now))["api.latency"].windows["5m"].count == 4
    # a late sample into a sealed, already merged block is seen at once
    s.apply(Batch(timed=[timed_sample(k, 3.0, 1.0, now - 45.0)]), now)
    w = by_id(s.stats(now))["api.latency"].windows
    assert (w["1m"].count, w["1m"].min) == (4, 3.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["lat", "ops"]),
            st.floats(-1e3, 1e3, allow_nan=False),
            st.sampled_from([1.0, 1.0, 4.0]),
            st.one_of(
                st.floats(-400.0, 5.0),  # seconds from now: too old, in the windows, ahead
                st.sampled_from([math.nan, math.inf, -math.inf, 0.99, 1.01, -299.0, -300.0]),
            ),
        ),
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_runs_of_timed_samples_land_as_the_samples_one_by_one(samples, runs) -> None:
    # The same samples as runs of many (how the parsers hand them over) and one at a time.
    now = T0 + 1000.4
    keys = {"lat": dkey("t.latency"), "ops": ckey("t.requests")}
    one: list[TimedRun] = []
    grouped: dict[tuple[str, float, int], TimedRun] = {}
    for i, (name, v, w, dt) in enumerate(samples):
        one.append(timed_sample(keys[name], v, w, now + dt))
        run = grouped.setdefault((name, w, i % runs), TimedRun(keys[name], [], [], w))
        run.values.append(v)
        run.ts.append(now + dt)
    a, b = store(), store()
    assert a.apply(Batch(timed=one), now) == b.apply(Batch(timed=list(grouped.values())), now)
    sa, sb = by_id(a.stats(now + 0.5)), by_id(b.stats(now + 0.5))
    assert sa.keys() == sb.keys()
    for name, x in sa.items():
        for win, wa in x.windows.items():
            wb = sb[name].windows[win]
            for field in ("count", "min", "max", "mean"):
                va, vb = getattr(wa, field), getattr(wb, field)
                assert va == vb or va == pytest.approx(vb, rel=1e-9, abs=1e-9), (name, win, field)


def test_weights_count_as_samples() -> None:
    s = store()
    k = dkey("api.latency")
    s.apply(dist(k, [10.0, 20.0], [10.0, 1.0]), T0)
    w = by_id(s.stats(T0))["api.latency"].windows["10s"]
    assert w.count == 11 and w.rate == 1.1
    assert w.p50 == pytest.approx(10.0, rel=0.01)
    assert w.mean == pytest.approx(120.0 / 11)


def test_many_small_batches_are_buffered_then_bucketized() -> None:
    s = store()
    k = dkey("api.latency")
    rng = np.random.default_rng(2)
    data = rng.lognormal(2, 1, 40_000)
    for i, part in enumerate(np.array_split(data, 400)):
        weights = None if i % 3 else [1.0] * part.size  # mixed weighted and plain buffers
        s.apply(dist(k, part.tolist(), weights), T0 + i / 1000)
    w = by_id(s.stats(T0 + 0.5))["api.latency"].windows["10s"]
    assert w.count == data.size
    assert [w.p50, w.p90, w.p95, w.p99, w.p999] == Sketch.of(data).quantiles(QS)


def test_non_finite_values_are_dropped_and_counted() -> None:
    s = store()
    k = dkey("api.latency")
    assert s.apply(dist(k, [1.0, math.nan, 2.0, math.inf]), T0) == 2
    assert s.apply(dist(k, [1.0, 2.0], [1.0, -1.0]), T0) == 1
    assert s.apply(Batch(counts={ckey("api.requests"): math.nan}), T0) == 1
    assert s.apply(Batch(gauges={gkey("api.q"): [(False, math.inf), (False, 1.0)]}), T0) == 1
    st = by_id(s.stats(T0))
    assert st["api.latency"].windows["10s"].count == 3
    assert st["api.q"].last == 1.0


def test_max_series_drops_new_series_and_counts_their_samples() -> None:
    s = store(max_series=3)
    b = Batch(
        dist={dkey("a.x"): DistBuf([1.0] * 4), dkey("b.x"): DistBuf([1.0] * 5)},
        counts={ckey("c.n"): 1.0, ckey("d.n"): 1.0},
        gauges={gkey("e.g"): [(False, 1.0), (False, 2.0)]},
        sets={skey("f.s"): {"u", "v", "w"}},
    )
    assert s.apply(b, T0) == 1 + 2 + 3  # d.n, e.g, f.s did not fit
    assert len(s) == 3
    assert s.apply(Batch(dist={dkey("a.x"): DistBuf([2.0])}), T0 + 1) == 0  # known: kept
    assert s.apply(Batch(timed=[timed_sample(dkey("z.t"), 1.0, 1.0, T0)]), T0 + 1) == 1
    assert sorted(x.name for x in s.stats(T0 + 1)) == ["a.x", "b.x", "c.n"]


def test_samples_the_series_cap_refuses_are_counted_by_name_prefix() -> None:
    s = store(max_series=1)
    s.apply(Batch(dist={dkey("api.x"): DistBuf([1.0])}), T0)
    s.apply(
        Batch(
            dist={dkey("svc.a.latency"): DistBuf([1.0] * 3), dkey("svc.b.latency"): DistBuf([2.0])},
            counts={ckey("jobs"): 1.0},
            gauges={gkey("svc.q"): [(False, 1.0), (False, 2.0)]},
            timed=[timed_sample(dkey("batch.t"), 1.0, 1.0, T0)],
        ),
        T0,
    )
    assert s.refused_now() == {"svc.*": 3 + 1 + 2, "jobs": 1, "batch.*": 1}
    s.apply(Batch(dist={dkey("api.x"): DistBuf([3.0])}), T0 + 1)  # the series it has: kept
    assert s.refused_now()["svc.*"] == 6
    for i in range(200):  # prefixes are bounded; the rest count as "other"
        s.apply(Batch(dist={dkey(f"p{i}.x"): DistBuf([1.0])}), T0 + 1)
    refused = s.refused_now()
    assert len(refused) == 65 and refused["other"] == 200 + 3 - 64


def test_history_has_one_point_per_call_and_is_bounded() -> None:
    s = store(history_len=5)
    k = dkey("api.latency")
    for i in range(8):
        s.apply(dist(k, [float(i + 1)] * 3), T0 + i)
        s.record_history(T0 + i + 0.5)
    st = by_id(s.stats(T0 + 7.5))["api.latency"]
    assert [p.t for p in st.history] == [T0 + i + 0.5 for i in range(3, 8)]
    last = st.history[-1]
    w = st.windows["10s"]
    # chart points are kept in single precision
    assert (last.p50, last.p95, last.p99) == pytest.approx((w.p50, w.p95, w.p99), rel=1e-6)
    assert st.target_ms == 100.0
    s.record_history(T0 + 100)  # nothing in the last 10 s: a gap, not a skipped point
    st = by_id(s.stats(T0 + 100))["api.latency"]
    assert len(st.history) == 5 and st.history[-1].p50 is None


def test_errors_and_error_rate_by_type() -> None:
    s = store()
    b = Batch(
        counts={
            ckey("api.errors", error_type="timeout"): 3.0,
            ckey("api.errors", error_type="db"): 2.0,
            ckey("api.error_count"): 1.0,
            ckey("api.requests"): 40.0,
            ckey("api.throughput"): 20.0,
            ckey("worker.error"): 1.0,
            ckey("worker.jobs_done"): 7.0,  # neither errors nor operations
        },
        dist={dkey("worker.job"): DistBuf([1.0] * 10), dkey("api.latency"): DistBuf([1.0] * 99)},
        gauges={gkey("quiet.depth"): [(False, 1.0)]},
    )
    s.apply(b, T0 + 0.5)
    s.apply(Batch(counts={ckey("cache.requests"): 10.0}), T0 + 0.5)
    errs = {e.component: e for e in s.errors(T0 + 30)}
    assert sorted(errs) == ["api", "cache", "worker"]
    api = errs["api"]
    assert (api.errors, api.operations) == (6.0, 60.0)  # counters win over latency samples
    assert api.error_rate == pytest.approx(0.1)
    assert api.by_type == {"db": 2.0, "timeout": 3.0, "unknown": 1.0}
    worker = errs["worker"]  # no operation counter: its distribution samples count
    assert (worker.errors, worker.operations, worker.error_rate) == (1.0, 10.0, 0.1)
    assert worker.by_type == {"unknown": 1.0}
    assert (errs["cache"].errors, errs["cache"].error_rate) == (0.0, 0.0)
    assert s.errors(T0 + 61) == ()  # a minute later nothing is left in the window

    e = store()
    e.apply(Batch(counts={ckey("error_count", component="db"): 4.0}), T0)
    (db,) = e.errors(T0)
    assert (db.component, db.errors, db.operations, db.error_rate) == ("db", 4.0, 0.0, None)


def test_an_idle_series_is_forgotten() -> None:
    s = store()
    s.apply(dist(dkey("old.latency"), [1.0]), T0)
    s.apply(dist(dkey("new.latency"), [1.0]), T0 + 300)
    assert len(s) == 2
    s.apply(dist(dkey("new.latency"), [1.0]), T0 + 610)
    assert len(s) == 1
    assert [x.name for x in s.stats(T0 + 610)] == ["new.latency"]


def test_stats_are_sorted_by_component_then_name_and_carry_targets() -> None:
    s = store()
    s.apply(
        Batch(
            dist={dkey("zeta.b"): DistBuf([1.0]), dkey("x", component="api"): DistBuf([1.0])},
            counts={ckey("alpha.z"): 1.0, ckey("alpha.a"): 1.0},
        ),
        T0,
    )
    got = s.stats(T0)
    assert [(x.component, x.name) for x in got] == [
        ("alpha", "alpha.a"),
        ("alpha", "alpha.z"),
        ("api", "x"),
        ("zeta", "zeta.b"),
    ]
    assert [x.target_ms for x in got] == [None, None, 100.0, 50.0]
    assert all(set(x.windows) == {"10s", "1m", "5m"} for x in got)


def test_memory_does_not_grow_with_time() -> None:
    rng = np.random.default_rng(4)
    s = store()
    k, c, g, m = dkey("api.latency"), ckey("api.requests"), gkey("api.q"), skey("api.u")
    size = {}
    for sec in range(1_000):
        b = Batch(dist={k: DistBuf(rng.lognormal(3, 1, 50).tolist())}, counts={c: 1.0})
        b.gauges[g] = [(False, float(sec))]
        b.sets[m] = {str(sec)}
        s.apply(b, T0 + sec)
        if sec % 7 == 0:
            s.stats(T0 + sec)
        if sec in (400, 999):
            size[sec] = s._dist.nbytes()[0]  # white box: the arrays the columns hold
    inner = s._series  # white box: the slots and cached blocks themselves
    for series in inner.values():
        assert len(series.slots) <= 301
        assert len(series.blocks) <= 40
    assert len(s._dist.secs) <= 301  # each second of the longest window, once
    assert all(len(chunks) == 1 for sec, chunks in s._dist.secs.items() if sec < T0 + 990)
    assert size[999] <= 1.1 * size[400]


def test_seconds_the_history_did_not_take_for_a_minute_are_handed_out_whole() -> None:
    # The history writer took nothing for a minute (a slow disk, say): each second still
    # reaches it with all its samples, read several times in between.
    rng = np.random.default_rng(12)
    s = store()
    k = dkey("api.latency")
    t0 = int(T0)
    sent: dict[int, list[float]] = {}
    for sec in range(60):
        vals = rng.lognormal(3, 1, 40).tolist()
        s.apply(dist(k, vals[:25]), T0 + sec + 0.5)
        s.stats(T0 + sec + 0.6)
        s.apply(dist(k, vals[25:]), T0 + sec + 0.7)
        sent[t0 + sec] = vals
    out = {sec: sk for key, kind, sec, sk in s.closed_seconds(t0 + 59) if key == k}
    assert sorted(out) == list(range(t0, t0 + 59))
    for sec, sk in out.items():
        want = Sketch.of(sent[sec])
        assert (sk.count, sk.min, sk.max) == (want.count, want.min, want.max)
        assert sk.sum == pytest.approx(want.sum)
        assert sk.quantiles(QS) == want.quantiles(QS)


def test_a_run_of_gauge_values_lands_as_the_same_values_one_by_one() -> None:
    # A binary frame's gauge values arrive as one run (None, array): the second's count, sum,
    # least, greatest and last must be those of the same updates one by one, deltas between.
    rng = np.random.default_rng(13)
    run = rng.normal(100, 30, 5000)
    run[[10, 20]] = [np.inf, np.nan]  # never from a frame, but counted if they were
    ops_run = [(False, 5.0), (True, 2.0), (None, run), (True, 1.0)]
    ops_one = [(False, 5.0), (True, 2.0), *[(False, float(x)) for x in run], (True, 1.0)]
    got = {}
    for name, ops in (("run", ops_run), ("one", ops_one)):
        s = store()
        b = Batch()
        b.gauges[gkey(name)] = ops
        dropped = s.apply(b, T0 + 0.5)
        assert dropped == 2
        (payload,) = [p for key, _, _, p in s.closed_seconds(int(T0) + 1)]
        w = by_id(s.stats(T0 + 0.6))[name]
        got[name] = (payload, w.windows["1m"], w.last)
    assert got["run"] == got["one"]
    (n, total, lo, hi, last), _, current = got["run"]
    finite = run[np.isfinite(run)]
    assert n == 2 + finite.size + 1 and last == current == float(finite[-1]) + 1.0


def test_a_gauge_run_beyond_max_series_is_dropped_value_by_value() -> None:
    s = store(max_series=1)
    s.apply(dist(dkey("api.latency"), [1.0]), T0 + 0.5)
    b = Batch()
    b.gauges[gkey("api.q")] = [(False, 1.0), (None, np.arange(5.0))]
    assert s.apply(b, T0 + 0.6) == 6  # each value counted, not each op


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_series=st.integers(2, 120))
def test_many_series_at_once_match_a_brute_force_per_series(seed: int, n_series: int) -> None:
    """Windows of many series are summarised together (a few values a second each, late
    samples into any of them, weighted samples now and then): each one's answers are still
    those of its own raw samples."""
    rng = np.random.default_rng(seed)
    s = store()
    keys = [dkey(f"svc.op{i}.latency", component=f"c{i % 7}") for i in range(n_series)]
    raw: dict[SeriesKey, list[tuple[int, float, float]]] = {k: [] for k in keys}
    for sec in range(320):
        now = T0 + sec + 0.3
        batch = Batch()
        for k in keys:
            if rng.random() < 0.7:
                n = int(rng.integers(1, 10))
                vals = rng.lognormal(2, 1.5, n) * rng.choice(
                    [1.0, -1.0, 0.0], n, p=[0.9, 0.05, 0.05]
                )
                weights = None if rng.random() < 0.9 else rng.integers(1, 5, n).astype(float)
                batch.dist[k] = DistBuf(
                    vals.tolist(), None if weights is None else weights.tolist()
                )
                w = np.ones(n) if weights is None else weights
                raw[k] += [(sec, v, x) for v, x in zip(vals.tolist(), w.tolist(), strict=True)]
        s.apply(batch, now)
        if sec > 20 and rng.random() < 0.3:
            k = keys[int(rng.integers(0, n_series))]
            back = int(rng.integers(0, 299))
            v = float(rng.lognormal(2, 1))
            s.apply(Batch(timed=[timed_sample(k, v, 1.0, T0 + sec - back + 0.5)]), now)
            raw[k].append((sec - back, v, 1.0))
        if sec < 300 and sec % 37:
            continue
        got = by_id(s.stats(now + 0.2))
        for k in keys:
            if not raw[k]:
                continue
            secs = np.array([r[0] for r in raw[k]])
            vals = np.array([r[1] for r in raw[k]])
            weights = np.array([r[2] for r in raw[k]])
            for name, width in (("10s", 10), ("1m", 60), ("5m", 300)):
                inside = (secs > sec - width) & (secs <= sec)
                w = got[k.id].windows[name] if k.id in got else None
                if not inside.any():
                    assert w is None or w.count == 0
                    continue
                want = Sketch.of(vals[inside], weights[inside])
                assert w is not None and w.count == want.count
                assert [w.p50, w.p90, w.p95, w.p99, w.p999] == want.quantiles(QS)
                assert (w.min, w.max) == (want.min, want.max)
