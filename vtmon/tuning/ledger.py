"""The actions the tuner keeps, and what moves one on: an update of its message, or a final
(or lost) state -- each journaled when it has, or needs, a row, and said as an event. Every
part of the tuner works on the records through here, on the Monitor's thread."""

from __future__ import annotations

from dataclasses import replace

from vtmon.model import ActionState, Severity
from vtmon.tuning.events import EventLog
from vtmon.tuning.inbox import Inbox
from vtmon.tuning.journaling import JournalWriter
from vtmon.tuning.record import ActionRecord, S, id_number
from vtmon.tuning.wording import lead

KEEP_DECIDED = 100  # decided actions kept for the screen and the Snapshot


class Ledger:
    """The records by id, when each (strategy, target) was last tried, the journal and the
    events."""

    def __init__(self, writer: JournalWriter, events: EventLog) -> None:
        self.recs: dict[str, ActionRecord] = {}
        self.tried: dict[tuple[str, str], float] = {}  # (strategy, target) -> last tried
        self.writer = writer
        self.events = events

    def finish(
        self,
        rec: ActionRecord,
        state: ActionState,
        now: float,
        message: str,
        *,
        in_effect: bool | None = None,
        journal: bool | None = None,
        severity: Severity = Severity.LOW,
        value: float | None = None,
        threshold: float | None = None,
    ) -> None:
        """Move ``rec`` to a final (or lost) state, journal it and say so."""
        undone = rec.in_effect and in_effect is False  # its change is not in effect any more
        if in_effect is not None:
            rec.in_effect = in_effect
        rec.a = replace(rec.a, state=state, decided_at=now, message=message)
        if journal is None:
            journal = rec.journaled or rec.in_effect
        if journal:
            self.writer.update(rec, reverted=now if undone else None)
        if message.lower().startswith(state.value):  # "Kept: ..." -> "a3 kept: ..."
            said = lead(rec.a.id, message)
        else:
            said = f"{rec.a.id} {state.value}: {message}"
        self.events.say(severity, said, rec.a, now, value, threshold)

    def update(self, rec: ActionRecord, now: float, *, message: str) -> None:
        """A new message for ``rec``, journaled when it has or needs a row."""
        rec.a = replace(rec.a, message=message)
        if rec.in_effect or rec.journaled:
            self.writer.update(rec)

    def publish(self, inbox: Inbox) -> None:
        """Forget the oldest decided actions beyond ``KEEP_DECIDED`` and hand the rest to the
        inbox, which answers what the Snapshot and the commands ask."""
        for r in self.recs.values():
            if r.a.in_effect != r.in_effect:
                r.a = replace(r.a, in_effect=r.in_effect)
        decided = sorted(
            (r for r in self.recs.values() if not r.in_effect and not r.a.state.open),
            key=lambda r: -(r.a.decided_at or 0.0),
        )
        for r in decided[KEEP_DECIDED:]:
            del self.recs[r.a.id]
        recs = sorted(self.recs.values(), key=lambda r: -id_number(r.a.id))
        proposals = tuple(r.a for r in recs if r.a.state is S.PROPOSED)
        applied = tuple(r.a for r in recs if r.a.state is not S.PROPOSED and (r.in_effect or r.op))
        rest = tuple(r.a for r in recs if r.a.state is not S.PROPOSED and not (r.in_effect or r.op))
        revertible = {r.a.id for r in recs if r.in_effect or r.op == "apply"}
        inbox.show(proposals, applied + rest, revertible)
