"""The binary frame layout both sides share (docs/protocol.md, "Binary frames"), and the rules
for a series name that both the client and vtmon's parsers apply.

A connection switches to frames with a ``hello`` (``HELLO_METHOD``) naming ``FORMAT`` as its
first line. Each frame is an 8-byte ``HEADER`` (``MAGIC``, type, reserved 0, payload length
u32 LE) and a payload:

* declare (``DECLARE``): ``u32 id`` (``ID``), ``u8 kind`` (``DIST``, ``COUNTER``, ``GAUGE``),
  then ``name[|#tags]`` in UTF-8;
* values (``VALUES``): ``u32 id``, then float64 LE samples (``F64``);
* lines (``LINES``): text lines, parsed exactly as on a line connection.

``MAX_FRAME`` and ``MAX_SERIES`` are vtmon's defaults; the answer to the hello says what the
connection may use.
"""

from __future__ import annotations

import struct

import numpy as np

from vtmon.model import Kind

FORMAT = "vtmon-binary/1"
HELLO_METHOD = "hello"
MAGIC = b"VT"
HEADER = struct.Struct("<2sBBI")
ID = struct.Struct("<I")
F64 = np.dtype("<f8")

DECLARE, VALUES, LINES = 1, 2, 3  # frame types
DIST, COUNTER, GAUGE = 1, 2, 3  # series kinds in a declare frame
KINDS: dict[int, Kind] = {DIST: Kind.DISTRIBUTION, COUNTER: Kind.COUNTER, GAUGE: Kind.GAUGE}
STATSD_TYPE: dict[int, str] = {DIST: "ms", COUNTER: "c", GAUGE: "g"}  # the same kinds as lines

MAX_FRAME = 8 * 1024 * 1024  # payload bytes of one frame
MAX_SERIES = 100_000  # declared ids per connection ([limits] max_declared_series)

# What a series name may not contain (besides the ':' that ends a StatsD name): control
# characters, '|' and '#', which would end the name in a line; and what it may not start with,
# which would make its line another kind of line (a blank is stripped, '{' is JSON, '_e{' an
# event).
NAME_REFUSED = r"[\x00-\x1f\x7f|#]"
NAME_REFUSED_STARTS = (" ", "{", "_e{")
