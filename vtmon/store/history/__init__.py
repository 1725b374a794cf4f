"""The history store: ``HistoryStore`` (store.py) and what its users name with it.

``from vtmon.store.history import HistoryStore`` is the one import path; the modules of this
package are its parts (store.py's docstring lists them).
"""

from vtmon.store.history.file import DB_NAME, DEMO_DB_NAME
from vtmon.store.history.queries import SeriesInfo
from vtmon.store.history.store import HistoryStore

__all__ = ["DB_NAME", "DEMO_DB_NAME", "HistoryStore", "SeriesInfo"]
