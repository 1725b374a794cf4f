"""What tuning needs of a journal (vtmon/store/journal.py implements it), and the tuner's
writes to it.

The tuner writes an action's row before it asks an actuator to make a change and updates it at
every step after; it numbers new actions after the highest one ever recorded. ``Learning``
(vtmon/tuning/evaluation.py) reads and stores what each strategy achieved. Reading the open
rows at start and closing the journal are its owner's business (the Monitor's), not tuning's.
"""

from __future__ import annotations

import logging
from typing import Protocol

from vtmon.store.journal import Entry, JournalError, Learned
from vtmon.tuning.record import ActionRecord

log = logging.getLogger(__name__)


class LearningJournal(Protocol):
    """Where what each strategy achieved per situation is kept across runs."""

    def learned(self) -> dict[tuple[str, str], Learned]:
        """Per (strategy, situation), what was learned so far."""
        ...

    def learn(self, learned: Learned) -> None:
        """Store one strategy's new running mean (best effort: a failure is logged)."""
        ...


class ActionJournal(LearningJournal, Protocol):
    """The safety record of every change the tuner makes."""

    def next_number(self) -> int:
        """The number after the highest action id ever recorded (ids continue across runs)."""
        ...

    def record(self, entry: Entry) -> None:
        """Write (or update) ``entry`` durably before returning; raises JournalError."""
        ...


class JournalWriter:
    """Writes the tuner's records into its journal as rows, with the run that made them."""

    def __init__(self, journal: ActionJournal, run: str) -> None:
        self.journal = journal
        self.run = run  # written into the journal: which vtmon applied it

    def write(self, rec: ActionRecord, reverted: float | None = None) -> None:
        """Record ``rec`` durably; raises JournalError (before a change: do not make it)."""
        self.journal.record(
            Entry(
                rec.a,
                situation=rec.situation,
                in_effect=rec.in_effect,
                pid=rec.pid,
                pid_started=rec.pid_started,
                run=self.run,
                reverted=reverted,
            )
        )
        rec.journaled = True

    def update(self, rec: ActionRecord, reverted: float | None = None) -> None:
        """Journal an update; a failure is said (the change itself is already made)."""
        try:
            self.write(rec, reverted)
        except JournalError as e:
            log.warning("the journal could not record %s (%s)", rec.a.id, e)
