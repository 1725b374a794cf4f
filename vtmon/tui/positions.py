"""Where the series of some kinds sit in a Snapshot's table, kept while the series stay.

``SeriesTable.of_kind`` reads every series' kind the first time a table is asked, and every
Snapshot brings a new table. Most seconds the set of series is the one of the second before:
the keys compare equal (mostly the same objects, compared at C speed) and the positions found
then still hold.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vtmon.model import Kind, SeriesKey, SeriesTable

Positions = NDArray[np.intp]

_KEPT: dict[tuple[Kind, ...], tuple[tuple[SeriesKey, ...], Positions]] = {}


def kind_positions(table: SeriesTable, *kinds: Kind) -> Positions:
    """Positions in ``table`` of the series of ``kinds``, in the table's order (read-only)."""
    kept = _KEPT.get(kinds)
    if kept is not None and kept[0] == table.keys:
        return kept[1]
    if len(kinds) == 1:
        pos = table.of_kind(kinds[0])
    else:
        pos = np.sort(np.concatenate([table.of_kind(k) for k in kinds]))
    pos.flags.writeable = False
    _KEPT[kinds] = (table.keys, pos)
    return pos
