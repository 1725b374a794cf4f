"""The text of ``/metrics`` (format 0.0.4), and the WSGI application that serves it.

prometheus-client formats every sample on its own: a dict of labels sorted, each value
escaped, each number formatted, one line at a time. With a fixed grid of ``le`` boundaries on
every latency series, almost all of ``/metrics`` is bucket lines, so ``LatencyHistograms``
writes those in bulk instead: the part of a series' lines that holds its labels is rendered by
prometheus-client itself (``generate_latest``, so escaped by its rules) once while the series
lives, each distinct number of a scrape is formatted once (``floatToGoString``), and the lines
are joined at once. The bytes are those ``generate_latest`` writes for the same family, which
tests/test_prometheus.py checks; every other family goes through ``generate_latest``.

``metrics_app`` answers every request that arrives while an exposition is being built with that
same exposition (and its gzip form, compressed once), so several scrapers at once cost one
build, not one each, and the engine shares the interpreter with one builder at most.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from vtmon.export.labels import LatencyLabels

GZIP_LEVEL = 1  # the text repeats itself: level 1 is several times faster, a little larger
MAX_TEMPLATES = 50_000  # label sets whose rendered lines are kept (forgotten series' go too)

# A bucket line is ``head + le + middle + count``; the count and sum lines ``head + number``.
Lines = tuple[str, str, str, str]  # bucket head, bucket middle, count head, sum head


class LineTemplates:
    """The fixed parts of each series' lines, as prometheus-client renders them, kept by label
    set. Any thread may ask; a label set rendered twice at once is merely rendered twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._kept: dict[LatencyLabels, Lines] = {}

    def of(self, labels: Sequence[LatencyLabels]) -> list[Lines]:
        kept = self._kept  # only ever added to: another thread may be reading it
        new = [lab for lab in dict.fromkeys(labels) if lab not in kept]
        if new:
            if len(kept) + len(new) > MAX_TEMPLATES:
                kept = {}  # mostly series that were forgotten; the living are rendered again
                new = list(dict.fromkeys(labels))
            kept.update(zip(new, self._render(new), strict=True))
            self._kept = kept
        return [kept[lab] for lab in labels]

    def _render(self, labels: list[LatencyLabels]) -> Iterator[Lines]:
        """Per label set, two bucket lines that differ only in ``le`` (``a``, ``bb``), the count
        line and the sum line, all with the value 0: where the first two part, ``le`` goes."""
        family = Metric(self.name, "", "histogram")
        bucket, count, total = f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"
        for lab in labels:
            base = dict(lab)
            family.samples += [
                Sample(bucket, {**base, "le": "a"}, 0.0),
                Sample(bucket, {**base, "le": "bb"}, 0.0),
                Sample(count, base, 0.0),
                Sample(total, base, 0.0),
            ]
        text = generate_latest(_Just(family)).decode("utf-8")
        rows = text.split("\n")[2:]  # after HELP and TYPE; escaped values hold no newline
        zero = len(floatToGoString(0.0))
        for k in range(len(labels)):
            a, bb, count_line, sum_line = rows[4 * k : 4 * k + 4]
            at = len(os.path.commonprefix([a, bb]))  # where le's value starts
            yield a[:at], a[at + 1 : -zero], count_line[:-zero], sum_line[:-zero]


def go_floats(values: np.ndarray) -> list[list[str]]:
    """Each number of a 2-D array as the text format writes it (``floatToGoString``), by row.

    Each distinct value is formatted once. Whole numbers (counts without sample rates) are
    written the way ``floatToGoString`` writes them through ``repr``, several times faster:
    ``N.0`` below a million, ``%e`` with as many digits as they have from there on (Go
    switches to an exponent at 7 digits: ``1.234567e+06``).
    """
    if values.size == 0:
        return [[] for _ in range(values.shape[0])]
    distinct, where = np.unique(values, return_inverse=True)
    whole = (distinct > 0) & (distinct < WHOLE_BELOW) & (distinct == np.floor(distinct))
    small = whole & (distinct < 1e6)
    large = whole & ~small
    texts = np.empty(distinct.size, dtype=object)
    texts[small] = _objects([f"{n}.0" for n in distinct[small].astype(np.int64).tolist()])
    big = distinct[large]
    texts[large] = _objects(
        [format(v, _EXPONENT[p]) for p, v in zip(_digits(big).tolist(), big.tolist(), strict=True)]
    )
    other = ~whole
    texts[other] = _objects([floatToGoString(v) for v in distinct[other].tolist()])
    out: list[list[str]] = texts[where.reshape(values.shape)].tolist()
    return out


WHOLE_BELOW = 1e15  # whole floats below this are exact, and repr shows them as "N.0"
_POWERS = 10 ** np.arange(16, dtype=np.int64)
_EXPONENT = tuple(f".{p}e" for p in range(16))  # p digits after the point, then e+NN


def _digits(whole: np.ndarray) -> np.ndarray:
    """The number of significant digits after the first of positive whole numbers."""
    n = whole.astype(np.int64)
    while True:
        ten = n % 10 == 0
        if not ten.any():
            break
        n[ten] //= 10
    result: np.ndarray = np.searchsorted(_POWERS, n, side="right") - 1
    return result


def _objects(texts: list[str]) -> np.ndarray:
    a = np.empty(len(texts), dtype=object)
    a[:] = texts
    return a


class LatencyHistograms(Metric):
    """A histogram family held as arrays: ``text()`` writes it in bulk; ``samples`` (what
    prometheus-client's own writers and parsers read) is built only when asked for.

    ``labels`` (sorted), ``cumulative`` (one row per series, one column per ``le``, the last
    ``+Inf``) and ``sums`` are in the same order.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[LatencyLabels],
        les: list[str],
        cumulative: np.ndarray,
        sums: np.ndarray,
        templates: LineTemplates,
    ) -> None:
        self._samples: list[Sample] | None = None
        super().__init__(name, documentation, "histogram")
        self.labels = labels
        self.les = les
        self.cumulative = cumulative
        self.sums = sums
        self._templates = templates

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = list(self._each_sample())
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._samples = value or None  # Metric.__init__ sets []: built when first read

    def _each_sample(self) -> Iterator[Sample]:
        bucket, count, total = f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"
        for lab, row, s in zip(
            self.labels, self.cumulative.tolist(), self.sums.tolist(), strict=True
        ):
            base = dict(lab)
            for le, v in zip(self.les, row, strict=True):
                yield Sample(bucket, {**base, "le": le}, v)
            # _count is the +Inf bucket, by definition (float sums could differ in the last bit)
            yield Sample(count, base, row[-1])
            yield Sample(total, base, s)

    def text(self) -> str:
        """The family as ``generate_latest`` writes it: HELP, TYPE, then every sample."""
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        parts = [f"# HELP {self.name} {doc}\n# TYPE {self.name} histogram\n"]
        if self.labels:
            les = self.les
            counts = go_floats(self.cumulative)
            sums = [floatToGoString(s) for s in self.sums.tolist()]
            for (head, middle, count_head, sum_head), row, s in zip(
                self._templates.of(self.labels), counts, sums, strict=True
            ):
                parts.append(
                    "".join([f"{head}{le}{middle}{v}\n" for le, v in zip(les, row, strict=True)])
                )
                parts.append(f"{count_head}{row[-1]}\n{sum_head}{s}\n")
        return "".join(parts)


class _Just:
    """A collector of the given families (to write some of them with ``generate_latest``)."""

    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def generate(registry: Collector) -> bytes:
    """``generate_latest(registry)``, byte for byte, with ``LatencyHistograms`` in bulk."""
    parts: list[bytes] = []
    rest: list[Metric] = []
    for family in registry.collect():
        if isinstance(family, LatencyHistograms):
            if rest:
                parts.append(generate_latest(_Just(*rest)))
                rest = []
            parts.append(family.text().encode("utf-8"))
        else:
            rest.append(family)
    if rest:
        parts.append(generate_latest(_Just(*rest)))
    return b"".join(parts)


class _Build:
    """One exposition, for every request that arrived while it was being built."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.text = b""
        self.error: BaseException | None = None
        self._gzip: bytes | None = None
        self._gzip_lock = threading.Lock()

    def gzipped(self) -> bytes:
        with self._gzip_lock:  # compressed once, by the first request that wants it
            if self._gzip is None:
                self._gzip = gzip.compress(self.text, compresslevel=GZIP_LEVEL)
            return self._gzip


class SharedBuilds:
    """``get()`` builds the exposition, unless a build is under way: then it waits for that
    one and returns it. ``builds`` counts the builds started, ``waiting`` the requests waiting
    for one now."""

    def __init__(self, build: Callable[[], bytes]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._current: _Build | None = None
        self.builds = 0
        self.waiting = 0

    def get(self) -> _Build:
        with self._lock:
            b = self._current
            mine = b is None
            if b is None:
                b = self._current = _Build()
                self.builds += 1
            else:
                self.waiting += 1
        if not mine:
            b.done.wait()
            with self._lock:
                self.waiting -= 1
        else:
            try:
                b.text = self._build()
            except BaseException as e:
                b.error = e
                raise
            finally:
                with self._lock:
                    self._current = None
                b.done.set()
        if b.error is not None:
            raise RuntimeError("building /metrics failed") from b.error
        return b


def metrics_app(registry: CollectorRegistry, builds: SharedBuilds) -> Callable[..., Any]:
    """The WSGI application: prometheus-client's ``make_wsgi_app`` in what it answers (any
    path, ``OPTIONS``, 405 for other methods, an empty ``/favicon.ico``, ``name[]`` to pick
    families, gzip when accepted), but always in text format 0.0.4, and with concurrent
    requests sharing one build (``builds``)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
        wants_gzip = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        if names:  # a pick of families: rare, built on its own
            text = generate(registry.restricted_registry(names))
            if wants_gzip:
                text = gzip.compress(text, compresslevel=GZIP_LEVEL)
        else:
            build = builds.get()
            text = build.gzipped() if wants_gzip else build.text
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if wants_gzip:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [text]

    return app
