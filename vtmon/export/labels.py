"""How a series becomes a Prometheus label set: label names from tag keys, label values any
text that can be encoded (docs/prometheus.md, "Every metric")."""

from __future__ import annotations

import re

from vtmon.model import SeriesKey

LatencyLabels = tuple[tuple[str, str], ...]

# Labels a tag must not take over: the ones vtmon sets, the ones Prometheus gives meaning.
RESERVED_LABELS = frozenset({"series", "component", "le", "quantile", "job", "instance"})
TAG_PREFIX = "tag_"
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def label_name(tag: str) -> str:
    """A tag key as a Prometheus label name: ``[a-zA-Z_][a-zA-Z0-9_]*``, never a reserved one
    (those, and names Prometheus keeps for itself, ``__*``, get the prefix ``tag_``)."""
    name = _INVALID_LABEL_CHARS.sub("_", tag) or "_"
    if name[0].isdigit():
        name = "_" + name
    if name in RESERVED_LABELS or name.startswith("__"):
        name = TAG_PREFIX + name
    return name


def label_value(v: str) -> str:
    """Label values are any UTF-8 (prometheus-client escapes ``\\``, ``"`` and newlines); a
    lone surrogate is not encodable and would fail the whole scrape, so it is replaced."""
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8", "replace").decode("utf-8")


def series_labels(key: SeriesKey) -> LatencyLabels:
    """``series`` (the name), ``component``, then the tags as sanitised labels, sorted.

    The ``component`` tag is the ``component`` label. A tag without a value gets ``true``
    (Prometheus treats an empty label as no label). When two tags sanitise to the same label
    name the first (in tag order) is kept.
    """
    labels = {"series": label_value(key.name), "component": label_value(key.component)}
    for k, v in key.tags:
        if k == "component":
            continue
        name = label_name(k)
        if name not in labels:
            labels[name] = label_value(v) if v else "true"
    return tuple(sorted(labels.items()))
