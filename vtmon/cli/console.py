"""The ``vtmon`` command: the console, the headless server, and small tools around the socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import platformdirs

from vtmon import __version__
from vtmon.config import APP, EXAMPLE_CONFIG, Config, ConfigError, load_config
from vtmon.protocol import jsonrpc
from vtmon.protocol.access import resolve_socket_path

SOCKET_HELP = (
    "Unix socket to serve or talk to. Default: $VTMON_SOCKET, else "
    "$XDG_RUNTIME_DIR/vtmon/vtmon.sock, else /tmp/vtmon-$UID/vtmon.sock."
)
CONFIG_HELP = "TOML config file (latency targets, limits). Default: the user config folder."


def socket_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--socket", "socket_path", metavar="PATH", help=SOCKET_HELP)(f)


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_file", metavar="FILE", help=CONFIG_HELP)(f)


def pid_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--pid",
        type=int,
        metavar="PID",
        help="Also watch this process (its CPU and memory; the CPU rule covers it).",
    )(f)


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from vtmon.export.prometheus import parse_listen

    try:
        return parse_listen(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def prometheus_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--prometheus",
        metavar="HOST:PORT",
        callback=_listen,
        help="Serve /metrics for Prometheus on HOST:PORT (PORT or :PORT: loopback; "
        "0.0.0.0:PORT: every interface). Off by default.",
    )(f)


def record_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--record",
        "record_file",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also record everything that arrives on the socket into FILE (see `vtmon record`).",
    )(f)


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:  # given here, or before the command (meta is shared by the whole chain)
            ctx.meta[f"vtmon.{name}"] = value

    return store


def history_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir`` and ``--no-history``; read back by ``_open_store``."""
    f = click.option(
        "--no-history",
        is_flag=True,
        expose_value=False,
        callback=_remember("no_history"),
        help="Keep history in memory only: nothing is written to disk.",
    )(f)
    return click.option(
        "--data-dir",
        metavar="DIR",
        expose_value=False,
        callback=_remember("data_dir"),
        help="Keep history (an SQLite file: vtmon.db, demo.db for the demo) in DIR. "
        "Default: the user data folder, e.g. ~/.local/share/vtmon. If DIR cannot be "
        "written, vtmon runs in memory and says so.",
    )(f)


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@socket_option
@config_option
@pid_option
@history_options
@prometheus_option
@record_option
@click.version_option(__version__, prog_name="vtmon")
@click.pass_context
def main(
    ctx: click.Context,
    socket_path: str | None,
    config_file: str | None,
    pid: int | None,
    prometheus: tuple[str, int] | None,
    record_file: Path | None,
) -> None:
    """Watch and tune an application's performance from the terminal.

    With no command, opens the console on the socket. Applications send StatsD/DogStatsD
    lines, JSON lines or use vtmon.client; for example:

    \b
      echo "api.request_latency:12.5|ms|#component:api-server" \\
          | socat - UNIX-CONNECT:"$(vtmon socket)"
      some_app | vtmon send

    Keys in the console: ? help, q quit.
    """
    # Options given before the command (`vtmon --socket S demo`) count for the command too.
    ctx.obj = {"socket": socket_path, "config": config_file, "pid": pid}
    ctx.obj["prometheus"] = prometheus
    ctx.obj["record"] = record_file
    if ctx.invoked_subcommand is None:
        _console(
            socket_path,
            config_file,
            demo=False,
            pid=pid,
            prometheus=prometheus,
            record_file=record_file,
        )


def _root_opt(name: str) -> Any:
    return (click.get_current_context().find_root().obj or {}).get(name)


def _inherit(socket_path: str | None, config_file: str | None = None) -> tuple[str | None, ...]:
    return socket_path or _root_opt("socket"), config_file or _root_opt("config")


@main.command()
@socket_option
@config_option
@pid_option
@history_options
@prometheus_option
def demo(
    socket_path: str | None,
    config_file: str | None,
    pid: int | None,
    prometheus: tuple[str, int] | None,
) -> None:
    """Open the console fed by a built-in voice-terminal workload.

    The workload (voice-engine, terminal-processor, api-server) sends through the real
    socket, with an incident every three minutes. It uses its own socket (demo.sock beside
    the default one) so that it never collides with a running vtmon.
    """
    socket_path, config_file = _inherit(socket_path, config_file)
    if socket_path is None:
        socket_path = str(resolve_socket_path(None).parent / "demo.sock")
    _console(
        socket_path,
        config_file,
        demo=True,
        pid=pid or _root_opt("pid"),
        prometheus=prometheus or _root_opt("prometheus"),
    )


@main.command()
@socket_option
@config_option
@pid_option
@history_options
@prometheus_option
@record_option
@click.option(
    "--keep-applied",
    is_flag=True,
    help="Keep the tuning actions a previous run left applied (found in the journal) instead "
    "of reverting them; they are listed, and `vtmon revert` undoes them.",
)
def serve(
    socket_path: str | None,
    config_file: str | None,
    pid: int | None,
    prometheus: tuple[str, int] | None,
    record_file: Path | None,
    keep_applied: bool = False,
) -> None:
    """Run the engine with no screen (servers, CI, scripts) until Ctrl-C or SIGTERM.

    Read its state with `vtmon snapshot`; approve, reject and revert tuning actions with
    `vtmon approve ID`, `vtmon reject ID`, `vtmon revert ID`. On Ctrl-C or SIGTERM it reverts
    every tuning action it applied before it exits. Actions a previous run left applied (it
    was killed) are reverted at start, unless --keep-applied.
    """
    socket_path, config_file = _inherit(socket_path, config_file)
    _log_to_stderr()
    cfg = _load(config_file)
    path = resolve_socket_path(socket_path)
    recorder = _recorder(record_file or _root_opt("record"), path)
    monitor, server = _start_engine(
        cfg,
        path,
        f"metrics on {path}",
        pid or _root_opt("pid"),
        prometheus=prometheus or _root_opt("prometheus"),
        recorder=recorder,
        recovery="keep" if keep_applied else "revert",
    )
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(
        f"vtmon serving on {path}; `vtmon snapshot --socket {path}` reads its state.", err=True
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        monitor.stop_tuning()  # reverts what it applied: the applications are still connected
        server.stop()
        monitor.stop()
        _finish_recording(recorder)
    click.echo("vtmon stopped.", err=True)


@main.command()
@socket_option
@click.option("--history", is_flag=True, help="Include the chart history of every series.")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented output.")
def snapshot(socket_path: str | None, history: bool, compact: bool) -> None:
    """Print the running vtmon's current state as one JSON object.

    The schema is described in docs/snapshot.md.
    """
    from vtmon.protocol.jsonrpc import rpc_call

    path = _running(socket_path)
    try:
        result = rpc_call(path, "snapshot", {"history": history})
    except (FileNotFoundError, ConnectionRefusedError):
        raise click.ClickException(_not_running(path)) from None
    except (OSError, ConnectionError, ValueError, RuntimeError) as e:
        raise click.ClickException(f"Could not read a snapshot from {path}: {e}") from None
    click.echo(json.dumps(result, indent=None if compact else 2))


@main.command()
@socket_option
@click.option("--quiet", "-q", is_flag=True, help="Print no summary.")
def send(socket_path: str | None, quiet: bool) -> None:
    """Send standard input to vtmon, line by line, as it arrives.

    Every line is StatsD/DogStatsD or JSON. At the end a summary on standard error says how
    many lines vtmon accepted and why any were rejected; the exit status is 1 when some were.

    \b
      some_app | vtmon send
      printf 'api.request_latency:12.5|ms\\n' | vtmon send
    """
    path = _running(socket_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise click.ClickException(_not_running(path)) from None
    except OSError as e:
        raise click.ClickException(f"Cannot connect to {path}: {e.strerror}.") from None
    stdin = sys.stdin.buffer
    last = b"\n"
    # Answers to requests in the input are read (and skipped) while it is sent: vtmon stops
    # reading a connection whose answers are not read.
    got: dict[str, Any] = {}
    reader = threading.Thread(target=_read_stats, args=(s, got), daemon=True)
    reader.start()
    try:
        while True:
            chunk = stdin.read1(1 << 16) if hasattr(stdin, "read1") else stdin.read(1 << 16)
            if not chunk:
                break
            s.sendall(chunk)
            last = chunk[-1:]
        if last != b"\n":
            s.sendall(b"\n")  # end the last line so it is not glued to the stats request
        req = jsonrpc.request("connection.stats", rid="send")
        s.sendall(json.dumps(req).encode() + b"\n")
        reader.join(10)
        if "error" in got or "stats" not in got:
            raise got.get("error", TimeoutError("no answer within 10 s"))
        stats = got["stats"]
    except _Refused as e:
        raise click.ClickException(str(e)) from None
    except (BrokenPipeError, ConnectionResetError):
        reader.join(2)  # the reader may have read why vtmon closed the connection
        err = got.get("error")
        why = str(err) if isinstance(err, _Refused) else f"vtmon on {path} closed the connection."
        raise click.ClickException(why) from None
    except (OSError, ValueError) as e:
        raise click.ClickException(f"Lost the connection to {path}: {e}.") from None
    finally:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # wakes the reader if it still waits
        s.close()
    result = stats.get("result", {})
    rejected: dict[str, int] = result.get("rejected", {})
    if not quiet:
        n = result.get("accepted", 0)
        msg = f"vtmon accepted {n} line{'' if n == 1 else 's'}"
        if rejected:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(rejected.items()))
            msg += f", rejected {sum(rejected.values())} ({reasons})"
        click.echo(msg + ".", err=True)
    if rejected:
        sys.exit(1)


@main.command("socket")
@socket_option
def socket_cmd(socket_path: str | None) -> None:
    """Print the socket path vtmon uses (for scripts: socat - UNIX-CONNECT:"$(vtmon socket)")."""
    socket_path = _inherit(socket_path)[0]
    click.echo(str(resolve_socket_path(socket_path)))


@main.command()
@click.option("--example", is_flag=True, help="Print an example config file.")
def config(example: bool) -> None:
    """Show where the config file is read from, or print an example."""
    from vtmon.config import default_config_path

    if example:
        click.echo(EXAMPLE_CONFIG, nl=False)
        return
    p = default_config_path()
    click.echo(f"{p} ({'exists' if p.exists() else 'not present: defaults apply'})")


class _ReportError(click.ClickException):
    exit_code = 2


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``1h30m``, ``2d``, ``1w`` (a bare number is seconds) in seconds;
    ValueError when it is none of these or not positive."""
    import re

    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        total = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(text)
        total = sum(float(n) * _UNITS_S[u] for n, u in parts)
    if not 0 < total < float("inf"):
        raise ValueError(text)
    return total


def _parse_time(text: str, option: str) -> float:
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _ReportError(
            f"{option} takes an ISO 8601 time such as 2026-11-27T14:00 (local time) or "
            f"2026-11-27T14:00+01:00; got {text!r}."
        ) from None
    return when.astimezone().timestamp() if when.tzinfo is None else when.timestamp()


def _report_period(since: str | None, start: str | None, end: str | None) -> tuple[float, float]:
    import time

    if since is not None and (start is not None or end is not None):
        raise _ReportError("Give either --since or --from/--to, not both.")
    now = time.time()
    if since is not None:
        try:
            return now - parse_duration(since), now
        except ValueError:
            raise _ReportError(
                f"--since takes a duration such as 30m, 1h, 1h30m or 2d; got {since!r}."
            ) from None
    t1 = _parse_time(end, "--to") if end is not None else now
    t0 = _parse_time(start, "--from") if start is not None else t1 - 3600.0
    if t0 >= t1:
        raise _ReportError("The period is empty: --from must be before --to.")
    return t0, t1


@main.command()
@click.option(
    "--since",
    metavar="DURATION",
    help="Report on the last DURATION: 30m, 1h, 1h30m, 2d, 1w. Default: 1h.",
)
@click.option(
    "--from",
    "start",
    metavar="TIME",
    help="Start of the period, ISO 8601: 2026-11-27T14:00 (local time) or with an offset.",
)
@click.option("--to", "end", metavar="TIME", help="End of the period (ISO 8601). Default: now.")
@click.option(
    "--data-dir",
    metavar="DIR",
    expose_value=False,
    callback=_remember("data_dir"),
    help="The folder holding the history file (vtmon.db). Default: the user data folder.",
)
@click.option("--demo", "demo_db", is_flag=True, help="Report on the demo's history (demo.db).")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the report to FILE (- for standard output). "
    "Default: vtmon-report-<date>-<time>.<format> in the current folder.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "json"]),
    default="html",
    show_default=True,
    help="html: one self-contained page to open, print or send; json: the same content.",
)
@config_option
def report(
    since: str | None,
    start: str | None,
    end: str | None,
    demo_db: bool,
    output: Path | None,
    fmt: str,
    config_file: str | None,
) -> None:
    """Write the report of a period from the stored history: one HTML file, no network.

    How each component performed (latency percentiles against targets, resources), what went
    wrong (bottlenecks, alerts, regressions, forecasts), what was changed and whether it
    helped. Needs no running vtmon. The console's `e` key writes the same report.

    \b
      vtmon report                          # the last hour
      vtmon report --since 24h -o day.html
      vtmon report --from 2026-11-27T09:00 --to 2026-11-27T12:00 --format json
    """
    import time

    from vtmon.report import NoData, build_report, default_name, render_html, render_json
    from vtmon.report import write_report as write
    from vtmon.store.db import DB_NAME, DEMO_DB_NAME, HistoryStore

    config_file = _inherit(None, config_file)[1]
    t0, t1 = _report_period(since, start, end)
    cfg = _load(config_file)
    ctx = click.get_current_context()
    named = ctx.meta.get("vtmon.data_dir")
    data_dir = Path(named or platformdirs.user_data_dir(APP))
    name = DEMO_DB_NAME if demo_db else DB_NAME
    if not (data_dir / name).is_file():
        if not demo_db and (data_dir / DEMO_DB_NAME).is_file():
            raise _ReportError(
                f"There is no history file {data_dir / name}, only the demo's "
                f"({DEMO_DB_NAME}): pass --demo to report on it."
            )
        raise _ReportError(
            f"There is no history file {data_dir / name}: vtmon keeps one while it runs "
            "(`vtmon`, `vtmon serve`); pass --data-dir for another folder."
        )
    path = data_dir / name

    def build(store: HistoryStore) -> dict[str, Any] | None:
        try:
            return build_report(store, t0, t1, config=cfg, source=str(path))
        except NoData as e:
            if store.damaged or store.changed:  # nothing read because of it
                return None
            raise _ReportError(str(e)) from None

    for _ in range(2):  # again when a vtmon started writing the file while it was read
        # Read-only: a report changes nothing, not even a damaged file (vtmon moves that aside).
        store = HistoryStore.open_read_only(path, cfg.retention)
        try:
            if not store.persistent and not store.damaged:
                raise _ReportError(f"Cannot read {path}: {store.warning}.")
            data = None if store.damaged else build(store)
        finally:
            store.close()
        if not store.changed:
            break
    if data is None or store.damaged or store.changed:
        why = store.damaged or "it changed while it was read"
        raise _ReportError(
            f"The history file {path} is damaged ({why}), so no report was written; it is "
            "left as it is (the next vtmon to start moves it aside and starts a new one)."
        )
    text = render_json(data) if fmt == "json" else render_html(data)
    if output is not None and str(output) == "-":
        click.echo(text, nl=False)
        return
    path = output or Path(default_name(time.time(), fmt))
    try:
        write(text, path, private=output is None)  # a path the user named is theirs to share
    except OSError as e:
        raise click.ClickException(f"Cannot write {path}: {e.strerror or e}.") from None
    size = len(text.encode()) / 1024
    click.echo(
        f"Wrote the report of {data['period']['duration_s'] / 60:.0f} min to {path} "
        f"({size:,.0f} KiB).",
        err=True,
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@socket_option
@config_option
@pid_option
@click.option("--force", is_flag=True, help="Overwrite FILE when it exists.")
@click.pass_context
def record(
    ctx: click.Context,
    file: Path,
    socket_path: str | None,
    config_file: str | None,
    pid: int | None,
    force: bool,
) -> None:
    """Serve like `vtmon serve` and record everything that arrives on the socket into FILE.

    Every read of every connection is stored with its arrival time, so `vtmon replay FILE`
    plays it back through the same ingest and engine. A FILE ending in .gz is compressed.
    Stop with Ctrl-C or SIGTERM; the format is in docs/recording.md. `vtmon --record FILE`
    records from the console.
    """
    ctx.meta["vtmon.record.overwrite"] = force
    ctx.invoke(serve, socket_path=socket_path, config_file=config_file, pid=pid, record_file=file)


def _recorder(file: Path | None, path: Path) -> Any:
    """A Recorder for ``--record FILE`` (None without it), finished when the command ends."""
    if file is None:
        return None
    from vtmon.export.recording import Recorder, RecordingError

    ctx = click.get_current_context()
    try:
        rec = Recorder(
            file, socket_path=str(path), overwrite=ctx.meta.get("vtmon.record.overwrite", False)
        )
    except RecordingError as e:
        raise click.ClickException(str(e)) from None
    ctx.call_on_close(lambda: _finish_recording(rec))
    click.echo(f"vtmon recording everything that arrives on {path} to {file}.", err=True)
    return rec


def _finish_recording(rec: Any) -> None:
    """Close the recording (after the server stopped) and say what it holds; idempotent."""
    if rec is None or getattr(rec, "finished", False):
        return
    rec.finished = True
    rec.close()
    if rec.error:
        raise click.ClickException(rec.error)
    if rec.connections == 0:
        rec.path.unlink(missing_ok=True)
        click.echo(f"Nothing arrived on the socket, so {rec.path} was not kept.", err=True)
        return
    click.echo(rec.summary(), err=True)


class _BadRecording(click.ClickException):
    exit_code = 2


def _speed(ctx: click.Context, param: click.Parameter, value: str) -> float:
    if value.strip().lower() == "max":
        return 0.0
    try:
        n = float(value)
    except ValueError:
        n = -1.0
    if not 0 <= n < float("inf"):
        raise click.BadParameter("give a number (2 is twice as fast; 0 is max) or max.")
    return n


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--speed",
    default="1",
    callback=_speed,
    metavar="N",
    help="Play N times as fast as recorded (0.5 is half speed); 0 or max: as fast as possible.",
)
@click.option(
    "--serve",
    "headless",
    is_flag=True,
    help="No screen: serve the replay on the socket for `vtmon snapshot`, like `vtmon serve`.",
)
@socket_option
@config_option
def replay(
    file: Path, speed: float, headless: bool, socket_path: str | None, config_file: str | None
) -> None:
    """Play a recording made by `vtmon record` through the same ingest and engine as live data.

    The engine's clock follows the recorded arrival times, so windows, percentiles and
    detection see the recorded timeline at any speed. Opens the console, or with --serve
    runs headless; at the end it keeps showing (or serving) the final state until you quit.
    Machine readings (CPU, sensors) are not part of a recording and stay empty.

    \b
      vtmon replay incident.vtmrec --speed 10
      vtmon replay incident.vtmrec --speed max --serve --socket /tmp/replay/r.sock
    """
    from vtmon.clock import ManualClock
    from vtmon.engine.monitor import Monitor
    from vtmon.export.recording import (
        NullCollector,
        NullSensors,
        RecordingError,
        RecordingReader,
        ReplayEndpoint,
        replay_into,
    )

    socket_path, config_file = _inherit(socket_path, config_file)
    try:
        reader = RecordingReader(file)
    except RecordingError as e:
        raise _BadRecording(str(e)) from None
    try:
        cfg = _load(config_file)
    except click.ClickException:
        reader.close()
        raise
    pace = f"x{speed:g}" if speed else "max speed"
    watching = f"replay of {file.name} ({pace})"
    clock = ManualClock(start=reader.started)
    path = resolve_socket_path(socket_path) if headless else None
    monitor = Monitor(
        cfg,
        clock=clock,
        socket_path=str(path or ""),
        watching=watching,
        collector=NullCollector(),  # type: ignore[arg-type]
        sensors=NullSensors(),  # type: ignore[arg-type]
    )
    stop = threading.Event()
    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = replay_into(
                monitor,
                reader,
                clock,
                speed,
                stop=stop,
                end_text=f"replay of {file.name} ({pace}, finished)",
            )
        except Exception as e:  # reported, never a traceback on the screen
            logging.getLogger(__name__).exception("replay failed")
            outcome["error"] = f"The replay of {file} failed: {e}."
        finally:
            finished.set()
            if headless:
                _report_replay(outcome, serving=path)

    thread = threading.Thread(target=run, name="vtmon-replay", daemon=True)
    if headless:
        assert path is not None
        _replay_headless(monitor, path, thread, stop, ReplayEndpoint(monitor), watching)
    else:
        _replay_console(monitor, thread, stop)
    finished.wait(5)
    if not headless:
        _report_replay(outcome, serving=None)
    if "error" in outcome:
        if headless:
            sys.exit(1)  # already said, when it happened
        raise click.ClickException(outcome["error"])


def _replay_headless(
    monitor: Any,
    path: Path,
    thread: threading.Thread,
    stop: threading.Event,
    endpoint: Any,
    watching: str,
) -> None:
    from vtmon.ingest.server import IngestServer, SocketError, SocketInUse, server_options

    _log_to_stderr()
    _open_files(monitor.config)
    server = IngestServer(path, endpoint, **server_options(monitor.config, private=True))
    try:
        server.start()
    except (SocketInUse, SocketError) as e:
        raise click.ClickException(str(e)) from None
    done = _stop_on_signals()
    click.echo(
        f"vtmon {watching} on {path}; `vtmon snapshot --socket {path}` reads its state.",
        err=True,
    )
    thread.start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        stop.set()
        thread.join(5)
        server.stop()
    click.echo("vtmon stopped.", err=True)


def _log_to_stderr() -> None:
    from vtmon.process import configure_logging

    configure_logging(level=logging.INFO, format="vtmon: %(message)s", stream=sys.stderr)


def _log_to_file() -> None:
    """Log to a file: anything written to the terminal would tear the console's screen. The
    file is the user's alone (0600 in a 0700 folder): it names series and findings."""
    from vtmon.files import ForeignFolder, private_file, private_folder
    from vtmon.process import configure_logging

    global _LOG_PATH
    log_dir = Path(platformdirs.user_log_dir(APP))
    try:
        note = private_folder(log_dir, own=True)
        path = log_dir / "vtmon.log"
        private_file(path)  # 0600 from the start; one an older vtmon made 0644 is narrowed
        configure_logging(filename=path, level=logging.WARNING)
    except (OSError, ForeignFolder):
        configure_logging(level=logging.CRITICAL)
        return
    _LOG_PATH = str(path)
    if note:
        logging.getLogger(__name__).warning("%s", note)


_LOG_PATH = ""  # the console's log file, once _log_to_file opened it


def _open_files(cfg: Config) -> None:
    """As many open files as the system allows this process (every connection is one), and a
    warning when that is still too few for ``[limits] max_connections``."""
    from vtmon.process import open_file_warning, raise_open_file_limit

    warning = open_file_warning(raise_open_file_limit(), cfg.max_connections)
    if warning:
        logging.getLogger(__name__).warning(warning)


def _replay_console(monitor: Any, thread: threading.Thread, stop: threading.Event) -> None:
    _log_to_file()
    thread.start()
    try:
        failed = _run_app(monitor)
    finally:
        stop.set()
        thread.join(5)
    if failed:
        raise click.ClickException(failed)


def _report_replay(outcome: dict[str, Any], serving: Path | None) -> None:
    stats = outcome.get("stats")
    if stats is None:
        if serving is not None and "error" in outcome:
            click.echo(f"Error: {outcome['error']}", err=True)
        return
    if stats.note:
        click.echo(f"Note: {stats.note}", err=True)
    if stats.stopped:
        click.echo(f"Stopped early. {stats.summary()}", err=True)
    elif serving is not None:
        click.echo(
            f"Replay finished. {stats.summary()} Serving its final state on {serving} "
            "until Ctrl-C.",
            err=True,
        )
    else:
        click.echo(f"Replay finished. {stats.summary()}", err=True)


def _stop_on_signals() -> threading.Event:
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return done


# ---------------------------------------------------------------------------------------------


def _load(config_file: str | None) -> Config:
    try:
        return load_config(config_file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _running(socket_path: str | None) -> Path:
    """The socket of the running vtmon a command talks to, once its folder passed the check
    of vtmon.protocol.access (a guessed path's folder must be the caller's or root's); one
    sentence and exit status 1 when it did not."""
    from vtmon.protocol import access

    path, named = access.socket_path(_inherit(socket_path)[0])
    try:
        access.check_folder(path, named=named)
    except access.UnsafeFolder as e:
        raise click.ClickException(str(e)) from None
    return path


def _not_running(path: Path) -> str:
    return (
        f"No vtmon is listening on {path}; start one with `vtmon` or `vtmon serve`, "
        "or pass --socket."
    )


def _start_engine(
    cfg: Config,
    path: Path,
    watching: str,
    pid: int | None,
    recorder: Any = None,
    prometheus: tuple[str, int] | None = None,
    demo: bool = False,
    recovery: str = "offer",
) -> tuple[Any, Any]:
    import psutil

    from vtmon.engine.collector import SystemCollector
    from vtmon.engine.monitor import Monitor
    from vtmon.ingest.server import IngestServer, SocketError, SocketInUse, server_options

    if pid is not None:
        try:
            name = psutil.Process(pid).name()
        except psutil.NoSuchProcess:
            raise click.ClickException(
                f"No process has pid {pid}; pass the pid of the running application."
            ) from None
        except psutil.AccessDenied:
            name = "?"
        watching = f"pid {pid} ({name}) and {watching}"
    _open_files(cfg)
    collector = SystemCollector(pid=pid)
    store = _open_store(cfg, demo)
    monitor = Monitor(
        cfg, socket_path=str(path), watching=watching, collector=collector, store=store
    )
    _recovered(monitor, recovery)
    if prometheus is not None:  # before the socket opens, so that every batch is exported
        _start_prometheus(monitor, prometheus)
    server = IngestServer(path, monitor, recorder=recorder, **server_options(cfg))
    try:
        server.start()
    except (SocketInUse, SocketError) as e:
        raise click.ClickException(str(e)) from None
    monitor.start()
    return monitor, server


def _open_store(cfg: Config, demo: bool) -> Any:
    """The history file from ``--data-dir`` (else the user data folder); None with
    ``--no-history``. Never fails: an unusable folder gives a store that says why."""
    from vtmon.store.db import DB_NAME, DEMO_DB_NAME, HistoryStore

    ctx = click.get_current_context()
    if ctx.meta.get("vtmon.no_history"):
        return None
    named = ctx.meta.get("vtmon.data_dir")
    data_dir = named or platformdirs.user_data_dir(APP)
    store = HistoryStore.open(
        data_dir, cfg.retention, name=DEMO_DB_NAME if demo else DB_NAME, own_folder=not named
    )
    ctx.call_on_close(store.close)  # Monitor.stop closes it first; this covers failed starts
    return store


class _CannotServe(click.ClickException):
    exit_code = 2


def _recovered(monitor: Any, policy: str) -> None:
    """Say what a previous run left applied, and what becomes of it (``serve``: reverted
    unless --keep-applied; the console offers it)."""
    monitor.tuner.set_recovery(policy)
    left = [a for a in monitor.tuner.actions() if a.recovered and a.in_effect]
    if not left or policy == "offer":  # the console says it on screen
        return
    what = "; ".join(f"{a.id} {a.title}" for a in left)
    n = len(left)
    it = "it" if n == 1 else "them"
    fate = {
        "revert": f"reverting {it} (--keep-applied keeps {it})",
        "keep": f"kept as asked; `vtmon revert ID` undoes {it}",
        "offer": f"the console offers to revert {it}",
    }[policy]
    click.echo(
        f"Found {n} tuning action{'' if n == 1 else 's'} left applied by a previous run: "
        f"{what}; {fate}.",
        err=True,
    )


# -- tuning from scripts ----------------------------------------------------------------------


def _tuner_call(socket_path: str | None, method: str, params: dict[str, Any]) -> None:
    """One tuner request to the running vtmon; prints its one sentence."""
    from vtmon.protocol.jsonrpc import rpc_call

    path = _running(socket_path)
    try:
        result = rpc_call(path, method, params)
    except (FileNotFoundError, ConnectionRefusedError):
        raise _CannotServe(_not_running(path)) from None
    except RuntimeError as e:  # the tuner's refusal: unknown id, not a proposal, ...
        raise _CannotServe(str(e)) from None
    except (OSError, ConnectionError, ValueError) as e:
        raise _CannotServe(f"Could not reach vtmon on {path}: {e}") from None
    if isinstance(result, dict) and "message" in result:
        click.echo(result["message"])
    else:
        click.echo(json.dumps(result))


@main.command()
@click.argument("action_id", metavar="ID")
@socket_option
def approve(action_id: str, socket_path: str | None) -> None:
    """Approve the proposed tuning action ID (as the console and `vtmon snapshot` show it)."""
    _tuner_call(socket_path, "actions.approve", {"id": action_id})


@main.command()
@click.argument("action_id", metavar="ID")
@socket_option
def reject(action_id: str, socket_path: str | None) -> None:
    """Reject the proposed tuning action ID; it is not proposed again for 5 minutes."""
    _tuner_call(socket_path, "actions.reject", {"id": action_id})


@main.command()
@click.argument("action_id", metavar="ID", required=False)
@click.option("--all", "all_", is_flag=True, help="Revert every applied action.")
@socket_option
def revert(action_id: str | None, all_: bool, socket_path: str | None) -> None:
    """Revert the applied tuning action ID at once (its previous value is set back), or
    every applied action with --all."""
    if all_ == (action_id is not None):
        raise click.UsageError("Give an action's ID or --all (not both).")
    if all_:
        _tuner_call(socket_path, "actions.revert", {"all": True})
    else:
        _tuner_call(socket_path, "actions.revert", {"id": action_id})


def _start_prometheus(monitor: Any, listen: tuple[str, int]) -> None:
    """Serve /metrics until the command ends (the click context closes)."""
    from vtmon.export.prometheus import ExporterError, PrometheusExporter

    exporter = PrometheusExporter(monitor)
    try:
        exporter.serve(*listen)
    except ExporterError as e:
        raise _CannotServe(str(e)) from None
    click.get_current_context().call_on_close(exporter.stop)
    logging.getLogger(__name__).info("Prometheus metrics on %s", exporter.url)


def _console(
    socket_path: str | None,
    config_file: str | None,
    demo: bool,
    pid: int | None = None,
    prometheus: tuple[str, int] | None = None,
    record_file: Path | None = None,
) -> None:
    _log_to_file()
    cfg = _load(config_file)
    path = resolve_socket_path(socket_path)
    watching = "demo workload" if demo else f"metrics on {path}"
    recorder = _recorder(record_file, path)
    monitor, server = _start_engine(
        cfg, path, watching, pid, prometheus=prometheus, recorder=recorder, demo=demo
    )
    stop = threading.Event()
    try:
        if demo:
            from vtmon import demo as demo_mod

            demo_mod.start_thread(str(path), stop)
        failed = _run_app(monitor)
    finally:
        # Revert what was applied (unless "keep and quit") while applications (the demo's
        # too) are still connected and can answer: after a crash of the screen as well.
        said = monitor.stop_tuning()
        stop.set()
        server.stop()
        monitor.stop()
        _finish_recording(recorder)
        if said and said != "Nothing was applied.":
            click.echo(said, err=True)
    if failed:
        raise click.ClickException(failed)


def _run_app(monitor: Any) -> str:
    """Run the console until it ends; "" when it ended as asked, else one sentence saying it
    did not (Textual has printed the error itself)."""
    from vtmon.tui.app import VtmonApp

    app = VtmonApp(monitor)
    app.run()
    if not app.return_code:
        return ""
    where = f" ({_LOG_PATH} has what was logged before it)" if _LOG_PATH else ""
    return f"The console ended on an error{where}."


def _read_stats(s: socket.socket, got: dict[str, Any]) -> None:
    """`vtmon send`'s reader thread: the answer to its ``connection.stats`` into ``got``."""
    try:
        got["stats"] = _read_json_line(s)
    except (OSError, ValueError, _Refused) as e:
        got["error"] = e


def _read_json_line(s: socket.socket, rid: str = "send") -> dict[str, Any]:
    """The answer with id ``rid``; answers to requests that were in the piped input are skipped."""
    from vtmon.protocol.jsonrpc import refusal

    buf = b""
    while True:
        while b"\n" not in buf:
            data = s.recv(65536)
            if not data:
                raise ValueError("vtmon closed the connection before answering")
            buf += data
        line, buf = buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("id") == rid:
            return msg
        why = refusal(msg)
        if why is not None:
            raise _Refused(why)


class _Refused(Exception):
    """vtmon closed the connection at once (at ``[limits] max_connections``); the message is
    its one line saying why."""


if __name__ == "__main__":
    main()
