"""The ``vtmon`` command: the console, the headless server, and small tools around the socket.

One module per group of commands: console (``vtmon``, ``demo``, ``serve``), remote
(``snapshot``, ``send``), actions (``approve``, ``reject``, ``revert``), reports
(``report``), recordings (``record``, ``replay``), paths (``socket``, ``config``); options
holds what they share.
"""

from __future__ import annotations

from vtmon.cli.actions import approve, reject, revert
from vtmon.cli.console import demo, main, serve
from vtmon.cli.paths import config, socket_cmd
from vtmon.cli.recordings import record, replay
from vtmon.cli.remote import send, snapshot
from vtmon.cli.reports import parse_duration, report

for _command in (
    demo,
    serve,
    snapshot,
    send,
    socket_cmd,
    config,
    report,
    record,
    replay,
    approve,
    reject,
    revert,
):
    main.add_command(_command)

__all__ = ["main", "parse_duration"]
