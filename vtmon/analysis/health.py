"""Health scores and recommendations per component.

Health per component starts at 1 and loses:

    latency      min(0.4, (p95 / target - 1) x 0.2)      worst 1 m p95 above the target
    memory       min(0.3, (use - 0.8) x 0.5)             use above the 0.8 threshold
    errors       min(0.4, error_rate / threshold x 0.4)  any errors in the last minute
    bottlenecks  min(0.3, 0.1 x critical bottlenecks of the component)

``use`` and the memory threshold are fractions of the component's ``max_memory_mb`` (the
original design's numbers are fractions: a threshold of 0.8 = 80 % of the budget), so a
component at its full budget loses 0.1 and one at 140 % the maximum 0.3. The worst p95 is taken
over distributions with at least ``P95_MIN_SAMPLES`` values in the minute, as the latency rule does
(the p95 of three samples is their maximum). ``error_rate`` is the component's errors /
operations over the last minute against its ``error_rate`` setting. Status: good above 0.8,
warning above 0.6, else critical. ``penalties`` lists each non-zero deduction.

The components scored are those with something to score: a distribution, a memory gauge, error
or operation counts, or an active bottleneck (a component with only, say, a queue-depth gauge
would otherwise sit at 1.0 and dilute the overall score).

Overall = the mean of the component scores (each component weighs the same, however much
traffic it has), minus min(0.3, 0.1 x critical bottlenecks of component "system") -- the
machine-level findings the components' own scores do not include. With no components, it is
1 minus that system penalty.

Recommendations (``recommendations``), highest priority first:

    per component   memory above 80 % of its budget (high above 90 %); worst p95 above 2x
                    its target (high above 5x); error rate above its threshold, with at least
                    20 operations in the minute (low up to 2x, medium up to 5x, high above)
    "all"           the worst p95 of any component above 500 ms (cross-component
                    communication; high above 1 s); total memory pressure: the components
                    together above 80 % of their combined budgets (two or more reporting), or
                    the machine above 90 % memory while components report theirs (high above
                    90 % / 95 %)

A latency or error recommendation quotes the cause the detector ranked first for that
component's active bottleneck, when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vtmon.analysis.common import (
    ERROR_CRITICAL_X,
    ERROR_HIGH_X,
    ERROR_MIN_OPERATIONS,
    LATENCY_CRITICAL_X,
    LATENCY_HIGH_X,
    MIB,
    component_memory,
    component_p95,
    distribution_components,
    series_label,
)
from vtmon.config import Config
from vtmon.model import Bottleneck, Health, Recommendation, Severity, Snapshot

MEMORY_THRESHOLD = 0.8
GOOD = 0.8
WARNING = 0.6
CROSS_P95_MS = 500.0
SYSTEM = "system"
MACHINE_MEMORY_PCT = 90.0  # the machine's memory use that makes the components' share matter
MACHINE_MEMORY_HIGH_PCT = 95.0
_PRIORITY = {"high": 0, "medium": 1, "low": 2}


@dataclass(slots=True)
class _Comp:
    p95: float | None = None
    p95_series: str = ""
    memory_mb: float | None = None
    error_rate: float | None = None
    errors: float = 0.0
    operations: float = 0.0
    top_error: str = ""


def _gather(snap: Snapshot, bottlenecks: Sequence[Bottleneck]) -> dict[str, _Comp]:
    comps: dict[str, _Comp] = {}
    for comp in distribution_components(snap):
        comps[comp] = _Comp()  # scored even before its p95 counts
    for comp, (p95, s) in component_p95(snap).items():
        c = comps[comp]
        c.p95, c.p95_series = p95, series_label(s.name, s.tags)
    for comp, (mb, _) in component_memory(snap).items():
        comps.setdefault(comp, _Comp()).memory_mb = mb
    for e in snap.errors:
        c = comps.setdefault(e.component, _Comp())
        c.error_rate, c.errors, c.operations = e.error_rate, e.errors, e.operations
        if e.by_type:
            c.top_error = max(e.by_type.items(), key=lambda kv: kv[1])[0]
    for b in bottlenecks:
        if b.component != SYSTEM:
            comps.setdefault(b.component, _Comp())
    return comps


def _status(score: float) -> str:
    if score > GOOD:
        return "good"
    if score > WARNING:
        return "warning"
    return "critical"


def _criticals(bottlenecks: Sequence[Bottleneck], comp: str) -> int:
    return sum(
        1
        for b in bottlenecks
        if b.component == comp and b.severity is Severity.CRITICAL and b.resolved is None
    )


def health(snap: Snapshot, config: Config, bottlenecks: Sequence[Bottleneck]) -> tuple[Health, ...]:
    """Per component (sorted by name), then ``Health("overall", ...)`` last."""
    out: list[Health] = []
    for comp, c in sorted(_gather(snap, bottlenecks).items()):
        lim = config.limits(comp)
        pen: dict[str, float] = {}
        if c.p95 is not None and c.p95 > lim.target_ms:
            pen["latency"] = min(0.4, (c.p95 / lim.target_ms - 1.0) * 0.2)
        if c.memory_mb is not None:
            use = c.memory_mb / lim.max_memory_mb
            if use > MEMORY_THRESHOLD:
                pen["memory"] = min(0.3, (use - MEMORY_THRESHOLD) * 0.5)
        if c.errors > 0 and c.error_rate is not None:
            pen["errors"] = min(0.4, c.error_rate / lim.error_rate * 0.4)
        n = _criticals(bottlenecks, comp)
        if n:
            pen["bottlenecks"] = min(0.3, 0.1 * n)
        out.append(_health(comp, 1.0 - sum(pen.values()), pen))
    pen = {}
    if out:
        mean = sum(h.score for h in out) / len(out)
        if mean < 1.0:
            pen["components"] = 1.0 - mean
    n = _criticals(bottlenecks, SYSTEM)
    if n:
        pen["system bottlenecks"] = min(0.3, 0.1 * n)
    out.append(_health("overall", 1.0 - sum(pen.values()), pen))
    return tuple(out)


def _health(comp: str, score: float, pen: dict[str, float]) -> Health:
    score = round(max(0.0, min(1.0, score)), 3)
    return Health(comp, score, _status(score), {k: round(v, 3) for k, v in pen.items()})


# ---------------------------------------------------------------------------------------------
# recommendations


def recommendations(
    snap: Snapshot, config: Config, bottlenecks: Sequence[Bottleneck]
) -> tuple[Recommendation, ...]:
    """What to do about it: per component and across components, highest priority first."""
    comps = _gather(snap, bottlenecks)
    # The cause the detector ranked first, quoted where it explains what to fix.
    causes = {
        (b.component, b.type): _sentence(b.cause_text)
        for b in bottlenecks
        if b.type in ("latency", "errors") and b.causes and b.resolved is None
    }
    out: list[Recommendation] = []
    for comp, c in sorted(comps.items()):
        lim = config.limits(comp)
        if c.memory_mb is not None:
            use = c.memory_mb / lim.max_memory_mb
            if use > MEMORY_THRESHOLD:
                goal = MEMORY_THRESHOLD * lim.max_memory_mb
                how = lim.memory_advice or (
                    "pool and reuse large buffers and objects instead of allocating them per "
                    "request, put size limits on queues and caches, and stream large payloads"
                )
                out.append(
                    Recommendation(
                        component=comp,
                        priority="high" if use > 0.9 else "medium",
                        title=f"Reduce {comp} memory use",
                        description=f"{comp} uses {c.memory_mb:.0f} MB, {100 * use:.0f} % of its "
                        f"{lim.max_memory_mb:g} MB budget (threshold "
                        f"{100 * MEMORY_THRESHOLD:.0f} %).",
                        expected_improvement=f"About {c.memory_mb - goal:.0f} MB less, back under "
                        f"{goal:g} MB, and room before the budget is exhausted.",
                        implementation=f"In {comp}: {how}; then compare two tracemalloc (or "
                        "heap profiler) snapshots a few minutes apart to find what still grows.",
                    )
                )
        if c.p95 is not None and c.p95 > LATENCY_HIGH_X * lim.target_ms:
            x = c.p95 / lim.target_ms
            how = lim.latency_advice or (
                "cache the results of repeated work, move I/O off the request path into an "
                "async pipeline or worker pool, and batch small downstream calls"
            )
            cause = causes.get((comp, "latency"), "")
            out.append(
                Recommendation(
                    component=comp,
                    priority="high" if x > LATENCY_CRITICAL_X else "medium",
                    title=f"Cut {comp} latency",
                    description=f"{comp} p95 is {c.p95:.0f} ms over the last minute, {x:.1f}x its "
                    f"{lim.target_ms:g} ms target ({c.p95_series}).{cause}",
                    expected_improvement=f"p95 back to the {lim.target_ms:g} ms target: about "
                    f"{100 * (1 - 1 / x):.0f} % lower.",
                    implementation=f"In {comp}: {how}. Profile {c.p95_series} first to see "
                    "where the time goes; set timeouts on every outbound call.",
                )
            )
        if (
            c.error_rate is not None
            and c.operations >= ERROR_MIN_OPERATIONS
            and c.error_rate > lim.error_rate
        ):
            x = c.error_rate / lim.error_rate
            top = f", mostly {c.top_error}" if c.top_error and c.top_error != "unknown" else ""
            cause = causes.get((comp, "errors"), "")
            out.append(
                Recommendation(
                    component=comp,
                    priority="high"
                    if x > ERROR_CRITICAL_X
                    else "medium"
                    if x > ERROR_HIGH_X
                    else "low",
                    title=f"Bring {comp} errors down",
                    description=f"{comp} failed {100 * c.error_rate:.2g} % of "
                    f"{c.operations:.0f} operations in the last minute ({c.errors:.0f} errors"
                    f"{top}), {x:.1f}x its acceptable {100 * lim.error_rate:.2g} %.{cause}",
                    expected_improvement=f"Error rate under {100 * lim.error_rate:.2g} %: about "
                    f"{max(0.0, c.errors - lim.error_rate * c.operations):.0f} fewer failures "
                    "a minute.",
                    implementation=f"In {comp}: retry transient failures (timeouts, 503s) with "
                    "exponential backoff and jitter, validate input at the boundary before it "
                    "reaches the expensive work, wrap failing dependencies in a circuit breaker, "
                    "and log every error with its type.",
                )
            )
    out += _cross(snap, comps, config)
    out.sort(key=lambda r: (_PRIORITY.get(r.priority, 9), r.component == "all", r.component))
    return tuple(out)


def _cross(snap: Snapshot, comps: dict[str, _Comp], config: Config) -> list[Recommendation]:
    out: list[Recommendation] = []
    slow = [(c.p95, name, c.p95_series) for name, c in comps.items() if c.p95 is not None]
    if slow:
        p95, name, series = max(slow)
        if p95 > CROSS_P95_MS:
            out.append(
                Recommendation(
                    component="all",
                    priority="high" if p95 > 2 * CROSS_P95_MS else "medium",
                    title="Optimize cross-component communication",
                    description=f"The slowest step, {name} {series}, has a p95 of {p95:.0f} ms; "
                    f"above {CROSS_P95_MS:.0f} ms a request through all components no longer "
                    "feels interactive.",
                    expected_improvement="Shorter end-to-end latency: hand-offs between "
                    "components overlap instead of adding up.",
                    implementation="Keep connections between components open (pools or one "
                    "persistent channel) instead of one per request; stream partial results "
                    "(e.g. transcription to the terminal processor as it is recognised) rather "
                    "than waiting for the whole; batch small messages, use a compact "
                    "serialization, and set one end-to-end deadline that each hop honours.",
                )
            )
    mem = [
        (c.memory_mb, config.limits(n).max_memory_mb)
        for n, c in comps.items()
        if c.memory_mb is not None
    ]
    used = sum(m for m, _ in mem)
    budget = sum(b for _, b in mem)
    share = used / budget if budget > 0 else 0.0
    machine = snap.resources.mem_percent
    combined = len(mem) >= 2 and share > MEMORY_THRESHOLD
    tight = bool(mem) and machine is not None and machine > MACHINE_MEMORY_PCT
    if combined or tight:
        sentences = []
        if len(mem) >= 2:
            sentences.append(
                f"The {len(mem)} components use {used:.0f} MB together, {100 * share:.0f} % "
                f"of their combined {budget:g} MB budget."
            )
        if tight and machine is not None:
            total_mb = snap.resources.mem_total / MIB
            held = f", {100 * used / total_mb:.0f} % of it held by them" if total_mb else ""
            sentences.append(f"The machine's memory is {machine:.0f} % used{held}.")
        freed = used - MEMORY_THRESHOLD * budget if combined else 0.1 * used
        out.append(
            Recommendation(
                component="all",
                priority="high"
                if share > 0.9 or (machine or 0) > MACHINE_MEMORY_HIGH_PCT
                else "medium",
                title="Relieve total memory pressure",
                description=" ".join(sentences),
                expected_improvement=f"About {freed:.0f} MB freed across components, and no "
                "component pushed into swap by another.",
                implementation="Share one bounded buffer pool and one cache between "
                "components instead of one each; set a size limit on every queue between "
                "them so a slow consumer cannot pile data up; load large models and "
                "resources lazily and release them when idle.",
            )
        )
    return out


def _sentence(text: str) -> str:
    return f" {text[0].upper()}{text[1:]}." if text else ""
