"""How the tuner judges a change and what it learns from it.

``MetricHistory`` keeps, for every metric key (vtmon/tuning/strategies.py), the value each tick
had over the last few minutes, so the window before a change is there when it is made.
``judge`` turns the two windows' means into an effectiveness, and ``Learning`` keeps the
running mean of it per (strategy, situation), in the journal so the next run starts from it.
docs/tuning.md has the formulas with the reasons for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from vtmon.model import Snapshot
from vtmon.store.journal import Learned
from vtmon.tuning.journaling import LearningJournal
from vtmon.tuning.strategies import Strategy, metric_values


class MetricHistory:
    """Every metric's readings, one a tick, for ``keep_s`` seconds."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._rings: dict[str, deque[tuple[float, float]]] = {}

    def record(self, snap: Snapshot, now: float) -> None:
        for key, v in metric_values(snap).items():
            ring = self._rings.get(key)
            if ring is None:
                ring = self._rings[key] = deque()
            if ring and ring[-1][0] >= now:
                ring[-1] = (now, v)
            else:
                ring.append((now, v))
        for ring in self._rings.values():
            while ring and ring[0][0] < now - self.keep_s:
                ring.popleft()

    def mean(self, key: str, lo: float, hi: float) -> tuple[float | None, int]:
        """The mean of the readings in ``[lo, hi)`` and how many there were."""
        vals = [v for t, v in self._rings.get(key, ()) if lo <= t < hi]
        return (sum(vals) / len(vals) if vals else None), len(vals)


@dataclass(frozen=True, slots=True)
class Verdict:
    effectiveness: float  # 0..1
    change: float  # relative: -0.3 is 30 % lower (better)


def judge(before: float, after: float, expected: float) -> Verdict:
    """``clamp((before - after) / before / expected, 0, 1)``: lower is better for every metric,
    and a change that brings the improvement its strategy expects (or more) scores 1."""
    gain = (before - after) / before if before > 0 else 0.0
    eff = min(1.0, max(0.0, gain / expected)) if expected > 0 else 0.0
    return Verdict(eff, -gain)


class Learning:
    """What each strategy achieved per situation, kept in the journal."""

    def __init__(self, journal: LearningJournal, success_from: float) -> None:
        self.journal = journal
        self.success_from = success_from  # an effectiveness this high counts as a success
        self._learned: dict[tuple[str, str], Learned] = journal.learned()

    def learn(self, s: Strategy, situation: str, eff: float, now: float) -> Learned:
        old = self._learned.get((s.name, situation))
        tries = (old.tries if old else 0) + 1
        mean = eff if old is None else old.mean + (eff - old.mean) / tries
        ok = (old.successes if old else 0) + (1 if eff >= self.success_from else 0)
        learned = Learned(s.name, situation, tries, ok, mean, now)
        self._learned[(s.name, situation)] = learned
        self.journal.learn(learned)
        return learned

    def effectiveness(self, s: Strategy, situation: str) -> float:
        """The prior counts as one try: one bad result halves a strategy's standing, ten
        outweigh the prior almost entirely."""
        got = self._learned.get((s.name, situation))
        if got is None or got.tries <= 0:
            return s.effectiveness
        return (s.effectiveness + got.tries * got.mean) / (1 + got.tries)

    def all(self) -> dict[tuple[str, str], Learned]:
        return dict(self._learned)
