"""Configuration: the socket path and the TOML config file (latency targets and limits)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP = "vtmon"

DEFAULT_TARGETS_MS: dict[str, float] = {
    "voice-engine": 300.0,
    "terminal-processor": 50.0,
    "api-server": 100.0,
}
DEFAULT_TARGET_MS = 100.0


class ConfigError(Exception):
    """A config file that cannot be used; the message is one sentence for the user."""


@dataclass(frozen=True)
class Config:
    targets_ms: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TARGETS_MS))
    default_target_ms: float = DEFAULT_TARGET_MS
    max_series: int = 10_000
    max_line_bytes: int = 65_536
    snapshot_interval_s: float = 1.0
    system_interval_s: float = 1.0
    sensors_interval_s: float = 5.0
    source: str = "defaults"  # where the config came from, shown in --help output and logs

    def target_ms(self, component: str) -> float:
        return self.targets_ms.get(component, self.default_target_ms)


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read ``path``, else the platform config file if it exists, else the defaults.

    A file named explicitly must exist; the default file is optional.
    """
    explicit = path is not None
    p = Path(path) if explicit else default_config_path()
    if not p.exists():
        if explicit:
            raise ConfigError(f"Config file {p} does not exist; pass an existing file to --config.")
        return Config()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Config file {p} is not valid TOML ({e}); fix it or remove it.") from e
    except OSError as e:
        raise ConfigError(f"Config file {p} cannot be read ({e.strerror}).") from e
    return config_from_dict(data, source=str(p))


def config_from_dict(data: dict, source: str = "dict") -> Config:
    targets = dict(DEFAULT_TARGETS_MS)
    default_target = DEFAULT_TARGET_MS
    comps = data.get("components", {})
    if not isinstance(comps, dict):
        raise ConfigError(f"{source}: [components] must be a table of component tables.")
    for name, table in comps.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [components.{name}] must be a table.")
        if "target_ms" in table:
            targets[name] = _positive(table["target_ms"], f"components.{name}.target_ms", source)
    if "default_target_ms" in data.get("defaults", {}):
        default_target = _positive(
            data["defaults"]["default_target_ms"], "defaults.default_target_ms", source
        )
    limits = data.get("limits", {})
    kwargs: dict = {}
    if "max_series" in limits:
        kwargs["max_series"] = int(_positive(limits["max_series"], "limits.max_series", source))
    if "max_line_bytes" in limits:
        kwargs["max_line_bytes"] = int(
            _positive(limits["max_line_bytes"], "limits.max_line_bytes", source)
        )
    return Config(targets_ms=targets, default_target_ms=default_target, source=source, **kwargs)


def _positive(value: object, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{source}: {key} must be a positive number, not {value!r}.")
    return float(value)


def resolve_socket_path(explicit: str | None = None) -> Path:
    """``--socket``, else ``$VTMON_SOCKET``, else ``$XDG_RUNTIME_DIR/vtmon/vtmon.sock``,
    else ``/tmp/vtmon-$UID/vtmon.sock``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("VTMON_SOCKET")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / APP / "vtmon.sock"
    return Path(f"/tmp/vtmon-{os.getuid()}") / "vtmon.sock"


EXAMPLE_CONFIG = """\
# vtmon configuration (TOML). Every key is optional.

[defaults]
default_target_ms = 100      # latency target of components not named below

[components.voice-engine]
target_ms = 300

[components.terminal-processor]
target_ms = 50

[components.api-server]
target_ms = 100

[limits]
max_series = 10000           # further series are dropped and counted
max_line_bytes = 65536       # longer lines are rejected as "too long"
"""
