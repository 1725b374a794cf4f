"""`vtmon approve`, `reject` and `revert`: the tuner's commands, from a script."""

from __future__ import annotations

import json
from typing import Any

import click

from vtmon.cli.options import CannotServe, not_running, running, socket_option


def _tuner_call(socket_path: str | None, method: str, params: dict[str, Any]) -> None:
    """One tuner request to the running vtmon; prints its one sentence."""
    from vtmon.protocol.jsonrpc import rpc_call

    path = running(socket_path)
    try:
        result = rpc_call(path, method, params)
    except (FileNotFoundError, ConnectionRefusedError):
        raise CannotServe(not_running(path)) from None
    except RuntimeError as e:  # the tuner's refusal: unknown id, not a proposal, ...
        raise CannotServe(str(e)) from None
    except (OSError, ConnectionError, ValueError) as e:
        raise CannotServe(f"Could not reach vtmon on {path}: {e}") from None
    if isinstance(result, dict) and "message" in result:
        click.echo(result["message"])
    else:
        click.echo(json.dumps(result))


@click.command()
@click.argument("action_id", metavar="ID")
@socket_option
def approve(action_id: str, socket_path: str | None) -> None:
    """Approve the proposed tuning action ID (as the console and `vtmon snapshot` show it)."""
    _tuner_call(socket_path, "actions.approve", {"id": action_id})


@click.command()
@click.argument("action_id", metavar="ID")
@socket_option
def reject(action_id: str, socket_path: str | None) -> None:
    """Reject the proposed tuning action ID; it is not proposed again for 5 minutes."""
    _tuner_call(socket_path, "actions.reject", {"id": action_id})


@click.command()
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
