"""The ``vtmon`` command and the commands that run an engine: the console (``vtmon``,
``vtmon demo``) and the headless server (``vtmon serve``). vtmon.runtime builds and stops the
engine; this module says what happens in words and keeps the screen apart."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
import platformdirs

from vtmon import __version__
from vtmon.cli.options import (
    CannotServe,
    engine_options,
    inherit,
    load,
    record_option,
    root_opt,
)
from vtmon.config import APP, Config
from vtmon.protocol.access import resolve_socket_path

if TYPE_CHECKING:
    from vtmon.engine.monitor import Monitor
    from vtmon.export.recording import Recorder
    from vtmon.report import ReportSource
    from vtmon.runtime import Runtime
    from vtmon.store.history import HistoryStore
    from vtmon.tui.source import EngineView

    # The console and its report take the engine through these Protocols; mypy checks here,
    # above both floors, that the Monitor is one.
    _console_engine: type[EngineView] = Monitor
    _report_engine: type[ReportSource] = Monitor


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@engine_options
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


@click.command()
@engine_options
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
    socket_path, config_file = inherit(socket_path, config_file)
    if socket_path is None:
        socket_path = str(resolve_socket_path(None).parent / "demo.sock")
    _console(
        socket_path,
        config_file,
        demo=True,
        pid=pid or root_opt("pid"),
        prometheus=prometheus or root_opt("prometheus"),
    )


@click.command()
@engine_options
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
    socket_path, config_file = inherit(socket_path, config_file)
    log_to_stderr()
    cfg = load(config_file)
    path = resolve_socket_path(socket_path)
    recorder = _recorder(record_file or root_opt("record"), path)
    rt = _start(
        cfg,
        path,
        pid or root_opt("pid"),
        prometheus=prometheus or root_opt("prometheus"),
        recorder=recorder,
        recovery="keep" if keep_applied else "revert",
    )
    done = stop_on_signals()
    click.echo(
        f"vtmon serving on {path}; `vtmon snapshot --socket {path}` reads its state.", err=True
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        rt.stop()  # reverts what it applied first: the applications are still connected
        _finish_recording(recorder)
    click.echo("vtmon stopped.", err=True)


def _recorder(file: Path | None, path: Path) -> Recorder | None:
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


def _finish_recording(rec: Recorder | None) -> None:
    """Close the recording (after the server stopped) and say what it holds; idempotent."""
    if rec is None or rec in _FINISHED:
        return
    _FINISHED.add(rec)
    rec.close()
    if rec.error:
        raise click.ClickException(rec.error)
    if rec.connections == 0:
        rec.path.unlink(missing_ok=True)
        click.echo(f"Nothing arrived on the socket, so {rec.path} was not kept.", err=True)
        return
    click.echo(rec.summary(), err=True)


_FINISHED: set[Recorder] = set()  # recordings _finish_recording has said


def log_to_stderr() -> None:
    from vtmon.process import configure_logging

    configure_logging(level=logging.INFO, format="vtmon: %(message)s", stream=sys.stderr)


def log_to_file() -> None:
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


_LOG_PATH = ""  # the console's log file, once log_to_file opened it


def stop_on_signals() -> threading.Event:
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return done


def open_store(cfg: Config, demo: bool) -> HistoryStore | None:
    """The history file from ``--data-dir`` (else the user data folder); None with
    ``--no-history``. Never fails: an unusable folder gives a store that says why."""
    from vtmon.runtime import History

    ctx = click.get_current_context()
    if ctx.meta.get("vtmon.no_history"):
        return None
    store = History(ctx.meta.get("vtmon.data_dir"), demo=demo).open(cfg)
    ctx.call_on_close(store.close)  # the runtime closes it first; this covers failed starts
    return store


def _start(
    cfg: Config,
    path: Path,
    pid: int | None,
    *,
    watching: str = "",
    recorder: Recorder | None = None,
    prometheus: tuple[str, int] | None = None,
    demo: bool = False,
    recovery: str = "offer",
) -> Runtime:
    """The engine built and started (vtmon.runtime), or one sentence saying why not."""
    from vtmon.export.prometheus import ExporterError
    from vtmon.ingest.server import SocketError, SocketInUse
    from vtmon.runtime import ProcessNotFound, Runtime, watching_process

    watching = watching or f"metrics on {path}"
    if pid is not None:
        try:
            watching = watching_process(pid, watching)
        except ProcessNotFound as e:
            raise click.ClickException(str(e)) from None
    rt = Runtime(
        cfg,
        path,
        watching=watching,
        pid=pid,
        history=open_store(cfg, demo),
        recorder=recorder,
        prometheus=prometheus,
        recovery=recovery,
    )
    _recovered(rt, recovery)
    try:
        rt.start()
    except ExporterError as e:
        raise CannotServe(str(e)) from None
    except (SocketInUse, SocketError) as e:
        raise click.ClickException(str(e)) from None
    return rt


def _recovered(rt: Runtime, policy: str) -> None:
    """Say what a previous run left applied, and what becomes of it (``serve``: reverted
    unless --keep-applied; the console offers it)."""
    left = rt.recovered
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


def _console(
    socket_path: str | None,
    config_file: str | None,
    demo: bool,
    pid: int | None = None,
    prometheus: tuple[str, int] | None = None,
    record_file: Path | None = None,
) -> None:
    from vtmon import demo as demo_mod

    log_to_file()
    # The demo's components have their limits in the demo's own settings (vtmon.demo).
    cfg = load(config_file, base=demo_mod.SETTINGS if demo else None)
    path = resolve_socket_path(socket_path)
    recorder = _recorder(record_file, path)
    rt = _start(
        cfg,
        path,
        pid,
        watching="demo workload" if demo else "",
        prometheus=prometheus,
        recorder=recorder,
        demo=demo,
    )
    stop = threading.Event()
    rt.on_stop.append(stop.set)  # the workload stops once the tuner reverted what it set
    try:
        if demo:
            demo_mod.start_thread(str(path), stop)
        failed = run_app(rt.monitor)
    finally:
        # Revert what was applied (unless "keep and quit") while applications (the demo's
        # too) are still connected and can answer: after a crash of the screen as well.
        said = rt.stop()
        _finish_recording(recorder)
        if said and said != "Nothing was applied.":
            click.echo(said, err=True)
    if failed:
        raise click.ClickException(failed)


def run_app(monitor: Monitor) -> str:
    """Run the console until it ends; "" when it ended as asked, else one sentence saying it
    did not (Textual has printed the error itself)."""
    from vtmon.tui.app import VtmonApp

    app = VtmonApp(monitor)
    app.run()
    if not app.return_code:
        return ""
    where = f" ({_LOG_PATH} has what was logged before it)" if _LOG_PATH else ""
    return f"The console ended on an error{where}."
