"""What a report says about a period, gathered from the history store into one plain dict.

Everything comes from the history file: the series' range summaries and chart points, the
machine's readings, the findings the engine kept (bottlenecks, alerts, regressions, forecasts,
recommendations, health, ingest counters; vtmon/store/findings.py) and the tuning journal
(the ``actions`` table). So a report needs no running vtmon, and a report of last night is the
same whether vtmon restarted since or not.

The dict is JSON-ready (``--format json`` writes it as it is) and is what the HTML template
renders; its keys are in docs/report.md. Statistics use the Snapshot's keys (``count``,
``rate``, ``p50`` ... ``p999``, ``mean``, ``min``, ``max``).
"""

from __future__ import annotations

import math
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vtmon import __version__
from vtmon.config import Config
from vtmon.model import Kind, SeriesKey, as_count, as_float
from vtmon.store.findings import Finding

if TYPE_CHECKING:
    from vtmon.store.history import HistoryStore, SeriesInfo

REPORT_TYPE = "vtmon performance report"
VERSION = 1
CHART_POINTS = 400  # at most this many points per chart line
# Round resolutions, each a whole number of stored points with the default tiers.
RESOLUTIONS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
HISTOGRAM_BINS = 36
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
FINAL_STATES = ("kept", "reverted", "failed", "lost", "rejected", "expired")
# The machine's readings a report tabulates: (label, layer, series name, unit).
RESOURCE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("CPU", "system", "system.cpu", "%"),
    ("Memory", "system", "system.mem", "%"),
    ("Swap", "system", "system.swap", "%"),
    ("IO wait", "system", "system.iowait", "%"),
    ("Load (1 min)", "system", "system.load1", ""),
    ("Disk read", "system", "system.disk_read", "B/s"),
    ("Disk write", "system", "system.disk_write", "B/s"),
    ("Network receive", "network", "network.rx", "B/s"),
    ("Network transmit", "network", "network.tx", "B/s"),
    ("Network errors", "network", "network.errors", "/s"),
    ("Pressure: CPU (some avg10)", "system", "system.pressure.cpu", "%"),
    ("Pressure: memory (some avg10)", "system", "system.pressure.memory", "%"),
    ("Pressure: IO (some avg10)", "system", "system.pressure.io", "%"),
)
SENSOR_UNITS = {
    "hardware.temperature": ("Temperature", "°C"),
    "hardware.fan": ("Fan", "rpm"),
    "hardware.power": ("Power", "W"),
    "hardware.battery": ("Battery", "%"),
}


class NoData(Exception):
    """Nothing is stored for the period (message: one sentence saying so)."""


def build_report(
    store: HistoryStore,
    start: float,
    end: float,
    *,
    config: Config | None = None,
    host: str | None = None,
    now: float | None = None,
    source: str = "",
) -> dict[str, Any]:
    """The report of ``[start, end)`` from ``store``; raises ``NoData`` when the file holds
    nothing for it. ``config`` gives latency targets for components whose health was never
    recorded; ``source`` says where the data came from (the file's path)."""
    generated = time.time() if now is None else now
    if end <= start:
        raise NoData("The period is empty: its end is not after its start.")
    cfg = config or Config()
    infos = store.series(start, end)
    found = store.findings(start, end)
    actions = store.actions_between(start, end)
    if not infos and not found and not actions:
        where = f" in {source}" if source else ""
        held = store.series(-math.inf, math.inf)
        has = (
            f"; it holds data from {_iso(min(s.first for s in held))} to "
            f"{_iso(max(s.last for s in held) + 1)}"
            if held
            else "; it holds no data yet"
        )
        raise NoData(f"No data between {_iso(start)} and {_iso(end)}{where}{has}.")
    # Bottlenecks that fired before the period may still be active during it.
    runs = store.findings(None, end, kinds=("bottleneck", "resolved", "start", "stop"))
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for f in found:
        by_kind[f.kind].append(f)

    app = [s for s in infos if s.layer == "application"]
    targets = _targets(by_kind["health"], app, cfg)
    res = chart_resolution(end - start)
    rows = (_latency_row(store, s, start, end, targets) for s in app if _is_dist(s))
    latency = [r for r in rows if r is not None]
    bottlenecks = _bottlenecks(runs, start, end)
    health = _health(by_kind["health"], latency)
    alerts = [f.data for f in by_kind["alert"]]
    regressions = [f.data for f in by_kind["regression"]]
    for a in actions:
        a["decision_text"] = _decision(a)
        a["unit"] = metric_unit(str(a.get("metric") or ""))
    report: dict[str, Any] = {
        "report_type": REPORT_TYPE,
        "version": VERSION,
        "vtmon": __version__,
        "generated_at": _iso(generated),
        "generated_t": generated,
        "component": "all",
        "host": _host(runs, found, host),
        "source": source,
        # what was done to the file (a damaged one moved aside, trimming to its size bound):
        # the period may hold less than it would have
        "history_note": store.notice,
        "period": {
            "start": start,
            "end": end,
            "start_iso": _iso(start),
            "end_iso": _iso(end),
            "duration_s": end - start,
            "timezone": datetime.fromtimestamp(start).astimezone().strftime("UTC%z"),
        },
        "summary": {
            **health,
            "series": len(app),
            "bottlenecks": len(bottlenecks),
            "critical_bottlenecks": sum(1 for b in bottlenecks if b["severity"] == "critical"),
            "alerts": len(alerts),
            "alerts_by_severity": dict(Counter(str(a.get("severity")) for a in alerts)),
            "actions": len(actions),
            "regressions": len(regressions),
        },
        "metrics": {
            "latency": latency,
            "counters": _rows(store, app, Kind.COUNTER, start, end),
            "gauges": _rows(store, app, Kind.GAUGE, start, end),
            "sets": _rows(store, app, Kind.SET, start, end),
        },
        "resources": _resources(store, start, end),
        "sensors": _sensors(store, infos, start, end),
        "bottlenecks": bottlenecks,
        "critical_bottlenecks": [b for b in bottlenecks if b["severity"] == "critical"],
        "alerts": alerts,
        "actions": actions,
        "regressions": regressions,
        "predictions": _latest(by_kind["prediction"], ("component", "metric")),
        "recommendations": sorted(
            _latest(by_kind["recommendation"], ("component", "title")),
            key=lambda r: (PRIORITY_RANK.get(str(r.get("priority")), 3), -r["last_seen"]),
        ),
        "ingest": _ingest(by_kind["ingest"]),
        "charts": {
            "resolution_s": res,
            "latency": _latency_charts(store, app, start, end, res, targets),
            "histograms": _histograms(store, app, start, end),
            "resources": store.resources(start, end, chart_resolution(end - start, floor=5)),
        },
    }
    return report


# --- pieces --------------------------------------------------------------------------------


def chart_resolution(span_s: float, floor: int = 1) -> int:
    """A round resolution that draws ``span_s`` in at most ``CHART_POINTS`` points."""
    want = max(span_s / CHART_POINTS, floor)
    return next((r for r in RESOLUTIONS_S if r >= want), RESOLUTIONS_S[-1])


def metric_unit(metric: str) -> str:
    """The unit of a tuning action's metric key (vtmon/tuning/strategies.py)."""
    if metric.startswith(("p95", "p99", "p50")):
        return "ms"
    if metric.startswith("memory system"):
        return "%"
    if metric.startswith("memory"):
        return "MB"
    if metric.startswith(("cpu", "iowait")):
        return "%"
    return ""


def latency_status(p95: float | None, target: float | None) -> str | None:
    """As the console colours it: within the target, up to twice it, beyond."""
    if p95 is None or target is None:
        return None
    if p95 <= target:
        return "good"
    return "warning" if p95 <= 2 * target else "critical"


def health_status(score: float) -> str:
    """The engine's words for a health score (vtmon/analysis/health.py)."""
    if score > 0.8:
        return "good"
    return "warning" if score > 0.6 else "critical"


def _is_dist(s: SeriesInfo) -> bool:
    return s.key.kind is Kind.DISTRIBUTION


def _ident(key: SeriesKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "tags": dict(key.tags), "component": key.component}


def _latency_row(
    store: HistoryStore, s: SeriesInfo, start: float, end: float, targets: dict[str, float]
) -> dict[str, Any] | None:
    p = store.summary(s.key, start, end)
    if p is None or not p.get("count"):
        return None
    target = targets.get(s.component)
    stats = {k: p.get(k) for k in ("count", "p50", "p90", "p95", "p99", "p999", "mean")}
    stats.update(min=p.get("min"), max=p.get("max"))
    return {
        **_ident(s.key),
        **stats,
        "rate": (p["count"] or 0.0) / (end - start),
        "target_ms": target,
        "status": latency_status(p.get("p95"), target),
    }


def _rows(
    store: HistoryStore, infos: Sequence[SeriesInfo], kind: Kind, start: float, end: float
) -> list[dict[str, Any]]:
    out = []
    for s in infos:
        if s.key.kind is not kind:
            continue
        p = store.summary(s.key, start, end)
        if p is None:
            continue
        row = {**_ident(s.key), **{k: v for k, v in p.items() if k not in ("t", "res")}}
        if kind is Kind.COUNTER:
            row["rate"] = (p.get("count") or 0.0) / (end - start)
        out.append(row)
    return out


def _targets(health: Sequence[Finding], app: Sequence[SeriesInfo], cfg: Config) -> dict[str, float]:
    """Each component's latency target: as the engine used it (recorded with its health),
    else from the config."""
    out = {s.component: cfg.target_ms(s.component) for s in app if _is_dist(s)}
    for f in health:  # oldest first: the newest wins
        t = as_float(f.data.get("target_ms"))
        if t is not None and f.component != "overall":
            out[f.component] = t
    return out


def _health(health: Sequence[Finding], latency: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall and per-component health over the period: the mean of the minute records,
    their lowest and when; estimated from the latency table when none were recorded."""
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for f in health:
        s = as_float(f.data.get("score"))
        if s is not None:
            scores[f.component].append((s, f.t))
    comps: list[dict[str, Any]] = []
    if scores:
        for comp, vals in scores.items():
            mean = sum(v for v, _ in vals) / len(vals)
            low, low_t = min(vals)
            comps.append(
                {
                    "component": comp,
                    "score": mean,
                    "status": health_status(mean),
                    "lowest": low,
                    "lowest_status": health_status(low),
                    "lowest_at": low_t,
                    "samples": len(vals),
                }
            )
        overall = next((c for c in comps if c["component"] == "overall"), None)
        comps = sorted((c for c in comps if c["component"] != "overall"), key=lambda c: c["score"])
        source = "recorded"
    else:
        worst: dict[str, float] = {}
        for r in latency:
            if r["p95"] is not None and r["target_ms"]:
                ratio = r["p95"] / r["target_ms"]
                worst[r["component"]] = max(worst.get(r["component"], 0.0), ratio)
        for comp, ratio in sorted(worst.items()):
            score = 1.0 - min(0.4, max(0.0, ratio - 1.0) * 0.2)
            comps.append({"component": comp, "score": score, "status": health_status(score)})
        overall = None
        if comps:
            mean = sum(c["score"] for c in comps) / len(comps)
            overall = {"component": "overall", "score": mean, "status": health_status(mean)}
        source = "estimated from latency" if comps else "none"
    return {
        "health_score": overall["score"] if overall else None,
        "status": overall["status"] if overall else None,
        "health_lowest": overall.get("lowest") if overall else None,
        "health_lowest_at": overall.get("lowest_at") if overall else None,
        "health_source": source,
        "components": comps,
    }


def _bottlenecks(runs: Sequence[Finding], start: float, end: float) -> list[dict[str, Any]]:
    """Every bottleneck active at some time in ``[start, end)``, by start: as it was at its
    worst, with when it ended and how (resolved, still active, vtmon stopped)."""
    marks = sorted(f.t for f in runs if f.kind in ("start", "stop"))
    seen: dict[tuple[str, float], dict[str, Any]] = {}
    fired: dict[tuple[str, float], float] = {}  # when the engine first reported it
    for f in runs:
        if f.kind not in ("bottleneck", "resolved"):
            continue
        d = f.data
        key = (str(d.get("id")), as_float(d.get("started")) or f.t)
        cur = seen.get(key)
        if cur is None or f.kind == "resolved" or _rank(d) >= _rank(cur):
            merged = dict(d)
            if cur is not None and cur.get("resolved") and not merged.get("resolved"):
                merged["resolved"] = cur["resolved"]
            seen[key] = merged
        if f.kind == "bottleneck":
            fired.setdefault(key, f.t)
    out = []
    for key, b in seen.items():
        started = key[1]
        ended = as_float(b.get("resolved"))
        how = "resolved"
        if ended is None:
            stop = next((t for t in marks if t > fired.get(key, started)), None)
            if stop is not None and stop < end:
                ended, how = stop, "vtmon stopped"
            else:
                how = "active at the end of the period"
        if started >= end or (ended is not None and ended < start):
            continue
        causes = b.get("causes") or []
        cause = _cause_text(causes[0]) if causes else ""
        out.append(
            {
                **b,
                "started": started,
                "ended": ended,
                "end": how,
                "duration_s": (ended if ended is not None else end) - max(started, start),
                "cause": cause,
            }
        )
    out.sort(key=lambda b: (b["started"], b.get("id", "")))
    return out


def _rank(d: dict[str, Any]) -> int:
    return SEVERITY_RANK.get(str(d.get("severity")), -1)


def _cause_text(c: dict[str, Any]) -> str:
    u = str(c.get("unit") or "")
    return f"{c.get('label')} {_num(c.get('before'))}{u} -> {_num(c.get('after'))}{u}"


def _num(v: Any) -> str:
    v = as_float(v)
    if v is None:
        return "?"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".") or "0"


def _latest(found: Sequence[Finding], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """One entry per ``key`` (e.g. component and title): the newest, with when it was first
    and last seen in the period."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for f in found:
        k = tuple(f.data.get(x) for x in key)
        first = out[k]["first_seen"] if k in out else f.t
        out[k] = {**f.data, "first_seen": first, "last_seen": f.t}
    return list(out.values())


def _decision(a: dict[str, Any]) -> str:
    state = str(a.get("state") or "")
    if state in FINAL_STATES:
        return state
    return f"open ({state})" if state else "unknown"


def _ingest(found: Sequence[Finding]) -> dict[str, Any]:
    rejected: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    accepted = dropped = client = refused = 0
    for f in found:
        d = f.data
        accepted += as_count(d.get("accepted"))
        dropped += as_count(d.get("samples_dropped"))
        client += as_count(d.get("client_dropped"))
        refused += as_count(d.get("refused"))
        for into, key in ((rejected, "rejected"), (closed, "closed")):
            by = d.get(key)
            for reason, n in by.items() if isinstance(by, dict) else ():
                into[str(reason)] += as_count(n)
    return {
        "recorded": bool(found),
        "accepted": as_count(accepted),  # the sums clamped too, as every count vtmon shows
        "rejected": {r: as_count(n) for r, n in rejected.most_common()},
        "rejected_total": as_count(sum(rejected.values())),
        "samples_dropped": as_count(dropped),
        "client_dropped": as_count(client),
        "refused": as_count(refused),
        "closed": {r: as_count(n) for r, n in closed.most_common()},
        "closed_total": as_count(sum(closed.values())),
    }


def _resources(store: HistoryStore, start: float, end: float) -> list[dict[str, Any]]:
    out = []
    for label, layer, name, unit in RESOURCE_ROWS:
        p = store.summary(SeriesKey(name, (), Kind.GAUGE), start, end, layer=layer)
        if p is not None and p.get("count"):
            out.append(_gauge_row(label, name, unit, p))
    for s in store.series(start, end, layer="system"):
        if s.key.name == "system.disk_used":
            p = store.summary(s.key, start, end, layer="system")
            if p is not None and p.get("count"):
                mount = dict(s.key.tags).get("mount", "?")
                out.append(_gauge_row(f"Disk used: {mount}", s.key.id, "%", p))
    return out


def _sensors(
    store: HistoryStore, infos: Iterable[SeriesInfo], start: float, end: float
) -> list[dict[str, Any]]:
    out = []
    for s in infos:
        if s.layer != "hardware":
            continue
        label, unit = SENSOR_UNITS.get(s.key.name, (s.key.name, ""))
        tags = dict(s.key.tags)
        where = " ".join(v for k, v in sorted(tags.items()) if k in ("chip", "label", "source"))
        p = store.summary(s.key, start, end, layer="hardware")
        if p is not None and p.get("count"):
            out.append(_gauge_row(f"{label} {where}".strip(), s.key.id, unit, p))
    return out


def _gauge_row(label: str, name: str, unit: str, p: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": label,
        "series": name,
        "unit": unit,
        "count": p.get("count"),
        "mean": p.get("mean"),
        "min": p.get("min"),
        "max": p.get("max"),
        "last": p.get("last"),
    }


def _by_component(app: Sequence[SeriesInfo]) -> dict[str, list[SeriesKey]]:
    comps: dict[str, list[SeriesKey]] = defaultdict(list)
    for s in app:
        if _is_dist(s):
            comps[s.component].append(s.key)
    return dict(sorted(comps.items()))


def _latency_charts(
    store: HistoryStore,
    app: Sequence[SeriesInfo],
    start: float,
    end: float,
    res: int,
    targets: dict[str, float],
) -> list[dict[str, Any]]:
    """Per component: p50/p95/p99 of all its distributions merged, per ``res`` seconds."""
    out = []
    for comp, keys in _by_component(app).items():
        pts = store.merged_points(keys, start, end, resolution=res)
        if not pts:
            continue
        out.append(
            {
                "component": comp,
                "series": [k.id for k in keys],
                "target_ms": targets.get(comp),
                "resolution_s": max((p["res"] or res for p in pts), default=res),
                "t": [p["t"] for p in pts],
                "res": [p["res"] for p in pts],
                "p50": [p["p50"] for p in pts],
                "p95": [p["p95"] for p in pts],
                "p99": [p["p99"] for p in pts],
                "count": [p["count"] for p in pts],
            }
        )
    return out


def _histograms(
    store: HistoryStore, app: Sequence[SeriesInfo], start: float, end: float
) -> list[dict[str, Any]]:
    out = []
    for comp, keys in _by_component(app).items():
        bins = store.histogram(keys, start, end, bins=HISTOGRAM_BINS)
        if bins:
            out.append({"component": comp, "unit": "ms", "bins": [list(b) for b in bins]})
    return out


def _host(runs: Sequence[Finding], found: Sequence[Finding], host: str | None) -> str:
    for f in (*reversed(found), *reversed(runs)):
        if f.kind == "start" and f.data.get("host"):
            return str(f.data["host"])
    return host or socket.gethostname()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
