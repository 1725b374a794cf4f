"""The console's view of the engine: what the screen reads from it and asks of it, no more.

The console never imports the engine (an import-linter contract holds it): it is handed an
object with these members. What the ``e`` key's report needs of the engine is declared where
the report is, as ``vtmon.report.ReportSource``, and read only when a report is written (the
report's modules are not loaded before). ``vtmon.engine.monitor.Monitor`` is both an
``EngineView`` and a ``ReportSource`` (the command line, which sees all three, checks it).

Any ``SnapshotSource`` is enough for a screen that only watches, such as a test laying its
own findings over a real engine's Snapshots: then the ingest is never held, the chart keeps
the last five minutes, and the keys that tune or write the report say they are not
available here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from vtmon.model import ChartHistory, SeriesKey, Snapshot, TuningAction


class SnapshotSource(Protocol):
    """Publishes Snapshots: the newest one, and each next one to a subscriber."""

    @property
    def latest(self) -> Snapshot | None: ...

    def subscribe(self, fn: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``fn`` with each Snapshot (from the engine's thread); returns the unsubscribe."""
        ...


class TuningDesk(Protocol):
    """The tuner's commands the keys send (each records intent and returns one sentence, or
    raises ValueError saying why it cannot), and what the quit dialog reads and decides."""

    keep_at_exit: bool

    def approve(self, action_id: str) -> str: ...

    def reject(self, action_id: str) -> str: ...

    def revert(self, action_id: str) -> str: ...

    def revert_all(self) -> str: ...

    def set_mode(self, actuator: str, mode: str) -> str: ...

    def modes(self) -> dict[str, str]: ...

    def actions(self) -> tuple[TuningAction, ...]: ...


@runtime_checkable
class EngineView(SnapshotSource, Protocol):
    """What the console uses of a running engine (and ``vtmon.report.ReportSource``)."""

    def hold_ingest(self, *, until_released: bool = False) -> bool:
        """Let the screen go first: the socket's reader waits for a short while (or until
        ``release_ingest``); False when refused."""
        ...

    def release_ingest(self) -> None: ...

    @property
    def history_on(self) -> bool:
        """True when a history file keeps more than the Snapshot's last five minutes."""
        ...

    def chart_history(self, key: SeriesKey, span_s: float) -> ChartHistory | None:
        """The stored percentiles of ``key`` over the last ``span_s`` seconds (it reads the
        file: call it from a worker thread); None when history is off."""
        ...

    @property
    def tuner(self) -> TuningDesk: ...
