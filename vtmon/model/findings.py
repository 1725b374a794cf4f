"""What the analysis finds: bottlenecks with their evidence and likely causes, alerts,
regressions, predictions, health scores and recommendations, and how severe each is."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vtmon.model.numbers import short_number


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def weight(self) -> float:
        return SEVERITY_WEIGHT[self]

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)


SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)
SEVERITY_WEIGHT: dict[Severity, float] = {
    Severity.LOW: 0.2,
    Severity.MEDIUM: 0.4,
    Severity.HIGH: 0.7,
    Severity.CRITICAL: 0.9,
}
# Bottleneck types and how much each weighs in the impact (the original design's weights).
TYPE_WEIGHT: dict[str, float] = {
    "memory": 1.0,
    "cpu": 0.9,
    "latency": 0.8,
    "database": 0.8,
    "errors": 0.8,
    "throughput": 0.7,
    "io": 0.6,
    "network": 0.5,
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One metric value behind a finding."""

    name: str  # e.g. "p95 (1m)", "memory_heap_used", "PSI cpu some avg10"
    value: float
    threshold: float | None = None
    unit: str = ""  # "ms", "%", "MB", "/s", ""


@dataclass(frozen=True, slots=True)
class Cause:
    """A resource signal that changed when an incident started, ranked by how much."""

    signal: str  # e.g. "psi_cpu_some"
    label: str  # e.g. "CPU saturation (PSI cpu some)"
    before: float  # baseline window median
    after: float  # incident window median
    score: float  # 0..1, higher is more suspicious (KS distance)
    unit: str = "%"

    @property
    def text(self) -> str:
        u = self.unit
        return f"{self.label} {short_number(self.before)}{u} -> {short_number(self.after)}{u}"


@dataclass(frozen=True, slots=True)
class Bottleneck:
    id: str  # stable while active: "<rule>:<component>"
    type: str  # key of TYPE_WEIGHT
    severity: Severity
    component: str  # a component name, or "system"
    description: str
    impact: float  # severity weight x type weight
    confidence: float  # 0..1
    evidence: tuple[Evidence, ...]
    suggested_action: str
    started: float
    resolved: float | None = None
    causes: tuple[Cause, ...] = ()
    rule: str = ""

    @property
    def cause_text(self) -> str:
        return f"likely cause: {self.causes[0].text}" if self.causes else ""


@dataclass(frozen=True, slots=True)
class Alert:
    t: float
    severity: Severity
    kind: str  # high_latency | memory | error_spike | bottleneck | resolved | regression
    message: str
    component: str
    metric: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Regression:
    """A step change found by the change detector, even below any absolute threshold."""

    series: str  # series id, or "<component> error rate"
    component: str
    metric: str  # "p95" | "error_rate"
    before: float
    after: float
    change: float  # relative: +0.38 is +38 %
    since: float  # when the change started (estimated)
    detected: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Prediction:
    component: str  # or "system" for disk
    metric: str  # "memory" | "disk" | "p95"
    unit: str
    current: float
    forecast: float  # value expected at t + horizon_s
    horizon_s: float
    confidence: float  # 0..1
    limit: float | None = None
    eta_s: float | None = None  # seconds until the limit is reached, None when not within horizon
    message: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    component: str  # a component, or "overall"
    score: float  # 0..1
    status: str  # good | warning | critical
    penalties: dict[str, float] = field(default_factory=dict)  # what took the score down


@dataclass(frozen=True, slots=True)
class Recommendation:
    component: str  # a component, or "all" for cross-component advice
    priority: str  # high | medium | low
    title: str
    description: str
    expected_improvement: str
    implementation: str
