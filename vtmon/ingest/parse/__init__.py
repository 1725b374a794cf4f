"""Turn blocks of received lines into a ``Batch``.

A line is one of

* StatsD / DogStatsD: ``name:value[:value...]|type[|@rate][|#tags][|T<unix s>][|x...]``
  (``statsd``);
* DogStatsD events ``_e{title_len,text_len}:title|text|...`` and service checks
  ``_sc|name|status|...`` (``events``);
* A JSON object: a JSON-RPC 2.0 request (handed to the server in ``Batch.rpc``, ``rpc``) or a
  performance metric ``{"name", "value", "timestamp" (ms), "tags", "unit", "context"}``
  (``json_line``).

Every non-blank line is counted exactly once, in ``Batch.accepted`` or under a ``REJECT_*``
reason; nothing here raises for any input bytes.

``parse_line`` takes one line (``dispatch`` hands it to its parser). ``parse_block`` takes
many: the common StatsD form and JSON lines that share a template go in bulk
(``statsd_bulk``, ``json_bulk``), with exactly the result the per-line parser would give
(within one batch a distribution's samples and counter increments may be added in another
order; gauge updates always keep line order); the odd lines go one by one. The series a
line's text makes is cached for all connections (``cache``).
"""

from __future__ import annotations

from vtmon.ingest.parse import dispatch
from vtmon.ingest.parse.cache import trim
from vtmon.ingest.parse.dispatch import parse_line
from vtmon.ingest.parse.json_bulk import json_block
from vtmon.ingest.parse.rpc import too_long_request
from vtmon.ingest.parse.statsd import series
from vtmon.ingest.parse.statsd_bulk import statsd_block
from vtmon.model import Batch

__all__ = ["parse_block", "parse_line", "series", "too_long_request"]

_CHUNK = 65536


def parse_block(block: bytes, batch: Batch, max_line: int = 65536) -> None:
    """Parse complete lines (``\\n``-separated, last newline optional) into ``batch``."""
    trim()
    if type(block) is not bytes:
        block = bytes(block)  # bytearray slices are unhashable; the grouping needs bytes
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    body = block.strip(b"\n")
    if len(body) <= 2 * _CHUNK:
        if body:
            _piece(body, batch, max_line)
        return
    # Big blocks go in pieces: the objects one piece creates then stay in the CPU cache.
    start = 0
    while start < len(body):
        end = body.find(b"\n", start + _CHUNK)
        if end < 0:
            end = len(body)
        if end > start:
            _piece(body[start:end], batch, max_line)
        start = end + 1


def _piece(body: bytes, batch: Batch, max_line: int) -> None:
    # A connection sends one format; the first line says which path to try first.
    if body[:1] == b"{":
        json_block(body, batch, max_line)
    else:
        statsd_block(body, batch, max_line, _odd)


def _odd(text: bytes, batch: Batch, max_line: int) -> None:
    """The lines the StatsD regex did not take (each starting with its newline)."""
    if text.count(b"\n") > 2:
        json_block(text.strip(b"\n"), batch, max_line, depth=1, blank=False)
    else:
        dispatch.per_line(text, batch, max_line)
