"""What ingest hands the engine: a ``Batch`` per read of a connection, its parts, the reasons a
line is rejected or a connection closed, and the connection counters the socket server keeps."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, final

from vtmon.model.keys import SeriesKey, Tags


@dataclass(slots=True)
class DistBuf:
    """Values of one distribution series in one batch; ``weights`` only when a rate was given.

    ``values`` is a list from text lines, or a float64 numpy array of finite values (never
    with weights) from binary frames, which the engine adds to its sketch as it is.
    """

    values: Any = field(default_factory=list)  # list[float] | NDArray[np.float64]
    weights: list[float] | None = None

    def add(self, value: float, weight: float = 1.0) -> None:
        if weight != 1.0 and self.weights is None:
            self.weights = [1.0] * len(self.values)
        self.values.append(value)
        if self.weights is not None:
            self.weights.append(weight)


def gauge_updates(ops: list[tuple[bool | None, Any]]) -> int:
    """How many updates a gauge's ops in a Batch hold (a run counts each of its values)."""
    return sum([1 if d is not None else len(v) for d, v in ops])


def finite_max(values: Any) -> float | None:
    """The largest finite value of a list or a numpy array (a DistBuf's values), else None."""
    m = values.max() if hasattr(values, "dtype") else max(values)
    if math.isfinite(m):
        # NaN never wins a comparison, so it may be skipped -- unless it came first and max()
        # kept it; isfinite catches that case and the infinities the series store drops.
        return float(m)
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else None


@dataclass(slots=True)
class TimedRun:
    """Distribution or counter samples of one series that carried their own timestamps:
    ``values[i]`` at ``ts[i]`` (seconds), each with ``weight`` (1 / sample rate).

    One run holds any number of samples, in line order, whichever seconds they fall in: the
    parser adds the lines of one series in bulk, the engine places them in their seconds.
    """

    key: SeriesKey
    values: list[float]
    ts: list[float]
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Event:
    """A DogStatsD event (``_e{..}``) or service check (``_sc|..``), kept as it came."""

    kind: str  # "event" | "service_check"
    title: str
    text: str = ""
    ts: float = 0.0
    tags: Tags = ()
    priority: str = ""
    alert_type: str = ""
    status: int | None = None  # service checks: 0 ok, 1 warning, 2 critical, 3 unknown
    hostname: str = ""


@dataclass(slots=True)
class Batch:
    """Everything parsed from one read of one connection, handed to the engine in one piece.

    ``accepted`` + sum(``rejected``) equals the number of lines that came in.
    """

    received: float = 0.0
    dist: dict[SeriesKey, DistBuf] = field(default_factory=dict)
    counts: dict[SeriesKey, float] = field(default_factory=dict)  # increments, already / rate
    # Updates in order: (is_delta, value), or (None, array) for a run of values set one after
    # another (a binary frame's, all finite), applied as a whole.
    gauges: dict[SeriesKey, list[tuple[bool | None, Any]]] = field(default_factory=dict)
    sets: dict[SeriesKey, set[str]] = field(default_factory=dict)
    timed: list[TimedRun] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # JSON-RPC messages in line order: requests and answers as parsed (counted in
    # ``accepted``), and RpcRefusal for request lines that were rejected but deserve an answer.
    rpc: list[Any] = field(default_factory=list)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def is_empty(self) -> bool:
        return (
            not (self.dist or self.counts or self.gauges or self.sets or self.timed or self.events)
            and not self.rejected
        )


@dataclass(frozen=True, slots=True)
class RpcRefusal:
    """A line that was a JSON-RPC request but is rejected (too long, a batch array): counted
    under a reject reason like any bad line, and answered with this error and id null, so that
    its sender does not wait for an answer forever."""

    code: int
    message: str
    id: Any = None  # the request's id, when it could be read


# Reasons a line is rejected; the UI and reports show these words.
REJECT_SYNTAX = "bad syntax"
REJECT_NUMBER = "bad number"
REJECT_TYPE = "unknown type"
REJECT_TOO_LONG = "too long"
REJECT_ENCODING = "bad encoding"
REJECT_TIME = "bad time"
REJECT_REQUEST = "bad request"  # a JSON-RPC request that is not JSON-RPC 2.0, or a batch array


# final: the parsers test ``type(r) is Reject`` (the cheapest test), and for a final class
# mypy then knows the other branch holds no Reject.
@final
class Reject(Enum):
    """Why a line is rejected, as the parsers hand it back: ``reason`` is the word the line is
    counted under in ``Batch.rejected`` (one of the ``REJECT_*`` above, which the UI, reports
    and the Snapshot's JSON show). The answer a rejected JSON-RPC request is owed travels
    apart, as an ``RpcRefusal``. Members are made once: a rejected line allocates nothing."""

    SYNTAX = REJECT_SYNTAX
    NUMBER = REJECT_NUMBER
    TYPE = REJECT_TYPE
    TOO_LONG = REJECT_TOO_LONG
    ENCODING = REJECT_ENCODING
    TIME = REJECT_TIME
    REQUEST = REJECT_REQUEST

    def __init__(self, reason: str) -> None:
        self.reason = reason  # as ``value``, read as a plain attribute (no descriptor call)


# Reasons vtmon closes a connection for one of its limits (docs/protocol.md).
CLOSED_UNREAD = "unread answers"
CLOSED_BUFFER_FULL = "buffer full"
CLOSED_FRAME_TIMEOUT = "frame timeout"
CLOSED_REASONS = (CLOSED_UNREAD, CLOSED_BUFFER_FULL, CLOSED_FRAME_TIMEOUT)


class ConnectionCounters:
    """Counters the socket server updates from its own thread (plain int updates, GIL-atomic);
    each Snapshot copies them into its IngestStats."""

    def __init__(self) -> None:
        self.open = 0
        self.total = 0
        self.bytes = 0
        self.client_dropped = 0
        self.refused = 0  # closed at once: max_connections were open
        self.closed: Counter[str] = Counter()  # connections closed for a limit, by reason
