"""Limits of a real `vtmon serve`: its open-file limit, connections beyond `[limits]
max_connections`, and log lines that repeat. The child processes run with an open-file limit
the test sets, so that it is reached with a few dozen connections."""

from __future__ import annotations

import io
import logging
import resource
import select
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.serve import poll, send, serve
from tests.sockets import connect, connection_stats, read_json
from vtmon.client import Client
from vtmon.clock import ManualClock
from vtmon.ingest.server import IngestServer
from vtmon.process import RepeatFilter
from vtmon.protocol.jsonrpc import rpc_call

STATS = b'{"jsonrpc":"2.0","id":99,"method":"connection.stats"}\n'
INGEST = b'{"jsonrpc":"2.0","id":7,"method":"ingest"}\n'


class Calls:
    """``rpc_call`` on new connections, counting every connection it opens."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.opened = 0

    def __call__(self, method: str) -> Any:
        self.opened += 1
        return rpc_call(self.sock, method, timeout=5)


def test_serving_raises_the_soft_open_file_limit_to_the_hard_one(sock_dir, tmp_path, procs):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip("needs a finite hard limit on open files above 64")
    procs.append(
        proc := serve(sock_dir / "v.sock", tmp_path / "data", "--no-history", open_files=(64, hard))
    )
    assert psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)


def test_connections_beyond_the_cap_are_refused_told_why_and_counted(sock_dir, tmp_path, procs):
    sock = sock_dir / "v.sock"
    log = tmp_path / "serve.log"
    config = tmp_path / "vtmon.toml"
    config.write_text("[limits]\nmax_connections = 30\n")
    procs.append(
        serve(
            sock,
            tmp_path / "data",
            "--no-history",
            "--config",
            str(config),
            log=log,
            open_files=(100, 100),
        )
    )
    held = [connect(sock) for _ in range(30)]
    for s in held:
        assert connection_stats(s) == {"accepted": 0, "rejected": {}}  # each one is served
    beyond = [connect(sock) for _ in range(25)]
    for s in beyond:
        error = read_json(s)["error"]
        assert error["message"] == (
            "vtmon already has 30 connections open ([limits] max_connections); this one is closed."
        )
        assert s.recv(100) == b""  # and closed at once
        s.close()
    sent = send(sock, "app.requests:1|c\n")
    assert (sent.returncode, sent.stderr) == (
        1,
        "Error: vtmon already has 30 connections open ([limits] max_connections); "
        "this one is closed.\n",
    )
    s = held[0]
    s.sendall(b"app.requests:1|c\n")
    assert connection_stats(s)["accepted"] == 1  # the 30 are still served
    for s in held:
        s.close()

    call = Calls(sock)
    assert poll("vtmon to answer again", lambda: call("ping")) == "pong"
    ingest = call("ingest")
    # Every connection is counted once: served, or refused at the cap.
    assert ingest["refused"] + ingest["connections_total"] == 30 + 25 + 1 + call.opened
    assert ingest["refused"] >= 26
    snap = poll("a Snapshot that counts them", lambda: _refused_in_snapshot(call, 26))
    assert snap["ingest"]["connections_total"] >= 30
    text = log.read_text()
    assert text.count("Refused a connection") == 1, text  # once, not 25 times
    assert "Traceback" not in text and len(text.encode()) < 2_000


def test_vtmon_client_says_why_it_was_refused(sock_dir, monitor):
    srv = IngestServer(sock_dir / "v.sock", monitor, max_connections=1)
    srv.start()
    held = connect(srv.path)
    client = Client(str(srv.path))
    try:
        assert connection_stats(held) == {"accepted": 0, "rejected": {}}
        client.record("app.request_latency", 1.0)
        said = poll("the client to say why", lambda: client.last_error)
        assert "[limits] max_connections" in said
        assert client.buffered == 1  # kept for when there is room
        held.close()
        assert poll("the sample to go out", lambda: client.sent == 1)
    finally:
        client.close(1.0)
        srv.stop()


def _refused_in_snapshot(call: Calls, n: int) -> dict[str, Any] | None:
    snap = call("snapshot")
    return snap if snap["ingest"]["refused"] >= n else None


def test_out_of_files_vtmon_waits_and_says_so_once(sock_dir, tmp_path, procs):
    sock = sock_dir / "v.sock"
    log = tmp_path / "serve.log"
    limit = 40
    procs.append(
        proc := serve(sock, tmp_path / "data", "--no-history", log=log, open_files=(limit, limit))
    )
    child = psutil.Process(proc.pid)
    # More connections than vtmon has files for: the rest wait in the socket's backlog (128).
    flood = [connect(sock) for _ in range(3 * limit)]
    for s in flood:
        s.sendall(STATS)  # a connection vtmon took answers
    poll("vtmon to run out of files", lambda: child.num_fds() >= limit)
    control = poll("a connection vtmon took", lambda: _answered(flood))
    read_json(control)
    others = [s for s in flood if s is not control]

    def taken() -> int:
        control.sendall(INGEST)
        return int(read_json(control)["result"]["connections_total"])

    # Five times: free one file, and see vtmon take one more waiting connection, which it can
    # only do by trying again after accept failed for want of a file.
    for _ in range(5):
        before = taken()
        victim = poll("another connection vtmon took", lambda: _answered(others))
        others.remove(victim)
        victim.close()
        poll("vtmon to take a waiting connection", lambda n=before: taken() > n)

    for s in flood:
        s.close()
    call = Calls(sock)
    assert poll("vtmon to answer after the flood", lambda: call("ping")) == "pong"
    ingest = call("ingest")
    assert ingest["refused"] == 0  # beyond the files, connections wait: none is lost
    assert ingest["connections_total"] == 3 * limit + call.opened
    text = log.read_text()
    said = [line for line in text.splitlines() if "Cannot accept connections" in line]
    assert len(said) == 1, text[:3000]  # six times out of files, said once
    assert "no file descriptor left" in said[0]
    assert "Traceback" not in text and len(text.encode()) < 2_000, text[:3000]


def _answered(socks: list[socket.socket]) -> socket.socket | None:
    """One of ``socks`` with an answer waiting to be read, if any arrives within 0.1 s."""
    ready = select.select(socks, [], [], 0.1)[0]
    return ready[0] if ready else None


# ---------------------------------------------------------------------------------------------
# one filter for every repeated log line


@pytest.fixture
def logged() -> Any:
    """A logger whose lines go through a RepeatFilter (60 s, a ManualClock) into a buffer."""
    clock = ManualClock()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(RepeatFilter(60.0, clock=clock.monotonic))
    logger = logging.getLogger("vtmon.test.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, clock, out
    logger.removeHandler(handler)


def test_a_repeated_line_is_said_once_a_period_with_how_many_were_held_back(logged):
    logger, clock, out = logged
    for fd in range(1000):
        logger.warning("Cannot accept connections (fd %d)", fd)
        clock.advance(0.01)
    logger.warning("Something else")  # another message is not held back by the first
    assert out.getvalue().splitlines() == [
        "vtmon.test.repeat: Cannot accept connections (fd 0)",
        "vtmon.test.repeat: Something else",
    ]
    clock.advance(51.0)  # 61 s after the first
    logger.warning("Cannot accept connections (fd %d)", 1000)
    logger.warning("Cannot accept connections (fd %d)", 1001)
    assert out.getvalue().splitlines()[2:] == [
        "vtmon.test.repeat: Cannot accept connections (fd 1000) "
        "(999 more like this in the last 61s)"
    ]
    clock.advance(61.0)
    logger.warning("Cannot accept connections (fd %d)", 1002)
    assert out.getvalue().splitlines()[3:] == [
        "vtmon.test.repeat: Cannot accept connections (fd 1002) (1 more like this in the last 61s)"
    ]


def test_the_same_message_with_another_exception_is_not_held_back(logged):
    logger, clock, out = logged
    for exc in (OSError("a"), OSError("b"), ValueError("c")):
        try:
            raise exc
        except Exception:
            logger.exception("rpc failed")
    text = out.getvalue()
    assert text.count("rpc failed") == 2 and text.count("Traceback") == 2
    assert "OSError: a" in text and "ValueError: c" in text and "OSError: b" not in text
