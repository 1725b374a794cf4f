"""`vtmon socket` and `vtmon config`: where vtmon listens and what it reads."""

from __future__ import annotations

import click

from vtmon.cli.options import inherit, socket_option
from vtmon.config import EXAMPLE_CONFIG
from vtmon.protocol.access import resolve_socket_path


@click.command("socket")
@socket_option
def socket_cmd(socket_path: str | None) -> None:
    """Print the socket path vtmon uses (for scripts: socat - UNIX-CONNECT:"$(vtmon socket)")."""
    socket_path = inherit(socket_path)[0]
    click.echo(str(resolve_socket_path(socket_path)))


@click.command()
@click.option("--example", is_flag=True, help="Print an example config file.")
def config(example: bool) -> None:
    """Show where the config file is read from, or print an example."""
    from vtmon.config import default_config_path

    if example:
        click.echo(EXAMPLE_CONFIG, nl=False)
        return
    p = default_config_path()
    click.echo(f"{p} ({'exists' if p.exists() else 'not present: defaults apply'})")
