"""Series: their identity (a metric name, sorted tags, a kind), the windows they are summarised
over, and the naming rules that tell error and operation counters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


WINDOWS: tuple[tuple[str, int], ...] = (("10s", 10), ("1m", 60), ("5m", 300))
# the quantiles a distribution's window reports (p50, p90, p95, p99, p999)
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99, 0.999)
RING_S = max(w for _, w in WINDOWS)  # seconds a series keeps: exactly the longest window

_ERROR_SUFFIXES = (".error_count", ".errors", ".error")
_OPERATION_SUFFIXES = ("throughput", ".requests", ".operations")


def is_error_counter(name: str) -> bool:
    """A counter whose name says it counts errors (``error_count``, ``*.errors``, ...)."""
    return name == "error_count" or name.endswith(_ERROR_SUFFIXES)


def is_operation_counter(name: str) -> bool:
    """A counter whose name says it counts operations (``*.requests``, ``throughput``, ...)."""
    return name.endswith(_OPERATION_SUFFIXES)
