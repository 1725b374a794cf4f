"""Judging an applied action: after it settles, the mean of its metric over the evaluation
window is compared with the window before the change (vtmon/tuning/evaluation.py judges and
learns). Too few readings before the change leaves it applied and unjudged; too few after
extends the window. An action that did not help is reverted, one that did is kept.
"""

from __future__ import annotations

from dataclasses import replace

from vtmon.config import TunerConfig
from vtmon.model import Severity, metric_text
from vtmon.tuning.changes import Changes
from vtmon.tuning.evaluation import Learning, MetricHistory, judge
from vtmon.tuning.ledger import Ledger
from vtmon.tuning.record import ActionRecord, S
from vtmon.tuning.wording import count, lead


class Evaluator:
    """Evaluates the actions that are evaluating, once a step."""

    def __init__(
        self,
        cfg: TunerConfig,
        ledger: Ledger,
        changes: Changes,
        history: MetricHistory,
        learning: Learning,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.changes = changes
        self.history = history
        self.learning = learning

    def evaluate(self, now: float) -> None:
        cfg = self.cfg
        for rec in list(self.ledger.recs.values()):
            a = rec.a
            if a.state is not S.EVALUATING or rec.op or a.applied_at is None or a.recovered:
                continue
            start = a.applied_at + cfg.settle_s
            if a.evaluate_until is None or now < start:
                continue
            if now < a.evaluate_until:
                lo = max(start, a.evaluate_until - cfg.evaluation_s)
                so_far, _ = self.history.mean(a.metric, lo, now)
                if so_far is not None:
                    rec.a = replace(a, after=so_far)
                continue
            lo = max(start, a.evaluate_until - cfg.evaluation_s)
            after, n = self.history.mean(a.metric, lo, a.evaluate_until)
            if a.before is None:
                if not rec.said_inconclusive:
                    rec.said_inconclusive = True
                    msg = (
                        f"Inconclusive: {count(rec.before_n, 'reading')} of {a.metric} in the "
                        f"{cfg.evaluation_s:g} s before the change (needs {cfg.min_samples}); "
                        "it stays applied, unjudged, until you revert it (r)."
                    )
                    rec.a = replace(a, after=after, evaluate_until=None, message=msg)
                    self.ledger.writer.update(rec)
                    self.ledger.events.say(Severity.LOW, lead(a.id, msg), rec.a, now)
                continue
            if after is None or n < cfg.min_samples:
                msg = (
                    f"Inconclusive: {count(n, 'reading')} of {a.metric} in the evaluation "
                    f"window (needs {cfg.min_samples}); evaluating another "
                    f"{cfg.evaluation_s:g} s."
                )
                until = a.evaluate_until + cfg.evaluation_s
                rec.a = replace(a, after=after, evaluate_until=until, message=msg)
                self.ledger.writer.update(rec)
                self.ledger.events.say(Severity.LOW, lead(a.id, msg), rec.a, now)
                continue
            self._decide(rec, a.before, after, now)

    def _decide(self, rec: ActionRecord, before: float, after: float, now: float) -> None:
        a, s, cfg = rec.a, rec.strategy, self.cfg
        verdict = judge(before, after, s.expected)
        eff, change = verdict.effectiveness, verdict.change
        self.learning.learn(s, rec.situation, eff, now)
        numbers = (
            f"{a.metric} {metric_text(a.metric, before)} -> {metric_text(a.metric, after)} "
            f"({change * 100:+.0f} %, expected -{s.expected * 100:.0f} %), effectiveness {eff:.2f}"
        )
        rec.a = replace(a, after=after, effectiveness=eff)
        if eff < cfg.revert_below:
            self.ledger.events.say(
                Severity.MEDIUM,
                f"{a.id} did not help: {numbers} < {cfg.revert_below:g}; reverting.",
                rec.a,
                now,
                value=after,
                threshold=before,
            )
            self.changes.start_revert(rec, now, "ineffective")
            return
        self.ledger.finish(
            rec, S.KEPT, now, f"Kept: {numbers}.", in_effect=True, value=after, threshold=before
        )
