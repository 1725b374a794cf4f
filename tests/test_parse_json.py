"""JSON metric lines in bulk (vtmon/ingest/parse/json_bulk.py): the same result as the per-line
parser for any mix of lines, and steady senders never parsed one line at a time."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parse import (
    TimedSample,
    assert_same,
    assert_within_rules,
    key,
    line_by_line,
    nonblank,
    parsed,
    timed,
)

from vtmon.ingest.parse import cache, dispatch
from vtmon.model import (
    REJECT_NUMBER,
    REJECT_SYNTAX,
    REJECT_TIME,
    REJECT_TOO_LONG,
    Batch,
    DistBuf,
    Kind,
    SeriesKey,
)

DIST, COUNTER, GAUGE = Kind.DISTRIBUTION, Kind.COUNTER, Kind.GAUGE


@pytest.fixture
def one_by_one(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every line handed to the per-line parsers, to prove the bulk path did the work."""
    seen: list[bytes] = []
    for name in ("per_line", "json_lines"):
        real = getattr(dispatch, name)

        def spy(text: bytes, batch: Batch, max_line: int, real=real) -> None:
            seen.extend(line for line in text.split(b"\n") if line.strip())
            real(text, batch, max_line)

        monkeypatch.setattr(dispatch, name, spy)
    return seen


def bench_line(i: int, series: int = 10) -> bytes:
    c = i % series
    v = (i % 997) * 0.37 + 0.5
    return (
        f'{{"name":"bench.s{c}.request_latency","value":{v:.3f},'
        f'"context":{{"component":"bench{c}"}}}}'
    ).encode()


def test_the_benchmark_shape_goes_in_bulk_intact(one_by_one):
    block = b"\n".join(bench_line(i) for i in range(3000)) + b"\n"
    b = parsed(block)
    assert b.accepted == 3000 and not b.rejected
    assert len(b.dist) == 10
    for c in range(10):
        buf = b.dist[key(f"bench.s{c}.request_latency", component=f"bench{c}")]
        assert buf.values == [float(f"{(i % 997) * 0.37 + 0.5:.3f}") for i in range(c, 3000, 10)]
        assert buf.weights is None
    assert one_by_one == []


def test_json_dumps_spacing_counters_gauges_and_timestamps_go_in_bulk(one_by_one):
    lines = []
    for i in range(200):
        lines.append(json.dumps({"name": "api.throughput", "value": 1, "tags": {"ep": "/a"}}))
        lines.append(json.dumps({"name": "queue_depth", "value": i, "context": {"component": "q"}}))
        lines.append(json.dumps({"name": "render", "value": i / 4, "unit": "ms"}))
    b = parsed("\n".join(lines).encode())
    assert b.accepted == 600 and not b.rejected
    assert b.counts == {SeriesKey("api.throughput", (("ep", "/a"),), COUNTER): 200.0}
    assert b.gauges == {key("queue_depth", GAUGE, component="q"): [(False, i) for i in range(200)]}
    assert b.dist[key("render")].values == [i / 4 for i in range(200)]
    stamped = [
        json.dumps({"name": "db.query_duration", "value": i, "timestamp": 1700000000000 + i})
        for i in range(100)
    ]
    b = parsed("\n".join(stamped).encode())
    assert timed(b) == [
        TimedSample(key("db.query_duration"), float(i), 1.0, (1700000000000 + i) / 1000.0)
        for i in range(100)
    ]
    assert one_by_one == []


def test_a_bad_value_among_bulk_lines_is_rejected_alone():
    lines = [bench_line(i, 2) for i in range(400)]
    lines[7] = b'{"name":"bench.s1.request_latency","value":1e999,"context":{"component":"bench1"}}'
    lines[9] = b'{"name":"bench.s1.request_latency","value":01,"context":{"component":"bench1"}}'
    lines[11] = b'{"name":"bench.s1.request_latency","value":-0,"context":{"component":"bench1"}}'
    lines[13] = (
        b'{"name":"bench.s1.request_latency","value":2e100,"context":{"component":"bench1"}}'
    )
    block = b"\n".join(lines)
    b = parsed(block)
    assert b.rejected == {REJECT_NUMBER: 2, REJECT_SYNTAX: 1}  # 01 is no JSON number
    assert b.accepted == 397
    s1 = b.dist[key("bench.s1.request_latency", component="bench1")].values
    assert 0.0 in s1 and len(s1) == 197
    assert_same(b, line_by_line(block))


def test_bad_timestamps_in_bulk_are_rejected_alone():
    lines = [
        json.dumps({"name": "x_latency", "value": 1, "timestamp": 1700000000000 + i}).encode()
        for i in range(50)
    ]
    lines[20] = b'{"name": "x_latency", "value": 1, "timestamp": -5}'
    lines[30] = b'{"name": "x_latency", "value": 1, "timestamp": 1e999}'
    lines[35] = b'{"name": "x_latency", "value": 1, "timestamp": 4102444800000}'
    lines[40] = b'{"name": "x_latency", "value": 1, "timestamp": "now"}'
    block = b"\n".join(lines)
    b = parsed(block)
    assert b.rejected == {REJECT_TIME: 3, REJECT_SYNTAX: 1} and b.accepted == 46
    assert len(timed(b)) == 46
    assert_same(b, line_by_line(block))


def test_jsonrpc_among_metric_lines_is_handed_over_in_order(one_by_one):
    reqs = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        # a "value" of its own, where metric lines have theirs
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "knobs.register",
            "params": {"name": "k", "value": 5},
        },
        {"jsonrpc": "2.0", "id": 3, "result": {"value": 32}},
    ]
    lines = [bench_line(i) for i in range(900)]
    for i, r in enumerate(reqs):
        lines[100 + 300 * i] = json.dumps(r).encode()
    b = parsed(b"\n".join(lines))
    assert b.rpc == reqs
    assert b.accepted == 900  # the server takes the requests off the count
    assert sum(len(d.values) for d in b.dist.values()) == 897
    assert sorted(one_by_one) == sorted(json.dumps(r).encode() for r in reqs)


def test_one_gauge_under_two_spellings_keeps_line_order(one_by_one):
    lines = []
    for i in range(300):
        if i % 3:
            lines.append(b'{"name":"depth","value":%d,"context":{"component":"q"}}' % i)
        else:
            lines.append(b'{"context":{"component":"q"},"value":%d,"name":"depth"}' % i)
    b = parsed(b"\n".join(lines))
    assert b.gauges == {key("depth", GAUGE, component="q"): [(False, float(i)) for i in range(300)]}
    assert one_by_one == []


def test_lines_unique_to_themselves_are_all_counted_and_not_cached():
    # As in docs/protocol.md: a timestamp and request ids in every line.
    lines = [
        json.dumps(
            {
                "name": "request_latency",
                "value": i / 8,
                "timestamp": 1700000000000 + i,
                "unit": "ms",
                "tags": {"endpoint": "/v1/chat"},
                "context": {"component": "api-server", "userId": f"u{i % 7}", "requestId": f"r{i}"},
            }
        ).encode()
        for i in range(5000)
    ]
    block = b"\n".join(lines)
    before = len(cache.JSERIES)
    b = parsed(block)
    assert b.accepted == 5000 and not b.rejected
    k = key("request_latency", endpoint="/v1/chat", component="api-server")
    assert timed(b) == [
        TimedSample(k, i / 8, 1.0, (1700000000000 + i) / 1000.0) for i in range(5000)
    ]
    assert len(cache.JSERIES) - before < 50  # not one entry per line


def protocol_line(i: int, timestamp: bool = True) -> bytes:
    """The line of docs/protocol.md as an application sends it: ids differ in every line."""
    obj = {"name": "request_latency", "value": i / 8}
    if timestamp:
        obj["timestamp"] = 1700000000000 + 7 * i
    obj |= {
        "unit": "ms",
        "tags": {"endpoint": f"/v1/{'chat' if i % 3 else 'embed'}"},
        "context": {
            "component": f"api-{i % 2}",
            "userId": f"user-{i * 7919 % 1000}@example.com",
            "sessionId": f"s{i % 13}",
            "requestId": f"{i:08x}-4b1d-9e3f-{i * 2654435761 % 2**32:08x}",
            "operation": "chat",
        },
    }
    return json.dumps(obj, separators=(",", ":") if i % 5 else (", ", ": ")).encode()


@pytest.mark.parametrize("timestamp", [True, False])
def test_ids_in_the_context_go_in_bulk(one_by_one, timestamp):
    # Only component and error_type of a context make the series: lines that differ in their
    # other context fields share a template (and with a timestamp, each keeps its own).
    block = b"\n".join(protocol_line(i, timestamp) for i in range(3000))
    b = parsed(block)
    assert b.accepted == 3000 and not b.rejected
    assert one_by_one == []
    assert_same(b, line_by_line(block))
    k = key("request_latency", endpoint="/v1/chat", component="api-1")
    if timestamp:
        assert not b.dist
        mine = [s for s in timed(b) if s.key == k]
        assert sorted(mine, key=lambda s: s.ts) == [
            TimedSample(k, i / 8, 1.0, (1700000000000 + 7 * i) / 1000.0)
            for i in range(3000)
            if i % 2 and i % 3
        ]
    else:
        assert not b.timed
        assert sorted(b.dist[k].values) == [i / 8 for i in range(3000) if i % 2 and i % 3]


def test_a_line_too_long_for_its_ids_is_rejected_though_its_template_is_short():
    lines = [protocol_line(i) for i in range(400)]
    limit = max(map(len, lines)) + 10
    lines[123] = lines[123].replace(b'"operation":"chat"', b'"operation":"' + b"x" * 250 + b'"')
    block = b"\n".join(lines)
    b = parsed(block, max_line=limit)
    assert b.rejected == {REJECT_TOO_LONG: 1} and b.accepted == 399
    assert_same(b, line_by_line(block, max_line=limit))


def test_context_fields_that_could_matter_keep_lines_apart():
    # After the ids: a second component (the last one counts), an error type, a number, an
    # escaped quote, a non-ASCII id, a nested object. Each is parsed as the per-line parser
    # does, whatever the bulk path makes of it.
    tails = [
        ', "component": "other"',
        ', "error_type": "io"',
        ', "retries": 3',
        ', "value": 9',
        ', "timestamp": 5',
        ', "note": "say \\"hi\\""',
        ', "user": "\\u00e9l\\u00e8ve"',  # a JSON escape
        ', "user": "caf\u00e9"',  # raw UTF-8 once encoded
        ', "trace": {"id": "x"}',
        ', "comp\\u006fnent": "disguised"',
        ', "id": "tab\\there"',
        ', "id": "raw\ttab"',
        "",
    ]
    lines = []
    for i in range(600):
        tail = tails[i % len(tails)]
        lines.append(
            (
                f'{{"name": "x_latency", "value": {i}, "context": {{"component": "api", '
                f'"requestId": "r{i}"{tail}}}}}'
            ).encode()
        )
    block = b"\n".join(lines)
    assert_same(parsed(block), line_by_line(block))


def test_a_value_elsewhere_in_the_line_is_not_taken_for_the_metric_s(one_by_one):
    # The value the regex finds is not the metric's: its lines go one by one.
    lines = [
        b'{"name":"x_latency","value" : 3,"context":{"component":"api","value":%d}}' % i
        for i in range(20)
    ] + [b'{"name":"y_latency","value":"12","extra":{"value":%d}}' % i for i in range(20)]
    # nor is a timestamp elsewhere the metric's
    lines += [b'{"name":"z_latency","value":1,"context":{"timestamp":%d}}' % i for i in range(20)]
    b = parsed(b"\n".join(lines))
    assert b.dist == {
        key("x_latency", component="api"): DistBuf([3.0] * 20),
        key("z_latency"): DistBuf([1.0] * 20),
    }
    assert b.rejected == {REJECT_NUMBER: 20} and not b.timed
    assert len(one_by_one) == 60


def test_too_long_json_lines_are_rejected_and_neighbours_kept():
    lines = [bench_line(i) for i in range(100)]
    lines[50] = b'{"name":"bench.s0.request_latency","value":1,"pad":"' + b"x" * 300 + b'"}'
    b = parsed(b"\n".join(lines), max_line=200)
    assert b.rejected == {REJECT_TOO_LONG: 1} and b.accepted == 99


def test_json_lines_among_statsd_lines_go_in_bulk(one_by_one):
    lines = [b"lat:%d|ms" % i for i in range(100)]
    lines[40:40] = [bench_line(i) for i in range(500)]
    b = parsed(b"\n".join(lines))
    assert b.accepted == 600 and not b.rejected
    assert one_by_one == []


def test_many_series_in_turn_are_learned_across_blocks(one_by_one):
    # 300 series in turn, 100 lines a block: no template repeats within a block.
    lines = [bench_line(i, 300) for i in range(900)]
    for start in range(0, 900, 100):
        one_by_one.clear()
        block = b"\n".join(lines[start : start + 100])
        assert_same(parsed(block), line_by_line(block))
    assert one_by_one == []  # by the third round, every line goes in bulk


def test_the_template_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(cache, "SERIES_MAX", 20)
    monkeypatch.setattr(cache, "JSEEN_MAX", 30)
    for r in range(5):
        block = b"\n".join(
            b'{"name":"s%d_latency","value":%d}' % (i % 50 + 50 * r, i) for i in range(500)
        )
        assert_same(parsed(block), line_by_line(block))
    assert len(cache.JSERIES) + len(cache.JKEYS) <= 20 + 2 * 50
    unique = [bench_line(i).replace(b"}}", b',"id":%d}}' % i) for i in range(2000)]
    assert_same(parsed(b"\n".join(unique)), line_by_line(b"\n".join(unique)))
    assert len(cache.JSEEN) <= 30


# ---------------------------------------------------------------------------------------------
# any mix of JSON lines: the same result as the per-line parser

names = st.sampled_from(
    ["request_latency", "api.Request_Latency", "job.duration", "error_count", "api.throughput",
     "queue_depth", "render", "", " "]
)  # fmt: skip
numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["0", "-0", "0.0", "-0.0", "1e5", "1E+5", "2.5e-3", "0e0", "01", "1.", ".5", "1e999",
         "-1e999", "1" * 400, "1" * 5000, "NaN", "Infinity", "true", "null", '"12"', "1_000",
         "1e100", "-1e100", "1.0000000000000002e100", "1e101", "-1e308", "9e99"]
    ),
)  # fmt: skip
stamps = st.one_of(
    st.integers(0, 5 * 10**12).map(str),
    st.sampled_from(
        ["-1", "0", "1.5e12", "null", "1e999", '"now"', "-0", "4102444800000", "4102444799999",
         "4.1024448e12", "1e20", "NaN", "1" * 400]
    ),
)  # fmt: skip
tags = st.sampled_from(
    ['{"endpoint": "/v1"}', '{"shard": 3, "canary": true}', '{"value": 5}', '{"b":"2","a":"1"}',
     "[]", '{"a": [1]}', "{}"]
)  # fmt: skip
contexts = st.sampled_from(
    ['{"component": "api"}', '{"component": "api", "requestId": "r1"}', '{"error_type": "io"}',
     '"api"', '{"component": 7}', '{"component": "api", "value": 7}',
     '{"component": "api", "timestamp": 9}',
     '{"component":"api","error_type":"io","userId":"u1","requestId":"r1"}',
     '{"component":"api","userId":"u1","component":"web"}',
     '{"component":"api","userId":"u1","error_type":"db"}',
     '{"error_type":"io","userId":"u1"}', '{"userId":"u1","requestId":"r1"}',
     '{"component":"api","userId":"u1","value":"7"}',
     '{"component":"api","userId":"u1","n":1}', '{"component":"api","": ""}']
)  # fmt: skip
# What an id may hold: plain text, or what keeps it from being cut out of a template.
plain = st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\')
ids = st.one_of(
    st.text(plain, max_size=12),
    st.sampled_from(
        ['\\"', "\\\\", "\\u0041", "\u00e9", "\t", "\x7f", "}", "{", ",", '\\"}', "\\"]
    ),
)  # fmt: skip
units = st.sampled_from(['"ms"', '"MS"', '"bytes"', "5"])


@st.composite
def json_lines(draw: st.DrawFn) -> bytes:
    fields = [("name", json.dumps(draw(names))), ("value", draw(numbers))]
    for field, strategy in (
        ("timestamp", stamps),
        ("tags", tags),
        ("context", contexts),
        ("unit", units),
        ("extra", st.sampled_from(['{"value": 2}', "[1, 2]", '"value"'])),
    ):
        if draw(st.booleans()):
            fields.append((field, draw(strategy)))
    if draw(st.integers(0, 9)) == 0:
        fields.append(("value", draw(numbers)))  # a repeated key: the last one counts
    fields = draw(st.permutations(fields))
    comma, colon = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
    text = "{" + comma.join(f'"{k}"{colon}{v}' for k, v in fields) + "}"
    pad = draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\r"]))
    return pad.encode()


other_lines = st.sampled_from(
    [
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":2,"method":"knobs.register","params":{"name":"k","value":5}}',
        b'{"name":"x","value":1',
        b'{"name":"x","value":1}}',
        b'{"name":"x","value":1} {"name":"y","value":2}',
        b'{"name":"\xff","value":1}',
        b'{"name":"x","value":1}\x0c',
        b"lat:1|ms|#component:api",
        b"g:+1|g",
        b"_sc|web|0",
        b"",
        b"   ",
    ]
)


@st.composite
def json_blocks(draw: st.DrawFn) -> list[bytes]:
    # Few distinct lines, repeated with other values, as senders do; and some unique ones.
    shapes = draw(st.lists(json_lines(), min_size=1, max_size=6))
    out = []
    for _ in range(draw(st.integers(1, 60))):
        pick = draw(st.integers(0, len(shapes) + 1))
        if pick < len(shapes):
            line = shapes[pick]
            if draw(st.booleans()):
                # Same shape, another value: change the first number after "value".
                v = draw(numbers).encode()
                head, sep, tail = line.partition(b'"value"')
                cut = next((i for i, ch in enumerate(tail) if ch in b",}"), len(tail))
                colon = tail.find(b":")
                if 0 <= colon < cut:
                    line = head + sep + tail[: colon + 1] + v + tail[cut:]
            if b'"userId":"' in line and draw(st.booleans()):
                # Same shape, another id (as a request id differs in every line).
                head, sep, tail = line.partition(b'"userId":"')
                end = tail.find(b'"')
                line = head + sep + draw(ids).encode() + tail[end:]
            out.append(line)
        elif pick == len(shapes):
            out.append(draw(json_lines()))
        else:
            out.append(draw(other_lines))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_blocks(), st.sampled_from([b"\n", b"\r\n"]))
def test_any_json_block_equals_the_per_line_parser(lines, eol):
    block = eol.join(lines)
    b = parsed(block)
    assert b.accepted + sum(b.rejected.values()) == nonblank(block)
    assert_within_rules(b)
    assert_same(b, line_by_line(block))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_blocks())
def test_any_json_block_equals_the_per_line_parser_with_short_lines_allowed(lines):
    block = b"\n".join(lines)
    assert_same(parsed(block, max_line=60), line_by_line(block, max_line=60))
