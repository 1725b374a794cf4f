"""Record and replay: what arrives on the real socket is stored with its arrival time, and a
replay through the same ingest and engine gives the same Snapshot as the live run."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import statsd
from click.testing import CliRunner
from datadog.dogstatsd import DogStatsd

from tests.conftest import RecordingMonitor
from tests.screen import screen_text
from tests.sockets import HELLO, connect, connection_stats, declare, lines, values
from vtmon import __version__
from vtmon.cli import main
from vtmon.clock import ManualClock
from vtmon.config import Config
from vtmon.engine.monitor import Monitor
from vtmon.export.recording import (
    KIND_CLOSE,
    KIND_DATA,
    KIND_OPEN,
    RECORD,
    Recorder,
    RecordingError,
    RecordingReader,
    read_recording,
)
from vtmon.export.replay import NullCollector, NullSensors, ReplayEndpoint, replay_into
from vtmon.ingest.server import IngestServer
from vtmon.model import Batch
from vtmon.protocol.jsonrpc import rpc_call

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "api-slowdown.vtmrec"
START = 1_700_000_000.0  # ManualClock's default start


def _monitor(clock: ManualClock, cls: type[Monitor] = Monitor) -> Monitor:
    # No machine readings on either side: the comparison is about what came in on the socket.
    return cls(
        Config(),
        clock=clock,
        socket_path="test.sock",
        collector=NullCollector(),
        sensors=NullSensors(),
    )


class CloseWatch:
    """The server's recorder callback: records, and lets a test wait for connection closes."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.closed = 0
        self._cond = threading.Condition()

    def __call__(self, conn: int, kind: int, data: bytes) -> None:
        self.recorder(conn, kind, data)
        if kind == KIND_CLOSE:
            with self._cond:
                self.closed += 1
                self._cond.notify_all()

    def wait_closed(self, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.closed >= n, timeout):
                raise AssertionError(f"{self.closed} of {n} connections closed")


def _tick_at(clock: ManualClock, monitor: Monitor, t: float) -> None:
    clock.advance(t - clock.time())
    monitor.tick()


# -- replay equals live ----------------------------------------------------------------------


def test_replay_equals_live(sock_dir: Path, tmp_path: Path) -> None:
    clock = ManualClock()
    t0 = clock.time()
    live = _monitor(clock, RecordingMonitor)
    assert isinstance(live, RecordingMonitor)
    path = tmp_path / "live.vtmrec"
    watch = CloseWatch(Recorder(path, clock=clock, socket_path="test.sock"))
    srv = IngestServer(sock_dir / "vtmon.sock", live, recorder=watch)
    srv.start()
    sock = os.fspath(srv.path)
    try:
        live.tick()  # the running engine ticks once as it starts, then every second
        # 0.25 s: pystatsd, newline framing, one write per metric.
        clock.advance(0.25)
        client = statsd.UnixSocketStatsClient(sock)
        for v in (5, 10, 15, 20, 35):
            client.timing("terminal.command_latency", v)
        client.incr("terminal.throughput", 4)
        client.gauge("terminal.queue_depth", 7)
        client.close()
        watch.wait_closed(1)
        live.drain()
        # 1.5 s: JSON lines on a connection that stays open across ticks, a line split across
        # two writes, bad lines; timed samples from the JSON timestamps.
        _tick_at(clock, live, t0 + 1)
        clock.advance(0.5)
        raw = connect(srv.path)
        for i, v in enumerate((80.0, 95.5, 120.0)):
            line = {
                "name": "request_latency",
                "value": v,
                "timestamp": (t0 + 1 + i * 0.1) * 1000,
                "unit": "ms",
                "context": {"component": "api-server", "requestId": f"r{i}"},
            }
            raw.sendall(json.dumps(line).encode() + b"\n")
        raw.sendall(b'{"name":"error_count","value":1,"tags":{"error_type":"time')
        raw.sendall(b'out"},"context":{"component":"api-server"}}\nnope\nx:abc|ms\ny:1|zz\n')
        assert connection_stats(raw)["rejected"] == {
            "bad syntax": 1,
            "bad number": 1,
            "unknown type": 1,
        }
        live.drain()
        # 2.3 s: DogStatsD, 4-byte length prefix framing.
        _tick_at(clock, live, t0 + 2)
        clock.advance(0.3)
        dd = DogStatsd(socket_path=sock, disable_telemetry=True)
        for v in (100, 200, 300, 4000):
            dd.distribution("voice.transcribe_latency", v, tags=["component:voice-engine"])
        dd.increment("voice.error_count", tags=["component:voice-engine", "error_type:timeout"])
        dd.increment("voice.throughput", 10, tags=["component:voice-engine"])
        dd.event("Deploy", "voice 1.2 rolled out", tags=["component:voice-engine"])
        dd.flush()
        dd.close_socket()
        watch.wait_closed(2)
        # Binary frames after a hello, a lines frame among them.
        b = connect(srv.path)
        b.sendall(json.dumps(HELLO).encode() + b"\n")
        assert b'"result"' in b.recv(4096)
        b.sendall(declare(3, 1, b"api.render_latency|#component:api-server"))
        b.sendall(values(3, [4.5, 6.0, 250.0]) + lines(b"api.throughput:3|c"))
        b.close()
        watch.wait_closed(3)
        live.drain()
        # 3.7 s: the JSON connection ends with an unterminated line (counted at the close).
        _tick_at(clock, live, t0 + 3)
        clock.advance(0.7)
        raw.sendall(b"api.request_latency:130|ms|#component:api-server\napi.request_latency:1")
        raw.close()
        watch.wait_closed(4)
        live.drain()
        for s in range(4, 9):  # past the first detector evaluation
            _tick_at(clock, live, t0 + s)
    finally:
        srv.stop()
        watch.recorder.close()
    want = live.latest
    assert want is not None
    assert want.ingest.accepted == 23 and want.ingest.connections_total == 4

    clock2 = ManualClock()
    fresh = _monitor(clock2)
    stats = replay_into(fresh, path, clock2)
    got = fresh.latest
    assert stats.note == "" and not stats.stopped
    assert stats.connections == 4 and stats.ticks == 9
    assert got is not None and got.t == want.t
    # Series statistics, errors, ingest counters, events, analysis: the whole Snapshot.
    assert got.series == want.series
    assert got.errors == want.errors
    assert got.ingest == want.ingest
    assert got == want
    # The DogStatsD connection's reads are stored as they came, length prefixes and all.
    frames = [r for r in read_recording(path).records if r.kind == KIND_DATA]
    framed = next(f.conn for f in frames if b"\x00" in f.data[:4])
    assert b"voice.transcribe_latency" in b"".join(f.data for f in frames if f.conn == framed)


# -- the file --------------------------------------------------------------------------------


def _write(path: Path, clock: ManualClock, *, close: bool = True) -> Recorder:
    """A small recording written through the recorder's callback (no socket needed)."""
    rec = Recorder(path, clock=clock, socket_path="/run/app.sock")
    rec(1, KIND_OPEN, b"")
    rec(1, KIND_DATA, b"a.latency:5|ms\na.lat")
    clock.advance(0.5)
    rec(1, KIND_DATA, b"ency:7|ms\n")
    clock.advance(1.0)
    rec(2, KIND_OPEN, b"")
    rec(2, KIND_DATA, struct.pack("<I", 14) + b"b.latency:9|ms")
    rec(1, KIND_CLOSE, b"")
    if close:
        rec.close()
    else:
        rec.flush()  # what the writer thread does every half second
    return rec


def test_file_format_is_the_documented_one(tmp_path: Path) -> None:
    path = tmp_path / "r.vtmrec"
    rec = _write(path, ManualClock())
    raw = path.read_bytes()
    magic, header, body = raw.split(b"\n", 2)
    assert magic == b"VTMREC 1"
    head = json.loads(header)
    assert head["format"] == "vtmon recording" and head["version"] == 1
    assert head["started"] == START and head["socket"] == "/run/app.sock"
    assert {"host", "vtmon"} <= set(head)
    assert RECORD.unpack_from(body, 0) == (START, 1, KIND_OPEN, 0)
    assert RECORD.unpack_from(body, RECORD.size) == (START, 1, KIND_DATA, 20)
    assert body[2 * RECORD.size : 2 * RECORD.size + 20] == b"a.latency:5|ms\na.lat"
    assert os.stat(path).st_mode & 0o777 == 0o600
    r = read_recording(path)
    assert [(x.t - START, x.conn, x.kind) for x in r.records] == [
        (0.0, 1, KIND_OPEN),
        (0.0, 1, KIND_DATA),
        (0.5, 1, KIND_DATA),
        (1.5, 2, KIND_OPEN),
        (1.5, 2, KIND_DATA),
        (1.5, 1, KIND_CLOSE),
    ]
    assert r.end == START + 1.5 and r.note == ""
    assert rec.summary() == f"Recorded 48 bytes in 3 reads from 2 connections to {path}."


def test_killed_recorder_leaves_a_readable_recording(tmp_path: Path) -> None:
    """vtmon killed: the file holds what was flushed, without the end mark; a last record cut
    in the middle is dropped. Both replay with a one-line note, never a traceback."""
    path = tmp_path / "killed.vtmrec"
    rec = _write(path, ManualClock(), close=False)
    flushed = path.read_bytes()
    rec.close()
    path.write_bytes(flushed)
    r = read_recording(path)
    assert len(r.records) == 6 and r.end is None
    assert "cut short (it has no end mark" in r.note and "\n" not in r.note
    path.write_bytes(flushed[:-3])  # the close record of connection 1, cut
    r = read_recording(path)
    assert len(r.records) == 5
    assert "cut short (it ends in the middle of a record" in r.note
    assert "replayed the 5 complete records" in r.note
    clock = ManualClock()
    m = _monitor(clock)
    stats = replay_into(m, path, clock)
    assert stats.note == r.note
    assert m.latest is not None
    counts = {s.name: s.windows["1m"].count for s in m.latest.series}
    assert counts == {"a.latency": 2, "b.latency": 1}
    assert m.latest.ingest.connections == 2  # the recording stopped while they were open


def test_damaged_record_stops_the_replay_there(tmp_path: Path) -> None:
    path = tmp_path / "d.vtmrec"
    _write(path, ManualClock())
    raw = bytearray(path.read_bytes())
    body = raw.index(b"\n", raw.index(b"\n") + 1) + 1
    second = body + RECORD.size  # the first data record claims 2 GB
    raw[second + 13 : second + 17] = struct.pack("<I", 2**31)
    path.write_bytes(bytes(raw))
    r = read_recording(path)
    assert len(r.records) == 1
    assert r.note == "d.vtmrec: record 2 is damaged; replayed the 1 records before it."


def test_gzip_when_the_name_ends_in_gz(tmp_path: Path) -> None:
    plain = tmp_path / "r.vtmrec"
    packed = tmp_path / "r.vtmrec.gz"
    _write(plain, ManualClock())
    rec = _write(packed, ManualClock(), close=False)
    flushed = packed.read_bytes()  # each flush is a sync point: readable while recording
    rec.close()
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert read_recording(packed).records == read_recording(plain).records
    cut = tmp_path / "cut.vtmrec.gz"
    cut.write_bytes(flushed)
    r = read_recording(cut)
    assert r.records == read_recording(plain).records and "cut short" in r.note
    # Recognised from the content, whatever the name.
    other = tmp_path / "renamed.vtmrec"
    other.write_bytes(packed.read_bytes())
    assert read_recording(other).records == read_recording(plain).records


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "There is no recording at"),
        (b"", "is not a vtmon recording (it does not start with VTMREC)"),
        (b"api.request_latency:12.5|ms\n" * 50, "is not a vtmon recording"),
        (bytes(range(256)) * 8, "is not a vtmon recording"),
        (gzip.compress(b"hello\n"), "is not a vtmon recording"),
        (b"\x1f\x8b\x08\x00garbage", "is not a vtmon recording (a damaged gzip file)"),
        (
            b"VTMREC 2\n{}\n",
            f"version 2 vtmon recording; this vtmon ({__version__}) reads version 1",
        ),
        (b"VTMREC 1\nnot json\n", "is a damaged vtmon recording (its header is unreadable)"),
        (b"VTMREC 1\n{}\n", "is a damaged vtmon recording (no start time)"),
    ],
)
def test_bad_files_are_one_sentence(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.vtmrec"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordingError) as e:
        RecordingReader(path)
    assert message in str(e.value) and str(path) in str(e.value)
    assert str(e.value).endswith(".") and "\n" not in str(e.value)


def test_existing_recording_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keep.vtmrec"
    path.write_bytes(b"precious")
    with pytest.raises(
        RecordingError, match="already exists; choose another name, or pass --force"
    ):
        Recorder(path)
    assert path.read_bytes() == b"precious"
    Recorder(path, overwrite=True).close()
    assert read_recording(path).records == ()


# -- pacing ----------------------------------------------------------------------------------


class _WhenApplied(Monitor):
    """Notes the wall clock's reading as each batch arrives."""

    def __init__(self, clock: ManualClock, wall: ManualClock) -> None:
        machine: dict = {"collector": NullCollector(), "sensors": NullSensors()}
        super().__init__(Config(), clock=clock, **machine)
        self.wall = wall
        self.arrivals: list[tuple[float, float]] = []  # (recorded time, wall offset)
        self.stop_after: int | None = None
        self.stop = threading.Event()

    def submit(self, batch: Batch, timeout: float = 5.0) -> bool:
        self.arrivals.append((self.clock.time() - START, self.wall.monotonic() - 1000.0))
        if self.stop_after is not None and len(self.arrivals) >= self.stop_after:
            self.stop.set()
        return super().submit(batch, timeout)


def _spread(path: Path) -> None:
    clock = ManualClock()
    rec = Recorder(path, clock=clock)
    for at in (0.5, 2.0, 10.0):
        clock.advance(at - (clock.time() - START))
        rec(1, KIND_DATA, b"p.latency:%d|ms\n" % int(at * 10))
    rec.close()


@pytest.mark.parametrize(("speed", "factor"), [(1.0, 1.0), (4.0, 0.25), (0.5, 2.0)])
def test_speed_paces_on_the_wall_clock(tmp_path: Path, speed: float, factor: float) -> None:
    path = tmp_path / "spread.vtmrec"
    _spread(path)
    clock, wall = ManualClock(), ManualClock()
    m = _WhenApplied(clock, wall)
    stats = replay_into(m, path, clock, speed, wall=wall)
    assert m.arrivals == [(0.5, 0.5 * factor), (2.0, 2.0 * factor), (10.0, 10.0 * factor)]
    assert stats.ticks == 11  # every recorded second, 0 to 10
    assert wall.monotonic() - 1000.0 == 10.0 * factor


@pytest.mark.parametrize("speed", [None, 0.0, float("inf")])
def test_max_speed_does_not_wait_but_keeps_recorded_time(tmp_path: Path, speed) -> None:
    path = tmp_path / "spread.vtmrec"
    _spread(path)
    clock, wall = ManualClock(), ManualClock()
    m = _WhenApplied(clock, wall)
    replay_into(m, path, clock, speed, wall=wall)
    assert m.arrivals == [(0.5, 0.0), (2.0, 0.0), (10.0, 0.0)]
    assert m.latest is not None and m.latest.t == START + 10.0
    (row,) = m.latest.series
    assert row.windows["10s"].count == 2  # seconds 1 to 10: not the one at 0.5 s
    assert row.windows["1m"].count == 3


def test_stop_ends_the_replay_early(tmp_path: Path) -> None:
    path = tmp_path / "spread.vtmrec"
    _spread(path)
    clock, wall = ManualClock(), ManualClock()
    m = _WhenApplied(clock, wall)
    m.stop_after = 2
    stats = replay_into(m, path, clock, 1.0, wall=wall, stop=m.stop)
    assert stats.stopped and stats.records == 2 and len(m.arrivals) == 2


def _jumped(path: Path) -> None:
    """Two reads, then the recording engine's clock jumps 10 hours (a suspend, a clock step),
    then two more reads."""
    clock = ManualClock()
    rec = Recorder(path, clock=clock)
    for at in (0.5, 2.0, 36_002.0, 36_003.0):
        clock.advance(at - (clock.time() - START))
        rec(1, KIND_DATA, b"p.latency:%d|ms\n" % int(at))
    rec.close()


@pytest.mark.parametrize("speed", [1.0, None])
def test_a_jump_in_recorded_time_replays_as_one_minute(tmp_path: Path, speed) -> None:
    path = tmp_path / "jumped.vtmrec"
    _jumped(path)
    clock, wall = ManualClock(), ManualClock()
    m = _WhenApplied(clock, wall)
    stats = replay_into(m, path, clock, speed, wall=wall)
    # the 10 hours became 60 s, on the engine's clock and on the wall clock alike
    paced = [0.5, 2.0, 62.0, 63.0] if speed else [0.0] * 4
    assert m.arrivals == list(zip([0.5, 2.0, 62.0, 63.0], paced, strict=True))
    assert wall.monotonic() - 1000.0 == (63.0 if speed else 0.0)
    assert stats.ticks == 64  # every replayed second, 0 to 63, not 36,004
    assert m.latest is not None and m.latest.t == START + 63.0
    assert m.latest.series[0].windows["1m"].count == 2  # the two reads after the jump
    assert stats.end - stats.start == 63.0
    assert "(a 10 h 0 min jump in its timestamps was replayed as 60 s)." in stats.summary()


# -- a recording as a test fixture -----------------------------------------------------------


def make_fixture(path: Path = FIXTURE) -> None:
    """Write tests/data/api-slowdown.vtmrec: 60 s of api-server traffic through the real socket,
    10 requests a second at 40 ms, then from second 20 on at 350 ms (3.5x its 100 ms target).

        python -c "from tests.test_recording import make_fixture; make_fixture()"
    """
    clock = ManualClock()
    monitor = _monitor(clock, RecordingMonitor)
    with tempfile.TemporaryDirectory(prefix="vt-") as d:
        rec = Recorder(
            path, clock=clock, socket_path="/run/user/1000/vtmon/vtmon.sock", overwrite=True
        )
        with IngestServer(Path(d) / "s.sock", monitor, recorder=rec) as srv:
            s = connect(srv.path)
            for sec in range(60):
                clock.advance(0.5)
                ms = 40 if sec < 20 else 350
                lines = [
                    f"api.request_latency:{ms + i}|ms|#component:api-server,endpoint:/v1/chat"
                    for i in range(10)
                ]
                lines.append("api.throughput:10|c|#component:api-server")
                s.sendall(("\n".join(lines) + "\n").encode())
                connection_stats(s)
                clock.advance(0.5)
            s.close()
        rec.close()


def test_fixture_recording_shows_the_slowdown_detection() -> None:
    clock = ManualClock(0.0)
    m = _monitor(clock)
    stats = replay_into(m, FIXTURE, clock)
    snap = m.latest
    assert snap is not None and stats.note == ""
    assert stats.start == START and snap.t == pytest.approx(START + 60.0)
    (lat,) = [s for s in snap.series if s.name == "api.request_latency"]
    assert lat.windows["1m"].count == 590  # seconds 1 to 60
    assert lat.windows["5m"].count == 600
    assert lat.windows["10s"].p50 == pytest.approx(354.5, rel=0.02)
    (b,) = [b for b in snap.bottlenecks if b.id == "latency:api-server"]
    assert b.severity.value == "high"
    # Pending from the first evaluation after the slowdown at second 20, fired 15 s later.
    assert START + 20 < b.started <= START + 30
    assert b.resolved is None


async def test_fixture_recording_drives_the_screen() -> None:
    from vtmon.tui.app import VtmonApp

    clock = ManualClock(0.0)
    m = _monitor(clock)
    m.watching = "replay of api-slowdown.vtmrec (max speed)"
    app = VtmonApp(m)
    async with app.run_test(size=(140, 40)) as pilot:
        replay_into(m, FIXTURE, clock, end_text="replay of api-slowdown.vtmrec (ended)")
        await pilot.pause()
        text = screen_text(app)
    assert "replay of api-slowdown.vtmrec (ended)" in text
    assert "api.request_latency" in text
    assert "api-server p95 latency" in text


# -- the command line ------------------------------------------------------------------------


def test_replay_help_explains_speed_and_serve() -> None:
    out = CliRunner().invoke(main, ["replay", "--help"]).output
    for word in ("--speed", "--serve", "--socket", "--config", "max", "recorded"):
        assert word in out
    assert "replay" in CliRunner().invoke(main, ["--help"]).output
    assert "--force" in CliRunner().invoke(main, ["record", "--help"]).output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "There is no recording at"),
        (b"garbage\n", "is not a vtmon recording"),
        (b"VTMREC 9\n{}\n", "is a version 9 vtmon recording"),
    ],
)
def test_replay_of_a_bad_file_is_one_sentence_and_exit_2(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "x.vtmrec"
    if content is not None:
        path.write_bytes(content)
    res = CliRunner().invoke(main, ["replay", str(path), "--serve"])
    assert res.exit_code == 2
    assert message in res.output
    assert res.output.count("\n") == 1 and "Traceback" not in res.output


def test_bad_speed_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["replay", str(FIXTURE), "--speed", "fast"])
    assert res.exit_code == 2 and "Invalid value for '--speed'" in res.output


def test_record_refuses_to_overwrite(tmp_path: Path, sock_dir: Path) -> None:
    path = tmp_path / "r.vtmrec"
    path.write_text("keep")
    res = CliRunner().invoke(main, ["record", str(path), "--socket", str(sock_dir / "s.sock")])
    assert res.exit_code == 1 and "already exists" in res.output
    assert path.read_text() == "keep"


def _vtmon(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vtmon.cli", *args], stderr=subprocess.PIPE, text=True
    )


def test_record_then_replay_from_the_command_line(sock_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "cli.vtmrec"
    live = sock_dir / "live.sock"
    proc = _vtmon("record", str(path), "--socket", str(live))
    try:
        assert (
            proc.stderr.readline()
            == f"vtmon recording everything that arrives on {live} to {path}.\n"
        )
        assert "vtmon serving on" in proc.stderr.readline()  # listening now
        # DogStatsD's framing (a 4-byte length before each packet), then this connection's
        # counters, asked in a frame too: answered once the server has read everything before.
        framed = connect(live)
        packets = [b"api.request_latency:%d|ms|#component:api-server" % v for v in (10, 20, 30)]
        packets.append(b'{"jsonrpc":"2.0","id":99,"method":"connection.stats"}')
        framed.sendall(b"".join(struct.pack("<I", len(p)) + p for p in packets))
        answer = json.loads(framed.makefile("rb").readline())
        assert answer["result"] == {"accepted": 3, "rejected": {}}
        framed.close()
        s = connect(live)
        s.sendall(b"api.request_latency:40|ms|#component:api-server\nbad\n")
        assert connection_stats(s) == {"accepted": 1, "rejected": {"bad syntax": 1}}
        s.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    summary, stopped = err.splitlines()[-2:]
    assert summary.startswith("Recorded ") and summary.endswith(f"from 2 connections to {path}.")
    assert stopped == "vtmon stopped."

    # Cut the end mark off, as if vtmon had been killed: still replays, with a note.
    path.write_bytes(path.read_bytes()[: -RECORD.size])
    served = sock_dir / "replay.sock"
    # A config that admits others to the live socket: a replay's socket stays its user's.
    shared = tmp_path / "shared.toml"
    shared.write_text("[server]\nsocket_mode = 0o666\n")
    proc = _vtmon(
        "replay", str(path), "--speed", "max", "--serve", "--socket", str(served),
        "--config", str(shared),
    )  # fmt: skip
    try:
        assert "vtmon replay of cli.vtmrec (max speed) on" in proc.stderr.readline()
        assert served.stat().st_mode & 0o777 == 0o600
        note = proc.stderr.readline()
        assert note.startswith("Note: cli.vtmrec was cut short (it has no end mark")
        done = proc.stderr.readline()
        assert done.startswith("Replay finished. Replayed")
        assert f"Serving its final state on {served} until Ctrl-C." in done
        snap = rpc_call(served, "snapshot")
        (row,) = [r for r in snap["series"] if r["name"] == "api.request_latency"]
        assert row["windows"]["1m"]["count"] == 4
        assert snap["ingest"]["rejected"] == {"bad syntax": 1}
        assert snap["watching"] == "replay of cli.vtmrec (max speed, finished)"
        assert rpc_call(served, "ping") == "pong"
        with pytest.raises(RuntimeError, match="replays a recording"):
            rpc_call(served, "client.dropped", {"count": 3})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_recording_of_nothing_is_not_kept(sock_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.vtmrec"
    proc = _vtmon("--record", str(path), "serve", "--socket", str(sock_dir / "e.sock"))
    try:
        assert "vtmon recording everything" in proc.stderr.readline()
        assert "vtmon serving on" in proc.stderr.readline()
        assert path.exists()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"Nothing arrived on the socket, so {path} was not kept." in err
    assert not path.exists()


def test_replay_socket_ignores_live_metrics(clock: ManualClock) -> None:
    m = _monitor(clock)
    endpoint = ReplayEndpoint(m)
    b = Batch(accepted=2)
    assert endpoint.submit(b)
    assert endpoint.ignored_lines == 2 and m.drain() == 0
    assert endpoint.handle_rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"})["result"] == "pong"
