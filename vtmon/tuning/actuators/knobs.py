"""Knobs of the monitored application: the registry of the knobs applications register on
their connections (``knobs.register``, docs/protocol.md), the ``knobs.set`` requests in flight to
them, and ``KnobActuator``, the tuner's face of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from vtmon.model import VALUE_MAX, Knob, TuningAction, bounded
from vtmon.protocol import jsonrpc
from vtmon.tuning.actuators.base import Done, Outcome, call_done

log = logging.getLogger(__name__)


class Connection(Protocol):
    """One application connection on the socket, as the engine sees it (the server owns it)."""

    id: int
    owner: bool  # the peer is vtmon's own user or root (docs/protocol.md, "Who may call what")

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one JSON-RPC message to the application (any thread); False when closed."""
        ...


KNOB_KINDS = ("buffers", "caching", "connection_pools", "workers", "quality", "gc", "custom")
KNOB_NAME_MAX = 200
KNOB_TEXT_MAX = 200  # unit and component
KNOBS_MAX = 1000  # knobs held at once, over every connection
KNOB_TIMEOUT_S = 5.0
ERROR_TEXT_MAX = 300  # how much of an application's error message an Outcome keeps


class KnobTaken(ValueError):
    """The knob's name is held by another live connection (JSON-RPC code REFUSED)."""

    code = jsonrpc.REFUSED


@dataclass(slots=True)
class _Pending:
    conn_id: int
    name: str
    value: float
    action: str
    done: Done
    deadline: float


LostCallback = Callable[[int, tuple[str, ...]], None]
RegisteredCallback = Callable[[Knob], None]


class KnobRegistry:
    """The knobs applications registered on their connections, and the ``knobs.set`` requests
    in flight to them.

    Thread-safe: the socket server's thread registers, answers and closes; the tuner sets and
    expires from the engine's thread. Callbacks (``done``, ``on_lost``, ``on_registered``) are
    called outside the registry's lock, from whichever of those threads caused them; a set
    refused at once (unknown knob, value out of bounds, closed connection) calls ``done``
    before ``set`` returns.

    ``clock`` is a monotonic clock in seconds (the engine's injected one); a set not answered
    within ``timeout_s`` of being sent fails at the first ``expire`` at or after its deadline.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = KNOB_TIMEOUT_S,
        on_lost: LostCallback | None = None,
        on_registered: RegisteredCallback | None = None,
        max_knobs: int = KNOBS_MAX,
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        # Set these after construction when the listener comes later (the tuner does):
        self.on_lost = on_lost  # (conn_id, knob names): a connection closed with these knobs
        self.on_registered = on_registered  # (knob): registered or registered again
        self.max_knobs = max_knobs
        self._lock = threading.Lock()
        self._knobs: dict[str, Knob] = {}
        self._conns: dict[int, Connection] = {}  # the connections that hold knobs
        self._pending: dict[int, _Pending] = {}  # by the JSON-RPC id vtmon sent
        self._last_id = 0

    # -- what applications do (the server's thread) -------------------------------------------

    def register(self, conn: Connection | None, params: Any) -> dict[str, Any]:
        """Register (or, from the same connection, update) a knob; returns the knob as the
        JSON-RPC result. Raises ValueError (KnobTaken when another connection holds the name)
        with one sentence for the application."""
        if conn is None:
            raise ValueError("knobs.register must come on the application's own connection.")
        knob = _knob_from_params(params, conn.id)
        with self._lock:
            held = self._knobs.get(knob.name)
            if held is not None and held.connection != conn.id:
                raise KnobTaken(
                    f"Knob {knob.name!r} is already registered by another connection; "
                    "a knob belongs to one connection until it closes."
                )
            if held is None and len(self._knobs) >= self.max_knobs:
                raise ValueError(
                    f"vtmon already holds {self.max_knobs} knobs; unregister some first."
                )
            self._knobs[knob.name] = knob
            self._conns[conn.id] = conn
        listener = self.on_registered
        if listener is not None:
            try:
                listener(knob)
            except Exception:  # the tuner's bug must not fail the application's request
                log.exception("on_registered failed")
        return knob_dict(knob)

    def unregister(self, conn: Connection | None, params: Any) -> bool:
        """Remove a knob the connection registered; True when it was there."""
        if conn is None:
            raise ValueError("knobs.unregister must come on the application's own connection.")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("knobs.unregister needs the knob's name as a non-empty string.")
        with self._lock:
            held = self._knobs.get(name)
            if held is None:
                return False
            if held.connection != conn.id:
                raise KnobTaken(f"Knob {name!r} is registered by another connection.")
            del self._knobs[name]
        return True

    def handle_response(self, conn_id: int, message: dict[str, Any]) -> bool:
        """An application's answer to a ``knobs.set``; False when it answers nothing in flight
        (a late answer after the timeout, an unknown id, or from the wrong connection)."""
        rid = message.get("id")
        if type(rid) is not int:
            return False
        with self._lock:
            p = self._pending.get(rid)
            if p is None or p.conn_id != conn_id:
                return False
            del self._pending[rid]
            if "error" in message:
                outcome = Outcome(
                    False,
                    f"The application refused {p.name} = {_num_text(p.value)}: "
                    f"{_error_text(message.get('error'))}",
                )
            else:
                value = _result_value(message.get("result"), p.value)
                held = self._knobs.get(p.name)
                if held is not None and held.connection == conn_id:
                    self._knobs[p.name] = replace(held, value=value)
                outcome = Outcome(True, f"{p.name} set to {_num_text(value)}.", value)
        call_done(p.done, outcome)
        return True

    def connection_closed(self, conn_id: int) -> tuple[str, ...]:
        """Fail the sets in flight on the connection and drop its knobs; returns their names
        (``on_lost`` hears them too, so the tuner can mark the actions on them lost)."""
        with self._lock:
            failed = [(rid, p) for rid, p in self._pending.items() if p.conn_id == conn_id]
            for rid, _ in failed:
                del self._pending[rid]
            names = tuple(sorted(n for n, k in self._knobs.items() if k.connection == conn_id))
            for n in names:
                del self._knobs[n]
            self._conns.pop(conn_id, None)
        for _, p in failed:
            call_done(p.done, Outcome(False, "The application disconnected before answering."))
        listener = self.on_lost
        if names and listener is not None:
            try:
                listener(conn_id, names)
            except Exception:
                log.exception("on_lost failed")
        return names

    # -- what the tuner does (the engine's thread) ---------------------------------------------

    def knobs(self) -> tuple[Knob, ...]:
        """Every registered knob, by name."""
        with self._lock:
            return tuple(self._knobs[n] for n in sorted(self._knobs))

    def get(self, name: str) -> Knob | None:
        with self._lock:
            return self._knobs.get(name)

    def in_flight(self) -> int:
        """How many sets wait for an answer."""
        with self._lock:
            return len(self._pending)

    def set(self, name: str, value: Any, action_id: str, done: Done) -> None:
        """Send ``knobs.set`` to the connection that registered ``name``; ``done`` gets the
        application's answer, or a failure (refused here, disconnect, or timeout)."""
        v = bounded(value)
        with self._lock:
            knob = self._knobs.get(name)
            conn = self._conns.get(knob.connection) if knob is not None else None
            if knob is None or conn is None:
                outcome = Outcome(
                    False, f"Knob {name!r} is not registered (its application is not connected)."
                )
            elif v is None:
                outcome = Outcome(False, f"{value!r} is not a number; {name} was not changed.")
            elif not knob.min <= v <= knob.max:
                outcome = Outcome(
                    False,
                    f"{_num_text(v)} is outside {name}'s bounds "
                    f"[{_num_text(knob.min)}, {_num_text(knob.max)}]; nothing was sent.",
                )
            else:
                self._last_id += 1
                rid = self._last_id
                # In flight before it is sent: the answer may come before send() returns.
                self._pending[rid] = _Pending(
                    knob.connection, name, v, action_id, done, self.clock() + self.timeout_s
                )
                message = jsonrpc.request(
                    "knobs.set",
                    {"name": name, "value": wire_number(v), "action": action_id},
                    rid,
                )
                if conn.send(message):
                    return
                del self._pending[rid]
                outcome = Outcome(False, f"The connection that registered {name} is closed.")
        call_done(done, outcome)

    def expire(self, now: float | None = None) -> int:
        """Fail every set whose answer is overdue at ``now`` (the registry's clock when None);
        returns how many. A later answer to one of them is ignored."""
        t = self.clock() if now is None else now
        with self._lock:
            late = [(rid, p) for rid, p in self._pending.items() if p.deadline <= t]
            for rid, _ in late:
                del self._pending[rid]
        why = f"No answer from the application within {_num_text(self.timeout_s)} s."
        for _, p in late:
            call_done(p.done, Outcome(False, why))
        return len(late)


class KnobActuator:
    """The tuner's actuator for application knobs (``action.target`` is the knob's name)."""

    kind: Final = "knob"

    def __init__(self, registry: KnobRegistry) -> None:
        self.registry = registry

    def read(self, target: str) -> float | None:
        """The knob's current value, None when it is not registered."""
        knob = self.registry.get(target)
        return None if knob is None else knob.value

    def apply(self, action: TuningAction, done: Done) -> None:
        self.registry.set(action.target, action.value, action.id, done)

    def revert(self, action: TuningAction, done: Done) -> None:
        self.registry.set(action.target, action.previous, action.id, done)


def knob_dict(knob: Knob) -> dict[str, Any]:
    """A knob as JSON (the ``knobs.register`` result and a ``knobs.list`` entry)."""
    return {
        "name": knob.name,
        "value": wire_number(knob.value),
        "min": wire_number(knob.min),
        "max": wire_number(knob.max),
        "step": None if knob.step is None else wire_number(knob.step),
        "unit": knob.unit,
        "component": knob.component,
        "kind": knob.kind,
        "connection": knob.connection,
    }


def _knob_from_params(params: Any, conn_id: int) -> Knob:
    if not isinstance(params, dict):
        raise ValueError("knobs.register needs params as an object with name, value, min, max.")
    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("The knob's name must be a non-empty string.")
    if len(name) > KNOB_NAME_MAX:
        raise ValueError(f"The knob's name is longer than {KNOB_NAME_MAX} characters.")
    nums: dict[str, float] = {}
    for key in ("value", "min", "max"):
        if key not in params:
            raise ValueError(f"Knob {name!r} needs {key!r}.")
        v = bounded(params[key])
        if v is None:
            raise ValueError(
                f"Knob {name!r}: {key} must be a number from -1e100 to 1e100, "
                f"not {_shown(params[key])}."
            )
        nums[key] = v
    if nums["min"] > nums["max"]:
        raise ValueError(f"Knob {name!r}: min {nums['min']:g} is above max {nums['max']:g}.")
    if not nums["min"] <= nums["value"] <= nums["max"]:
        raise ValueError(
            f"Knob {name!r}: value {nums['value']:g} is outside [{nums['min']:g}, {nums['max']:g}]."
        )
    step = params.get("step")
    if step is not None:
        s = bounded(step)
        if s is None or s < 1 / VALUE_MAX:
            raise ValueError(
                f"Knob {name!r}: step must be a number from 1e-100 to 1e100, not {_shown(step)}."
            )
        step = s
    text: dict[str, str] = {}
    for key in ("unit", "component"):
        given = params.get(key, "")
        if given is None:
            given = ""
        if not isinstance(given, str) or len(given) > KNOB_TEXT_MAX:
            raise ValueError(
                f"Knob {name!r}: {key} must be a string of at most {KNOB_TEXT_MAX} characters."
            )
        text[key] = given
    kind = params.get("kind", "custom")
    if kind is None:
        kind = "custom"
    if kind not in KNOB_KINDS:
        raise ValueError(f"Knob {name!r}: kind {kind!r} is not one of {', '.join(KNOB_KINDS)}.")
    return Knob(
        name=name,
        value=nums["value"],
        min=nums["min"],
        max=nums["max"],
        step=step,
        unit=text["unit"],
        component=text["component"],
        kind=kind,
        connection=conn_id,
    )


def wire_number(v: float) -> int | float:
    """A whole number goes on the wire as an integer (``32``, not ``32.0``), so a client
    decoding into an integer type takes it."""
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def _shown(v: object) -> str:
    """A refused value in a message: its repr, cut short (an integer may have 4,000 digits)."""
    try:
        text = repr(v)
    except ValueError:  # an integer beyond Python's digit limit
        return "a number too long to show"
    return text if len(text) <= 40 else text[:37] + "..."


def _num_text(v: float) -> str:
    return f"{v:g}"


def _error_text(error: object) -> str:
    msg = error.get("message") if isinstance(error, dict) else None
    if not isinstance(msg, str) or not msg.strip():
        return "no reason given."
    line = msg.strip().splitlines()[0][:ERROR_TEXT_MAX].rstrip()
    return line if line.endswith((".", "!", "?")) else line + "."


def _result_value(result: object, sent: float) -> float:
    """The value the application says is in effect (it may round to its step), else the sent."""
    if isinstance(result, dict):
        v = bounded(result.get("value"))
        if v is not None:
            return v
    return sent
