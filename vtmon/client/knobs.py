"""Knobs: values of the application that vtmon may tune (docs/protocol.md, "Knobs")."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vtmon.model import VALUE_MAX, bounded
from vtmon.protocol.jsonrpc import INVALID_PARAMS, REFUSED, error, result

if TYPE_CHECKING:
    from vtmon.client.core import Client

KNOB_KINDS = ("buffers", "caching", "connection_pools", "workers", "quality", "gc", "custom")


class Knob:
    """A tunable value of the application, registered with vtmon (``Client.knob``).

    ``value`` is the value in effect (a float; reading it costs an attribute access).
    ``registered`` is True once vtmon accepted the registration on the current connection;
    ``error`` says why vtmon refused it ("" otherwise).
    """

    def __init__(
        self,
        client: Client,
        name: str,
        value: float,
        min: float,
        max: float,
        *,
        step: float | None,
        unit: str,
        component: str,
        kind: str,
        on_change: Callable[[float], Any] | None,
    ) -> None:
        self.name = name
        self.value = value
        self.min = min
        self.max = max
        self.step = step
        self.unit = unit
        self.component = component
        self.kind = kind
        self.on_change = on_change
        self.registered = False
        self.error = ""
        self._client = client
        self._ready = threading.Event()

    def update(self, value: float) -> None:
        """The application changed the value itself: keep it and tell vtmon (re-register)."""
        v = number(value, "value")
        if not self.min <= v <= self.max:
            raise ValueError(f"{v:g} is outside {self.name}'s bounds [{self.min:g}, {self.max:g}].")
        self.value = v
        self._client._register(self)

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until vtmon accepted the registration on the current connection."""
        return self._ready.wait(timeout)

    def params(self) -> dict[str, Any]:
        """The ``knobs.register`` params."""
        p: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "min": self.min,
            "max": self.max,
            "kind": self.kind,
        }
        if self.step is not None:
            p["step"] = self.step
        if self.unit:
            p["unit"] = self.unit
        if self.component:
            p["component"] = self.component
        return p

    def __repr__(self) -> str:
        return f"Knob({self.name!r}, value={self.value:g}, [{self.min:g}, {self.max:g}])"


def number(v: object, what: str) -> float:
    """A knob's number as vtmon takes it (within ``VALUE_MAX``); ValueError otherwise."""
    f = bounded(v)
    if f is None:
        raise ValueError(f"A knob's {what} must be a number from -1e100 to 1e100, not {v!r}.")
    return f


def check(
    name: str, value: float, min: float, max: float, step: float | None, kind: str
) -> tuple[float, float, float]:
    """The value and bounds as floats; ValueError for what vtmon would refuse."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError("A knob's name is a non-empty string of at most 200 characters.")
    v, lo, hi = number(value, "value"), number(min, "min"), number(max, "max")
    if not lo <= v <= hi:
        raise ValueError(f"Knob {name!r}: value {v:g} is outside [{lo:g}, {hi:g}].")
    if step is not None and not number(step, "step") >= 1 / VALUE_MAX:
        raise ValueError(f"Knob {name!r}: step must be a number from 1e-100 to 1e100.")
    if kind not in KNOB_KINDS:
        raise ValueError(f"Knob {name!r}: kind must be one of {', '.join(KNOB_KINDS)}.")
    return v, lo, hi


def set_reply(knob: Knob | None, name: Any, rid: Any, value: Any) -> dict[str, Any]:
    """Apply a ``knobs.set`` from vtmon to ``knob`` and give the answer (on the reader
    thread: ``on_change`` runs here, and raising in it refuses the value)."""
    if knob is None:
        return error(rid, INVALID_PARAMS, f"This application has no knob named {name!r}.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return error(rid, INVALID_PARAMS, f"{value!r} is not a number.")
    v = float(value)
    if not (math.isfinite(v) and knob.min <= v <= knob.max):
        return error(
            rid, INVALID_PARAMS, f"{v:g} is outside {name}'s bounds [{knob.min:g}, {knob.max:g}]."
        )
    if knob.on_change is not None:
        try:
            got = knob.on_change(v)
        except Exception as e:  # the application refuses; vtmon is told why
            return error(rid, REFUSED, str(e) or type(e).__name__)
        if (
            isinstance(got, (int, float))
            and not isinstance(got, bool)
            and math.isfinite(got)
            and knob.min <= got <= knob.max
        ):
            v = float(got)
    knob.value = v
    return result(rid, {"value": v})
