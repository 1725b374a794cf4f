"""What tuning needs of a journal (vtmon/store/journal.py implements it).

The tuner writes an action's row before it asks an actuator to make a change and updates it at
every step after; it numbers new actions after the highest one ever recorded. ``Learning``
(vtmon/tuning/evaluation.py) reads and stores what each strategy achieved. Reading the open
rows at start and closing the journal are its owner's business (the Monitor's), not tuning's.
"""

from __future__ import annotations

from typing import Protocol

from vtmon.store.journal import Entry, Learned


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
