"""Nobody else gets in: the socket's folder is checked before vtmon serves or anyone connects
(vtmon.protocol.access), and a peer of another uid may send metrics and keep its own knobs but
never steer or read (docs/security.md)."""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import RecordingMonitor
from tests.outcomes import Outcomes
from tests.sockets import connection_stats
from tests.test_knobs import POOL, App, action
from vtmon.cli import main
from vtmon.client import Client
from vtmon.ingest.server import IngestServer, SocketError, peer_uid
from vtmon.protocol.access import UnsafeFolder, check_folder
from vtmon.protocol.jsonrpc import rpc_call
from vtmon.tuning.actuators import KnobActuator

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def one_sentence(text: str) -> str:
    """The one line of an error a person reads: no traceback, one sentence."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert lines[0].endswith("."), text
    return lines[0]


def cli_error(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    line = one_sentence(res.output)
    assert line.startswith("Error: ")
    return line


def serve_error(args: list[str]) -> str:
    """What `vtmon serve ARGS` says when it cannot start (in a process of its own: a serve
    that did start would wait for a signal)."""
    proc = subprocess.run(
        [sys.executable, "-m", "vtmon.cli", "serve", "--no-history", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stderr
    line = one_sentence(proc.stderr)
    assert line.startswith("Error: ")
    return line


@pytest.fixture
def nogroup() -> grp.struct_group:
    return grp.getgrgid(NOBODY) if _has_gid(NOBODY) else grp.getgrgid(os.getegid())


def _has_gid(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False


# -- 4. the socket's folder -----------------------------------------------------------------------


def test_the_server_refuses_a_folder_others_can_write(sock_dir: Path, monitor) -> None:
    folder = sock_dir / "open"
    folder.mkdir()
    folder.chmod(0o777)  # as another user pre-creating /tmp/vtmon-$UID would leave it
    with pytest.raises(SocketError) as e:
        IngestServer(folder / "vtmon.sock", monitor).start()
    said = one_sentence(str(e.value))
    assert f"The socket folder {folder} can be written by other users (mode 0777)" in said
    assert "pass --socket" in said
    assert os.listdir(folder) == []  # nothing was bound there


def test_the_server_never_follows_a_symlinked_folder(sock_dir: Path, monitor) -> None:
    theirs = sock_dir / "theirs"
    theirs.mkdir(mode=0o700)
    link = sock_dir / "vtmon-0"
    link.symlink_to(theirs)
    with pytest.raises(SocketError, match="is a symbolic link, which vtmon never follows"):
        IngestServer(link / "vtmon.sock", monitor).start()
    assert os.listdir(theirs) == []


def test_the_server_refuses_a_folder_of_another_user(sock_dir: Path, monitor) -> None:
    folder = sock_dir / "vtmon-0"
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(SocketError) as e:
        IngestServer(folder / "vtmon.sock", monitor).start()
    assert f"belongs to uid {NOBODY}, not to this user (uid {os.geteuid()})" in one_sentence(
        str(e.value)
    )
    assert os.listdir(folder) == []


def test_vtmon_serve_in_a_bad_folder_is_one_sentence(sock_dir: Path) -> None:
    folder = sock_dir / "open"
    folder.mkdir()
    folder.chmod(0o777)
    line = serve_error(["--socket", str(folder / "vtmon.sock")])
    assert "can be written by other users" in line


@pytest.mark.parametrize(
    ("socket_mode", "folder_mode"), [(0o660, 0o710), (0o666, 0o711), (0o600, 0o700)]
)
def test_a_socket_for_a_group_gets_a_folder_it_can_pass_but_not_write(
    sock_dir: Path, monitor, nogroup: grp.struct_group, socket_mode: int, folder_mode: int
) -> None:
    path = sock_dir / "svc" / "deeper" / "vtmon.sock"
    srv = IngestServer(path, monitor, socket_mode=socket_mode, socket_group=nogroup.gr_name)
    with srv:
        assert mode(path) == socket_mode
        assert mode(path.parent) == folder_mode
        assert os.lstat(path).st_gid == nogroup.gr_gid
        assert os.lstat(path.parent).st_gid == nogroup.gr_gid
        assert rpc_call(path, "ping") == "pong"


def test_a_gid_works_as_well_as_a_group_name(sock_dir: Path, monitor, nogroup) -> None:
    path = sock_dir / "svc" / "vtmon.sock"
    with IngestServer(path, monitor, socket_mode=0o660, socket_group=nogroup.gr_gid):
        assert os.lstat(path).st_gid == nogroup.gr_gid


def test_an_unknown_group_is_one_sentence_at_start(sock_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "vtmon.toml"
    cfg.write_text('[server]\nsocket_mode = 0o660\nsocket_group = "no-such-group-here"\n')
    line = serve_error(["--config", str(cfg), "--socket", str(sock_dir / "s" / "vtmon.sock")])
    assert "There is no group 'no-such-group-here' ([server] socket_group)" in line
    assert not (sock_dir / "s").exists()


@pytest.fixture
def reopened(sock_dir: Path, monitor) -> Iterator[Path]:
    """A live vtmon whose folder was then opened to everyone (chmod 0777 after it started),
    as someone who could write the folder would leave it after putting their socket there."""
    path = sock_dir / "run" / "vtmon.sock"
    with IngestServer(path, monitor):
        path.parent.chmod(0o777)
        yield path


def test_the_client_does_not_connect_through_a_folder_others_can_write(
    reopened: Path, monitor: RecordingMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vtmon.client")
    client = Client(reopened, max_buffer=100, flush_interval=0.01)
    try:
        for i in range(150):
            client.record("app.latency", float(i))
        assert not client.flush(timeout=1.0)
        assert not client.connected
        assert "can be written by other users (mode 0777)" in client.last_error
        # as when vtmon is away: kept up to the bound, the oldest dropped and counted
        assert client.buffered <= 100 and client.dropped + client.buffered == 150
        assert client.sent == 0
    finally:
        client.close(timeout=0)
    warned = [r for r in caplog.records if "does not connect" in r.getMessage()]
    assert len(warned) == 1, warned  # once, though the sender retried
    assert monitor.connections.total == 0


def test_cli_commands_refuse_a_folder_others_can_write(reopened: Path) -> None:
    for args in (
        ["snapshot"],
        ["approve", "a1"],
        ["reject", "a1"],
        ["revert", "--all"],
        ["send"],
    ):
        line = cli_error([*args, "--socket", str(reopened)])
        assert f"The socket folder {reopened.parent} can be written by other users" in line


def test_a_guessed_path_must_be_the_callers_a_named_one_may_be_a_service_users(
    sock_dir: Path, monitor: RecordingMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sock_dir / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    path = runtime / "vtmon" / "vtmon.sock"  # where the client looks by default
    with IngestServer(path, monitor, socket_mode=0o666):
        os.chown(path.parent, NOBODY, NOBODY)  # a service user's folder, 0711
        guessed = Client(flush_interval=0.01)
        named = Client(path, flush_interval=0.01)
        try:
            guessed.record("guessed.latency", 1.0)
            named.record("named.latency", 1.0)
            assert not guessed.flush(timeout=0.5)
            assert f"belongs to uid {NOBODY}" in guessed.last_error
            assert named.flush(timeout=10)
        finally:
            guessed.close(timeout=0)
            named.close(timeout=0)
        line = cli_error(["snapshot"])
        assert f"The socket folder {path.parent} belongs to uid {NOBODY}" in line
        monkeypatch.setenv("VTMON_SOCKET", str(path))  # named through the environment
        assert CliRunner().invoke(main, ["snapshot"]).exit_code == 0


def test_one_check_serves_server_client_and_cli(sock_dir: Path) -> None:
    folder = sock_dir / "root-owned"
    folder.mkdir(mode=0o755)
    os.chown(folder, 0, 0)
    sock = folder / "vtmon.sock"
    check_folder(sock)  # a client trusts root's folder
    if os.geteuid() != 0:
        with pytest.raises(UnsafeFolder):
            check_folder(sock, serving=True)
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(UnsafeFolder, match="belongs to uid"):
        check_folder(sock)
    check_folder(sock, named=True)
    with pytest.raises(UnsafeFolder, match="belongs to uid"):
        check_folder(sock, serving=True)
    check_folder(sock_dir / "missing" / "vtmon.sock", serving=True)  # nothing to trust yet


# -- 5. only the owner steers ------------------------------------------------------------------


def test_the_kernel_names_the_peer(sock_dir: Path) -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_uid(a) == os.geteuid()
    assert peer_uid(None) is None


def test_without_credentials_only_a_private_socket_vouches(sock_dir: Path, monitor) -> None:
    assert IngestServer(sock_dir / "a.sock", monitor).is_owner(None)
    assert not IngestServer(sock_dir / "b.sock", monitor, socket_mode=0o660).is_owner(None)
    assert IngestServer(sock_dir / "c.sock", monitor).is_owner(os.geteuid())
    assert not IngestServer(sock_dir / "d.sock", monitor).is_owner(NOBODY)


def _run_as(uid: int, work: Callable[[Callable[[Any], None]], None]) -> Iterator[Any]:
    """Run ``work(say)`` in a forked child that took ``uid``; yields what it says, in order."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

            def say(obj: Any) -> None:
                os.write(w, json.dumps(obj).encode() + b"\n")

            work(say)
            code = 0
        except BaseException as e:  # told to the parent, which fails the test with it
            os.write(w, json.dumps({"child failed": repr(e)}).encode() + b"\n")
        finally:
            os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            for line in f:
                got = json.loads(line)
                assert not (isinstance(got, dict) and "child failed" in got), got
                yield got
    finally:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


OTHER_UID_CALLS: list[tuple[str, Any]] = [
    ("ping", None),
    ("client.dropped", {"count": 3}),
    ("knobs.register", POOL),
    ("knobs.register", {**POOL, "name": "api.spare", "value": 1, "min": 0, "max": 2}),
    ("knobs.unregister", {"name": "api.spare"}),
    ("snapshot", None),
    ("ingest", None),
    ("knobs.list", None),
    ("actions.list", None),
    ("tuner.mode", None),
    ("tuner.mode", {"actuator": "knob", "mode": "auto"}),
    ("actions.approve", {"id": "a1"}),
    ("actions.reject", {"id": "a1"}),
    ("actions.revert", {"all": True}),
    ("some.later.method", None),
]
ANSWERED = {"ping", "client.dropped", "knobs.register", "knobs.unregister"}


def test_another_uid_sends_metrics_and_keeps_its_knobs_but_never_steers_or_reads(
    sock_dir: Path, monitor: RecordingMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vtmon.engine.monitor")
    # The tests run as root here and in CI: a real second uid is always available.
    assert os.geteuid() == 0, "run the suite as root: this test takes uid 65534"
    sock_dir.chmod(0o711)  # the test's own folder; vtmon makes the one below it
    path = sock_dir / "svc" / "vtmon.sock"

    def app(say: Callable[[Any], None]) -> None:
        a = App(path)
        a.s.sendall(b"app.request_latency:12|ms|#component:api-server\n")
        say({"answers": [a.call(m, p) for m, p in OTHER_UID_CALLS]})
        say({"stats": connection_stats(a.s)})
        req = a.recv()  # the set of the knob it registered, when the tuner sends it
        a.answer(req, {"value": req["params"]["value"]})
        say({"set": req})
        a.settled()
        a.close()

    with IngestServer(path, monitor, socket_mode=0o666):
        mode_before = monitor.tuner.modes()
        child = _run_as(NOBODY, app)
        answers = next(child)["answers"]
        for (method, _), resp in zip(OTHER_UID_CALLS, answers, strict=True):
            if method in ANSWERED:
                assert "result" in resp, (method, resp)
            else:
                err = resp["error"]
                assert err["code"] == -32001, (method, resp)
                assert err["message"] == (
                    f"Only vtmon's own user may call {method}; uid {NOBODY} may send metrics, "
                    "ping and register its own knobs."
                )
        assert next(child)["stats"] == {"accepted": 1, "rejected": {}}
        refused = sorted({m for m, _ in OTHER_UID_CALLS} - ANSWERED)
        assert sorted(r.getMessage() for r in caplog.records) == [
            f"Refused {m!r} from uid {NOBODY}: only vtmon's own user may call it." for m in refused
        ]  # once each: tuner.mode, called twice, is logged once
        assert monitor.tuner.modes() == mode_before  # tuner.mode with params was refused
        assert monitor.connections.client_dropped == 3
        assert [k.name for k in monitor.knobs.knobs()] == ["api.db_pool_size"]
        # The owner reads and steers as before, and its knob set reaches the other uid's app.
        owner = App(path)
        try:
            assert "result" in owner.call("snapshot")
            assert owner.call("tuner.mode")["result"]["modes"] == mode_before
            done = Outcomes()
            KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
            assert next(child)["set"]["params"]["value"] == 32
            assert done.wait().ok
            assert owner.nothing_arrives()  # the set went to the registering connection only
        finally:
            owner.close()
        list(child)  # the child ends
    (row,) = [s for s in monitor.tick().series if s.name == "app.request_latency"]
    assert row.windows["1m"].count == 1


def test_an_answer_to_a_set_from_another_connection_is_ignored(
    server: IngestServer, monitor: RecordingMonitor
) -> None:
    holder, other = App(server.path), App(server.path)
    try:
        holder.register(**POOL)
        done = Outcomes()
        KnobActuator(monitor.knobs).apply(action("api.db_pool_size", 32, 16), done)
        req = holder.recv()
        assert other.nothing_arrives()
        other.answer(req, {"value": 64})  # a guess at the id, from the wrong connection
        other.settled()
        assert done.got == [] and monitor.knobs.in_flight() == 1
        holder.answer(req, {"value": 32})
        assert done.wait().value == 32
    finally:
        holder.close()
        other.close()
