"""How severities and health read on screen: a word first, colour second.

Every severity carries a label (CRIT, HIGH, MED, LOW) and critical is drawn reversed, so the
colour-blind theme (and a monochrome terminal) still tells the four apart; the colours come
only from the theme (critical and high ``$error``, medium ``$warning``, low muted).
"""

from __future__ import annotations

from textual.content import Content

from vtmon.model import Severity
from vtmon.tui import fmt

LABEL: dict[Severity, str] = {
    Severity.CRITICAL: "CRIT",
    Severity.HIGH: "HIGH",
    Severity.MEDIUM: "MED",
    Severity.LOW: "LOW",
}
STYLE: dict[Severity, str] = {
    Severity.CRITICAL: "reverse $error bold",
    Severity.HIGH: "$error bold",
    Severity.MEDIUM: "$warning",
    Severity.LOW: "$foreground-muted",
}
BADGE_W = 6  # " CRIT "
HEALTH_STYLE: dict[str, str] = {
    "good": "$success",
    "warning": "$warning",
    "critical": "$error bold",
}
# Health status onto the latency table's cell classes (latency--ok/warn/bad).
HEALTH_CELL: dict[str, fmt.Severity] = {
    "good": fmt.Severity.OK,
    "warning": fmt.Severity.WARN,
    "critical": fmt.Severity.BAD,
}
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def badge(sev: Severity) -> Content:
    """`` CRIT `` and friends, always BADGE_W cells."""
    return Content.styled(f" {LABEL[sev]:<4} ", STYLE[sev])


def label(sev: Severity) -> Content:
    """The word alone, coloured (tables, where the reverse block would be too loud)."""
    return Content.styled(f"{LABEL[sev]:<4}", STYLE[sev].replace("reverse ", ""))


def worst(severities: list[Severity]) -> Severity | None:
    return max(severities, key=lambda s: s.rank) if severities else None


def health_style(status: str) -> str:
    return HEALTH_STYLE.get(status, "")


def priority_style(priority: str) -> str:
    return {"high": "$error bold", "medium": "$warning"}.get(priority, "$foreground-muted")
