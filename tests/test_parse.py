from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtmon.ingest import parse
from vtmon.ingest.parse import cache, dispatch, parse_block, parse_line
from vtmon.model import (
    RATE_MIN,
    REJECT_ENCODING,
    REJECT_NUMBER,
    REJECT_REQUEST,
    REJECT_SYNTAX,
    REJECT_TIME,
    REJECT_TOO_LONG,
    REJECT_TYPE,
    TIME_MAX_S,
    VALUE_MAX,
    Batch,
    Kind,
    RpcRefusal,
    SeriesKey,
)

DIST, COUNTER, GAUGE, SET = Kind.DISTRIBUTION, Kind.COUNTER, Kind.GAUGE, Kind.SET


def parsed(block: bytes, max_line: int = 65536) -> Batch:
    batch = Batch()
    parse_block(block, batch, max_line)
    return batch


def line_by_line(block: bytes, max_line: int = 65536) -> Batch:
    """The per-line parser alone, as the reference for the block parser."""
    batch = Batch()
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        parse_line(line, batch, max_line)
    return batch


def nonblank(block: bytes) -> int:
    return sum(1 for line in block.split(b"\n") if line.strip())


class TimedSample(NamedTuple):
    """One sample of a batch's timed runs."""

    key: SeriesKey
    value: float
    weight: float
    ts: float


def timed(batch: Batch) -> list[TimedSample]:
    """Every timed sample of a batch, run after run."""
    return [
        TimedSample(r.key, v, r.weight, t)
        for r in batch.timed
        for v, t in zip(r.values, r.ts, strict=True)
    ]


def timed_by_series(batch: Batch) -> dict[SeriesKey, list[tuple[float, float, float]]]:
    """The timed samples of each series as (ts, value, weight), sorted: runs may hold a series'
    samples in another order than its lines (two spellings of one series), which the engine
    does not see."""
    out: dict[SeriesKey, list[tuple[float, float, float]]] = {}
    for s in timed(batch):
        out.setdefault(s.key, []).append((s.ts, s.value, s.weight))
    return {k: sorted(v) for k, v in out.items()}


def key(name: str, kind: Kind = DIST, **tags: str) -> SeriesKey:
    return SeriesKey(name, tuple(sorted(tags.items())), kind)


def samples(batch: Batch) -> dict[SeriesKey, list[tuple[float, float]]]:
    return {
        k: sorted(zip(d.values, d.weights or [1.0] * len(d.values), strict=True))
        for k, d in batch.dist.items()
    }


def assert_same(a: Batch, b: Batch) -> None:
    """Same result, up to the order of a distribution's samples and counter rounding."""
    assert samples(a) == samples(b)
    assert a.counts.keys() == b.counts.keys()
    for k, v in a.counts.items():
        assert v == pytest.approx(b.counts[k], rel=1e-12)
    assert a.gauges == b.gauges
    assert a.sets == b.sets
    assert timed_by_series(a) == timed_by_series(b)
    assert a.events == b.events
    assert a.rpc == b.rpc
    assert a.accepted == b.accepted
    assert a.rejected == b.rejected


def assert_within_rules(b: Batch) -> None:
    """Nothing in the batch breaks the rules of docs/protocol.md, "Numbers": every value finite
    and within the bound, every weight at most a million, every time from 1970 to 2100."""

    def bounded(values: object) -> bool:
        return bool(np.all(np.abs(np.asarray(values, dtype=np.float64)) <= VALUE_MAX))

    for buf in b.dist.values():
        assert bounded(buf.values)
        if buf.weights is not None:
            assert len(buf.weights) == len(buf.values)
            assert all(1.0 <= w <= 1 / RATE_MIN for w in buf.weights)
    assert all(math.isfinite(inc) for inc in b.counts.values())
    for ops in b.gauges.values():
        assert all(bounded([v] if delta is not None else v) for delta, v in ops)
    for run in b.timed:
        assert bounded(run.values) and 1.0 <= run.weight <= 1 / RATE_MIN
        assert len(run.ts) == len(run.values) and all(0.0 <= t < TIME_MAX_S for t in run.ts)
    assert all(0.0 <= e.ts < TIME_MAX_S for e in b.events)


@pytest.fixture
def no_slow_path(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records whatever the per-line parser is handed, to prove the fast path did the work."""
    seen: list[bytes] = []
    slow = dispatch.per_line

    def spy(text: bytes, batch: Batch, max_line: int) -> None:
        if text.strip():
            seen.append(text)
        slow(text, batch, max_line)

    monkeypatch.setattr(dispatch, "per_line", spy)
    return seen


# ---------------------------------------------------------------------------------------------
# StatsD


def test_timings_land_in_their_series_with_tags(no_slow_path):
    lines = [
        f"api.request_latency:{v}|ms|#component:api-server" for v in (12.5, 3, 40.25, 0.125)
    ] + ["api.request_latency:7|ms", "db.query_duration:2|h|#component:db,env:prod"]
    b = parsed("\n".join(lines).encode())
    assert b.accepted == 6 and not b.rejected
    assert b.dist[key("api.request_latency", component="api-server")].values == [
        12.5,
        3.0,
        40.25,
        0.125,
    ]
    assert b.dist[key("api.request_latency")].values == [7.0]
    db = key("db.query_duration", component="db", env="prod")
    assert b.dist[db].values == [2.0] and db.component == "db"
    assert all(buf.weights is None for buf in b.dist.values())
    assert no_slow_path == []


def test_the_benchmark_shape_goes_through_the_fast_path_intact(no_slow_path):
    lines = [
        f"bench.s{i % 8}.request_latency:{(i % 997) * 0.37 + 0.5:.3f}|ms|#component:bench{i % 8}"
        for i in range(3000)
    ]
    b = parsed(("\n".join(lines) + "\n").encode())
    assert b.accepted == 3000 and not b.rejected
    assert len(b.dist) == 8
    for c in range(8):
        buf = b.dist[key(f"bench.s{c}.request_latency", component=f"bench{c}")]
        want = [float(f"{(i % 997) * 0.37 + 0.5:.3f}") for i in range(c, 3000, 8)]
        assert buf.values == want
    assert no_slow_path == []


def test_sample_rate_weights_distributions_and_scales_counters():
    b = parsed(b"lat:10|ms|@0.1\nlat:20|ms\nhits:3|c|@0.5\nhits:1|c\nmiss:1|c|@1\n")
    buf = b.dist[key("lat")]
    assert buf.values == [10.0, 20.0]
    assert buf.weights == pytest.approx([10.0, 1.0])
    assert b.counts[key("hits", COUNTER)] == pytest.approx(7.0)
    assert b.counts[key("miss", COUNTER)] == 1.0


@pytest.mark.parametrize(
    "rate", [b"0", b"-0.5", b"1.5", b"abc", b"", b"nan", b"1e-300", b"9.99e-7", b"-1e-6"]
)
def test_sample_rate_outside_a_millionth_to_one_is_bad_syntax(rate):
    # @1e-300 would weigh a sample 1e300, and a few such samples add up to infinity.
    for kind in (b"ms", b"c"):
        b = parsed(b"lat:10|" + kind + b"|@" + rate + b"\nok:1|c\nlat:1|" + kind + b"|@" + rate)
        assert b.rejected == {REJECT_SYNTAX: 2}
        assert b.accepted == 1 and not b.dist and list(b.counts) == [key("ok", COUNTER)]


def test_a_rate_of_a_millionth_weighs_a_million_and_a_smaller_one_is_refused():
    b = parsed(b"lat:10|ms|@1e-6\nhits:2|c|@0.000001\nlat:10|ms|@1e-300\n")
    assert b.rejected == {REJECT_SYNTAX: 1}
    assert b.dist[key("lat")].weights == [1e6]
    assert b.counts[key("hits", COUNTER)] == pytest.approx(2e6)


def test_multi_value_line_is_one_line_but_several_samples():
    b = parsed(b"lat:1:2:3|ms|@0.5|#component:a\nhits:1:2|c\n")
    assert b.accepted == 2
    buf = b.dist[key("lat", component="a")]
    assert buf.values == [1.0, 2.0, 3.0] and buf.weights == [2.0, 2.0, 2.0]
    assert b.counts[key("hits", COUNTER)] == 3.0


def test_gauge_sets_and_deltas_keep_their_order():
    b = parsed(b"mem:100|g\nmem:+5|g\nmem:-3|g\nmem:50|g\nmem:+1|g\n")
    assert b.gauges[key("mem", GAUGE)] == [
        (False, 100.0),
        (True, 5.0),
        (True, -3.0),
        (False, 50.0),
        (True, 1.0),
    ]


def test_gauge_order_survives_two_spellings_of_one_series():
    # Tag order differs, the series is the same: its updates must stay in line order.
    b = parsed(b"g:5|g|#a:1,b:2\ng:+1|g|#b:2,a:1\ng:3|g|#a:1,b:2\n")
    assert b.gauges == {key("g", GAUGE, a="1", b="2"): [(False, 5.0), (True, 1.0), (False, 3.0)]}


def test_sets_collect_distinct_members():
    b = parsed(b"users:alice|s\nusers:bob|s\nusers:alice|s\nusers:42|s\nusers:x:y|s\n")
    assert b.accepted == 5
    assert b.sets[key("users", SET)] == {"alice", "bob", "42", "x", "y"}


def test_tags_without_values_repeated_keys_and_empty_tags():
    b = parsed(b"x:1|c|#flag,env:prod,,env:dev,url:http://h:80/p\n")
    (k,) = b.counts
    assert k.tags == (("env", "dev"), ("flag", ""), ("url", "http://h:80/p"))


def test_timestamped_samples_go_to_timed():
    b = parsed(
        b"lat:12.5|ms|T1700000000|#component:a\nhits:4|c|@0.5|T1700000001\ng:5|g|T1700000002\n"
    )
    assert b.accepted == 3
    assert timed(b) == [
        TimedSample(key("lat", component="a"), 12.5, 1.0, 1700000000.0),
        TimedSample(key("hits", COUNTER), 4.0, 2.0, 1700000001.0),
    ]
    assert not b.dist and not b.counts
    assert b.gauges[key("g", GAUGE)] == [(False, 5.0)]  # the timestamp is read and ignored


@pytest.mark.parametrize("ts", [b"T", b"Tsoon", b"Tnan", b"T1_7"])
def test_a_timestamp_that_is_no_number_is_bad_syntax(ts):
    assert parsed(b"lat:1|ms|" + ts).rejected == {REJECT_SYNTAX: 1}


@pytest.mark.parametrize(
    "ts", [b"T-5", b"T-0.001", b"T4102444800", b"T4.1025e9", b"T1e308", b"T1e999"]
)
def test_a_timestamp_before_1970_or_from_2100_is_bad_time(ts):
    for kind in (b"ms", b"c", b"g"):
        b = parsed(b"ok:1|c\nlat:1|" + kind + b"|" + ts + b"\nok:1|c\nlat:2|" + kind + b"|" + ts)
        assert b.rejected == {REJECT_TIME: 2} and b.accepted == 2
        assert not b.timed and not b.gauges


def test_timestamps_at_the_ends_of_the_range_are_kept_and_beyond_them_refused():
    b = parsed(b"lat:1|ms|T0\nlat:2|ms|T4102444799.999\nlat:3|ms|T4102444800\n")
    assert b.accepted == 2 and [s.ts for s in timed(b)] == [0.0, 4102444799.999]
    assert b.rejected == {REJECT_TIME: 1}


def test_unknown_extension_fields_are_ignored(no_slow_path):
    b = parsed(b"lat:1|ms|#component:a|c:ci-1234|card:high|e:it-false|xyz\n")
    assert b.accepted == 1
    assert b.dist[key("lat", component="a")].values == [1.0]


def test_lines_as_the_datadog_and_statsd_clients_send_them():
    # Recorded from datadog 0.5x DogStatsd and statsd 4 StatsClient.
    block = (
        b"api.request_latency:12.5|h|#component:api,env:prod\n"
        b"api.throughput:3|c|#component:api\n"
        b"mem:42.0|g\n"
        b"t:0.0005|ms\n"
        b"dd:1e+100|d\n"
        b"users:alice|s\n"
        b"x:12.500000|ms\n"
        b"g:+5|g\n"
        b"g:0|g\ng:-3|g\n"
        b"gts:5|g|T1700000002\n"
        b"cts:5|c|T1700000002\n"
    )
    b = parsed(block)
    assert b.accepted == 12 and not b.rejected
    assert b.dist[key("api.request_latency", component="api", env="prod")].values == [12.5]
    assert b.dist[key("t")].values == [0.0005]
    assert b.dist[key("dd")].values == [1e100]
    assert b.counts[key("api.throughput", COUNTER, component="api")] == 3.0
    assert b.gauges[key("g", GAUGE)] == [(True, 5.0), (False, 0.0), (True, -3.0)]
    assert timed(b) == [TimedSample(key("cts", COUNTER), 5.0, 1.0, 1700000002.0)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-9", 1e-9),
        ("0.000001", 1e-6),
        ("5e-324", 5e-324),
        ("1e100", 1e100),
        ("-1E+100", -1e100),
        ("1E+3", 1000.0),
        ("-3", -3.0),
        (".5", 0.5),
        ("7.", 7.0),
        ("12.5", 12.5),
    ],
)
def test_values_up_to_1e100_in_magnitude_are_kept(text, value):
    b = parsed(f"lat:{text}|ms\nlat:{text}|ms\n".encode())
    assert b.dist[key("lat")].values == [value, value]


@pytest.mark.parametrize(
    "value",
    [
        b"nan",
        b"NaN",
        b"inf",
        b"-inf",
        b"Infinity",
        b"1e400",
        b"12abc",
        b"1_000",
        b" 1",
        b"0x10",
        b"1e",
        b"--1",
        b"1:nan",
    ],
)
def test_non_finite_or_garbage_values_reject_the_whole_line(value):
    b = parsed(b"ok:1|ms\nlat:" + value + b"|ms\nok:2|ms\n")
    assert b.rejected == {REJECT_NUMBER: 1}
    assert key("lat") not in b.dist
    assert b.dist[key("ok")].values == [1.0, 2.0]


@pytest.mark.parametrize("value", [b"1e101", b"-1.0000000000000002e100", b"1e308", b"-1e300"])
def test_values_beyond_1e100_are_bad_numbers_in_every_kind(value):
    # Two of them would add up to infinity (a gauge's deltas, a counter, a sum); one among
    # the values of a line rejects the line.
    for kind in (b"ms", b"h", b"d", b"c", b"g", b"c|@0.5"):
        lines = [
            b"lat:1|" + kind,
            b"lat:" + value + b"|" + kind,
            b"lat:+" + value.lstrip(b"-") + b"|" + kind,
            b"lat:2:" + value + b"|" + kind,
            b"lat:3|" + kind,
        ]
        block = b"\n".join(lines * 20)
        b = parsed(block)
        assert b.rejected == {REJECT_NUMBER: 60} and b.accepted == 40, kind
        assert_within_rules(b)
        assert_same(b, line_by_line(block))


def test_many_values_near_the_bound_are_all_kept_and_those_beyond_refused():
    # Their hypotenuse is beyond the bound, so the fast path leaves them to the per-line
    # parser, which keeps each one.
    lines = [b"g:9e99|g", b"g:-1e100|g", b"c:1e100|c", b"d:1e100|d", b"d:1e101|d"]
    b = parsed(b"\n".join(lines * 50))
    assert b.accepted == 200 and b.rejected == {REJECT_NUMBER: 50}
    assert b.dist[key("d")].values == [1e100] * 50
    assert b.gauges[key("g", GAUGE)] == [(False, 9e99), (True, -1e100)] * 50
    assert b.counts[key("c", COUNTER)] == pytest.approx(5e101)


def test_one_overflowing_value_among_simple_lines_is_rejected_alone():
    lines = [b"lat:1|c"] * 50 + [b"lat:1e999|c"] + [b"lat:2|c"] * 50
    b = parsed(b"\n".join(lines))
    assert b.rejected == {REJECT_NUMBER: 1} and b.accepted == 100
    assert b.counts[key("lat", COUNTER)] == 150.0


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"lat:1|zz", REJECT_TYPE),
        (b"lat:1|MS", REJECT_TYPE),
        (b"lat:1|", REJECT_SYNTAX),
        (b"lat:1", REJECT_SYNTAX),
        (b"lat|ms", REJECT_SYNTAX),
        (b":1|ms", REJECT_SYNTAX),
        (b"lat::1|ms", REJECT_SYNTAX),
        (b"lat:|c", REJECT_SYNTAX),
        (b"a|b:1|c", REJECT_SYNTAX),
        (b"a#b:1|c", REJECT_SYNTAX),
        (b"a\x01b:1|c", REJECT_SYNTAX),
        (b"just some words", REJECT_SYNTAX),
        (b"\xff\xfe:1|c", REJECT_ENCODING),
        (b"lat:1|c|#env:\xff", REJECT_ENCODING),
        (b"users:\xff|s", REJECT_ENCODING),
    ],
)
def test_malformed_lines_are_counted_under_their_reason(line, reason):
    b = parsed(b"ok:1|c\n" + line + b"\nok:1|c\n")
    assert b.rejected == {reason: 1}
    assert b.accepted == 2 and b.counts == {key("ok", COUNTER): 2.0}


def test_names_may_hold_dots_dashes_slashes_spaces_and_unicode():
    b = parsed("svc-1/db.query_time:1|ms\nmy metric:2|ms\nlatência:3|ms\n".encode())
    assert {k.name for k in b.dist} == {"svc-1/db.query_time", "my metric", "latência"}


def test_blank_lines_crlf_and_surrounding_blanks():
    b = parsed(b"\n\na:1|ms\r\n\r\n   \n\t\nb:2|ms  \r\n  c:3|ms\nd:4|ms|#env:prod \n\n")
    assert b.accepted == 4 and not b.rejected
    assert [k.name for k in b.dist] == ["a", "b", "c", "d"]
    assert key("d", env="prod") in b.dist  # a trailing blank is not part of the tag
    assert parsed(b"").accepted == 0 and parsed(b"\n \n\r\n").is_empty()


def test_last_line_without_newline_counts():
    b = parsed(b"a:1|c\nb:2|c")
    assert b.counts == {key("a", COUNTER): 1.0, key("b", COUNTER): 2.0}


def test_too_long_lines_are_rejected_and_neighbours_kept():
    long_tags = b"|#" + b"x" * 2000
    block = b"a:1|ms\n" + b"a:2|ms" + long_tags + b"\n" + b"a:3|ms\n" + b"y" * 3000 + b"\n"
    b = parsed(block * 3, max_line=1000)
    assert b.rejected == {REJECT_TOO_LONG: 6}
    assert b.dist[key("a")].values == [1.0, 3.0] * 3
    # At exactly the limit a line is fine.
    line = b"a:1|ms|#" + b"x" * 992
    assert len(line) == 1000
    assert parsed(line + b"\n" + line, max_line=1000).accepted == 2


def test_blocks_bigger_than_a_chunk_lose_nothing_at_the_seams():
    lines = []
    for i in range(12000):
        if i % 1999 == 0:
            lines.append(b'{"name":"mem","value":%d}' % i)
        elif i % 2503 == 0:
            lines.append(b"garbage line %d" % i)
        else:
            lines.append(b"bench.s%d.lat:%d|ms|#component:c%d" % (i % 5, i, i % 5))
    block = b"\n".join(lines) + b"\n"
    assert len(block) > 4 * parse._CHUNK
    b = parsed(block)
    assert_same(b, line_by_line(block))
    assert b.accepted + sum(b.rejected.values()) == 12000
    assert sum(len(d.values) for d in b.dist.values()) == b.accepted - len(
        b.gauges[key("mem", GAUGE)]
    )


def test_odd_lines_among_simple_ones_are_the_only_ones_parsed_one_by_one(no_slow_path):
    lines = [b"lat:%d|ms|#component:api" % i for i in range(300)]
    lines[10] = b"_sc|web|0"  # no colon: the regex takes it as the start of the next name
    lines[20] = b"lat:5|ms|#component:api|T1700000000"
    lines[30] = b"lat:1e999|ms|#component:api"
    lines[40] = b'{"name": "mem", "value": 1}'
    b = parsed(b"\n".join(lines))
    assert b.accepted == 299 and b.rejected == {REJECT_NUMBER: 1}
    assert [e.title for e in b.events] == ["web"] and len(timed(b)) == 1
    assert sorted(b.dist[key("lat", component="api")].values) == [
        float(i) for i in range(300) if i not in (10, 20, 30, 40)
    ]
    handed = [line for text in no_slow_path for line in text.split(b"\n") if line]
    assert len(handed) <= 5  # the four odd lines, and the one the service check ran into


def test_gauge_updates_keep_line_order_around_odd_lines():
    lines = [b"g:%d|g" % i if i % 3 else b"g:+1|g" for i in range(60)]
    lines[7] = b"g:1e999|g"
    lines[20] = b"g:+5|g|T1700000000"
    lines[33] = b'{"name": "g", "value": 1000}'
    lines[40] = b"_sc|web|0"
    block = b"\n".join(lines)
    want = []
    for i in range(60):
        if i == 20:
            want.append((True, 5.0))  # a gauge's timestamp is read and ignored
        elif i == 33:
            want.append((False, 1000.0))  # the JSON line updates the same gauge
        elif i not in (7, 40):
            want.append((True, 1.0) if i % 3 == 0 else (False, float(i)))
    b = parsed(block)
    assert b.gauges == {key("g", GAUGE): want}
    assert b.gauges == line_by_line(block).gauges


def test_series_cache_overflow_changes_nothing(monkeypatch):
    monkeypatch.setattr(cache, "SERIES_MAX", 5)
    block = b"\n".join(b"s%d:%d|c|#k:%d" % (i % 40, i, i % 3) for i in range(400))
    first = parsed(block)
    again = parsed(block)
    assert_same(first, again)
    assert_same(first, line_by_line(block))
    assert len(cache.SERIES) <= 5 + 120  # trimmed between blocks, never unbounded


def test_bytearray_and_memoryview_blocks():
    for block in (bytearray(b"a:1|ms\nb:2|c\n"), memoryview(b"a:1|ms\nb:2|c\n")):
        b = parsed(block)  # type: ignore[arg-type]
        assert b.accepted == 2 and b.dist[key("a")].values == [1.0]


# ---------------------------------------------------------------------------------------------
# DogStatsD events and service checks


def test_event_as_datadog_sends_it():
    # UTF-8 byte lengths, newlines escaped, optional fields after the text.
    title, text = "Déploiement", "line1\\nline2 ü"
    line = (
        f"_e{{{len(title.encode())},{len(text.encode())}}}:{title}|{text}"
        "|d:1700000000|h:h1|k:agg|p:low|s:src|t:error|#a:b,c|c:ci-1"
    ).encode()
    b = parsed(line + b"\n")
    assert b.accepted == 1
    (e,) = b.events
    assert e.kind == "event" and e.title == "Déploiement" and e.text == "line1\nline2 ü"
    assert (e.ts, e.hostname, e.priority, e.alert_type) == (1700000000.0, "h1", "low", "error")
    assert e.tags == (("a", "b"), ("c", ""))


def test_event_lengths_in_characters_are_accepted_too():
    title, text = "Ünïcode", "tëxt|with pipe"
    line = f"_e{{{len(title)},{len(text)}}}:{title}|{text}|t:info"
    (e,) = parsed(line.encode()).events
    assert (e.title, e.text, e.alert_type) == (title, text, "info")


def test_event_text_may_hold_pipes_and_be_empty():
    (e,) = parsed(b"_e{3,7}:a|b|c|d|e|f|p:normal").events
    assert (e.title, e.text, e.priority) == ("a|b", "c|d|e|f", "normal")
    (e,) = parsed(b"_e{5,0}:title|").events
    assert (e.title, e.text) == ("title", "")


@pytest.mark.parametrize(
    "line",
    [
        b"_e{5,4}:tit|text",
        b"_e{5,4}:title|textual",
        b"_e{5}:title",
        b"_e{a,b}:x|y",
        b"_e{0,4}:|text",
        b"_e{5,4}title|text",
        b"_e{5,4}:title|text|d:yesterday",
        b"_e{",
    ],
)
def test_malformed_events_are_bad_syntax(line):
    b = parsed(line + b"\nok:1|c\n")
    assert b.rejected == {REJECT_SYNTAX: 1} and b.accepted == 1 and not b.events


def test_service_check_as_datadog_sends_it():
    line = b"_sc|db.up|2|d:1700000001|h:h|#x:y|m:bad m\\: thing\\nnext|with pipe|c:ci-1|card:low"
    (sc,) = parsed(line).events
    assert sc.kind == "service_check" and sc.title == "db.up" and sc.status == 2
    assert sc.text == "bad m: thing\nnext|with pipe"
    assert (sc.ts, sc.hostname, sc.tags) == (1700000001.0, "h", (("x", "y"),))
    (sc,) = parsed(b"_sc|web|0").events
    assert (sc.title, sc.status, sc.text) == ("web", 0, "")


@pytest.mark.parametrize(
    "line", [b"_sc|db.up|4", b"_sc|db.up", b"_sc||0", b"_sc|db|ok", b"_sc|db|0|d:x"]
)
def test_malformed_service_checks_are_bad_syntax(line):
    b = parsed(line)
    assert b.rejected == {REJECT_SYNTAX: 1} and not b.events


@pytest.mark.parametrize("d", [b"d:1e308", b"d:-1e300", b"d:-1", b"d:4102444800", b"d:1e999"])
def test_an_event_or_service_check_dated_before_1970_or_from_2100_is_bad_time(d):
    # Such a time once reached the screen's time.localtime and overflowed there.
    b = parsed(b"_e{1,1}:a|b|" + d + b"\n_sc|chk|0|" + d + b"\n_sc|chk|0|" + d + b"|m:hi\nok:1|c")
    assert b.rejected == {REJECT_TIME: 3} and b.accepted == 1 and not b.events


def test_an_event_dated_zero_or_not_at_all_has_no_time_and_one_before_1970_is_refused():
    b = parsed(
        b"_e{1,1}:a|b|d:0\n_e{1,1}:a|b\n_sc|chk|0|d:4102444799.5\n_sc|chk|0|d:0.5\n"
        b"_e{1,1}:a|b|d:-0.5"
    )
    assert [e.ts for e in b.events] == [0.0, 0.0, 4102444799.5, 0.5]
    assert b.rejected == {REJECT_TIME: 1}


def test_event_with_bad_utf8_is_an_encoding_reject():
    assert parsed(b"_e{2,1}:\xff\xfe|x").rejected == {REJECT_ENCODING: 1}
    assert parsed(b"_sc|\xff|0").rejected == {REJECT_ENCODING: 1}


# ---------------------------------------------------------------------------------------------
# JSON lines


def jline(**obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_jsonrpc_requests_are_handed_over_in_order():
    reqs = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(3)]
    block = b"\n".join(json.dumps(r).encode() for r in reqs) + b"\nlat:1|ms\n"
    b = parsed(block)
    assert b.rpc == reqs and b.accepted == 4


def test_request_lines_it_cannot_take_are_refused_with_an_answer_and_counted():
    pad = b"x" * 70_000
    block = b"\n".join(
        [
            b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + pad + b'"}}',
            b"api." + pad + b":1|ms",  # a metric line: rejected, no answer
            b'[{"jsonrpc":"2.0","id":2,"method":"ping"}]',
            b"[api]:1|ms",  # a StatsD name in brackets is still a metric
            b'{"id":3,"method":"ping"}',  # answered by the server, which checks the version
            b"lat:1|ms",
        ]
    )
    for b in (parsed(block), line_by_line(block)):
        assert [type(r) for r in b.rpc] == [RpcRefusal, RpcRefusal, dict]
        assert "longer than the 65536 bytes" in b.rpc[0].message
        assert "batches are not supported" in b.rpc[1].message
        assert b.rpc[2] == {"id": 3, "method": "ping"}
        assert b.rejected == {REJECT_TOO_LONG: 2, REJECT_REQUEST: 1}
        assert b.accepted == 3


@pytest.mark.parametrize(
    "obj, kind",
    [
        ({"name": "request_latency", "value": 0.25}, DIST),
        ({"name": "api.Request_Latency", "value": 3}, DIST),
        ({"name": "job.duration", "value": 3}, DIST),
        ({"name": "render", "value": 3, "unit": "ms"}, DIST),
        ({"name": "error_count", "value": 1}, COUNTER),
        ({"name": "voice.error_count", "value": 2}, COUNTER),
        ({"name": "api.throughput", "value": 40}, COUNTER),
        ({"name": "memory_heap_used", "value": 52428800, "unit": "bytes"}, GAUGE),
        ({"name": "queue_depth", "value": -4}, GAUGE),
    ],
)
def test_json_metric_kind_follows_name_and_unit(obj, kind):
    b = parsed(json.dumps(obj).encode())
    assert b.accepted == 1
    k = SeriesKey(obj["name"], (), kind)
    v = float(obj["value"])
    if kind is DIST:
        assert b.dist[k].values == [v]
    elif kind is COUNTER:
        assert b.counts[k] == v
    else:
        assert b.gauges[k] == [(False, v)]


def test_json_metric_context_and_tags():
    line = jline(
        name="voice.error_count",
        value=1,
        tags={"error_type": "timeout", "region": "eu", "shard": 3, "canary": True},
        context={"component": "voice-engine", "userId": "u1", "requestId": "r9"},
    )
    b = parsed(line)
    (k,) = b.counts
    assert k.component == "voice-engine"
    assert dict(k.tags) == {
        "component": "voice-engine",
        "error_type": "timeout",
        "region": "eu",
        "shard": "3",
        "canary": "true",
    }
    # An error type given in the context is kept as a tag too; the context's component wins.
    b = parsed(
        jline(
            name="error_count",
            value=1,
            tags={"component": "x"},
            context={"component": "api", "error_type": "deadlock"},
        )
    )
    (k,) = b.counts
    assert dict(k.tags) == {"component": "api", "error_type": "deadlock"}


def test_json_timestamp_in_milliseconds_sends_samples_to_timed():
    b = parsed(
        jline(
            name="request_latency",
            value=0.25,
            timestamp=1700000000123,
            context={"component": "api"},
        )
        + b"\n"
        + jline(name="api.throughput", value=5, timestamp=1700000000000)
        + b"\n"
        + jline(name="mem", value=5, timestamp=1700000000000)
    )
    assert timed(b) == [
        TimedSample(key("request_latency", component="api"), 0.25, 1.0, 1700000000.123),
        TimedSample(key("api.throughput", COUNTER), 5.0, 1.0, 1700000000.0),
    ]
    assert b.gauges == {key("mem", GAUGE): [(False, 5.0)]}


@pytest.mark.parametrize(
    "ms", ["-1", "-0.5", "4102444800000", "1e20", "1" + "0" * 400, "1e999", "-Infinity"]
)
def test_a_json_timestamp_before_1970_or_from_2100_is_bad_time(ms):
    for name in ("request_latency", "api.throughput", "mem"):
        line = b'{"name": "%s", "value": 1, "timestamp": %s}' % (name.encode(), ms.encode())
        b = parsed(b"\n".join([line, b"ok:1|c", line]))
        assert b.rejected == {REJECT_TIME: 2} and b.accepted == 1
        assert not b.timed and not b.gauges


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"name": "x", "value": NaN}', REJECT_NUMBER),
        (b'{"name": "x", "value": 1e101}', REJECT_NUMBER),
        (b'{"name": "x", "value": -1' + b"0" * 101 + b"}", REJECT_NUMBER),
        (b'{"name": "x", "value": 1, "timestamp": NaN}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "timestamp": true}', REJECT_SYNTAX),
        (b'{"name": "x", "value": Infinity}', REJECT_NUMBER),
        (b'{"name": "x", "value": "12"}', REJECT_NUMBER),
        (b'{"name": "x", "value": true}', REJECT_NUMBER),
        (b'{"name": "x", "value": null}', REJECT_NUMBER),
        (b'{"name": "x", "value": 1' + b"0" * 400 + b"}", REJECT_NUMBER),
        (b'{"name": "x"}', REJECT_SYNTAX),
        (b'{"value": 1}', REJECT_SYNTAX),
        (b'{"name": "", "value": 1}', REJECT_SYNTAX),
        (b'{"name": 5, "value": 1}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "tags": ["a"]}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "tags": {"a": [1]}}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "context": "api"}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "timestamp": "now"}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1, "unit": 5}', REJECT_SYNTAX),
        (b'{"name": "x", "value": 1', REJECT_SYNTAX),
        (b"{not json at all}", REJECT_SYNTAX),
        (b'{"jsonrpc": "2.0"} trailing', REJECT_SYNTAX),
        (b"[" * 5000 + b"]" * 5000, REJECT_SYNTAX),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, REJECT_SYNTAX),
        (b'{"name": "\xff", "value": 1}', REJECT_ENCODING),
    ],
)
def test_bad_json_lines(line, reason):
    b = parsed(line + b"\nok:1|c\n")
    assert b.rejected == {reason: 1}
    assert b.accepted == 1 and not b.rpc and not b.gauges and not b.dist


# ---------------------------------------------------------------------------------------------
# the fast path against the per-line parser, and invariants for any input

names = st.sampled_from(["a", "api.request_latency", "db-1/q_time", "x.y.z", "s"])
tag_sets = st.sampled_from(["", "|#component:api", "|#b:2,a:1", "|#a:1,b:2", "|#flag", "|#k:v:w"])
numbers = st.one_of(  # values within the rules (docs/protocol.md, "Numbers")
    st.integers(-(10**6), 10**6).map(str),
    st.floats(min_value=-VALUE_MAX, max_value=VALUE_MAX).map(repr),
    st.floats(min_value=1e-12, max_value=1e12).map(lambda f: f"{f:.6g}"),
)


@st.composite
def simple_lines(draw: st.DrawFn) -> str:
    name, value, tags = draw(names), draw(numbers), draw(tag_sets)
    kind = draw(st.sampled_from(["ms", "h", "d", "c", "g", "s"]))
    if kind == "g" and draw(st.booleans()):
        value = "+" + value.lstrip("+-")
    rate = draw(st.sampled_from(["", "", "|@0.5", "|@0.1", "|@1"]))
    extra = draw(st.sampled_from(["", "", "|c:container-1"]))
    return f"{name}:{value}|{kind}{rate}{tags}{extra}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(simple_lines(), min_size=1, max_size=60))
def test_fast_path_equals_per_line_parser(lines):
    block = "\n".join(lines).encode()
    assert_same(parsed(block), line_by_line(block))
    assert parsed(block).accepted == len(lines)


# Values near the bound send a group to the per-line parser (see parse.statsd_bulk._hypot).
moderate = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(min_value=-1e90, max_value=1e90).map(repr),
)


@st.composite
def steady_sender(draw: st.DrawFn) -> list[str]:
    """Lines of a sender that spells each series one way, the common case the fast path is for."""
    suffix = {
        name: draw(st.sampled_from(["ms", "h", "d", "c", "g", "s"]))
        + draw(st.sampled_from(["", "|@0.25"]))
        + draw(tag_sets)
        for name in ["a", "api.request_latency", "db-1/q_time"]
    }
    return [
        f"{name}:{value}|{suffix[name]}"
        for name, value in draw(st.lists(st.tuples(st.sampled_from(list(suffix)), moderate)))
    ]


@settings(max_examples=60, deadline=None)
@given(steady_sender())
def test_steady_senders_never_touch_the_per_line_parser(lines):
    seen: list[bytes] = []
    slow = dispatch.per_line

    def spy(text: bytes, batch: Batch, max_line: int) -> None:
        if text.strip():
            seen.append(text)
        slow(text, batch, max_line)

    dispatch.per_line = spy
    try:
        b = parsed("\n".join(lines).encode())
    finally:
        dispatch.per_line = slow
    assert b.accepted == len(lines) and not b.rejected
    assert seen == []


garbage_lines = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [
            b"lat:nan|ms",
            b"lat:1|zz",
            b"_e{5,4}:title|text|#a:b",
            b"_e{1,1}:1|c",
            b"_sc|chk|1|m:hi",
            b'{"name":"request_latency","value":1.5}',
            b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            b"{oops",
            b"lat:1|ms|T1700000000",
            b"g:-1|g|T5",
            b"   ",
            b"",
            b"\r",
            b" lat:1|ms",
            b"lat:1:2|c",
            b"x" * 300 + b":1|c",
            b"lat:" + b"1" * 70 + b"|ms",
            b"\xff:1|c",
            b"no colon here",
            b"a:1|c\rb:2|c",
            b"g:+1e308|g",
            b"lat:1|ms|@1e-300",
            b"lat:1|ms|T1e308",
            b"_e{1,1}:a|b|d:1e308",
            b"_sc|chk|0|d:-1e300",
        ]
    ),
)
mixed_lines = st.lists(
    st.one_of(simple_lines().map(str.encode), garbage_lines), min_size=0, max_size=80
)


@settings(max_examples=150, deadline=None)
@given(mixed_lines, st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_every_nonblank_line_is_counted_once_and_matches_per_line(lines, eol, trailing):
    block = eol.join(lines) + (eol if trailing else b"")
    b = parsed(block)
    assert b.accepted + sum(b.rejected.values()) == nonblank(block)
    assert_same(b, line_by_line(block))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data):
    b = parsed(data, max_line=64)
    assert b.accepted + sum(b.rejected.values()) == nonblank(data)
    assert_within_rules(b)
    one = Batch()
    parse_line(data, one)
    assert_within_rules(one)


# Numbers at and beyond the edges of the rules (docs/protocol.md, "Numbers"), in every format.
edge_values = st.one_of(
    st.floats(width=64).map(repr),  # NaN and the infinities too, spelled as repr spells them
    st.integers(-(10**120), 10**120).map(str),
    st.sampled_from(
        ["1e100", "-1e100", "1.0000000000000002e100", "-1e101", "1e308", "-1.7976931348623157e308",
         "1e999", "-1e999", "5e-324", "0", "-0", "+1e300", "9.9e99", "1e", "1" * 120]
    ),
)  # fmt: skip
edge_rates = st.sampled_from(
    ["", "|@1", "|@1e-6", "|@0.000001", "|@9.99e-7", "|@1e-300", "|@5e-324", "|@0", "|@-1",
     "|@1.0000001", "|@0.5", "|@1e999"]
)  # fmt: skip
edge_times = st.one_of(
    st.floats(width=64).map(repr),
    st.sampled_from(
        ["0", "-0", "-1", "4102444800", "4102444799.999", "4102444800.0001", "1e308", "-1e300",
         "1e999", "1700000000", "1e", "x"]
    ),
)  # fmt: skip
edge_stamps_ms = st.one_of(
    st.floats(width=64).map(repr),
    st.integers(-(10**15), 10**15).map(str),
    st.sampled_from(
        ["0", "-0", "-1", "4102444800000", "4102444799999", "1e308", "1" * 400, "1e999", "NaN",
         "-Infinity", '"now"', "true", "null", "1700000000000"]
    ),
)  # fmt: skip


@st.composite
def edge_lines(draw: st.DrawFn) -> bytes:
    """A StatsD line, event, service check or JSON metric whose numbers lie near or beyond
    the rules."""
    form = draw(st.integers(0, 3))
    if form == 0:
        kind = draw(st.sampled_from(["ms", "h", "d", "c", "g", "s"]))
        values = ":".join(draw(st.lists(edge_values, min_size=1, max_size=3)))
        if kind == "g" and draw(st.booleans()):
            values = "+" + values.lstrip("+-")
        stamp = f"|T{draw(edge_times)}" if draw(st.booleans()) else ""
        rate, tags = draw(edge_rates), draw(tag_sets)
        return f"{draw(names)}:{values}|{kind}{rate}{tags}{stamp}".encode()
    if form == 1:
        stamp = f"|d:{draw(edge_times)}" if draw(st.booleans()) else ""
        return f"_e{{5,4}}:title|text{stamp}|#a:b".encode()
    if form == 2:
        status = draw(st.sampled_from("0123"))
        return f"_sc|chk|{status}|d:{draw(edge_times)}|m:hi".encode()
    name = draw(st.sampled_from(["request_latency", "api.throughput", "mem", "error_count"]))
    stamp = f', "timestamp": {draw(edge_stamps_ms)}' if draw(st.booleans()) else ""
    return f'{{"name": "{name}", "value": {draw(edge_values)}{stamp}}}'.encode()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(edge_lines(), simple_lines().map(str.encode), garbage_lines), max_size=40),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_no_number_beyond_the_rules_gets_into_a_batch(lines, eol):
    """StatsD, events, service checks, JSON and garbage mixed: every line counted once, the
    same as the per-line parser, and nothing in the Batch non-finite or beyond the rules."""
    block = eol.join(lines)
    b = parsed(block)
    assert b.accepted + sum(b.rejected.values()) == nonblank(block)
    assert_within_rules(b)
    assert_same(b, line_by_line(block))
    for line in lines:
        one = Batch()
        parse_line(line, one)
        assert one.accepted + sum(one.rejected.values()) == (1 if line.strip() else 0)
        assert_within_rules(one)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(edge_lines(), simple_lines().map(str.encode)), min_size=1, max_size=6),
    st.integers(2, 40),
)
def test_lines_beyond_the_rules_sent_again_and_again_are_judged_alike_in_bulk(shapes, times):
    """The same few lines repeated, as a steady sender writes them, go through the bulk paths
    (StatsD groups, JSON templates), which must reject exactly what the per-line parser does."""
    block = b"\n".join(shapes * times)
    b = parsed(block)
    assert b.accepted + sum(b.rejected.values()) == len(shapes) * times
    assert_within_rules(b)
    assert_same(b, line_by_line(block))
