"""A client's knobs as vtmon knows them: their ``knobs.register`` requests, vtmon's answers to
those, and vtmon's ``knobs.set`` requests (docs/protocol.md, "Knobs")."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from vtmon.client.knobs import Knob, set_reply
from vtmon.protocol import jsonrpc
from vtmon.protocol.jsonrpc import error


class KnobRegistry:
    """The knobs of one client and their registration on its current connection.

    ``lock`` is the client's lock, which also guards the connection (a registration belongs to
    one connection): ``add``, ``all``, ``queue`` and ``answer`` take it, the others are called
    with it held.
    """

    __slots__ = ("knobs", "pending", "_lock", "_ids", "_last_id")

    def __init__(self, lock: threading.Lock) -> None:
        self.knobs: dict[str, Knob] = {}
        self.pending: deque[str] = deque()  # JSON-RPC lines sent ahead of the metrics
        self._lock = lock
        self._ids: dict[int, str] = {}  # knobs.register in flight: id -> knob name
        self._last_id = 1  # 1 is the hello's

    def add(self, knob: Knob) -> None:
        with self._lock:
            if knob.name in self.knobs:
                raise ValueError(f"This client already has a knob named {knob.name!r}.")
            self.knobs[knob.name] = knob

    def all(self) -> list[Knob]:
        with self._lock:
            return list(self.knobs.values())

    def queue(self, knob: Knob) -> None:
        """(Re-)register ``knob`` with the next round."""
        with self._lock:
            self.pending.append(self._request(knob))

    def take(self, fresh: bool) -> list[str]:
        """The lines to send ahead of a round's metrics (lock held); on a ``fresh`` connection,
        every knob registers afresh (vtmon may have restarted)."""
        if fresh:
            self.pending.clear()
            return [self._request(k) for k in self.knobs.values()]
        lines = list(self.pending)
        self.pending.clear()
        return lines

    def _request(self, knob: Knob) -> str:
        """A knobs.register request (lock held)."""
        self._last_id += 1
        self._ids[self._last_id] = knob.name
        req = jsonrpc.request("knobs.register", knob.params(), self._last_id)
        return json.dumps(req, separators=(",", ":"))

    def answered(self, msg: dict[str, Any]) -> None:
        """vtmon's answer to one of the current connection's knobs.register requests (lock
        held)."""
        rid = msg.get("id")
        if type(rid) is not int:
            return
        name = self._ids.pop(rid, None)
        knob = self.knobs.get(name) if name is not None else None
        if knob is None:
            return
        if "error" in msg:
            err = msg.get("error")
            text = err.get("message") if isinstance(err, dict) else None
            knob.error = text if isinstance(text, str) else "vtmon refused the knob."
            knob.registered = False
            knob._ready.clear()
        else:
            knob.error = ""
            knob.registered = True
            knob._ready.set()

    def unregistered(self) -> None:
        """The connection is gone (lock held)."""
        self._ids.clear()
        for knob in self.knobs.values():
            knob.registered = False
            knob._ready.clear()

    def answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The answer to vtmon's request ``msg``: a knobs.set is applied (``on_change`` runs
        here, without the lock), any other method is none of a client's."""
        method = msg.get("method")
        rid = msg.get("id")
        if method != "knobs.set":
            return error(rid, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {method}.")
        params = msg.get("params")
        if not isinstance(params, dict):
            return error(rid, jsonrpc.INVALID_PARAMS, "knobs.set needs params with name and value.")
        name = params.get("name")
        with self._lock:
            knob = self.knobs.get(name) if isinstance(name, str) else None
        return set_reply(knob, name, rid, params.get("value"))
