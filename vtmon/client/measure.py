"""What ``Client`` hands the application to time with: ``Measurement`` (a measurement with its
context, sent as a JSON line) and the class of ``Client.timer``'s objects."""

from __future__ import annotations

import json
from time import perf_counter
from typing import Any

from vtmon.protocol import wire


class Measurement:
    """A measurement in progress (``Client.start_measurement``), ended by
    ``Client.end_measurement``; ``value`` is its duration in ms once ended (None before)."""

    __slots__ = (
        "name", "t0", "value", "component", "operation", "user", "session", "request", "tags"
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        component: str | None,
        operation: str | None,
        user: str | None,
        session: str | None,
        request: str | None,
        tags: dict[str, Any],
    ) -> None:
        self.name = name
        self.component = component
        self.operation = operation
        self.user = user
        self.session = session
        self.request = request
        self.tags = tags
        self.value: float | None = None
        self.t0 = perf_counter()

    def context(self) -> dict[str, str]:
        """The JSON metric's ``context`` (docs/protocol.md, "JSON")."""
        ctx = {}
        for key, v in (
            ("component", self.component),
            ("userId", self.user),
            ("sessionId", self.session),
            ("requestId", self.request),
            ("operation", self.operation),
        ):
            if v is not None:
                ctx[key] = str(v)
        return ctx

    def line(self) -> str:
        """The JSON metric line that carries the measurement and its context."""
        obj: dict[str, Any] = {"name": self.name, "value": self.value, "unit": "ms"}
        if self.tags:
            obj["tags"] = {str(k): str(v) for k, v in self.tags.items()}
        ctx = self.context()
        if ctx:
            obj["context"] = ctx
        return json.dumps(obj, separators=(",", ":"), default=str)

    def __repr__(self) -> str:
        state = "running" if self.value is None else f"{self.value:.3f} ms"
        return f"Measurement({self.name!r}, {state}, {self.context()})"


def timer_type(buf: list[Any]) -> type:
    """The class of ``Client.timer``'s objects, closed over one client's buffer (a closure
    variable is the cheapest name ``__exit__`` can read)."""
    extend = buf.extend
    reused = wire.REUSED

    class Timer:
        """Times one ``with`` block (the clock starts when ``Client.timer`` is called)."""

        __slots__ = ("key", "t0")
        key: Any  # the series (or REUSED once the block ended)
        t0: float  # perf_counter() when the clock started
        # A type is no descriptor, so ``with`` calls NoneType() -> None: the block starts with
        # no Python call at all (the clock was read by Client.timer, which also made room).
        __enter__ = type(None)

        def __exit__(self, et: object, ev: object, tb: object) -> None:
            extend((self.key, (perf_counter() - self.t0) * 1000.0))
            self.key = reused  # used for a second block, it records nothing, and says so

    return Timer
