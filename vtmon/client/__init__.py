"""The small library an application imports to send metrics to vtmon.

    from vtmon.client import Client
    client = Client()                      # the default socket, as `vtmon socket` prints it
    client.record("api.request_latency", 12.5)          # a latency sample, in ms
    with client.timer("api.request_latency"):            # the same, timed
        handle()
    client.count("api.throughput")
    client.gauge("memory_heap_used", 123_456_789, component="api-server")
    client.error(exc, component="api-server")            # api-server.error_count, by type

Recording appends to an in-memory list and returns; a background thread sends binary frames
(vtmon.protocol.wire), reconnects on its own, and keeps the newest samples in a bounded buffer
while vtmon is away. Measurements with a context, knobs, the counters an application can read
and what happens when vtmon is slow: docs/client.md.
"""

from vtmon.client.core import DEFAULT_BUFFER, FLUSH_INTERVAL_S, Client
from vtmon.client.knobs import KNOB_KINDS, Knob
from vtmon.client.measure import Measurement

__all__ = ["DEFAULT_BUFFER", "FLUSH_INTERVAL_S", "KNOB_KINDS", "Client", "Knob", "Measurement"]
