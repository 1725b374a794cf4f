"""The parsers' caches: what a series' text parses to, and one object per distinct key.

They are module-level on purpose: the same few series arrive on every connection (clients
that reconnect for each batch, many processes of one application), so one table shared by all
connections parses each spelling once, and one intern table gives each distinct ``SeriesKey``
one object, which the bulk paths compare by identity. Each is bounded: past ``SERIES_MAX``
entries together (``JSEEN_MAX`` for the hashes of templates seen once) they are cleared, and
only between runs of lines (``trim``), never inside one; text longer than
``SERIES_KEY_BYTES`` or ``JTEMPLATE_BYTES`` is parsed every time rather than pinned in
memory. All parsing runs in the socket server's one thread.
"""

from __future__ import annotations

from typing import Any

from vtmon.model import Kind, SeriesKey

SeriesInfo = tuple[SeriesKey, Kind, float, float | None]  # key, kind, rate, timestamp
JInfo = tuple[SeriesKey, Kind, bool]  # key, kind, whether the template holds the timestamp

# (name bytes, rest-after-value bytes) -> parsed series. The same few series
# repeat all the time; this keeps tags from being decoded and sorted once per line.
SERIES: dict[tuple[bytes, bytes], SeriesInfo] = {}
INTERN: dict[SeriesKey, SeriesKey] = {}  # one object per distinct key, see statsd_bulk._plan
# JSON template -> what every line of that template is, or None when its lines go one by one
JSERIES: dict[bytes, JInfo | None] = {}
JKEYS: dict[tuple[Any, ...], tuple[SeriesKey, Kind]] = {}  # (name, unit, tag pairs) -> key
# Hashes of templates seen in earlier blocks, not checked yet: seen again, they are checked.
JSEEN: set[int] = set()

SERIES_MAX = 100_000
JSEEN_MAX = 65536
SERIES_KEY_BYTES = 512  # longer keys are parsed every time rather than pinned in memory
JTEMPLATE_BYTES = 512  # longer lines are parsed one by one rather than pinned in memory


def trim() -> None:
    """Clear the caches once they hold more than ``SERIES_MAX`` entries."""
    # Only between runs of lines: a clear inside _plan would break its identity check.
    if len(SERIES) + len(JSERIES) + len(JKEYS) > SERIES_MAX:
        SERIES.clear()
        JSERIES.clear()
        JKEYS.clear()
        INTERN.clear()


def seen_before(t: bytes) -> bool:
    """Whether template ``t`` was seen before (not yet checked); notes it when not."""
    h = hash(t)
    if h in JSEEN:
        return True
    if len(JSEEN) >= JSEEN_MAX:
        JSEEN.clear()
    JSEEN.add(h)
    return False
