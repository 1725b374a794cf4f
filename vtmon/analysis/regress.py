"""Regressions: step changes in a series' p95 or a component's error rate, found online.

One point per minute per series: ``update`` is called every few seconds. The distributions are
checked in ``GROUPS`` groups (by their place in the Snapshot's order), one group per
``60 / GROUPS`` seconds of each wall-clock minute, so thousands of series cost a twelfth of
their check per evaluation, not all of it once a minute; each reads its 1-minute p95 (when the
window holds at least ``MIN_SAMPLES`` values) at the same second of every minute, and a series
is never checked twice in a minute (a series that moved to another group as others came and
went may miss one). Every component's errors and operations over the last minute are read on
the first call of each minute. Consecutive points therefore cover (almost) disjoint minutes.

Both detectors are two-sided CUSUMs (Page's test) with the same bookkeeping:

- The baseline is the last ``BASELINE_POINTS`` points that were "in control". A point that makes
  either sum positive is held back; when both sums are back at 0 the held points join the
  baseline. So the baseline follows slow drift without the bias of learning only from quiet
  points, and a step is not absorbed while it is being measured.
- The run of a change is the held points since the upward sum last left 0 (the CUSUM's own
  change-point estimate), from the start within them that maximises the run's likelihood ratio
  (noise just before a step can make the sum leave 0 early). ``since`` is the start of the
  first run point's minute window.
- After an upward alarm the run becomes the new baseline (reset); it is reported as a regression
  only when its level is at least ``min_change`` above the old baseline. A downward alarm (an
  improvement) re-baselines silently: later points are measured against the new level.
- A series needs ``WARMUP_POINTS`` minutes of baseline before it can alarm.

p95: x = log(p95) (so +20 % is the same step at 5 ms and at 5 s)::

    S = max(0, S + (x - mu) - k)      L = max(0, L + (mu - x) - k)

mu = median of the baseline (a spike that slipped into it moves a mean, not a median);
``k = max(delta / 2, 0.75 sigma) + 1.25 sigma / sqrt(baseline points)`` with
``delta = log(1 + min_change)`` (the second term is the median's own error);
``h = max(1.5 delta, 5 sigma)``. sigma, the minute-to-minute noise of log p95, is what
consecutive baseline points showed (median |x_t - x_t-1| / 0.954, robust to the one large
difference a step makes) pulled towards the sampling noise a p95 of n values must have (for a
lognormal whose spread is read off p50 -> p95), with the weight of ``PRIOR_POINTS`` minutes:
early on a handful of differences would make it anything from half to twice the truth.

The CUSUM, tuned for the smallest step worth reporting, is slow on large ones, so it is paired
with a Shewhart-type window test (a combined Shewhart-CUSUM scheme): the mean of the last
``PERSIST`` to ``WINDOW_MAX`` points of the run at least delta and ``Z_WINDOW`` standard errors
above mu also alarms. Either alarm needs the last ``PERSIST`` points each above mu + k.
Messages give the size as "+38 %", or as "2.6x" from a doubling on.

Measured on simulated lognormal latencies (a fresh sample every minute, 30 minutes per run):

    p95 noise (sd of log)   false regressions per series-run   +40 % step found within 3/4/5 min
    0.06 (300 values/min)   0 in 2,000                          99 / 100 / 100 %
    0.10 (100 values/min)   0.4 %                               64 / 82 / 91 %
    0.23 (30 values/min)    1.7 %

A step must have lasted ``PERSIST`` (3) minutes: a 90 s incident touches two minute windows and
is the bottleneck rules' business. Once the upward sum has alarmed, ``BACK`` minutes back at the
baseline end it as a spike: its points are dropped (neither old nor new level) and the sums start
again, instead of taking many quiet minutes to come down.

Error rates: the log of a rate that is often 0 has no useful noise model, and at the demo's rates
a component sees about one error a minute, so the CUSUM works on counts instead: the Poisson
log-likelihood ratio of each minute's e errors in o operations for a rate r1 = r0 (1 + 2
min_change) (resp. r0 / (1 + 2 min_change) downward) against the baseline rate r0::

    S = max(0, S + e ln(r1 / r0) - o (r1 - r0))            alarm above ``ERROR_H``

r0 = (baseline errors + 0.5) / baseline operations, so a baseline without errors is not a rate
of exactly 0. Because r0 itself rests on few errors, an alarm is reported only when the run also
passes the exact conditional binomial test of two Poisson rates against the baseline counts
(p < ``ERROR_P``) and holds at least ``ERROR_MIN_COUNT`` errors; until then it keeps
accumulating; the last ``ERROR_RECENT`` minutes must each look more like the run than like the
baseline (an error burst that is over is dropped, as a latency spike is). Simulated at the
demo's rates (0.05 % to 5 %, 100 to 2,000 operations a minute): 0.2 % of 30-minute runs see a
false regression; 0.3 % -> 1.5 % at 480 operations a minute is found within 3 minutes in 44 %,
4 in 81 %, 5 in 91 % of runs; a +40 % step at 20 errors a minute takes 3 to 20 minutes (the
counts need that long to tell it from noise).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from vtmon.analysis.common import ms_text, series_label, share_text
from vtmon.model import Kind, Regression, SeriesKey, Snapshot, as_table

GROUPS = 12  # the distributions are checked in this many groups over each minute
MIN_SAMPLES = 20  # a p95 of fewer values than this is too coarse to compare
WARMUP_POINTS = 6  # minutes of baseline before a series may alarm
PERSIST = 3  # minutes a step must have lasted before it is believed (a 90 s spike touches 2)
BASELINE_POINTS = 20  # minutes the baseline is made of
BACK = 2  # minutes back at the baseline that end a spike instead of starting a step
HELD_MAX = 30  # a run longer than this gives its oldest points to the baseline
DIFFS_KEPT = 30
SIGMA_FLOOR = 0.02  # log units: a quantised p95 may repeat exactly; 2 % noise at least
H_SIGMAS = 5.0
PRIOR_POINTS = 10  # minutes' worth of weight the predicted sampling noise has
WINDOW_MAX = 4  # minutes the window test looks back at most
Z_WINDOW = 4.5
ERROR_H = 6.0
ERROR_P = 1e-3
ERROR_MIN_COUNT = 5
ERROR_RECENT = PERSIST  # minutes that must each look like the run, not the baseline
MAX_GAP_MIN = 5  # a series silent this long starts over: its old baseline means little
FORGET_MIN = 30
RECENT = 100


@dataclass(slots=True)
class _Point:
    t: float
    x: float  # p95: log p95; errors: error count
    o: float = 0.0  # p95: expected sampling variance of x; errors: operations


@dataclass(slots=True)
class _Track:
    """Baseline, held points and the two sums of one CUSUM."""

    component: str
    label: str
    minute: int
    base: deque[_Point] = field(default_factory=lambda: deque(maxlen=BASELINE_POINTS))
    held: list[_Point] = field(default_factory=list)
    s_up: float = 0.0
    s_down: float = 0.0
    up_from: int = 0  # index in ``held`` where the upward run began
    down_from: int = 0
    diffs: deque[float] = field(default_factory=lambda: deque(maxlen=DIFFS_KEPT))

    def add_base(self, points: Iterable[_Point]) -> None:
        # The noise is learnt from consecutive baseline points only: held points count once
        # they join (so quiet points are not favoured), and a step never inflates it while it
        # is being measured.
        for p in points:
            if self.base:
                self.diffs.append(abs(p.x - self.base[-1].x))
            self.base.append(p)

    def step(self, point: _Point, up: float, down: float) -> None:
        """Add the point's increments to the sums and file the point."""
        was_up, was_down = self.s_up, self.s_down
        self.s_up = max(0.0, was_up + up)
        self.s_down = max(0.0, was_down + down)
        if self.s_up == 0 and self.s_down == 0:
            self.add_base(self.held)
            self.add_base((point,))
            self.held.clear()
            return
        if self.s_up > 0 and was_up == 0:
            self.up_from = len(self.held)
        if self.s_down > 0 and was_down == 0:
            self.down_from = len(self.held)
        self.held.append(point)
        if len(self.held) > HELD_MAX:
            self.add_base((self.held.pop(0),))
            self.up_from = max(0, self.up_from - 1)
            self.down_from = max(0, self.down_from - 1)

    def up_run(self, gain: Callable[[list[_Point]], float]) -> list[_Point]:
        """The held points from the most likely start of the change: among the starts from where
        the upward sum last left 0 (which noise before the step can make too early), the one
        whose run has the largest ``gain`` (the log-likelihood ratio of the run against the
        baseline), keeping at least ``PERSIST`` points."""
        held = self.held
        last = len(held) - PERSIST
        if last <= self.up_from:
            return held[self.up_from :]
        best = max(range(self.up_from, last + 1), key=lambda j: gain(held[j:]))
        return held[best:]

    def drop_run(self) -> None:
        """A burst that is over: its points are neither the new level nor the old one, and the
        upward sum would otherwise take many quiet minutes to come down from it."""
        self.add_base(self.held[: self.up_from])
        self.held.clear()
        self.s_up = self.s_down = 0.0
        self.up_from = self.down_from = 0

    def rebase(self, run: list[_Point]) -> None:
        """After a change: the run is the new baseline, the sums start again."""
        self.base.clear()
        self.add_base(run)
        self.held.clear()
        self.s_up = self.s_down = 0.0
        self.up_from = self.down_from = 0


class RegressionDetector:
    """Online step detection on per-minute p95 and error rates; see the module docstring."""

    def __init__(self, min_change: float = 0.2) -> None:
        self.min_change = min_change
        self.delta = math.log1p(min_change)
        self._minute: int | None = None
        self._slot: int | None = None  # the last group slot checked (GROUPS a minute)
        self._p95: dict[str, _Track] = {}
        self._err: dict[str, _Track] = {}
        self._recent: deque[Regression] = deque(maxlen=RECENT)
        self._view: tuple[Regression, ...] = ()
        self._lock = threading.Lock()

    def recent(self) -> tuple[Regression, ...]:
        """Newest first, at most 100."""
        return self._view

    def update(self, snap: Snapshot, now: float) -> list[Regression]:
        """Regressions found by this call: the groups of series due since the last call, and
        the components' error rates on the first call of a minute."""
        minute = math.floor(now / 60.0)
        slot = math.floor(now * GROUPS / 60.0)
        with self._lock:
            found: list[Regression] = []
            if self._slot is None or slot - self._slot >= GROUPS:
                groups = None  # the first call, or a stall of a minute or more: every series
            elif slot > self._slot:
                groups = [s % GROUPS for s in range(self._slot + 1, slot + 1)]
            else:
                groups = []
            if groups != []:
                self._slot = slot
                found += self._p95_points(snap, now, minute, groups)
            if self._minute is None or minute > self._minute:
                self._minute = minute
                for e in snap.errors:
                    reg = self._error_point(e.component, e.errors, e.operations, now, minute)
                    if reg is not None:
                        found.append(reg)
                self._forget(minute)
            for reg in found:
                self._recent.appendleft(reg)
            if found:
                self._view = tuple(self._recent)
            return found

    def _p95_points(
        self, snap: Snapshot, now: float, minute: int, groups: list[int] | None
    ) -> list[Regression]:
        """The p95 points of the distributions in ``groups`` (None: all)."""
        found: list[Regression] = []
        table = as_table(snap.series)
        dist = table.of_kind(Kind.DISTRIBUTION)
        if groups is not None:
            dist = dist[np.isin(dist % GROUPS, groups)]
        count = table.column("1m", "count")[dist]
        p50 = table.column("1m", "p50")[dist]
        p95 = table.column("1m", "p95")[dist]
        ok = (count >= MIN_SAMPLES) & (p95 > 0)  # False for NaN (no p95)
        for i, n, a, b in zip(
            dist[ok].tolist(), count[ok].tolist(), p50[ok].tolist(), p95[ok].tolist(),
            strict=True,
        ):  # fmt: skip
            reg = self._p95_point(table.keys[i], None if a != a else a, b, n, now, minute)
            if reg is not None:
                found.append(reg)
        return found

    def _forget(self, minute: int) -> None:
        if minute % 10:
            return
        for tracks in (self._p95, self._err):
            for k in [k for k, tr in tracks.items() if minute - tr.minute > FORGET_MIN]:
                del tracks[k]

    @staticmethod
    def _track(tracks: dict[str, _Track], key: str, comp: str, label: str, minute: int) -> _Track:
        tr = tracks.get(key)
        if tr is None or minute - tr.minute > MAX_GAP_MIN:
            tr = tracks[key] = _Track(comp, label, minute)
        tr.minute = minute
        return tr

    # -- p95 -------------------------------------------------------------------------------

    def _p95_point(
        self, key: SeriesKey, p50: float | None, p95: float, count: float, now: float, minute: int
    ) -> Regression | None:
        """The series' 1-minute p95 (of ``MIN_SAMPLES`` or more, above 0) this minute."""
        seen = self._p95.get(key.id)
        if seen is not None and seen.minute == minute:
            return None  # checked this minute already (it changed group)
        x = math.log(p95)
        tr = self._track(self._p95, key.id, key.component, series_label(key.name, key.tags), minute)
        point = _Point(now, x, _sampling_var(p50, p95, count))
        if len(tr.base) < WARMUP_POINTS and not tr.held:
            tr.add_base((point,))
            return None
        mu = statistics.median(p.x for p in tr.base)
        known = [p.o for p in tr.base if p.o > 0]
        sigma = _sigma(tr.diffs, statistics.fmean(known) if known else 0.0)
        k = max(self.delta / 2, 0.75 * sigma) + 1.25 * sigma / math.sqrt(len(tr.base))
        h = max(1.5 * self.delta, H_SIGMAS * sigma)
        dev = x - mu
        tr.step(point, dev - k, -dev - k)
        if tr.s_down > h:
            tr.rebase(tr.held[tr.down_from :])  # an improvement: measure against it from now
            return None
        in_run = len(tr.held) - tr.up_from if tr.s_up > 0 else 0
        if tr.s_up > h and in_run >= BACK + 1 and all(p.x - mu <= k for p in tr.held[-BACK:]):
            tr.drop_run()  # a spike, over already: the bottleneck rules report those
            return None
        if in_run < PERSIST or any(p.x - mu <= k for p in tr.held[-PERSIST:]):
            return None
        if tr.s_up <= h and not self._window_alarm(tr, mu, sigma, in_run):
            return None

        def gain(run: list[_Point]) -> float:
            # Gaussian mean shift: n (mean - mu)^2, for upward shifts only
            shift = statistics.fmean(p.x for p in run) - mu
            return len(run) * shift * shift if shift > 0 else 0.0

        run = tr.up_run(gain)
        before = math.exp(mu)
        after = math.exp(statistics.fmean(p.x for p in run))
        since = run[0].t - 60.0
        tr.rebase(run)
        change = after / before - 1.0
        if change < self.min_change:
            return None  # a real but smaller step: re-baselined, not worth a regression
        return Regression(
            series=key.id,
            component=tr.component,
            metric="p95",
            before=before,
            after=after,
            change=change,
            since=since,
            detected=now,
            message=f"{tr.component} {tr.label} p95 {_pct(change)} since {_hhmm(since)} "
            f"({ms_text(before)} -> {ms_text(after)})",
        )

    def _window_alarm(self, tr: _Track, mu: float, sigma: float, in_run: int) -> bool:
        """The Shewhart half of a combined Shewhart-CUSUM scheme: a large step is obvious in
        the mean of the last few minutes well before the CUSUM, tuned for the smallest step,
        has summed up to its decision level."""
        base_var = 1.57 / len(tr.base)  # a median of n points: 1.25 sigma / sqrt(n)
        for m in range(PERSIST, min(WINDOW_MAX, in_run) + 1):
            shift = statistics.fmean(p.x for p in tr.held[-m:]) - mu
            if shift >= self.delta and shift >= Z_WINDOW * sigma * math.sqrt(1.0 / m + base_var):
                return True
        return False

    # -- error rate ------------------------------------------------------------------------

    def _error_point(
        self, comp: str, errors: float, ops: float, now: float, minute: int
    ) -> Regression | None:
        if not (ops > 0 and math.isfinite(ops) and errors >= 0 and math.isfinite(errors)):
            return None
        tr = self._track(self._err, comp, comp, f"{comp} error rate", minute)
        point = _Point(now, errors, ops)
        e_b = sum(p.x for p in tr.base)
        o_b = sum(p.o for p in tr.base)
        if (len(tr.base) < WARMUP_POINTS or o_b <= 0) and not tr.held:
            tr.add_base((point,))
            return None
        r0 = (e_b + 0.5) / o_b
        ratio = 1.0 + 2.0 * self.min_change
        r_up, r_down = r0 * ratio, r0 / ratio
        tr.step(
            point,
            errors * math.log(ratio) - ops * (r_up - r0),
            -errors * math.log(ratio) - ops * (r_down - r0),
        )
        if tr.s_down > ERROR_H:
            tr.rebase(tr.held[tr.down_from :])
            return None
        if tr.s_up <= ERROR_H or len(tr.held) - tr.up_from < PERSIST:
            return None

        def gain(run: list[_Point]) -> float:
            # Poisson rate change: E ln(r / r0) - O (r - r0) at the run's own rate r = E / O
            e = sum(p.x for p in run)
            o = sum(p.o for p in run)
            r = e / o
            return e * math.log(r / r0) - o * (r - r0) if r > r0 else 0.0

        run = tr.up_run(gain)
        e_r = sum(p.x for p in run)
        o_r = sum(p.o for p in run)
        after = e_r / o_r
        if after > r0:
            # Do the latest minutes look like the run, or like the baseline again?
            like_base = [
                p.x * math.log(after / r0) - p.o * (after - r0) <= 0 for p in run[-ERROR_RECENT:]
            ]
            if all(like_base) and len(run) > ERROR_RECENT:
                tr.drop_run()  # a burst, over already: the bottleneck rules report those
                return None
            if any(like_base):
                return None  # too early to tell
        if after / r0 - 1.0 < self.min_change:
            tr.rebase(run)  # a real but smaller step
            return None
        if e_r < ERROR_MIN_COUNT or _binom_sf(round(e_r), round(e_b + e_r), o_r / (o_b + o_r)) >= (
            ERROR_P
        ):
            return None  # not yet beyond doubt: the run keeps growing
        before = e_b / o_b
        change = after / before - 1.0 if before > 0 else after / r0 - 1.0
        since = run[0].t - 60.0
        tr.rebase(run)
        return Regression(
            series=tr.label,
            component=comp,
            metric="error_rate",
            before=before,
            after=after,
            change=change,
            since=since,
            detected=now,
            message=(
                f"{comp} error rate {_pct(change)} since {_hhmm(since)} "
                f"({share_text(before)} -> {share_text(after)})"
                if before > 0
                else f"{comp} error rate up from 0 to {share_text(after)} since {_hhmm(since)}"
            ),
        )


def _sigma(diffs: deque[float], model_var: float) -> float:
    """The noise of log p95: what the last minutes showed (median |x_t - x_t-1| = 0.954 sigma
    for Gaussian noise, robust to the one large difference a step makes), pulled towards the
    sampling noise the sample counts predict while there are few minutes to go by."""
    n = len(diffs)
    seen = (statistics.median(diffs) / 0.954) ** 2 if n else 0.0
    if model_var > 0:
        var = (n * seen + PRIOR_POINTS * model_var) / (n + PRIOR_POINTS)
    else:  # no prediction (no p50): a few differences say little, so they count for more
        var = seen * (1 + 2 / n) ** 2 if n else 0.0
    return max(SIGMA_FLOOR, math.sqrt(var))


def _sampling_var(p50: float | None, p95: float, n: float) -> float:
    """Variance of the log of a sample p95 of n values from a lognormal whose spread is read
    off p50 -> p95: sqrt(p (1 - p)) / phi(z_p) = 2.11, sigma = ln(p95 / p50) / 1.645."""
    if p50 is None or not p50 > 0 or not p95 > p50 or not n > 0:
        return 0.0  # unknown
    spread = math.log(p95 / p50) / 1.645
    return (2.11 * spread) ** 2 / n


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space from k until the terms vanish."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        total += term
        if i > n * p and term < total * 1e-12:  # past the mode the terms only shrink
            break
    return min(1.0, total)


def _pct(change: float) -> str:
    if change < 1.0:
        return f"{change * 100:+.0f} %"
    x = 1.0 + change  # "+4300 %" reads worse than "44x"
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def _hhmm(t: float) -> str:
    return time.strftime("%H:%M", time.localtime(t))
