"""netdata as bench/series.py's peer: installed when missing (root, apt-get), run with only
its statsd plugin and its own charts, fed the same load over TCP, checked through its API.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
from series_load import Load, measure


@dataclass
class Netdata:
    """netdata's figures for one N."""

    idle: float = math.nan  # % of one core
    loaded: float = math.nan
    rss: float = math.nan
    sent: int = 0
    events: float = math.nan  # timer events netdata's statsd counted while the lines came
    metrics: float = math.nan  # timer metrics it holds
    note: str = ""

    @property
    def above_idle(self) -> float:
        return self.loaded - self.idle

    @property
    def received(self) -> bool:
        """Whether its statsd counted every line sent (its chart is in events a second,
        summed: a rounding error is allowed, nothing more)."""
        return abs(self.events - self.sent) < max(1.0, 1e-4 * self.sent)


def netdata_binary() -> tuple[str | None, str]:
    """The netdata binary, installed with apt-get when missing and allowed; else why not."""
    found = shutil.which("netdata") or shutil.which("netdata", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found, ""
    if not shutil.which("apt-get"):
        return None, "no netdata binary and no apt-get to install it"
    if os.geteuid() != 0:
        return None, "no netdata binary, and installing it needs root"
    print("netdata is missing: apt-get install -y netdata", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "netdata"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return None, f"`{' '.join(cmd)}` failed: {' '.join(tail)}"
    found = shutil.which("netdata", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    return (found, "") if found else (None, "apt-get installed netdata but no binary was found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netdata_conf(folder: Path, web: int, statsd: int, n: int) -> Path:
    """A netdata.conf whose every file is in ``folder``: statsd and netdata's own charts
    only, the web API on loopback, a private chart for each of the N series."""
    for sub in ("conf", "cache", "lib/cloud.d", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "lib/cloud.d/cloud.conf").write_text("[global]\n  enabled = no\n")
    (folder / "conf/.opt-out-from-anonymous-statistics").touch()
    off = (
        "proc",
        "diskspace",
        "cgroups",
        "tc",
        "idlejitter",
        "timex",
        "apps",
        "python.d",
        "charts.d",
    )
    plugins = "".join(f"  {p} = no\n" for p in off)
    conf = folder / "netdata.conf"
    conf.write_text(
        "[global]\n  run as user = root\n  hostname = vtmon-bench\n"
        "[db]\n  update every = 1\n"
        f"[directories]\n  config = {folder}/conf\n  cache = {folder}/cache\n"
        f"  lib = {folder}/lib\n  home = {folder}/lib\n  log = {folder}/log\n"
        f"[logs]\n  debug log = {folder}/log/debug.log\n  error log = {folder}/log/error.log\n"
        "  access log = none\n"
        "[health]\n  enabled = no\n[ml]\n  enabled = no\n"
        f"[web]\n  bind to = 127.0.0.1:{web}\n"
        f"[plugins]\n  enable running new plugins = no\n{plugins}"
        "  statsd = yes\n  netdata monitoring = yes\n"
        f"[statsd]\n  bind to = tcp:127.0.0.1:{statsd}\n  update every (flushInterval) = 1\n"
        f"  max private charts hard limit = {max(1000, n)}\n"
    )
    return conf


def api(web: int, query: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/{query}", timeout=10) as r:
        return json.loads(r.read())


def per_second(web: int, chart: str, dim: str, since: float) -> list[float]:
    """The values of one dimension of a netdata chart, a point a second from ``since`` on
    (points not collected left out)."""
    got = api(web, f"data?chart={chart}&dimension={dim}&after={int(since)}&format=json&options=abs")
    return [float(row[1]) for row in got["data"] if row[1] is not None]


def run_netdata(
    binary: str, n: int, rate: float, warmup: float, seconds: float, idle: float
) -> Netdata:
    """netdata's CPU idle for ``idle`` s, then under the load of N series at ``rate`` (after
    ``warmup`` s) for ``seconds``; what its statsd counted. Stopped and removed afterwards."""
    nd = Netdata()
    folder = Path(tempfile.mkdtemp(prefix="vtmon-bench-netdata-"))
    web, statsd = free_port(), free_port()
    conf = netdata_conf(folder, web, statsd, n)
    log = open(folder / "log/stdout.log", "wb")  # noqa: SIM115 -- closed below, after the process
    popen = subprocess.Popen(
        [binary, "-D", "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DO_NOT_TRACK": "1"},
        start_new_session=True,
    )
    try:
        proc = psutil.Process(popen.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                api(web, "info")
                socket.create_connection(("127.0.0.1", statsd), timeout=1).close()
                break
            except OSError:
                if popen.poll() is not None or time.monotonic() > deadline:
                    nd.note = "netdata did not come up: " + last_error(folder)
                    return nd
                time.sleep(0.2)
        time.sleep(2)  # its start-up work done before idle is read
        nd.idle, _ = measure(proc, idle)
        load = Load.start(("127.0.0.1", statsd), n, rate)
        time.sleep(warmup)
        nd.loaded, nd.rss = measure(proc, seconds)
        nd.sent, _counts, t0_wall, error = load.finish()
        time.sleep(3)  # the last second's events reach its charts
        # events/s, a point a second: their sum from before the first line is the count
        nd.events = sum(per_second(web, "netdata.statsd_events", "timers", t0_wall - 5))
        nd.metrics = max(per_second(web, "netdata.statsd_metrics", "timers", time.time() - 5))
        if error:
            nd.note = f"sender: {error}"
    except (OSError, ValueError, KeyError, IndexError) as e:
        nd.note = f"{type(e).__name__}: {e}"
    finally:
        stop_netdata(popen)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    return nd


def last_error(folder: Path) -> str:
    try:
        lines = (folder / "log/error.log").read_text(errors="replace").splitlines()
    except OSError:
        return "no error log"
    return lines[-1] if lines else "an empty error log"


def stop_netdata(popen: subprocess.Popen) -> None:
    """SIGTERM to netdata (it stops its spawn server itself); its process group killed only
    if it is still there after 30 s."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)
