"""Configuration: the TOML config file (latency targets and limits, detection, retention,
tuning, the server) read into one frozen ``Config``.

Why one module: each setting's type, default, bound and the sentence that refuses a bad value
are read together when a setting is added or changed, and about a sixth of the module is the
example file ``vtmon config --example`` prints, which must name every key of the types above.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

APP = "vtmon"

# Every component has the same limits until ``[components.NAME]`` says otherwise.
DEFAULT_TARGET_MS = 100.0
DEFAULT_MAX_MEMORY_MB = 512.0
DEFAULT_ERROR_RATE = 0.01


@dataclass(frozen=True)
class ComponentLimits:
    """Per-component thresholds, from ``[components.NAME]`` or the defaults."""

    target_ms: float
    max_memory_mb: float = 512.0
    error_rate: float = 0.01  # errors / operations that is still fine
    alert_latency_ms: float | None = None  # one sample above it alerts; default 2x target
    # How to bring memory or latency down in this component, for its recommendation; empty:
    # the general advice.
    memory_advice: str = ""
    latency_advice: str = ""

    @property
    def alert_ms(self) -> float:
        return self.alert_latency_ms if self.alert_latency_ms else 2.0 * self.target_ms


@dataclass(frozen=True)
class DetectorConfig:
    """``[detector]``: when findings fire and clear, and the system thresholds (percent)."""

    interval_s: float = 5.0  # how often the rules are evaluated
    for_s: float = 15.0  # a condition must hold this long before it fires
    clear_for_s: float = 15.0  # and stay below its clearing threshold this long to clear
    clear_ratio: float = 0.9  # clearing threshold = firing threshold x this
    warmup_s: float = 30.0  # no alerts right after start
    cpu_high: float = 75.0
    cpu_critical: float = 90.0
    psi_cpu_high: float = 20.0  # PSI cpu some avg10, percent of time stalled
    psi_cpu_critical: float = 50.0
    load_per_core_high: float = 1.5
    load_per_core_critical: float = 3.0
    psi_memory_high: float = 10.0
    psi_memory_critical: float = 30.0
    swap_mb_s_high: float = 1.0  # swap in + out, MB/s
    swap_mb_s_critical: float = 10.0
    psi_io_high: float = 20.0
    psi_io_critical: float = 50.0
    iowait_high: float = 20.0
    iowait_critical: float = 40.0
    disk_high: float = 80.0
    disk_critical: float = 90.0
    regression_min_change: float = 0.2  # a step must be at least +20 % to be a regression
    forecast_horizon_s: float = 900.0


@dataclass(frozen=True)
class RetentionConfig:
    """``[retention]``: how often history is written and how long each layer keeps it.

    Each layer is collected at its resolution; inside its retention older points are kept at
    10x, 60x and 600x that resolution (docs/history.md has the schedule).
    """

    flush_interval_s: float = 5.0  # history is written this often; a crash loses at most this
    rollup_interval_s: float = 60.0  # how often rollups and retention run
    application_resolution_s: float = 1.0  # metrics from the socket
    application_days: float = 7.0
    system_resolution_s: float = 5.0  # CPU, memory, disk, pressure
    system_days: float = 30.0
    network_resolution_s: float = 10.0  # network rates
    network_days: float = 14.0
    hardware_resolution_s: float = 30.0  # sensors: temperatures, fans, power, battery
    hardware_days: float = 90.0
    # The whole file's bound; None: 2 GB or 10 % of the free space, whichever is less.
    max_size_mb: float | None = None

    def resolution_s(self, layer: str) -> int:
        return int(getattr(self, f"{layer}_resolution_s"))

    def retention_s(self, layer: str) -> int:
        return int(getattr(self, f"{layer}_days") * 86400)


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: who may reach the socket (docs/security.md).

    The socket is 0600 by default: only vtmon's own user connects. A vtmon run by a service
    user may let the applications of a group in (``socket_mode = 0o660``,
    ``socket_group = "app"``); they may send metrics and manage their own knobs, never steer
    the tuner.
    """

    socket_mode: int = 0o600
    socket_group: str | int | None = None  # a group name or gid; None keeps the user's


# [prometheus] buckets: the names of vtmon.export.prometheus.BUCKET_SETS (no export import here)
PROMETHEUS_BUCKETS = ("coarse", "fine")


@dataclass(frozen=True)
class PrometheusConfig:
    """``[prometheus]``: what ``/metrics`` exports (docs/prometheus.md)."""

    buckets: str = "coarse"  # the le boundaries of every latency histogram: coarse or fine


TUNER_ACTUATORS = ("knob", "process", "command")  # vtmon.model.ACTUATORS (no model import here)
TUNER_MODES = ("off", "ask", "auto")


@dataclass(frozen=True)
class TunerConfig:
    """``[tuner]``: how tuning actions are proposed, applied, judged and undone
    (docs/tuning.md)."""

    mode: str = "ask"  # off: recommend only; ask: wait for a key; auto: apply without asking
    modes: dict[str, str] = field(default_factory=dict)  # [tuner.modes] knob = "auto", ...
    evaluation_s: float = 60.0  # the window compared before and after a change
    settle_s: float = 10.0  # after a change, this long is not judged (windows catch up)
    retry_after_s: float = 300.0  # an action tried (or rejected) is not proposed again sooner
    knob_timeout_s: float = 5.0  # an application that has not answered a set by then failed
    command_timeout_s: float = 60.0  # the same for process changes and configured commands
    revert_below: float = 0.2  # effectiveness (0..1) below which a change is undone
    min_samples: int = 5  # readings each window needs; fewer is inconclusive

    def mode_of(self, actuator: str) -> str:
        return self.modes.get(actuator, self.mode)


class ConfigError(Exception):
    """A config file that cannot be used; the message is one sentence for the user."""


# Bottleneck types an [[actions]] command may apply to (vtmon.model.TYPE_WEIGHT's keys).
BOTTLENECK_TYPES = ("memory", "cpu", "latency", "database", "errors", "throughput", "io", "network")


@dataclass(frozen=True)
class ActionCommand:
    """``[[actions]]``: a command the tuner may propose for some bottleneck types.

    ``apply`` and ``revert`` are argument lists run as they are, never through a shell;
    nothing from a metric or an action is ever put into them.
    """

    name: str
    applies_to: tuple[str, ...]  # bottleneck types
    apply: tuple[str, ...]
    revert: tuple[str, ...]
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Config:
    targets_ms: dict[str, float] = field(default_factory=dict)
    default_target_ms: float = DEFAULT_TARGET_MS
    # [limits]: what one client, or all of them together, may make vtmon hold
    max_series: int = 10_000  # further series are dropped and counted
    max_line_bytes: int = 65_536  # longer lines are rejected as "too long"
    max_connections: int = 1_000  # further connections are refused and counted
    max_unread_kib: int = 4_096  # a connection leaving more answers unread is closed
    max_buffered_mb: int = 256  # unfinished lines and frames held across all connections
    frame_timeout_s: float = 30.0  # idle inside a frame, or answers unread: closed
    max_declared_series: int = 100_000  # binary-frame series ids one connection may declare
    snapshot_interval_s: float = 1.0
    system_interval_s: float = 1.0
    sensors_interval_s: float = 5.0
    source: str = "defaults"  # where the config came from, shown in --help output and logs
    max_memory_mb: dict[str, float] = field(default_factory=dict)
    error_rates: dict[str, float] = field(default_factory=dict)
    alert_latency_ms: dict[str, float] = field(default_factory=dict)
    advice: dict[str, dict[str, str]] = field(default_factory=dict)  # component -> key -> text
    default_max_memory_mb: float = DEFAULT_MAX_MEMORY_MB
    default_error_rate: float = DEFAULT_ERROR_RATE
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    actions: tuple[ActionCommand, ...] = ()  # [[actions]]: configured commands
    tuner: TunerConfig = field(default_factory=TunerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)

    def target_ms(self, component: str) -> float:
        return self.targets_ms.get(component, self.default_target_ms)

    def limits(self, component: str) -> ComponentLimits:
        return ComponentLimits(
            target_ms=self.target_ms(component),
            max_memory_mb=self.max_memory_mb.get(component, self.default_max_memory_mb),
            error_rate=self.error_rates.get(component, self.default_error_rate),
            alert_latency_ms=self.alert_latency_ms.get(component),
            **self.advice.get(component, {}),
        )


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def load_config(
    path: str | os.PathLike[str] | None = None, *, base: dict[str, Any] | None = None
) -> Config:
    """Read ``path``, else the platform config file if it exists, else the defaults.

    A file named explicitly must exist; the default file is optional. ``base`` holds settings
    (a parsed TOML document: the demo's components) the file's own override, table by table.
    """
    p = Path(path) if path is not None else default_config_path()
    if not p.exists():
        if path is not None:
            raise ConfigError(f"Config file {p} does not exist; pass an existing file to --config.")
        return config_from_dict(base, source="defaults") if base else Config()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Config file {p} is not valid TOML ({e}); fix it or remove it.") from e
    except OSError as e:
        raise ConfigError(f"Config file {p} cannot be read ({e.strerror}).") from e
    return config_from_dict(_over(base or {}, data), source=str(p))


def _over(base: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` over ``base``: tables in both are merged, anything else ``data`` replaces."""
    out = dict(base)
    for key, value in data.items():
        below = out.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            out[key] = _over(below, value)
        else:
            out[key] = value
    return out


# The sections a config file may have; anything else is a mistake worth one sentence.
SECTIONS = (
    "defaults",
    "components",
    "detector",
    "limits",
    "retention",
    "tuner",
    "actions",
    "server",
    "prometheus",
)
COMPONENT_KEYS = (
    "target_ms",
    "max_memory_mb",
    "error_rate",
    "alert_latency_ms",
    "memory_advice",
    "latency_advice",
)
ADVICE_MAX_CHARS = 1_000
DEFAULTS_KEYS = ("default_target_ms", "max_memory_mb", "error_rate")
DAY_MS = 86_400_000.0
BIG = 1e9  # the bound of settings with no natural one: finite, and far beyond any real use


def _names(cls: type) -> list[str]:
    """The settings of a section's dataclass."""
    return [f.name for f in fields(cls)]


# [detector] settings in percent (its one ratio, clear_ratio, is bounded apart)
PERCENT_KEYS = frozenset(
    k for k in _names(DetectorConfig) if k.startswith(("cpu_", "psi_", "iowait_", "disk_"))
)
# [limits]: (least, greatest, whole number)
LIMITS: dict[str, tuple[float, float, bool]] = {
    "max_series": (1, 10_000_000, True),
    "max_line_bytes": (256, 8 * 1024 * 1024, True),  # a line longer than a frame is no line
    "max_connections": (1, 1_000_000, True),
    "max_unread_kib": (64, 1024 * 1024, True),
    "max_buffered_mb": (1, 1024 * 1024, True),
    "frame_timeout_s": (0.1, 86_400, False),
    "max_declared_series": (1, 10_000_000, True),
}


def config_from_dict(data: dict, source: str = "dict") -> Config:
    """A Config from a parsed TOML document; ConfigError (one sentence) for anything unknown,
    mistyped or out of range."""
    for key in data:
        if key not in SECTIONS:
            home = _section_of(key)
            hint = f"; it belongs in [{home}]" if home else ""
            raise ConfigError(
                f"{source}: {key!r} is not a section{hint} (sections: {', '.join(SECTIONS)})."
            )
    targets: dict[str, float] = {}
    memory: dict[str, float] = {}
    rates: dict[str, float] = {}
    alert_ms: dict[str, float] = {}
    advice: dict[str, dict[str, str]] = {}
    default_target = DEFAULT_TARGET_MS
    comps = _table(data.get("components", {}), "[components]", source)
    for name, table in comps.items():
        table = _table(table, f"[components.{name}]", source)
        _known(table, COMPONENT_KEYS, f"[components.{name}]", source)
        for key, into, hi in (
            ("target_ms", targets, DAY_MS),
            ("max_memory_mb", memory, BIG),
            ("error_rate", rates, 1.0),
            ("alert_latency_ms", alert_ms, DAY_MS),
        ):
            if key in table:
                into[name] = _number(table[key], f"components.{name}.{key}", source, hi=hi)
        for key in ("memory_advice", "latency_advice"):
            if key in table:
                advice.setdefault(name, {})[key] = _advice(
                    table[key], f"components.{name}.{key}", source
                )
    defaults = _table(data.get("defaults", {}), "[defaults]", source)
    _known(defaults, DEFAULTS_KEYS, "[defaults]", source)
    kwargs: dict = {}
    if "default_target_ms" in defaults:
        default_target = _number(
            defaults["default_target_ms"], "defaults.default_target_ms", source, hi=DAY_MS
        )
    if "max_memory_mb" in defaults:
        kwargs["default_max_memory_mb"] = _number(
            defaults["max_memory_mb"], "defaults.max_memory_mb", source
        )
    if "error_rate" in defaults:
        kwargs["default_error_rate"] = _number(
            defaults["error_rate"], "defaults.error_rate", source, hi=1.0
        )
    det = _table(data.get("detector", {}), "[detector]", source)
    _known(det, _names(DetectorConfig), "[detector]", source)
    kwargs["detector"] = DetectorConfig(
        **{k: _number(v, f"detector.{k}", source, hi=_detector_bound(k)) for k, v in det.items()}
    )
    kwargs["retention"] = _retention(data.get("retention", {}), source)
    kwargs["actions"] = _actions(data.get("actions", []), source)
    kwargs["tuner"] = _tuner(data.get("tuner", {}), source)
    kwargs["server"] = _server(data.get("server", {}), source)
    kwargs["prometheus"] = _prometheus(data.get("prometheus", {}), source)
    limits = _table(data.get("limits", {}), "[limits]", source)
    _known(limits, LIMITS, "[limits]", source)
    for key, value in limits.items():
        lo, hi, whole = LIMITS[key]
        v = _number(value, f"limits.{key}", source, lo=lo, hi=hi, whole=whole)
        kwargs[key] = int(v) if whole else v
    return Config(
        targets_ms=targets,
        default_target_ms=default_target,
        max_memory_mb=memory,
        error_rates=rates,
        alert_latency_ms=alert_ms,
        advice=advice,
        source=source,
        **kwargs,
    )


def _section_of(key: str) -> str | None:
    """The section a setting written at the top level belongs in, if any."""
    homes = {
        "defaults": DEFAULTS_KEYS,
        "limits": LIMITS,
        "detector": _names(DetectorConfig),
        "retention": _names(RetentionConfig),
        "tuner": _names(TunerConfig),
        "server": _names(ServerConfig),
        "prometheus": _names(PrometheusConfig),
    }
    return next((name for name, keys in homes.items() if key in keys), None)


def _detector_bound(key: str) -> float:
    if key in PERCENT_KEYS:
        return 100.0
    return 1.0 if key == "clear_ratio" else BIG


def _table(value: object, where: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where} must be a table.")
    return value


def _known(table: dict, known: Iterable[str], where: str, source: str) -> None:
    """Refuse a key that is not one of ``known`` (a typo would otherwise be silently unused)."""
    names = sorted(known)
    for key in table:
        if key not in names:
            raise ConfigError(
                f"{source}: {where} has no setting {key!r}; known: {', '.join(names)}."
            )


def _server(table: object, source: str) -> ServerConfig:
    table = _table(table, "[server]", source)
    _known(table, _names(ServerConfig), "[server]", source)
    values: dict[str, object] = {}
    if "socket_mode" in table:
        mode = table["socket_mode"]
        if isinstance(mode, str) and mode and set(mode) <= set("01234567"):
            mode = int(mode, 8)  # "0660", as chmod takes it
        if (
            isinstance(mode, bool)
            or not isinstance(mode, int)
            or mode & ~0o666
            or (mode & 0o600 != 0o600)
        ):
            raise ConfigError(
                f"{source}: server.socket_mode must be a mode such as 0o600 or 0o660 (read and "
                f"write for the owner, no execute bits), not {_mode_text(table['socket_mode'])}."
            )
        values["socket_mode"] = mode
    if "socket_group" in table:
        group = table["socket_group"]
        if isinstance(group, bool) or not (
            (isinstance(group, str) and group.strip()) or (isinstance(group, int) and group >= 0)
        ):
            raise ConfigError(
                f"{source}: server.socket_group must be a group name or a gid, not {group!r}."
            )
        values["socket_group"] = group
    return ServerConfig(**values)  # type: ignore[arg-type]


def _prometheus(table: object, source: str) -> PrometheusConfig:
    table = _table(table, "[prometheus]", source)
    _known(table, _names(PrometheusConfig), "[prometheus]", source)
    if "buckets" not in table:
        return PrometheusConfig()
    return PrometheusConfig(
        buckets=_one_of(table["buckets"], PROMETHEUS_BUCKETS, "prometheus.buckets", source)
    )


def _retention(table: object, source: str) -> RetentionConfig:
    table = _table(table, "[retention]", source)
    _known(table, _names(RetentionConfig), "[retention]", source)
    values: dict[str, float] = {}
    for key, value in table.items():
        where = f"retention.{key}"
        if key.endswith("_resolution_s"):
            v = _number(value, where, source, lo=1, hi=86_400, whole=True)
        elif key.endswith("_days"):
            v = _number(value, where, source, hi=36_500)
        elif key == "max_size_mb":
            v = _number(value, where, source, lo=1)
        else:
            v = _number(value, where, source, hi=86_400)
        values[key] = v
    return RetentionConfig(**values)


def _tuner(table: object, source: str) -> TunerConfig:
    table = _table(table, "[tuner]", source)
    _known(table, _names(TunerConfig), "[tuner]", source)
    values: dict[str, object] = {}
    for key, value in table.items():
        if key == "mode":
            values[key] = _mode(value, "tuner.mode", source)
        elif key == "modes":
            if not isinstance(value, dict):
                raise ConfigError(f'{source}: [tuner.modes] must be a table, e.g. knob = "auto".')
            modes = {}
            for actuator, mode in value.items():
                if actuator not in TUNER_ACTUATORS:
                    raise ConfigError(
                        f"{source}: [tuner.modes] has no action class {actuator!r}; known: "
                        f"{', '.join(TUNER_ACTUATORS)}."
                    )
                modes[actuator] = _mode(mode, f"tuner.modes.{actuator}", source)
            values[key] = modes
        elif key == "revert_below":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise ConfigError(f"{source}: tuner.revert_below must be between 0 and 1.")
            values[key] = float(value)
        elif key == "min_samples":
            values[key] = int(_number(value, "tuner.min_samples", source, lo=1, whole=True))
        else:
            values[key] = _number(value, f"tuner.{key}", source, hi=86_400 * 365)
    return TunerConfig(**values)  # type: ignore[arg-type]


def _mode(value: object, key: str, source: str) -> str:
    return _one_of(value, TUNER_MODES, key, source)


def _one_of(value: object, allowed: tuple[str, ...], key: str, source: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}, not {value!r}.")
    return value


def _actions(items: object, source: str) -> tuple[ActionCommand, ...]:
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise ConfigError(f"{source}: actions must be [[actions]] tables.")
    known = {"name", "applies_to", "apply", "revert", "timeout_s"}
    out: list[ActionCommand] = []
    for i, table in enumerate(items, 1):
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: [[actions]] number {i} needs a name (a string).")
        where = f"[[actions]] {name!r}"
        _known(table, known, where, source)
        if any(a.name == name for a in out):
            raise ConfigError(f"{source}: {where} is defined twice; names must be unique.")
        types = table.get("applies_to")
        if (
            not isinstance(types, list)
            or not types
            or not all(isinstance(t, str) and t in BOTTLENECK_TYPES for t in types)
        ):
            raise ConfigError(
                f"{source}: {where} applies_to must be a list of bottleneck types among "
                f"{', '.join(BOTTLENECK_TYPES)}."
            )
        argvs = []
        for key in ("apply", "revert"):
            argv = table.get(key)
            if (
                not isinstance(argv, list)
                or not argv
                or not all(isinstance(a, str) for a in argv)
                or not argv[0]
            ):
                raise ConfigError(
                    f"{source}: {where} {key} must be a command as a list of strings "
                    f'(["program", "arg", ...]), never a shell line.'
                )
            argvs.append(tuple(argv))
        timeout = _number(table.get("timeout_s", 30.0), f"{where} timeout_s", source, hi=86_400)
        out.append(ActionCommand(name, tuple(types), argvs[0], argvs[1], timeout))
    return tuple(out)


def _advice(value: object, key: str, source: str) -> str:
    """A recommendation's text: one line of at most ADVICE_MAX_CHARS characters."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: {key} must be a non-empty string.")
    if len(value) > ADVICE_MAX_CHARS or "\n" in value:
        raise ConfigError(
            f"{source}: {key} must be one line of at most {ADVICE_MAX_CHARS:,} characters."
        )
    return value.strip()


def _number(
    value: object,
    key: str,
    source: str,
    *,
    lo: float = 0.0,
    hi: float = BIG,
    whole: bool = False,
) -> float:
    """A setting's number: finite, above 0 (``lo`` 0) or at least ``lo``, at most ``hi``."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > 0 if lo == 0 else value >= lo)
        and value <= hi
        and (not whole or value == int(value))
    )
    if not ok:
        least = "above 0" if lo == 0 else f"at least {_plain(lo)}"
        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"{source}: {key} must be {kind} {least} and at most {_plain(hi)}, not {value!r}."
        )
    return float(value)  # type: ignore[arg-type]


def _mode_text(mode: object) -> str:
    return f"{mode:#o}" if isinstance(mode, int) and not isinstance(mode, bool) else repr(mode)


def _plain(x: float) -> str:
    return f"{int(x):,}" if x == int(x) else f"{x:g}"


EXAMPLE_CONFIG = """\
# vtmon configuration (TOML). Every key is optional.

[defaults]
default_target_ms = 100      # latency target of components not named below

max_memory_mb = 512          # memory budget of components not named below
error_rate = 0.01            # acceptable errors / operations

# A component is a series' `component` tag, else its name's part before the first dot.
[components.checkout]
target_ms = 300              # latency target: p95 above 2x is high, above 5x critical
max_memory_mb = 200          # memory gauge above 80 % is high, 90 % critical
error_rate = 0.005           # error rate above 2x is high, above 5x critical
# alert_latency_ms = 600     # one sample above it raises an alert (default 2x target)
# memory_advice = "bound the cart cache"   # how to fix it, in the recommendation
# latency_advice = "batch the price lookups"  # (default: general advice)

[components.search]
target_ms = 50
max_memory_mb = 50
error_rate = 0.001

[detector]
interval_s = 5               # how often the rules run
for_s = 15                   # a condition must hold this long before it fires
clear_for_s = 15             # and stay below 90 % of its threshold this long to clear
warmup_s = 30                # no alerts in the first seconds after start
cpu_high = 75                # system CPU %, average of the last 5 readings
cpu_critical = 90
disk_high = 80               # disk usage %
disk_critical = 90

[limits]                     # what clients may make vtmon hold (docs/security.md)
max_series = 10000           # further series are dropped and counted
max_line_bytes = 65536       # longer lines are rejected as "too long"
max_connections = 1000       # further connections are refused and counted
max_unread_kib = 4096        # a client leaving more answers unread is disconnected
max_buffered_mb = 256        # unfinished lines and frames held across all connections
frame_timeout_s = 30         # silent inside a frame, or answers unread: closed
max_declared_series = 100000 # binary-frame series one connection may declare

[server]                     # who may reach the socket (docs/security.md)
socket_mode = 0o600          # 0o660 lets socket_group's applications send metrics too
# socket_group = "app"       # they may send metrics and manage their own knobs, never steer

[prometheus]                 # /metrics, with --prometheus HOST:PORT (docs/prometheus.md)
buckets = "coarse"           # le of every latency histogram: coarse (10 a decade), fine (30)

[retention]                  # the history file (docs/history.md)
flush_interval_s = 5         # written this often: a crash loses at most this much
application_resolution_s = 1 # metrics from the socket: every second ...
application_days = 7         # ... kept 7 days (coarser with age: 10 s, 1 min, 10 min)
system_resolution_s = 5      # CPU, memory, disk, pressure
system_days = 30
network_resolution_s = 10
network_days = 14
hardware_resolution_s = 30   # sensors
hardware_days = 90
# max_size_mb = 2048         # the whole file; default 2 GB or 10 % of the free space if less

[tuner]                      # tuning actions (docs/tuning.md)
mode = "ask"                 # off: recommend only; ask: wait for a key (a / x); auto: apply
evaluation_s = 60            # the window compared before and after a change
settle_s = 10                # not judged right after a change (the windows catch up)
retry_after_s = 300          # an action tried or rejected is not proposed again sooner
knob_timeout_s = 5           # an application must answer a knob set within this
revert_below = 0.2           # effectiveness 0..1 below which a change is undone

[tuner.modes]                # per action class: knob, process, command
# knob = "auto"
# command = "off"

# Commands the tuner may propose (and a person approve) for some bottleneck types. Each is an
# argument list run as it is, never through a shell; nothing from a metric is put into it.
# [[actions]]
# name = "add-api-replica"
# applies_to = ["latency", "cpu"]    # memory cpu latency database errors throughput io network
# apply = ["/usr/local/bin/scale", "api", "+1"]
# revert = ["/usr/local/bin/scale", "api", "-1"]
# timeout_s = 30                     # killed after this; a non-zero exit is a failure
"""
