"""The ``vtmon`` command: the console, the headless server, and small tools around the socket."""

from __future__ import annotations

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
from vtmon.config import APP, EXAMPLE_CONFIG, Config, ConfigError, load_config, resolve_socket_path

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


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@socket_option
@config_option
@pid_option
@click.version_option(__version__, prog_name="vtmon")
@click.pass_context
def main(
    ctx: click.Context, socket_path: str | None, config_file: str | None, pid: int | None
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
    if ctx.invoked_subcommand is None:
        _console(socket_path, config_file, demo=False, pid=pid)


def _root_opt(name: str) -> Any:
    return (click.get_current_context().find_root().obj or {}).get(name)


def _inherit(socket_path: str | None, config_file: str | None = None) -> tuple[str | None, ...]:
    return socket_path or _root_opt("socket"), config_file or _root_opt("config")


@main.command()
@socket_option
@config_option
@pid_option
def demo(socket_path: str | None, config_file: str | None, pid: int | None) -> None:
    """Open the console fed by a built-in voice-terminal workload.

    The workload (voice-engine, terminal-processor, api-server) sends through the real
    socket, with an incident every three minutes. It uses its own socket (demo.sock beside
    the default one) so that it never collides with a running vtmon.
    """
    socket_path, config_file = _inherit(socket_path, config_file)
    if socket_path is None:
        socket_path = str(resolve_socket_path(None).parent / "demo.sock")
    _console(socket_path, config_file, demo=True, pid=pid or _root_opt("pid"))


@main.command()
@socket_option
@config_option
@pid_option
def serve(socket_path: str | None, config_file: str | None, pid: int | None) -> None:
    """Run the engine with no screen (servers, CI, scripts) until Ctrl-C or SIGTERM.

    Read its state with `vtmon snapshot`.
    """
    socket_path, config_file = _inherit(socket_path, config_file)
    logging.basicConfig(level=logging.INFO, format="vtmon: %(message)s", stream=sys.stderr)
    cfg = _load(config_file)
    path = resolve_socket_path(socket_path)
    monitor, server = _start_engine(cfg, path, f"metrics on {path}", pid or _root_opt("pid"))
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
        server.stop()
        monitor.stop()
    click.echo("vtmon stopped.", err=True)


@main.command()
@socket_option
@click.option("--history", is_flag=True, help="Include the chart history of every series.")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented output.")
def snapshot(socket_path: str | None, history: bool, compact: bool) -> None:
    """Print the running vtmon's current state as one JSON object.

    The schema is described in docs/snapshot.md.
    """
    socket_path = _inherit(socket_path)[0]
    from vtmon.ingest.server import rpc_call

    path = resolve_socket_path(socket_path)
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
    socket_path = _inherit(socket_path)[0]
    path = resolve_socket_path(socket_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise click.ClickException(_not_running(path)) from None
    except OSError as e:
        raise click.ClickException(f"Cannot connect to {path}: {e.strerror}.") from None
    stdin = sys.stdin.buffer
    last = b"\n"
    try:
        while True:
            chunk = stdin.read1(1 << 16) if hasattr(stdin, "read1") else stdin.read(1 << 16)
            if not chunk:
                break
            s.sendall(chunk)
            last = chunk[-1:]
        if last != b"\n":
            s.sendall(b"\n")  # end the last line so it is not glued to the stats request
        req = {"jsonrpc": "2.0", "id": "send", "method": "connection.stats"}
        s.sendall(json.dumps(req).encode() + b"\n")
        s.settimeout(10)
        stats = _read_json_line(s)
    except BrokenPipeError:
        raise click.ClickException(f"vtmon on {path} closed the connection.") from None
    except (OSError, ValueError) as e:
        raise click.ClickException(f"Lost the connection to {path}: {e}.") from None
    finally:
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


# ---------------------------------------------------------------------------------------------


def _load(config_file: str | None) -> Config:
    try:
        return load_config(config_file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _not_running(path: Path) -> str:
    return (
        f"No vtmon is listening on {path}; start one with `vtmon` or `vtmon serve`, "
        "or pass --socket."
    )


def _start_engine(cfg: Config, path: Path, watching: str, pid: int | None) -> tuple[Any, Any]:
    import psutil

    from vtmon.engine.collector import SystemCollector
    from vtmon.engine.monitor import Monitor
    from vtmon.ingest.server import IngestServer, SocketError, SocketInUse

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
    collector = SystemCollector(pid=pid)
    monitor = Monitor(cfg, socket_path=str(path), watching=watching, collector=collector)
    server = IngestServer(path, monitor, max_line=cfg.max_line_bytes)
    try:
        server.start()
    except (SocketInUse, SocketError) as e:
        raise click.ClickException(str(e)) from None
    monitor.start()
    return monitor, server


def _console(
    socket_path: str | None, config_file: str | None, demo: bool, pid: int | None = None
) -> None:
    # Log to a file: anything written to the terminal would tear the screen.
    log_dir = Path(platformdirs.user_log_dir(APP))
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=log_dir / "vtmon.log", level=logging.WARNING)
    except OSError:
        logging.basicConfig(level=logging.CRITICAL)
    cfg = _load(config_file)
    path = resolve_socket_path(socket_path)
    watching = "demo workload" if demo else f"metrics on {path}"
    monitor, server = _start_engine(cfg, path, watching, pid)
    stop = threading.Event()
    try:
        if demo:
            from vtmon import demo as demo_mod

            demo_mod.start_thread(str(path), stop)
        from vtmon.tui.app import VtmonApp

        VtmonApp(monitor).run()
    finally:
        stop.set()
        server.stop()
        monitor.stop()


def _read_json_line(s: socket.socket, rid: str = "send") -> dict[str, Any]:
    """The answer with id ``rid``; answers to requests that were in the piped input are skipped."""
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


if __name__ == "__main__":
    main()
