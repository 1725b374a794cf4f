"""JSON-RPC 2.0 as vtmon speaks it: one JSON object per line, its error codes by name, the
builders every side uses for requests and answers, and ``rpc_call`` for one call on a
running vtmon (docs/protocol.md, "JSON-RPC")."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from vtmon.protocol.access import check_folder

# JSON-RPC 2.0's own codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# vtmon's, in the range the specification leaves to servers. REFUSED: understood but not done
# (the connection when all vtmon takes are open, sent with id null; a knob name another live
# connection holds; a tuning command that cannot be carried out now). NOT_OWNER: the method is
# for vtmon's own user only (docs/protocol.md, "Who may call what").
REFUSED = -32000
NOT_OWNER = -32001


class RawJSON:
    """A result that is already JSON text: a Snapshot is serialised once and the same bytes
    answer every ``snapshot`` request until the next one (``encode`` splices them in)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def request(method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    """A request; ``rid=None`` makes it a notification, which gets no answer."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if rid is not None:
        msg["id"] = rid
    return msg


def result(rid: Any, value: Any) -> dict[str, Any]:
    """A successful answer."""
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def error(rid: Any, code: int, message: str) -> dict[str, Any]:
    """An error answer."""
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def refusal(msg: Any) -> str | None:
    """vtmon's reason when ``msg`` is its refusal of the connection, else None (an error with
    id null may also answer a request whose id could not be read)."""
    if not isinstance(msg, dict) or msg.get("id") is not None:
        return None
    err = msg.get("error")
    if isinstance(err, dict) and err.get("code") == REFUSED:
        return str(err.get("message") or "vtmon refused the connection.")
    return None


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of JSON."""
    value = message.get("result")
    if type(value) is RawJSON:
        rid = json.dumps(message.get("id")).encode()
        return b'{"jsonrpc":"2.0","id":%s,"result":%s}\n' % (rid, value.data)
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def readable_id(message: dict[str, Any]) -> Any:
    """The request's id when it is one JSON-RPC allows (a string, an integer, null), else
    None: an error about a request whose id cannot be read is sent with id null."""
    rid = message.get("id")
    if rid is None or type(rid) is str or type(rid) is int:
        return rid
    return None


def rpc_call(
    path: str | os.PathLike[str],
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float = 5.0,
    named: bool = True,
) -> Any:
    """Call one JSON-RPC method on a running vtmon; raises ConnectionError / RuntimeError, and
    UnsafeFolder when the socket's folder fails vtmon.protocol.access's check (``named``: the
    caller chose the path; False: it is the default, whose folder must be the caller's)."""
    check_folder(path, named=named)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(path))
        s.sendall(json.dumps(request(method, params or {})).encode() + b"\n")
        line = _read_line(s)
    finally:
        s.close()
    resp = json.loads(line)
    if "error" in resp:
        raise RuntimeError(resp["error"].get("message", "unknown error"))
    return resp["result"]


def _read_line(s: socket.socket) -> bytes:
    chunks = []
    while True:
        data = s.recv(1 << 20)
        if not data:
            raise ConnectionError("vtmon closed the connection before answering.")
        nl = data.find(b"\n")
        if nl >= 0:
            chunks.append(data[:nl])
            return b"".join(chunks)
        chunks.append(data)
