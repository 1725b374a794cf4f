"""JSON-RPC 2.0 messages as vtmon writes them: one JSON object per line."""

from __future__ import annotations

import json
from typing import Any

from vtmon.client.wire import error

__all__ = ["RawJSON", "encode", "error", "readable_id"]


class RawJSON:
    """A result that is already JSON text: a Snapshot is serialised once and the same bytes
    answer every ``snapshot`` request until the next one (``encode`` splices them in)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of JSON."""
    result = message.get("result")
    if type(result) is RawJSON:
        rid = json.dumps(message.get("id")).encode()
        return b'{"jsonrpc":"2.0","id":%s,"result":%s}\n' % (rid, result.data)
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def readable_id(message: dict[str, Any]) -> Any:
    """The request's id when it is one JSON-RPC allows (a string, an integer, null), else
    None: an error about a request whose id cannot be read is sent with id null."""
    rid = message.get("id")
    if rid is None or type(rid) is str or type(rid) is int:
        return rid
    return None
