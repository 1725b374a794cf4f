"""Prometheus exposition: ``/metrics`` in the text format, so a fleet of vtmon instances can be
scraped and aggregated by a Prometheus server.

What is exported (docs/prometheus.md lists every metric):

* every distribution series as the histogram ``vtmon_latency_milliseconds`` (cumulative since
  the exporter started), counters as ``vtmon_counter_total``, gauges as ``vtmon_gauge`` and sets
  as ``vtmon_set_members``, labelled ``series`` (the metric name), ``component`` and the series'
  tags;
* from the latest Snapshot: resources, pressure, the watched process, sensors, health scores,
  active bottlenecks by severity and the ingest counters.

Histograms and counters are kept here, from every batch the engine applies
(``Monitor.on_batch``), because Prometheus needs totals since start and the engine only keeps
five minutes. Everything else is read from ``monitor.latest`` at scrape time.

The buckets
    ``histogram_quantile`` finds the bucket that holds the rank and interpolates linearly inside
    it, so its answer is never further from the true quantile than one bucket's width. The
    boundaries are one of two fixed geometric grids from 0.1 ms to 125.9 s, rounded to 4
    significant digits so that ``le`` reads well, named by ``[prometheus] buckets``:
    ``coarse`` (the default), 10 per decade, each 10^(1/10) = 1.259 times the previous (62
    boundaries plus ``+Inf``), and ``fine``, 30 per decade, 10^(1/30) = 1.080 (184), of which
    every third is a coarse one. The worst case is one bucket's width: samples all just above
    a boundary read as if at the next one (+25.9 % coarse, +8.0 % fine). In the tail of a
    smooth distribution, where p99 lies, the density falls across the bucket and linear
    interpolation lands above the true quantile by a small part of that width;
    docs/prometheus.md has the errors measured through a real Prometheus server
    (tests/test_prometheus.py) and why the coarse grid is the default: the size of
    ``/metrics`` follows the number of boundaries.

    Every series always carries all the boundaries. Emitting only those up to the series' maximum
    would be stable for ``rate()`` (a maximum since start only grows) but breaks the fleet
    query: ``sum by (le)`` over instances with different maxima lacks the instance with the
    smaller maximum in every higher bucket, which counts it as missing, not as complete, and
    drags the quantile towards ``+Inf``. Omitting buckets below the minimum would be fleet-safe
    (they are zero), but shifts the buckets as the minimum falls; the saving is a few dozen
    lines per series, not worth the irregularity.

    Counts are exact: each value is put in its bucket with ``v <= le`` (Prometheus' inclusive
    bound), not through the engine's sketch, so the only error left is Prometheus'
    interpolation. Sample rates weigh values (and ``_count``) by 1 / rate, as the engine does;
    NaN, infinities and weights that are not positive are skipped, as the engine skips them.

Cardinality
    At most ``config.max_series`` histogram and counter series are kept (the engine's own
    limit); further ones are dropped. A series that has received nothing for
    ``FORGET_AFTER_S`` (10 minutes, as in the engine) is forgotten; if it comes back it starts
    from zero, which Prometheus' ``rate()`` treats as a counter reset.

Threads
    ``observe`` runs on the engine thread, ``collect`` on the HTTP server's threads. One lock
    guards the state; a scrape holds it only to copy the arrays, so the engine never waits for
    the text to be built. The text is built in bulk (vtmon.export.exposition), and scrapes
    that arrive while it is being built share it, so that the engine competes for the
    interpreter with one builder at most.
"""

from __future__ import annotations

import errno
import math
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from vtmon import __version__
from vtmon.config import Config
from vtmon.engine.series import FORGET_AFTER_S, SWEEP_EVERY_S
from vtmon.export import httpd
from vtmon.export.exposition import (
    LatencyHistograms,
    LineTemplates,
    SharedBuilds,
    generate,
    metrics_app,
)
from vtmon.export.families import snapshot_families
from vtmon.export.labels import LatencyLabels, label_value, series_labels
from vtmon.model import RING_S, Batch, Kind, SeriesKey, Snapshot

BUCKETS_PER_DECADE = 10  # the default ("coarse") set; "fine" has 30
LOWEST_MS = 0.1
HIGHEST_MS = 120_000.0  # the grid goes on to the first boundary at or above this
DEFAULT_HOST = "127.0.0.1"
TABLE_BITS = 8  # mantissa bits of the bucket lookup table (see _bucket_of)


def latency_buckets(
    per_decade: int = BUCKETS_PER_DECADE, lowest: float = LOWEST_MS, highest: float = HIGHEST_MS
) -> tuple[float, ...]:
    """The ``le`` boundaries: ``lowest * 10**(k / per_decade)`` up to the first >= ``highest``,
    rounded to 4 significant digits (strictly increasing for up to ~200 per decade)."""
    n = math.ceil(per_decade * math.log10(highest / lowest) - 1e-9)
    return tuple(float(f"{lowest * 10 ** (k / per_decade):.4g}") for k in range(n + 1))


COARSE_BUCKETS = latency_buckets()
FINE_BUCKETS = latency_buckets(30)  # every third one is a coarse boundary
BUCKET_SETS = {"coarse": COARSE_BUCKETS, "fine": FINE_BUCKETS}  # [prometheus] buckets
LATENCY = "vtmon_latency_milliseconds"


def parse_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (loopback), ``[IPv6]:PORT``; port 0 picks a free one.

    Raises ValueError with one sentence for the user.
    """
    s = spec.strip()
    if s.isdigit():
        host, port = "", s
    elif s.startswith("["):
        inner, sep, port = s[1:].partition("]:")
        if not sep or not inner:
            raise ValueError(f"{spec!r} is not [IPv6]:PORT, e.g. [::1]:9108.")
        host = inner
    else:
        host, sep, port = s.rpartition(":")
        if not sep:
            raise ValueError(f"{spec!r} is not HOST:PORT, :PORT or PORT, e.g. 127.0.0.1:9108.")
        if ":" in host:
            raise ValueError(f"{spec!r}: put an IPv6 address in brackets, e.g. [::1]:9108.")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{spec!r}: the port must be a number from 0 to 65535.")
    return host or DEFAULT_HOST, int(port)


class Source(Protocol):
    """What the exporter reads of the engine (vtmon.engine.monitor.Monitor provides it): every
    applied batch, the latest Snapshot at scrape time, and who it is."""

    config: Config  # its max_series bounds the exporter's too
    host: str
    started: float  # Unix seconds
    latest: Snapshot | None

    def on_batch(self, fn: Callable[[Batch, float], None]) -> None: ...


class ExporterError(Exception):
    """The endpoint cannot be served; the message is one sentence for the user."""


class PrometheusExporter:
    """Totals per series from every applied batch, and ``/metrics`` built at scrape time.

    ``PrometheusExporter(monitor)`` registers with the monitor; ``serve(host, port)`` starts the
    HTTP endpoint; ``exposition()`` is the same text without HTTP. The ``le`` boundaries are
    ``buckets``, by default the set the monitor's config names (``[prometheus] buckets``).
    """

    def __init__(
        self,
        monitor: Source,
        *,
        buckets: Iterable[float] | None = None,
        max_series: int | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.monitor = monitor
        if buckets is None:
            buckets = BUCKET_SETS[monitor.config.prometheus.buckets]
        self.buckets = tuple(float(b) for b in buckets)
        if list(self.buckets) != sorted(set(self.buckets)) or not self.buckets:
            raise ValueError("buckets must be strictly increasing")
        self.max_series = monitor.config.max_series if max_series is None else max_series
        self._bounds = np.asarray(self.buckets, dtype=np.float64)
        self._bounds_inf = np.append(self._bounds, math.inf)  # index n = the +Inf bucket
        self._nb = len(self.buckets) + 1
        self._table = self._lookup_table()
        self._le = [floatToGoString(b) for b in self.buckets] + ["+Inf"]
        self._templates = LineTemplates(LATENCY)  # scrape side: each series' lines' labels

        self._lock = threading.Lock()
        # histograms: one row per label set (different keys that sanitise alike share a row)
        self._rows: dict[LatencyLabels, int] = {}
        self._free: list[int] = []
        self._counts = np.zeros((0, self._nb), dtype=np.float64)  # per bucket, not cumulative
        self._sum = np.zeros(0, dtype=np.float64)  # _count is the +Inf bucket's cumulative count
        self._seen = np.zeros(0, dtype=np.float64)
        # counters: label set -> [total, last seen]
        self._counters: dict[LatencyLabels, list[float]] = {}
        self._labels: dict[SeriesKey, LatencyLabels] = {}
        self._dropped = 0  # samples of series beyond max_series
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._next_sweep = -math.inf

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        if process_metrics:  # vtmon's own CPU and memory: process_* (deliberately included)
            ProcessCollector(registry=self.registry)
        self._httpd: httpd.MetricsServer | None = None
        self._thread: threading.Thread | None = None
        self._refused: Counter[str] = Counter()  # connections the HTTP side closed, by reason
        self.builds = SharedBuilds(self.exposition)  # one build for concurrent scrapes
        monitor.on_batch(self.observe)

    def _lookup_table(self) -> tuple[int, int, np.ndarray] | None:
        """For ``_bucket_of``: the first boundary >= the lower end of every float range that
        shares its exponent and top ``TABLE_BITS`` mantissa bits, between half the lowest
        boundary and twice the highest. None when a range could hold two boundaries (boundaries
        closer than 0.8 %, or not all positive): then ``searchsorted`` does the work."""
        b = self._bounds
        if b[0] <= 0 or (b.size > 1 and np.min(b[1:] / b[:-1]) <= 1 + 2.0 ** (1 - TABLE_BITS)):
            return None
        shift = 52 - TABLE_BITS
        lo = int(np.float64(b[0] / 2).view(np.int64)) >> shift
        hi = int(np.float64(b[-1] * 2).view(np.int64)) >> shift
        lower = (np.arange(lo, hi + 1, dtype=np.int64) << shift).view(np.float64)
        return lo, hi, np.searchsorted(b, lower, side="left").astype(np.intp)

    # -- the engine thread -----------------------------------------------------------------

    def observe(self, batch: Batch, now: float) -> None:
        """Add one applied batch (``Monitor.on_batch``): quick, and keeps none of its lists."""
        timed = batch.timed
        if not (batch.dist or batch.counts or timed or batch.accepted or batch.rejected):
            return
        with self._lock:
            self._accepted += batch.accepted
            if batch.rejected:
                self._rejected.update(batch.rejected)
            rows: list[int] = []
            lens: list[int] = []
            vals: list[Any] = []  # runs of values: lists, and numpy arrays (binary frames)
            wts: list[float] | None = None
            for key, buf in batch.dist.items():
                n = len(buf.values)
                if not n:
                    continue
                if buf.weights is not None and len(buf.weights) != n:
                    continue  # the engine drops such a buffer whole
                r = self._row(key, now)
                if r is None:
                    self._dropped += n
                    continue
                if buf.weights is not None:
                    if wts is None:
                        wts = [1.0] * sum(lens)
                    wts.extend(buf.weights)
                elif wts is not None:
                    wts.extend(repeat(1.0, n))
                rows.append(r)
                lens.append(n)
                _put(vals, buf.values)
            for key, inc in batch.counts.items():
                self._add_count(key, inc, now)
            if timed:
                oldest = math.floor(now) - RING_S + 1  # the engine drops anything older
                for run in timed:
                    key = run.key
                    if key.kind is not Kind.COUNTER and key.kind is not Kind.DISTRIBUTION:
                        continue
                    values, ts, w = run.values, run.ts, run.weight
                    if len(ts) != len(values):
                        continue  # the engine drops such a run whole
                    total = sum(ts)
                    if not (total == total and min(ts, default=oldest) >= oldest):  # NaN too
                        values = [v for v, t in zip(values, ts, strict=True) if t >= oldest]
                    n = len(values)
                    if not n:
                        continue
                    if key.kind is Kind.COUNTER:
                        inc = sum(values) * w
                        if math.isfinite(inc):
                            self._add_count(key, inc, now)
                        else:  # the finite increments count, one by one
                            for v in values:
                                self._add_count(key, v * w, now)
                        continue
                    r = self._row(key, now)
                    if r is None:
                        self._dropped += n
                        continue
                    if w != 1.0 and wts is None:
                        wts = [1.0] * sum(lens)
                    if wts is not None:
                        wts.extend(repeat(w, n))
                    rows.append(r)
                    lens.append(n)
                    _put(vals, values)
            if vals:
                self._add_values(rows, lens, vals, wts, now)
            if now >= self._next_sweep:
                self._sweep(now)

    def _add_values(
        self,
        rows: list[int],
        lens: list[int],
        vals: list[Any],
        wts: list[float] | None,
        now: float,
    ) -> None:
        v = np.concatenate([np.asarray(x, dtype=np.float64) for x in vals])
        rows_a = np.asarray(rows, dtype=np.intp)
        local = np.repeat(np.arange(len(rows)), lens)  # which of this batch's rows
        w = None if wts is None else np.asarray(wts, dtype=np.float64)
        ok = np.isfinite(v)
        if w is not None:
            ok &= np.isfinite(w)
            ok &= w > 0
        if not ok.all():
            v, local = v[ok], local[ok]
            w = None if w is None else w[ok]
        if v.size:
            flat = rows_a[local] * self._nb + self._bucket_of(v)
            np.add.at(self._counts.reshape(-1), flat, 1.0 if w is None else w)
            # sums per row of the batch with bincount (fast), then one add per row
            vw = v if w is None else v * w
            np.add.at(self._sum, rows_a, np.bincount(local, weights=vw, minlength=len(rows)))
        self._seen[rows_a] = now

    def _bucket_of(self, v: np.ndarray) -> np.ndarray:
        """Index of the first boundary >= each value (``len(buckets)`` for +Inf).

        ``searchsorted`` is exact but slow (a binary search per value). Instead the
        top bits of each float (exponent and ``TABLE_BITS`` of mantissa: a range 0.4 % wide at
        most) index a table of the bucket of the range's lower end; a range holds at most one
        boundary, so one comparison finishes the job. Zero and negative values have negative
        or zero bits and land in the first bucket, as they should.
        """
        if self._table is None:
            return np.searchsorted(self._bounds, v, side="left")
        lo, hi, table = self._table
        k = v.view(np.int64) >> (52 - TABLE_BITS)
        np.clip(k, lo, hi, out=k)
        k -= lo
        idx = table[k]
        idx += v > self._bounds_inf[idx]
        return idx

    def _labels_of(self, key: SeriesKey) -> LatencyLabels:
        labels = self._labels.get(key)
        if labels is None:
            if len(self._labels) >= 4 * self.max_series + 1024:
                self._labels.clear()  # keys of forgotten series; rebuilt as they come
            labels = self._labels[key] = series_labels(key)
        return labels

    def _room(self) -> bool:
        return len(self._rows) + len(self._counters) < self.max_series

    def _row(self, key: SeriesKey, now: float) -> int | None:
        labels = self._labels_of(key)
        r = self._rows.get(labels)
        if r is not None:
            return r
        if not self._room():
            return None
        if self._free:
            r = self._free.pop()
        else:
            r = len(self._rows)
            if r >= self._counts.shape[0]:
                self._grow(max(16, 2 * self._counts.shape[0]))
        self._rows[labels] = r
        self._seen[r] = now
        return r

    def _grow(self, cap: int) -> None:
        old = self._counts.shape[0]
        counts = np.zeros((cap, self._nb), dtype=np.float64)
        counts[:old] = self._counts
        self._counts = counts
        for name in ("_sum", "_seen"):
            a = np.zeros(cap, dtype=np.float64)
            a[:old] = getattr(self, name)
            setattr(self, name, a)

    def _add_count(self, key: SeriesKey, inc: float, now: float) -> None:
        if not math.isfinite(inc):
            return
        labels = self._labels_of(key)
        c = self._counters.get(labels)
        if c is None:
            if not self._room():
                self._dropped += 1
                return
            c = self._counters[labels] = [0.0, now]
        c[0] += inc
        c[1] = now

    def _sweep(self, now: float) -> None:
        """Forget series idle for ``FORGET_AFTER_S``; their rows are zeroed for reuse."""
        self._next_sweep = now + SWEEP_EVERY_S
        idle = now - FORGET_AFTER_S
        for labels, r in list(self._rows.items()):
            if self._seen[r] <= idle:
                del self._rows[labels]
                self._counts[r] = 0.0
                self._sum[r] = 0.0
                self._free.append(r)
        for labels, c in list(self._counters.items()):
            if c[1] <= idle:
                del self._counters[labels]

    # -- scrape time (HTTP threads) --------------------------------------------------------

    def _copy(self) -> tuple[list[LatencyLabels], np.ndarray, np.ndarray, Any]:
        with self._lock:
            labels = list(self._rows)
            idx = np.fromiter(self._rows.values(), dtype=np.intp, count=len(labels))
            counters = [(k, c[0]) for k, c in self._counters.items()]
            totals = (self._accepted, dict(self._rejected), self._dropped)
            return (
                labels,
                self._counts[idx],  # fancy indexing copies
                self._sum[idx],
                (counters, totals),
            )

    def collect(self) -> Iterator[Metric]:
        labels, counts, sums, (counters, ingest) = self._copy()
        yield self._histograms(labels, counts, sums)
        c = CounterMetricFamily(
            "vtmon_counter", "Counter series: the sum of increments since start (1 / rate each)."
        )
        for lab, v in sorted(counters):
            c.samples.append(Sample("vtmon_counter_total", dict(lab), v))
        yield c
        accepted, rejected, dropped = ingest
        lines = CounterMetricFamily(
            "vtmon_ingest_lines", "Lines received on the socket, by result and rejection reason."
        )
        lines.samples.append(Sample("vtmon_ingest_lines_total", {"result": "accepted"}, accepted))
        for reason, n in sorted(rejected.items()):
            lines.samples.append(
                Sample("vtmon_ingest_lines_total", {"result": "rejected", "reason": reason}, n)
            )
        yield lines
        yield CounterMetricFamily(
            "vtmon_exporter_samples_dropped",
            "Samples the exporter did not count: their series was beyond the series limit.",
            value=dropped,
        )
        yield from self._info()
        yield self._http_health()
        snap = self.monitor.latest
        if snap is not None:
            yield from snapshot_families(snap)

    def _histograms(
        self,
        labels: list[LatencyLabels],
        counts: np.ndarray,
        sums: np.ndarray,
    ) -> Metric:
        """The histogram family, series in label order; ``_count`` is the ``+Inf`` bucket."""
        order = sorted(range(len(labels)), key=labels.__getitem__)
        return LatencyHistograms(
            LATENCY,
            "Distribution series (latencies) since start, in milliseconds.",
            [labels[i] for i in order],
            self._le,
            np.cumsum(counts[order], axis=1),
            sums[order],
            self._templates,
        )

    def _info(self) -> Iterator[Metric]:
        m = self.monitor
        info = GaugeMetricFamily(
            "vtmon_info", "Always 1: this vtmon's version and host.", labels=["version", "host"]
        )
        info.add_metric([__version__, label_value(m.host)], 1.0)
        yield info
        yield GaugeMetricFamily(
            "vtmon_start_time_seconds", "When this vtmon started, Unix seconds.", value=m.started
        )

    def _http_health(self) -> Metric:
        refused = CounterMetricFamily(
            "vtmon_exporter_connections_refused",
            "Connections to /metrics closed without an answer, or answered 503, by reason.",
            labels=["reason"],
        )
        counts = dict(self._refused)
        for reason in httpd.REASONS:
            refused.add_metric([reason], float(counts.get(reason, 0)))
        return refused

    def exposition(self) -> bytes:
        """``/metrics`` as the HTTP endpoint serves it (text format 0.0.4): what
        prometheus-client's ``generate_latest`` writes, byte for byte, the histograms in bulk."""
        return generate(self.registry)

    # -- HTTP ------------------------------------------------------------------------------

    def serve(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        timeout: float = httpd.REQUEST_TIMEOUT_S,
        max_requests: int = httpd.MAX_REQUESTS,
        max_waiting: int = httpd.MAX_WAITING,
    ) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the bound address.

        A request must arrive within ``timeout`` seconds; ``max_requests`` are answered at
        once and ``max_waiting`` connections may be sending theirs (vtmon.export.httpd).
        Raises ExporterError (one sentence) when the address cannot be bound.
        """
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            server = httpd.MetricsServer(
                host,
                port,
                metrics_app(self.registry, self.builds),
                timeout=timeout,
                max_requests=max_requests,
                max_waiting=max_waiting,
                refused=self._refused,
            )
        except socket.gaierror as e:
            raise ExporterError(
                f"Cannot serve Prometheus metrics on {where}: unknown host ({e.strerror})."
            ) from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                why = "the port is in use; pick another with --prometheus HOST:PORT"
            elif e.errno == errno.EACCES:
                why = "permission denied (ports below 1024 need privileges)"
            elif e.errno == errno.EADDRNOTAVAIL:
                why = "this machine has no such address"
            else:
                why = (e.strerror or str(e)).rstrip(".").lower()
            raise ExporterError(f"Cannot serve Prometheus metrics on {where}: {why}.") from None
        self._httpd = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="vtmon-prometheus", daemon=True
        )
        self._thread.start()
        addr = server.server_address
        return str(addr[0]), int(addr[1])

    @property
    def url(self) -> str | None:
        if self._httpd is None:
            return None
        addr = self._httpd.server_address
        host, port = str(addr[0]), addr[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def stop(self) -> None:
        """Stop the HTTP endpoint (the totals stay; the monitor keeps calling ``observe``)."""
        server, self._httpd = self._httpd, None
        if server is not None:
            server.shutdown()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if server is not None:
            server.server_close()


class _Collector:
    """The prometheus-client Collector: builds the families at every scrape."""

    def __init__(self, exporter: PrometheusExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        return self._exporter.collect()


def _put(runs: list[Any], values: Any) -> None:
    """Append values to the last run of ``runs``, or as a run of their own when an array."""
    if hasattr(values, "dtype"):
        runs.append(values)
    elif runs and type(runs[-1]) is list:
        runs[-1].extend(values)
    else:
        runs.append(list(values))
