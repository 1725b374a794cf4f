"""`vtmon record` and `vtmon replay`: record what arrives on the socket, play it back."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from vtmon.cli.console import log_to_file, log_to_stderr, run_app, serve, stop_on_signals
from vtmon.cli.options import config_option, inherit, load, pid_option, socket_option

if TYPE_CHECKING:
    from vtmon.engine.monitor import Monitor
    from vtmon.runtime import Runtime


@click.command()
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


@click.command()
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
    from vtmon.export.recording import RecordingError, RecordingReader
    from vtmon.export.replay import NullCollector, NullSensors, replay_into
    from vtmon.protocol.access import resolve_socket_path
    from vtmon.runtime import Runtime

    socket_path, config_file = inherit(socket_path, config_file)
    try:
        reader = RecordingReader(file)
    except RecordingError as e:
        raise _BadRecording(str(e)) from None
    try:
        cfg = load(config_file)
    except click.ClickException:
        reader.close()
        raise
    pace = f"x{speed:g}" if speed else "max speed"
    watching = f"replay of {file.name} ({pace})"
    clock = ManualClock(start=reader.started)
    path = resolve_socket_path(socket_path) if headless else None
    if headless:
        log_to_stderr()  # before the runtime is built: it may warn of too few open files
    rt = Runtime(
        cfg,
        path,
        watching=watching,
        clock=clock,
        collector=NullCollector(),
        sensors=NullSensors(),
        read_only=True,
        run_engine=False,  # the replay's thread drives it
    )
    monitor = rt.monitor
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
        _replay_headless(rt, thread, stop)
    else:
        _replay_console(monitor, thread, stop)
    finished.wait(5)
    if not headless:
        _report_replay(outcome, serving=None)
    if "error" in outcome:
        if headless:
            sys.exit(1)  # already said, when it happened
        raise click.ClickException(outcome["error"])


def _replay_headless(rt: Runtime, thread: threading.Thread, stop: threading.Event) -> None:
    from vtmon.ingest.server import SocketError, SocketInUse

    try:
        rt.start()
    except (SocketInUse, SocketError) as e:
        raise click.ClickException(str(e)) from None
    done = stop_on_signals()
    click.echo(
        f"vtmon {rt.watching} on {rt.path}; `vtmon snapshot --socket {rt.path}` reads its state.",
        err=True,
    )
    thread.start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        stop.set()
        thread.join(5)
        rt.stop()
    click.echo("vtmon stopped.", err=True)


def _replay_console(monitor: Monitor, thread: threading.Thread, stop: threading.Event) -> None:
    log_to_file()
    thread.start()
    try:
        failed = run_app(monitor)
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
