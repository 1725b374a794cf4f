"""What the engine publishes: the ``Snapshot`` (everything a screen or a report needs at one
instant) and its parts: window statistics per series, errors, the machine's resources and
sensors, the ingest counters; and the stored chart history a long chart reads."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import StrEnum
from typing import Any

from vtmon.model.findings import (
    Alert,
    Bottleneck,
    Health,
    Prediction,
    Recommendation,
    Regression,
)
from vtmon.model.keys import Kind, SeriesKey, Tags
from vtmon.model.samples import Event
from vtmon.model.tuning import ActionState, Knob, TuningAction


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
    # distributions: chart points, oldest first (a lazy view of the engine's columns)
    history: Sequence[HistoryPoint] = ()

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
    max_series: int = 0  # [limits] max_series
    # samples of new series refused because max_series series exist, by name prefix ("svc.*")
    series_refused: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(
        default_factory=dict
    )  # connections closed for a limit, by reason

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a screen or a report needs at one instant. Immutable; share it freely."""

    t: float
    host: str
    socket: str
    started: float
    # every series, by component then name (the engine gives a model.table.SeriesTable)
    series: Sequence[SeriesStats] = ()
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

    def to_dict(self, history: bool = True, series: bool = True) -> dict[str, Any]:
        """JSON-ready form. NaN and infinities become null. ``history=False`` drops chart data;
        ``series=False`` leaves the series out (an empty list: ``to_json`` puts them in as
        text, faster than as objects)."""
        skip = () if history else ("history", "resource_history")
        d = _plain(self if series else replace(self, series=()), skip)
        for a in (*d["proposals"], *d["actions"]):
            # status (= state) and decision (the final state, once decided; why is in the
            # message), as docs/tuning.md names them.
            a["status"] = a["state"]
            a["decision"] = None if ActionState(a["state"]).open else a["state"]
        return d

    def to_json(
        self,
        history: bool = True,
        series: Sequence[str] | None = None,
        columns: Sequence[str] = (),
    ) -> str:
        """``json.dumps(self.to_dict(history))`` (compact separators), with the series written
        straight from their columns when they are a ``SeriesTable``. ``series``: only the
        series of these ids (None: all); ``columns``: add ``"columns"``, the named columns of
        every series (``SeriesTable.columns_json``)."""
        from vtmon.model.table import SeriesTable, as_table  # the table builds on this module

        if series is None and not columns and not isinstance(self.series, SeriesTable):
            return json.dumps(self.to_dict(history), separators=(",", ":"))
        table = as_table(self.series)
        d = self.to_dict(history, series=False)
        d["series"] = _SERIES_MARK
        if columns:
            d["columns"] = _COLUMNS_MARK
        text = json.dumps(d, separators=(",", ":"))
        chosen = None if series is None else table.positions(series)
        text = text.replace(_SERIES_MARK_JSON, table.json(history, chosen), 1)
        if columns:
            text = text.replace(_COLUMNS_MARK_JSON, table.columns_json(columns), 1)
        return text


_SERIES_MARK = "\x00series\x00"
_SERIES_MARK_JSON = json.dumps(_SERIES_MARK)
_COLUMNS_MARK = "\x00columns\x00"
_COLUMNS_MARK_JSON = json.dumps(_COLUMNS_MARK)


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> Any:
    """``obj`` as JSON-ready values; dataclass fields named in ``skip`` are left out (a
    Snapshot without its chart history need not convert it). The common leaves are tested
    first and each dataclass' field names are looked up once: a Snapshot of thousands of
    series is mostly floats."""
    cls = type(obj)
    if cls is float:
        return obj if math.isfinite(obj) else None
    if cls is str or cls is int or obj is None or cls is bool:
        return obj
    names = _FIELDS.get(cls)
    if names is None and is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[cls] = tuple(f.name for f in fields(obj))
    if names is not None:
        return {n: _plain(getattr(obj, n), skip) for n in names if n not in skip}
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v, skip) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        if obj and isinstance(obj[0], tuple) and len(obj[0]) == 2 and isinstance(obj[0][0], str):
            return {k: v for k, v in obj}  # tags
        return [_plain(v, skip) for v in obj]
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [_plain(v, skip) for v in obj]  # a lazy view (chart points)
    return obj


_FIELDS: dict[type, tuple[str, ...]] = {}


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
