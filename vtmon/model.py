"""The values that cross module boundaries: plain dataclasses, no behaviour beyond conversion.

Everything the ingest hands the engine (``Batch``) and everything the engine hands a screen,
a script or a report (``Snapshot``) is defined here, so that no module needs to import
another's internals to talk to it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum, StrEnum
from typing import Any, final


class Kind(StrEnum):
    """What a series measures, decided by the wire type."""

    DISTRIBUTION = "distribution"  # ms, h, d: latencies and other value distributions
    COUNTER = "counter"  # c
    GAUGE = "gauge"  # g
    SET = "set"  # s


Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """A series: metric name plus sorted tags, and the kind its samples arrived as."""

    name: str
    tags: Tags = ()
    kind: Kind = Kind.DISTRIBUTION

    @property
    def component(self) -> str:
        """The ``component`` tag, else the part of the name before the first dot."""
        for k, v in self.tags:
            if k == "component" and v:
                return v
        return self.name.split(".", 1)[0]

    @property
    def id(self) -> str:
        """A stable, human-readable identity: ``name{k=v,k2=v2}``."""
        if not self.tags:
            return self.name
        inner = ",".join(f"{k}={v}" if v else k for k, v in self.tags)
        return f"{self.name}{{{inner}}}"


def make_tags(pairs: dict[str, str] | list[tuple[str, str]] | None) -> Tags:
    """Sorted, de-duplicated tag tuple (the last value of a repeated key wins)."""
    if not pairs:
        return ()
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted(dict(items).items()))


# ---------------------------------------------------------------------------------------------
# ingest -> engine


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


# What a client may send (docs/protocol.md, "Numbers"), checked where it enters. Within these,
# no sum the engine, the store or an exporter makes can leave the float64 range: values up to
# 1e100 weighed up to 1e6 leave more than 200 orders of magnitude for the number of samples.
TIME_MAX_S = 4102444800.0  # 2100-01-01 UTC: times lie in [0, TIME_MAX_S), seconds
VALUE_MAX = 1e100  # |value| <= VALUE_MAX, finite
RATE_MIN = 1e-6  # a sample rate lies in [RATE_MIN, 1]: a sample weighs at most 1e6
COUNT_MAX = 2**63 - 1  # SQLite's largest integer: no count kept or reported goes beyond
CLIENT_COUNT_MAX = 2**53  # a count one message may report (exact as a float)


def bounded(v: object) -> float | None:
    """A number a client sent (a JSON value: int or float, not bool) as a float within
    ``VALUE_MAX``, else None (NaN, infinities, integers beyond the float range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:  # an integer beyond float range
        return None
    return f if -VALUE_MAX <= f <= VALUE_MAX else None


def as_float(v: object) -> float | None:
    """``v`` as a finite float, or None: for a number read back from where anything may have
    been written (a history file, an older vtmon's Snapshot) before an exporter or a report
    computes with it. Not numbers (bools and strings neither), NaN, infinities and integers
    beyond the float range give None."""
    if type(v) is float:
        return v if math.isfinite(v) else None
    if isinstance(v, (bool, str, bytes)) or v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def as_count(v: object) -> int:
    """``v`` read back as a count (see ``as_float``): a whole number clamped to
    ``[0, COUNT_MAX]``; 0 when it is no number."""
    if type(v) is int:
        return min(max(v, 0), COUNT_MAX)
    f = as_float(v)
    return 0 if f is None else min(int(max(f, 0.0)), COUNT_MAX)


# Reasons vtmon closes a connection for one of its limits (docs/protocol.md).
CLOSED_UNREAD = "unread answers"
CLOSED_BUFFER_FULL = "buffer full"
CLOSED_FRAME_TIMEOUT = "frame timeout"
CLOSED_REASONS = (CLOSED_UNREAD, CLOSED_BUFFER_FULL, CLOSED_FRAME_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# engine -> screen / scripts / report

WINDOWS: tuple[tuple[str, int], ...] = (("10s", 10), ("1m", 60), ("5m", 300))
RING_S = max(w for _, w in WINDOWS)  # seconds a series keeps: exactly the longest window

_ERROR_SUFFIXES = (".error_count", ".errors", ".error")
_OPERATION_SUFFIXES = ("throughput", ".requests", ".operations")


def is_error_counter(name: str) -> bool:
    """A counter whose name says it counts errors (``error_count``, ``*.errors``, ...)."""
    return name == "error_count" or name.endswith(_ERROR_SUFFIXES)


def is_operation_counter(name: str) -> bool:
    """A counter whose name says it counts operations (``*.requests``, ``throughput``, ...)."""
    return name.endswith(_OPERATION_SUFFIXES)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Statistics of one series over one window. Empty windows have count 0 and None values."""

    count: float = 0.0
    rate: float = 0.0
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One chart point of a distribution: percentiles of the 10 s window ending at ``t``."""

    t: float
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class SeriesStats:
    name: str
    tags: Tags
    component: str
    kind: Kind
    windows: dict[str, WindowStats]  # keyed by WINDOWS names
    last: float | None = None  # gauges: current value; sets: unique members in 1 m
    target_ms: float | None = None  # distributions: the component's latency target
    history: tuple[HistoryPoint, ...] = ()

    @property
    def id(self) -> str:
        return SeriesKey(self.name, self.tags, self.kind).id


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """Errors of one component over the last minute."""

    component: str
    errors: float
    operations: float
    error_rate: float | None  # errors / operations, None without operations
    by_type: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pressure:
    """Pressure stall information for one resource (percent of time stalled)."""

    resource: str  # cpu | memory | io
    some_avg10: float
    some_avg60: float
    some_avg300: float
    full_avg10: float | None = None
    full_avg60: float | None = None
    full_avg300: float | None = None


@dataclass(frozen=True, slots=True)
class DiskUsage:
    mount: str
    total: int
    used: int
    percent: float


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """The watched process (``--pid``), when there is one."""

    pid: int
    name: str = ""
    running: bool = True
    cpu_percent: float | None = None  # of one core: 200 means two cores busy
    rss: int | None = None  # bytes
    threads: int | None = None
    nice: int | None = None
    note: str = ""  # why readings are missing (gone, access denied)


@dataclass(frozen=True, slots=True)
class Resources:
    """One reading of the machine, rates per second since the previous reading."""

    t: float = 0.0
    cpu_percent: float | None = None
    per_cpu: tuple[float, ...] = ()
    load: tuple[float, float, float] | None = None
    cpu_count: int = 0
    mem_total: int = 0
    mem_used: int = 0
    mem_available: int = 0
    mem_percent: float | None = None
    swap_total: int = 0
    swap_used: int = 0
    swap_percent: float | None = None
    swap_in_rate: float | None = None  # bytes/s
    swap_out_rate: float | None = None
    iowait_percent: float | None = None
    disks: tuple[DiskUsage, ...] = ()
    disk_read_rate: float | None = None  # bytes/s
    disk_write_rate: float | None = None
    disk_read_iops: float | None = None
    disk_write_iops: float | None = None
    net_rx_rate: float | None = None  # bytes/s
    net_tx_rate: float | None = None
    net_rx_packets: float | None = None  # packets/s
    net_tx_packets: float | None = None
    net_errors: float | None = None  # errors + drops per second
    pressure: tuple[Pressure, ...] = ()
    pressure_note: str = ""  # why pressure is missing, when it is
    process: ProcessStats | None = None  # the watched process (--pid)


@dataclass(frozen=True, slots=True)
class ResourceHistory:
    """Recent resource readings for the charts, oldest first, one per collection."""

    t: tuple[float, ...] = ()
    cpu: tuple[float, ...] = ()
    mem: tuple[float, ...] = ()
    disk_read: tuple[float, ...] = ()
    disk_write: tuple[float, ...] = ()
    net_rx: tuple[float, ...] = ()
    net_tx: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Temperature:
    chip: str
    label: str
    current: float
    high: float | None = None
    critical: float | None = None


@dataclass(frozen=True, slots=True)
class Fan:
    chip: str
    label: str
    rpm: float


@dataclass(frozen=True, slots=True)
class PowerReading:
    source: str  # "powercap" | "hwmon"
    label: str
    watts: float


@dataclass(frozen=True, slots=True)
class Battery:
    percent: float
    plugged: bool | None
    seconds_left: float | None


@dataclass(frozen=True, slots=True)
class Sensors:
    temperatures: tuple[Temperature, ...] = ()
    fans: tuple[Fan, ...] = ()
    power: tuple[PowerReading, ...] = ()
    battery: Battery | None = None
    note: str = ""  # why there is nothing to show, when there is nothing

    @property
    def empty(self) -> bool:
        return not (self.temperatures or self.fans or self.power or self.battery)


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


@dataclass(frozen=True, slots=True)
class IngestStats:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    connections: int = 0  # open now
    connections_total: int = 0
    bytes: int = 0
    events: int = 0
    samples_dropped: int = 0  # refused by the engine (series limit), or left when it stopped
    client_dropped: int = 0  # reported by clients that dropped samples while vtmon was away
    refused: int = 0  # connections closed at once: [limits] max_connections were open
    closed: dict[str, int] = field(
        default_factory=dict
    )  # connections closed for a limit, by reason

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


# ---------------------------------------------------------------------------------------------
# analysis: what is wrong, why, what next (vtmon/engine/analysis and friends)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def weight(self) -> float:
        return SEVERITY_WEIGHT[self]

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)


SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)
SEVERITY_WEIGHT: dict[Severity, float] = {
    Severity.LOW: 0.2,
    Severity.MEDIUM: 0.4,
    Severity.HIGH: 0.7,
    Severity.CRITICAL: 0.9,
}
# Bottleneck types and how much each weighs in the impact (the original design's weights).
TYPE_WEIGHT: dict[str, float] = {
    "memory": 1.0,
    "cpu": 0.9,
    "latency": 0.8,
    "database": 0.8,
    "errors": 0.8,
    "throughput": 0.7,
    "io": 0.6,
    "network": 0.5,
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One metric value behind a finding."""

    name: str  # e.g. "p95 (1m)", "memory_heap_used", "PSI cpu some avg10"
    value: float
    threshold: float | None = None
    unit: str = ""  # "ms", "%", "MB", "/s", ""


@dataclass(frozen=True, slots=True)
class Cause:
    """A resource signal that changed when an incident started, ranked by how much."""

    signal: str  # e.g. "psi_cpu_some"
    label: str  # e.g. "CPU saturation (PSI cpu some)"
    before: float  # baseline window median
    after: float  # incident window median
    score: float  # 0..1, higher is more suspicious (KS distance)
    unit: str = "%"

    @property
    def text(self) -> str:
        u = self.unit
        return f"{self.label} {_fmt_num(self.before)}{u} -> {_fmt_num(self.after)}{u}"


@dataclass(frozen=True, slots=True)
class Bottleneck:
    id: str  # stable while active: "<rule>:<component>"
    type: str  # key of TYPE_WEIGHT
    severity: Severity
    component: str  # a component name, or "system"
    description: str
    impact: float  # severity weight x type weight
    confidence: float  # 0..1
    evidence: tuple[Evidence, ...]
    suggested_action: str
    started: float
    resolved: float | None = None
    causes: tuple[Cause, ...] = ()
    rule: str = ""

    @property
    def cause_text(self) -> str:
        return f"likely cause: {self.causes[0].text}" if self.causes else ""


@dataclass(frozen=True, slots=True)
class Alert:
    t: float
    severity: Severity
    kind: str  # high_latency | memory | error_spike | bottleneck | resolved | regression
    message: str
    component: str
    metric: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Regression:
    """A step change found by the change detector, even below any absolute threshold."""

    series: str  # series id, or "<component> error rate"
    component: str
    metric: str  # "p95" | "error_rate"
    before: float
    after: float
    change: float  # relative: +0.38 is +38 %
    since: float  # when the change started (estimated)
    detected: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    component: str  # or "system" for disk
    metric: str  # "memory" | "disk" | "p95"
    unit: str
    current: float
    forecast: float  # value expected at t + horizon_s
    horizon_s: float
    confidence: float  # 0..1
    limit: float | None = None
    eta_s: float | None = None  # seconds until the limit is reached, None when not within horizon
    message: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    component: str  # a component, or "overall"
    score: float  # 0..1
    status: str  # good | warning | critical
    penalties: dict[str, float] = field(default_factory=dict)  # what took the score down


@dataclass(frozen=True, slots=True)
class Recommendation:
    component: str  # a component, or "all" for cross-component advice
    priority: str  # high | medium | low
    title: str
    description: str
    expected_improvement: str
    implementation: str


# -- tuning ------------------------------------------------------------------------------------


class ActionState(StrEnum):
    """Where a tuning action is in its life.

    proposed -> (approved by a key, or at once in auto mode) applying -> evaluating -> kept,
    or -> reverting -> reverted. A proposal may be rejected or expire (its bottleneck resolved);
    applying or reverting may fail; an action on a knob whose connection closed is lost.
    """

    PROPOSED = "proposed"
    APPLYING = "applying"
    EVALUATING = "evaluating"
    KEPT = "kept"
    REVERTING = "reverting"
    REVERTED = "reverted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    LOST = "lost"

    @property
    def open(self) -> bool:
        """Still in flight or still applied (not a final decision)."""
        return self in (
            ActionState.PROPOSED,
            ActionState.APPLYING,
            ActionState.EVALUATING,
            ActionState.REVERTING,
        )


ACTUATORS = ("knob", "process", "command")  # action classes, each with its own mode
MODES = ("off", "ask", "auto")  # off: recommend only; ask: wait for a key; auto: apply


@dataclass(frozen=True, slots=True)
class Knob:
    """A tunable value an application registered on its connection (``knobs.register``)."""

    name: str
    value: float
    min: float
    max: float
    step: float | None = None
    unit: str = ""
    component: str = ""
    kind: str = "custom"  # buffers | caching | connection_pools | workers | quality | gc | custom
    connection: int = 0  # the connection that registered it; only it receives sets


@dataclass(frozen=True, slots=True)
class TuningAction:
    """One proposed or applied change, with how to undo it and what it did."""

    id: str  # short and stable, what `vtmon approve ID` takes: "a1", "a2", ...
    strategy: str  # e.g. "enable_caching", "renice", or a configured command's name
    actuator: str  # one of ACTUATORS
    target: str  # the knob's name, "nice" / "ionice" / "affinity" of the pid, the command's name
    component: str
    bottleneck: str  # the id of the bottleneck it answers
    bottleneck_type: str
    title: str  # "Enable caching in api-server"
    why: str  # one sentence: the bottleneck and its numbers
    expected: str  # "p95 down by about 85 %"
    previous: Any = None  # saved before the change; what a revert sets back
    value: Any = None  # what the change sets
    metric: str = ""  # what the evaluation compares: "p95 api-server", "memory api-server", "cpu"
    before: float | None = None
    after: float | None = None
    effectiveness: float | None = None  # 0..1 once evaluated
    state: ActionState = ActionState.PROPOSED
    mode: str = "ask"  # the mode it was proposed in
    proposed_at: float = 0.0
    applied_at: float | None = None
    evaluate_until: float | None = None  # when its evaluation window ends
    decided_at: float | None = None
    message: str = ""  # the last thing that happened to it, one sentence
    recovered: bool = False  # left applied by a previous run (found in the journal at start)
    in_effect: bool = False  # the change may be in effect now: quitting or `r` would undo it


def _fmt_num(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a screen or a report needs at one instant. Immutable; share it freely."""

    t: float
    host: str
    socket: str
    started: float
    series: tuple[SeriesStats, ...] = ()
    errors: tuple[ErrorStats, ...] = ()
    resources: Resources = field(default_factory=Resources)
    resource_history: ResourceHistory = field(default_factory=ResourceHistory)
    sensors: Sensors = field(default_factory=Sensors)
    ingest: IngestStats = field(default_factory=IngestStats)
    events: tuple[Event, ...] = ()  # the most recent events and service checks
    targets_ms: dict[str, float] = field(default_factory=dict)
    watching: str = ""  # what is being watched, for the header
    bottlenecks: tuple[Bottleneck, ...] = ()  # active, most impact first
    resolved: tuple[Bottleneck, ...] = ()  # history, newest first
    alerts: tuple[Alert, ...] = ()  # the log, newest first (at most 1,000)
    regressions: tuple[Regression, ...] = ()  # newest first
    predictions: tuple[Prediction, ...] = ()
    health: tuple[Health, ...] = ()  # per component, then "overall" last
    recommendations: tuple[Recommendation, ...] = ()
    store_warning: str = ""  # one sentence: why history is not saved, or that its file was replaced
    proposals: tuple[TuningAction, ...] = ()  # waiting for a key, newest first
    actions: tuple[TuningAction, ...] = ()  # applied, in flight, then decided; newest first
    tuner_modes: dict[str, str] = field(default_factory=dict)  # actuator -> off | ask | auto
    knobs: tuple[Knob, ...] = ()  # registered by connected applications
    version: int = 1  # schema version of to_dict()

    @property
    def overall_health(self) -> Health | None:
        for h in self.health:
            if h.component == "overall":
                return h
        return None

    def to_dict(self, history: bool = True) -> dict[str, Any]:
        """JSON-ready form. NaN and infinities become null. ``history=False`` drops chart data."""
        d = _plain(self)
        for a in (*d["proposals"], *d["actions"]):
            # The words: status (= state) and decision (the final state, once decided;
            # why is in the message). docs/tuning.md.
            a["status"] = a["state"]
            a["decision"] = None if ActionState(a["state"]).open else a["state"]
        if not history:
            for s in d["series"]:
                s.pop("history", None)
            d.pop("resource_history", None)
        return d


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        if obj and isinstance(obj[0], tuple) and len(obj[0]) == 2 and isinstance(obj[0][0], str):
            return {k: v for k, v in obj}  # tags
        return [_plain(v) for v in obj]
    return obj


@dataclass(frozen=True, slots=True)
class ChartHistory:
    """A distribution's stored percentiles over a span, for a chart longer than the five
    minutes a Snapshot carries. Each point's ``t`` is the end of the ``resolution_s``
    seconds it covers (as a live point is the 10 s window ending at ``t``)."""

    key: SeriesKey
    span_s: float
    resolution_s: float
    now: float  # the range ends here
    points: tuple[HistoryPoint, ...]


def metric_unit(key: str) -> str:
    """The unit of a tuning metric key: `memory *` reads in MB, `p95 *` in ms, the rest in %."""
    if key.startswith("memory ") and key != "memory system":
        return "MB"
    if key.startswith("p95 "):
        return "ms"
    return "%"


def metric_text(key: str, v: float | None) -> str:
    """``320 ms``, ``172 MB``, ``55 %``."""
    if v is None:
        return "?"
    unit = metric_unit(key)
    if abs(v) >= 100:
        num = f"{v:.0f}"
    elif abs(v) >= 10:
        num = f"{v:.1f}".rstrip("0").rstrip(".")
    else:
        num = f"{v:.2f}".rstrip("0").rstrip(".") or "0"
    return f"{num} {unit}"
