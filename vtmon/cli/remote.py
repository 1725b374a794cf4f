"""`vtmon snapshot` and `vtmon send`: read the running vtmon's state, pipe lines into it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from typing import Any

import click

from vtmon.cli.options import not_running, running, socket_option
from vtmon.protocol import jsonrpc


@click.command()
@socket_option
@click.option("--history", is_flag=True, help="Include the chart history of every series.")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented output.")
def snapshot(socket_path: str | None, history: bool, compact: bool) -> None:
    """Print the running vtmon's current state as one JSON object.

    The schema is described in docs/snapshot.md.
    """
    from vtmon.protocol.jsonrpc import rpc_call

    path = running(socket_path)
    try:
        result = rpc_call(path, "snapshot", {"history": history})
    except (FileNotFoundError, ConnectionRefusedError):
        raise click.ClickException(not_running(path)) from None
    except (OSError, ConnectionError, ValueError, RuntimeError) as e:
        raise click.ClickException(f"Could not read a snapshot from {path}: {e}") from None
    click.echo(json.dumps(result, indent=None if compact else 2))


@click.command()
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
    path = running(socket_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise click.ClickException(not_running(path)) from None
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
