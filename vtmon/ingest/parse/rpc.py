"""JSON-RPC on a line connection: which JSON objects are JSON-RPC messages, and the answers
owed to request lines that are rejected (too long, a batch array)."""

from __future__ import annotations

import json
from typing import Any

from vtmon.model import Batch, RpcRefusal
from vtmon.protocol import jsonrpc

_REQUEST_HEAD = 256  # how much of a too-long line is looked at for a JSON-RPC request


def is_message(obj: dict[str, Any]) -> bool:
    """Whether a JSON object that has a ``jsonrpc`` or a ``method`` field is a JSON-RPC
    message (the server answers one that is not JSON-RPC 2.0) rather than a metric."""
    return obj.get("jsonrpc") == "2.0" or "name" not in obj


def too_long_request(head: bytes, max_line: int) -> RpcRefusal | None:
    """The answer a too-long line is owed when it starts like a JSON-RPC request (its sender
    waits for one), else None: metric senders, who read nothing, are not sent answers."""
    h = head[:_REQUEST_HEAD].lstrip()
    if h[:1] == b"{" and (b'"jsonrpc"' in h or b'"method"' in h):
        msg = f"Invalid request: the line is longer than the {max_line} bytes a line may have."
        return RpcRefusal(jsonrpc.INVALID_REQUEST, msg)
    return None


def rpc_batch(s: bytes, batch: Batch) -> bool:
    """A JSON-RPC batch array (``[{...}, ...]``): refused with one answer, as vtmon takes one
    request per line."""
    try:
        obj = json.loads(s)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    if type(obj) is not list or (obj and type(obj[0]) is not dict):
        return False
    msg = "Invalid request: batches are not supported; send one request per line."
    batch.rpc.append(RpcRefusal(jsonrpc.INVALID_REQUEST, msg))
    return True
