"""The Prometheus metric families read from a Snapshot at scrape time: gauge and set series,
latency targets, the machine's resources, pressure, the watched process, sensors, health,
bottlenecks and the ingest counters (docs/prometheus.md lists every metric).

The Snapshot's numbers go through as_float / as_count: a sample that is no finite number (or a
count beyond what Prometheus holds) is left out or clamped, and the scrape goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from vtmon.export.labels import LatencyLabels, label_value, series_labels
from vtmon.model import (
    CLOSED_REASONS,
    SEVERITY_ORDER,
    Kind,
    SeriesKey,
    Snapshot,
    as_count,
    as_float,
    as_table,
)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    v = as_float(value)
    if v is not None:
        yield GaugeMetricFamily(name, doc, value=v)


def _labelled(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float | None]]
) -> Iterator[Metric]:
    g = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        v = as_float(value)
        if v is not None:
            g.add_metric([label_value(x) for x in values], v)
    if g.samples:
        yield g


def _total(n: object) -> float:
    """A counter's value from a count (see as_count)."""
    return float(as_count(n))


def _series_gauges(snap: Snapshot) -> Iterator[Metric]:
    gauges = GaugeMetricFamily("vtmon_gauge", "Gauge series: the current value.")
    sets = GaugeMetricFamily("vtmon_set_members", "Set series: unique members in the last minute.")
    table = as_table(snap.series)
    targets = table.component_targets()
    seen: set[tuple[str, LatencyLabels]] = set()
    for i in table.of_kind(Kind.GAUGE, Kind.SET).tolist():
        s = table[i]
        fam = gauges if s.kind is Kind.GAUGE else sets
        last = as_float(s.last)
        if last is None:
            continue
        labels = series_labels(SeriesKey(s.name, s.tags, s.kind))
        if (fam.name, labels) in seen:
            continue  # two series whose tags sanitise alike: the first one wins
        seen.add((fam.name, labels))
        fam.samples.append(Sample(fam.name, dict(labels), last))
    for fam in (gauges, sets):
        if fam.samples:
            yield fam
    yield from _labelled(
        "vtmon_latency_target_milliseconds",
        "The latency target of each component with distribution series.",
        ["component"],
        (([c], t) for c, t in sorted(targets.items())),
    )


def snapshot_families(snap: Snapshot) -> Iterator[Metric]:
    yield from _series_gauges(snap)
    r = snap.resources
    yield from _gauge("vtmon_cpu_percent", "System CPU use, percent of all cores.", r.cpu_percent)
    yield from _gauge("vtmon_cpu_count", "Logical CPUs.", r.cpu_count or None)
    if r.load is not None:
        yield from _labelled(
            "vtmon_load_average",
            "System load average.",
            ["period"],
            (([p], v) for p, v in zip(("1m", "5m", "15m"), r.load, strict=True)),
        )
    if r.mem_total:
        yield from _gauge("vtmon_memory_total_bytes", "Physical memory.", r.mem_total)
        yield from _gauge("vtmon_memory_used_bytes", "Memory in use.", r.mem_used)
        yield from _gauge("vtmon_memory_available_bytes", "Memory available.", r.mem_available)
    yield from _gauge("vtmon_memory_used_percent", "Memory in use, percent.", r.mem_percent)
    if r.swap_total:
        yield from _gauge("vtmon_swap_total_bytes", "Swap space.", r.swap_total)
        yield from _gauge("vtmon_swap_used_bytes", "Swap in use.", r.swap_used)
    yield from _labelled(
        "vtmon_swap_bytes_per_second",
        "Swap traffic.",
        ["direction"],
        [(["in"], r.swap_in_rate), (["out"], r.swap_out_rate)],
    )
    yield from _gauge("vtmon_iowait_percent", "CPU time waiting for IO, percent.", r.iowait_percent)
    yield from _labelled(
        "vtmon_disk_total_bytes",
        "Size of each mounted disk.",
        ["mount"],
        (([d.mount], d.total) for d in r.disks),
    )
    yield from _labelled(
        "vtmon_disk_used_bytes",
        "Used space of each mounted disk.",
        ["mount"],
        (([d.mount], d.used) for d in r.disks),
    )
    yield from _labelled(
        "vtmon_disk_used_percent",
        "Used space of each mounted disk, percent.",
        ["mount"],
        (([d.mount], d.percent) for d in r.disks),
    )
    yield from _labelled(
        "vtmon_disk_bytes_per_second",
        "Disk traffic, all disks.",
        ["direction"],
        [(["read"], r.disk_read_rate), (["write"], r.disk_write_rate)],
    )
    yield from _labelled(
        "vtmon_disk_iops",
        "Disk operations per second, all disks.",
        ["direction"],
        [(["read"], r.disk_read_iops), (["write"], r.disk_write_iops)],
    )
    yield from _labelled(
        "vtmon_network_bytes_per_second",
        "Network traffic, all interfaces.",
        ["direction"],
        [(["rx"], r.net_rx_rate), (["tx"], r.net_tx_rate)],
    )
    yield from _labelled(
        "vtmon_network_packets_per_second",
        "Network packets, all interfaces.",
        ["direction"],
        [(["rx"], r.net_rx_packets), (["tx"], r.net_tx_packets)],
    )
    yield from _gauge(
        "vtmon_network_errors_per_second", "Network errors and drops per second.", r.net_errors
    )
    for kind in ("some", "full"):
        for window in ("avg10", "avg60", "avg300"):
            yield from _labelled(
                f"vtmon_pressure_{kind}_{window}_percent",
                f"Pressure stall information: {kind} {window}, percent of time stalled.",
                ["resource"],
                (([p.resource], getattr(p, f"{kind}_{window}")) for p in r.pressure),
            )
    p = r.process
    if p is not None and p.running:
        who = [str(p.pid), p.name]
        yield from _labelled(
            "vtmon_watched_process_cpu_percent",
            "The --pid process: CPU, percent of one core.",
            ["pid", "name"],
            [(who, p.cpu_percent)],
        )
        yield from _labelled(
            "vtmon_watched_process_resident_memory_bytes",
            "The --pid process: resident memory.",
            ["pid", "name"],
            [(who, p.rss)],
        )
        yield from _labelled(
            "vtmon_watched_process_threads",
            "The --pid process: threads.",
            ["pid", "name"],
            [(who, p.threads)],
        )
    s = snap.sensors
    yield from _labelled(
        "vtmon_temperature_celsius",
        "Temperature sensors.",
        ["chip", "label"],
        (([t.chip, t.label], t.current) for t in s.temperatures),
    )
    yield from _labelled(
        "vtmon_fan_rpm",
        "Fan speeds.",
        ["chip", "label"],
        (([f.chip, f.label], f.rpm) for f in s.fans),
    )
    yield from _labelled(
        "vtmon_power_watts",
        "Power draw (powercap, hwmon).",
        ["source", "label"],
        (([w.source, w.label], w.watts) for w in s.power),
    )
    if s.battery is not None:
        yield from _gauge("vtmon_battery_percent", "Battery charge, percent.", s.battery.percent)
    yield from _labelled(
        "vtmon_health_score",
        "Health per component and overall, 0 (bad) to 1 (good).",
        ["component"],
        (([h.component], h.score) for h in snap.health),
    )
    severities = Counter(b.severity for b in snap.bottlenecks)
    yield from _labelled(
        "vtmon_bottlenecks",
        "Active bottlenecks by severity.",
        ["severity"],
        (([sev.value], severities[sev]) for sev in SEVERITY_ORDER),
    )
    i = snap.ingest
    yield CounterMetricFamily(
        "vtmon_ingest_bytes", "Bytes received on the socket.", value=_total(i.bytes)
    )
    yield GaugeMetricFamily(
        "vtmon_ingest_open_connections", "Connections open now.", value=_total(i.connections)
    )
    yield CounterMetricFamily(
        "vtmon_ingest_connections", "Connections accepted.", value=_total(i.connections_total)
    )
    yield CounterMetricFamily(
        "vtmon_ingest_connections_refused",
        "Connections closed at once: [limits] max_connections were open.",
        value=_total(i.refused),
    )
    closed = CounterMetricFamily(
        "vtmon_ingest_connections_closed",
        "Connections vtmon closed for one of its limits, by reason.",
        labels=["reason"],
    )
    # Every reason from the start, at 0 until it happens, so that rate() sees the first one.
    for reason in sorted({*CLOSED_REASONS, *i.closed}):
        closed.add_metric([reason], float(i.closed.get(reason, 0)))
    yield closed
    dropped = CounterMetricFamily(
        "vtmon_samples_dropped",
        "Samples lost: refused by the engine, or dropped by clients.",
        labels=["by"],
    )
    dropped.add_metric(["engine"], _total(i.samples_dropped))
    dropped.add_metric(["client"], _total(i.client_dropped))
    yield dropped
