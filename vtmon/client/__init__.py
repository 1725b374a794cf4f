"""The small library an application imports to send metrics to vtmon.

    from vtmon.client import Client
    client = Client()                      # the default socket, as `vtmon socket` prints it
    client.record("api.request_latency", 12.5)          # a latency sample, in ms
    with client.timer("api.request_latency"):            # the same, timed
        handle()
    client.count("api.throughput")
    client.gauge("memory_heap_used", 123_456_789, component="api-server")
    client.error(exc, component="api-server")            # api-server.error_count, by type

``record``, ``timer``, ``count`` and ``gauge`` take tags as keywords
(``component="api-server"``): each tag set is a series of its own. ``error`` names its
counter ``{component}.error_count`` with the tags ``error_type`` (the exception's class name)
and ``component``, which vtmon counts as the component's errors.

What the application pays
-------------------------
Recording appends a (name, value) pair to an in-memory list and returns; nothing on the
application's side waits for vtmon or does I/O. It takes a lock only to drop the oldest
samples from a full buffer, and yields the interpreter once (``time.sleep(0)``) when the
buffer is three quarters full while connected: the sender, starved of the interpreter or of a
core, then gets to run before samples are lost. What a call costs is bench/client.py's to say
(docs/performance.md). Tags cost a cached lookup more. ``timer`` reads the clock when it is called
(the ``with`` then enters with no Python call): make one per block; a timer object used for a
second block records nothing and is counted as invalid.

How it is sent
--------------
A background thread connects at once, asks for binary frames with a ``hello``
(docs/protocol.md, "Binary frames"), and from then on takes up to 100,000 samples at a time,
groups them by series into one float64 array each (a few slices and C-level conversions: no
Python statement per sample for a batch of one series, one dict append per sample otherwise),
declares each series once per connection and writes the arrays as values frames. JSON-RPC
(knobs, the dropped count) and measurements with a context travel as lines frames. A vtmon
that answers the hello with an error (an older one) gets StatsD and JSON lines on that
connection instead; one that does not answer within 2 s gets nothing (the client tries again
later). The thread wakes every ``flush_interval`` (0.1 s) and as soon as 16,384 samples wait;
``flush(timeout)`` sends what is buffered now, and ``close()`` (or leaving
``with Client(...) as client:``, or the program's exit) flushes and stops.

When vtmon is away or slow
--------------------------
The buffer holds ``max_buffer`` samples (250,000: 40 bytes each, 10 MB; at full speed in a
tight loop a Python thread records about 5 million a second, so this is the 50 ms the sender
may wait for the interpreter or a busy vtmon). When it is full, the oldest eighth is dropped
at once (one memory move rather than one per sample) and counted. The count is sent to vtmon
(``client.dropped``) on the next round, and the console shows "N by clients while away".
Samples taken for a send that broke off go back to the front of the buffer and are sent on the
next connection; the thread reconnects on its own (after 0.2 s, then backing off to once a
second), declares its series and registers its knobs again. What vtmon's socket had already
taken when vtmon died is lost with it. A write vtmon does not take within 5 s gives the
connection up (and the samples go back).

Before each connection attempt the client checks the socket's folder (vtmon.protocol.access,
docs/security.md): a folder that is a symbolic link or that a group or other users can write,
or (for the default path) one owned by another user than the application's or root, is not
connected through. The client then logs one warning and goes on as when vtmon is away:
buffering, dropping the oldest when full, and ``client.last_error`` says why.

Counters, for the application: ``client.dropped`` (samples dropped by the full buffer),
``client.reported`` (how many of those vtmon was told about), ``client.sent`` (samples and
lines written to vtmon), ``client.invalid`` (samples that cannot be sent: a value that is no
finite number, a name vtmon refuses; logged once per reason), ``client.buffered``,
``client.connected``, ``client.binary`` and ``client.last_error``. All counts are exact, also
with many threads recording at once: appending a pair is one C call (atomic under the GIL),
and everything that removes from the buffer (the sender, and a recording thread dropping the
oldest) holds one lock and counts what it removes. The bound may be passed by one sample per
thread recording at the same instant (and per open timer), never more.

Measurements with a context
---------------------------
    m = client.start_measurement("api.request_latency", component="api-server",
                                 operation="chat", user="u1", session="s1", request="r1")
    ...
    client.end_measurement(m)              # or end_measurement(m, error=exc)

records the milliseconds in between as one JSON metric line, since binary values carry no
context: ``{"name", "value", "unit": "ms", "context": {"component", "userId", "sessionId",
"requestId", "operation"}}``, and other keywords as ``"tags"``. Of the context vtmon keeps
today the component (the series' ``component`` tag, which decides whose latency it is; an
``error_type`` would be kept the same way); user, session, request and operation arrive but
are not kept, so all requests of a component and name land in one series. To keep the
operation, pass it also as a tag under another keyword (``op="chat"``): each value is then a
series of its own. An ``error`` also counts one error of the measurement's component (as
``client.error``). ``end_measurement`` returns the milliseconds; ending a measurement twice
raises ValueError.

Knobs
-----
Knobs are values vtmon may tune (docs/protocol.md, "Knobs"):

    def resize(n: float) -> None:
        pool.resize(int(n))                # raise to refuse; vtmon is told why
    pool_size = client.knob("api.db_pool_size", 16, 4, 64, step=1, kind="connection_pools",
                            component="api-server", on_change=resize)
    pool_size.value                        # the value in effect, a float

The knob is registered on the client's connection, and again after every reconnect. Sets
from vtmon are handled on a background reader thread: the value is checked against the
bounds, ``on_change(value)`` is called (there), then ``knob.value`` changes and vtmon gets
the answer.
"""

from vtmon.client.core import (
    DEFAULT_BUFFER,
    FLUSH_INTERVAL_S,
    Client,
    Measurement,
)
from vtmon.client.knobs import KNOB_KINDS, Knob

__all__ = ["DEFAULT_BUFFER", "FLUSH_INTERVAL_S", "KNOB_KINDS", "Client", "Knob", "Measurement"]
