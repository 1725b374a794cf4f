"""The command line as a user meets it: serve, snapshot, send, errors in one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.serve import send
from vtmon.cli import main


def test_socket_path_resolution_order(monkeypatch, tmp_path):
    runner = CliRunner()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    out = runner.invoke(main, ["socket"]).output.strip()
    assert out == f"/tmp/vtmon-{os.getuid()}/vtmon.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runner.invoke(main, ["socket"]).output.strip() == f"{tmp_path}/vtmon/vtmon.sock"
    monkeypatch.setenv("VTMON_SOCKET", "/x/env.sock")
    assert runner.invoke(main, ["socket"]).output.strip() == "/x/env.sock"
    assert runner.invoke(main, ["socket", "--socket", "/y/s.sock"]).output.strip() == "/y/s.sock"


def test_snapshot_with_nothing_running_is_one_sentence(sock_dir):
    res = CliRunner().invoke(main, ["snapshot", "--socket", str(sock_dir / "none.sock")])
    assert res.exit_code == 1
    assert "No vtmon is listening on" in res.output
    assert "Traceback" not in res.output


def test_bad_config_is_one_sentence(tmp_path, sock_dir):
    bad = tmp_path / "bad.toml"
    bad.write_text("[components.api-server]\ntarget_ms = -5\n")
    res = CliRunner().invoke(main, ["serve", "--socket", str(sock_dir / "s"), "--config", str(bad)])
    assert res.exit_code == 1
    assert "target_ms must be a number above 0" in res.output
    missing = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert "does not exist" in missing.output


def test_send_reports_accepted_and_rejected(server, monitor):
    res = CliRunner().invoke(
        main,
        ["send", "--socket", str(server.path)],
        input=b"api.request_latency:12.5|ms\napi.request_latency:bad|ms\nno-newline.latency:3|ms",
    )
    assert "vtmon accepted 2 lines, rejected 1 (1 bad number)." in res.output
    assert res.exit_code == 1
    snap = monitor.tick()
    names = {s.name for s in snap.series}
    assert {"api.request_latency", "no-newline.latency"} <= names


def test_send_with_requests_in_its_input_reads_their_answers_as_it_goes(server, monitor):
    # Far more answers than vtmon lets wait unread before it stops reading the connection.
    pings = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % i for i in range(20_000))
    res = CliRunner().invoke(
        main, ["send", "--socket", str(server.path)], input=pings + b"api.request_latency:1|ms\n"
    )
    assert res.output == "vtmon accepted 1 line.\n"
    assert res.exit_code == 0


def test_send_counts_an_over_long_request_and_goes_on(server, monitor):
    # vtmon answers a too-long request with an error of id null; that is no refusal of the
    # connection, and the lines after it are sent and counted.
    long_request = b'{"jsonrpc":"2.0","id":1,"method":"ping","pad":"' + b"x" * 70_000 + b'"}'
    res = CliRunner().invoke(
        main, ["send", "--socket", str(server.path)], input=long_request + b"\napi.x_latency:1|ms\n"
    )
    assert "vtmon accepted 1 line, rejected 1 (1 too long)." in res.output


def test_config_example_is_valid(tmp_path):
    from vtmon.config import load_config

    text = CliRunner().invoke(main, ["config", "--example"]).output
    f = tmp_path / "c.toml"
    f.write_text(text)
    cfg = load_config(f)
    assert cfg.target_ms("checkout") == 300
    assert cfg.target_ms("anything-else") == 100


def test_help_explains_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("demo", "serve", "snapshot", "send", "socket", "config"):
        assert cmd in out
    assert "--socket" in CliRunner().invoke(main, ["serve", "--help"]).output


def test_serve_headless_then_snapshot_then_sigterm(sock_dir):
    path = sock_dir / "serve.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtmon.cli", "serve", "--socket", str(path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stderr.readline()  # blocks until it is listening
        assert f"vtmon serving on {path}" in first
        sent = send(path, "voice.transcribe_latency:250|ms|#component:voice-engine\n")
        assert "vtmon accepted 1 line." in sent.stderr
        second = subprocess.Popen(
            [sys.executable, "-m", "vtmon.cli", "serve", "--socket", str(path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert "Another vtmon is already listening" in err
        snap = subprocess.run(
            [sys.executable, "-m", "vtmon.cli", "snapshot", "--socket", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        data = json.loads(snap.stdout)
        assert data["socket"] == str(path)
        assert {"series", "resources", "sensors", "ingest"} <= set(data)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not Path(path).exists()


@pytest.mark.parametrize("cmd", [["send"], ["snapshot"]])
def test_commands_take_socket_option(cmd):
    assert "--socket" in CliRunner().invoke(main, [*cmd, "--help"]).output


def test_options_before_the_command_count(monkeypatch):
    out = CliRunner().invoke(main, ["--socket", "/z/g.sock", "socket"]).output.strip()
    assert out == "/z/g.sock"


def test_pid_that_does_not_exist_is_one_sentence(sock_dir):
    res = CliRunner().invoke(
        main, ["serve", "--socket", str(sock_dir / "p.sock"), "--pid", "999999"]
    )
    assert res.exit_code == 1
    assert "No process has pid 999999" in res.output
