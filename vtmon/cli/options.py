"""What the commands share: their options, the options given before the command, the config
and the socket of a running vtmon, each failure one sentence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vtmon.config import Config, ConfigError, load_config

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


def remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:  # given here, or before the command (meta is shared by the whole chain)
            ctx.meta[f"vtmon.{name}"] = value

    return store


def history_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir`` and ``--no-history``; read back by ``vtmon.cli.console.history``."""
    f = click.option(
        "--no-history",
        is_flag=True,
        expose_value=False,
        callback=remember("no_history"),
        help="Keep history in memory only: nothing is written to disk.",
    )(f)
    return click.option(
        "--data-dir",
        metavar="DIR",
        expose_value=False,
        callback=remember("data_dir"),
        help="Keep history (an SQLite file: vtmon.db, demo.db for the demo) in DIR. "
        "Default: the user data folder, e.g. ~/.local/share/vtmon. If DIR cannot be "
        "written, vtmon runs in memory and says so.",
    )(f)


def root_opt(name: str) -> Any:
    """An option given before the command (`vtmon --socket S demo`)."""
    return (click.get_current_context().find_root().obj or {}).get(name)


def inherit(socket_path: str | None, config_file: str | None = None) -> tuple[str | None, ...]:
    return socket_path or root_opt("socket"), config_file or root_opt("config")


def load(config_file: str | None, base: dict[str, Any] | None = None) -> Config:
    """The config from ``--config`` (else the user's file), over ``base`` (the demo's)."""
    try:
        return load_config(config_file, base=base)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def running(socket_path: str | None) -> Path:
    """The socket of the running vtmon a command talks to, once its folder passed the check
    of vtmon.protocol.access (a guessed path's folder must be the caller's or root's); one
    sentence and exit status 1 when it did not."""
    from vtmon.protocol import access

    path, named = access.socket_path(inherit(socket_path)[0])
    try:
        access.check_folder(path, named=named)
    except access.UnsafeFolder as e:
        raise click.ClickException(str(e)) from None
    return path


def not_running(path: Path) -> str:
    return (
        f"No vtmon is listening on {path}; start one with `vtmon` or `vtmon serve`, "
        "or pass --socket."
    )


class CannotServe(click.ClickException):
    exit_code = 2


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """What every command that runs an engine takes, in this order in ``--help``: ``--socket``,
    ``--config``, ``--pid``, the history options and ``--prometheus``."""
    for option in (prometheus_option, history_options, pid_option, config_option, socket_option):
        f = option(f)
    return f
