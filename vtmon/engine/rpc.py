"""The JSON-RPC methods the engine answers (docs/protocol.md), as one table.

``METHODS`` maps each method's name to its handler and to whether a peer of another uid may
call it (docs/protocol.md, "Who may call what"). A peer may send metrics and look after its
own knobs; every other method -- steering the tuner, and reading (a snapshot shows every
application's series and knobs) -- answers only vtmon's own user and root, so that a method
added later is the owner's until its entry says otherwise. ``hello`` and ``connection.stats``
are answered by the socket server; they are listed in ``SERVER_METHODS`` only so that a peer
may call them.

A handler takes the monitor, the request's params and the connection the request came on
(None when it came from no application connection) and returns the result, or raises
``RpcError`` with the code and message of the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vtmon.model import CLIENT_COUNT_MAX, COUNT_MAX
from vtmon.model.table import COLUMNS
from vtmon.protocol import jsonrpc
from vtmon.tuning.actuators import Connection, KnobTaken, knob_dict
from vtmon.tuning.tuner import action_dict

if TYPE_CHECKING:
    from vtmon.engine.monitor import Monitor

log = logging.getLogger(__name__)

REFUSALS_LOGGED = 1000  # (uid, method) pairs remembered so that each is logged once


class Caller(Connection, Protocol):
    """The connection a request came on, as the socket server hands it over."""

    peer_uid: int | None  # None when the kernel did not say


class RpcError(Exception):
    """The error answer to a request: a JSON-RPC code (vtmon.protocol.jsonrpc) and one
    sentence."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[["Monitor", Any, "Caller | None"], Any]


@dataclass(frozen=True, slots=True)
class Method:
    handler: Handler
    peers: bool = False  # a peer of another uid may call it


SNAPSHOT_IDS_MAX = 10_000  # series ids one snapshot request may name


def _snapshot(m: Monitor, params: Any, conn: Caller | None) -> Any:
    if not isinstance(params, dict):
        return m.snapshot_json(False)
    history = bool(params.get("history", False))
    series = params.get("series", "all")
    if series == "all":
        chosen = None
    elif series == "none":
        chosen = []
    elif (
        isinstance(series, list)
        and len(series) <= SNAPSHOT_IDS_MAX
        and all(type(x) is str for x in series)
    ):
        chosen = series
    else:
        raise RpcError(
            jsonrpc.INVALID_PARAMS,
            f'snapshot\'s "series" is "all", "none" or a list of at most '
            f"{SNAPSHOT_IDS_MAX:,} series ids.",
        )
    columns = params.get("columns", [])
    if not isinstance(columns, list) or not all(c in COLUMNS for c in columns):
        raise RpcError(
            jsonrpc.INVALID_PARAMS,
            f'snapshot\'s "columns" is a list of column names: {COLUMNS[0]}, … {COLUMNS[-1]} '
            "(docs/snapshot.md lists them).",
        )
    return m.snapshot_json(history, chosen, list(dict.fromkeys(columns)))


def _client_dropped(m: Monitor, params: Any, conn: Caller | None) -> Any:
    n = params.get("count") if isinstance(params, dict) else None
    if type(n) is not int or not 0 <= n <= CLIENT_COUNT_MAX:
        raise RpcError(
            jsonrpc.INVALID_PARAMS, "client.dropped needs params with a count from 0 to 2**53."
        )
    c = m.connections
    c.client_dropped = min(c.client_dropped + n, COUNT_MAX)  # what SQLite can hold
    return True


def _ingest(m: Monitor, params: Any, conn: Caller | None) -> Any:
    # Live counters, newer than the last Snapshot (benchmarks and `vtmon send` use it).
    return m.live_ingest()


def _ping(m: Monitor, params: Any, conn: Caller | None) -> Any:
    return "pong"


def _knob_errors(fn: Handler) -> Handler:
    """A knob method whose ValueError is the answer: REFUSED for a name another connection
    holds, INVALID_PARAMS otherwise."""

    def handler(m: Monitor, params: Any, conn: Caller | None) -> Any:
        try:
            return fn(m, params, conn)
        except ValueError as e:
            code = jsonrpc.REFUSED if isinstance(e, KnobTaken) else jsonrpc.INVALID_PARAMS
            raise RpcError(code, str(e)) from None

    return handler


def _knobs_register(m: Monitor, params: Any, conn: Caller | None) -> Any:
    return m.knobs.register(conn, params)


def _knobs_unregister(m: Monitor, params: Any, conn: Caller | None) -> Any:
    return m.knobs.unregister(conn, params)


def _knobs_list(m: Monitor, params: Any, conn: Caller | None) -> Any:
    return [knob_dict(k) for k in m.knobs.knobs()]


def _tuner_errors(fn: Callable[[Monitor, dict[str, Any], str], Any], method: str) -> Handler:
    """A tuning method (docs/tuning.md): params that are not an object count as none; its
    ValueError, one sentence, is the answer with code REFUSED."""

    def handler(m: Monitor, params: Any, conn: Caller | None) -> Any:
        try:
            return fn(m, params if isinstance(params, dict) else {}, method)
        except ValueError as e:
            raise RpcError(jsonrpc.REFUSED, str(e)) from None

    return handler


def _actions_list(m: Monitor, p: dict[str, Any], method: str) -> Any:
    t = m.tuner
    return {
        "proposals": [action_dict(a) for a in t.proposals()],
        "actions": [action_dict(a) for a in t.actions()],
        "modes": t.modes(),
    }


def _tuner_mode(m: Monitor, p: dict[str, Any], method: str) -> Any:
    t = m.tuner
    if "actuator" not in p and "mode" not in p:
        return {"modes": t.modes()}
    actuator, mode = p.get("actuator"), p.get("mode")
    if not isinstance(actuator, str) or not isinstance(mode, str):
        raise ValueError("tuner.mode needs actuator (knob, process, command) and mode.")
    return {"message": t.set_mode(actuator, mode), "modes": t.modes()}


def _action_command(m: Monitor, p: dict[str, Any], method: str) -> Any:
    """``actions.approve``, ``actions.reject``, ``actions.revert`` (``all`` or an id)."""
    t = m.tuner
    if method == "actions.revert" and p.get("all") is True:
        return {"message": t.revert_all()}
    aid = p.get("id")
    if not isinstance(aid, (str, int)) or isinstance(aid, bool) or not str(aid).strip():
        raise ValueError(f"{method} needs params with the id of an action, such as a3.")
    command = {"actions.approve": t.approve, "actions.reject": t.reject}.get(method, t.revert)
    return {"message": command(str(aid))}


METHODS: Mapping[str, Method] = {
    "snapshot": Method(_snapshot),
    "client.dropped": Method(_client_dropped, peers=True),
    "ingest": Method(_ingest),
    "ping": Method(_ping, peers=True),
    "knobs.register": Method(_knob_errors(_knobs_register), peers=True),
    "knobs.unregister": Method(_knob_errors(_knobs_unregister), peers=True),
    "knobs.list": Method(_knobs_list),
    "actions.list": Method(_tuner_errors(_actions_list, "actions.list")),
    "actions.approve": Method(_tuner_errors(_action_command, "actions.approve")),
    "actions.reject": Method(_tuner_errors(_action_command, "actions.reject")),
    "actions.revert": Method(_tuner_errors(_action_command, "actions.revert")),
    "tuner.mode": Method(_tuner_errors(_tuner_mode, "tuner.mode")),
}

SERVER_METHODS = frozenset(
    {
        "hello",  # answered by the socket server
        "connection.stats",  # likewise: the connection's own counters
    }
)


def peers_may_call(method: str) -> bool:
    """Whether a peer of another uid may call ``method``."""
    entry = METHODS.get(method)
    return method in SERVER_METHODS if entry is None else entry.peers


class Dispatcher:
    """Answers the requests for one monitor, through ``METHODS``."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._refused: set[tuple[int | None, str]] = set()  # (uid, method) already logged

    def handle(self, request: dict[str, Any], conn: Caller | None) -> dict[str, Any] | None:
        """The answer to one JSON-RPC 2.0 request; None for notifications (no ``id``), which
        are carried out all the same."""
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(method, str):
            return _error(rid, jsonrpc.INVALID_REQUEST, "Invalid request: method must be a string.")
        if conn is not None and not conn.owner and not peers_may_call(method):
            return self._refuse(rid, method, conn)
        entry = METHODS.get(method)
        if entry is None:
            return _error(rid, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {method}.")
        try:
            value = entry.handler(self.monitor, params, conn)
        except RpcError as e:
            return _error(rid, e.code, e.message)
        return None if rid is None else jsonrpc.result(rid, value)

    def _refuse(self, rid: Any, method: str, conn: Caller) -> dict[str, Any] | None:
        """The answer to a peer of another uid calling an owner's method; logged once per uid
        and method (a client retrying in a loop must not fill the log)."""
        uid = conn.peer_uid
        who = "this connection" if uid is None else f"uid {uid}"
        said = (uid, method[:100])  # the name came from outside: bounded in the log and here
        if said not in self._refused and len(self._refused) < REFUSALS_LOGGED:
            self._refused.add(said)
            log.warning("Refused %r from %s: only vtmon's own user may call it.", said[1], who)
        return _error(
            rid,
            jsonrpc.NOT_OWNER,
            f"Only vtmon's own user may call {method}; {who} may send metrics, ping and "
            "register its own knobs.",
        )


def _error(rid: Any, code: int, message: str) -> dict[str, Any] | None:
    """The error answer, or None for a notification (no id), which gets none."""
    return None if rid is None else jsonrpc.error(rid, code, message)
