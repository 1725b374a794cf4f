"""The ingest floor: the Unix socket ``server`` (accepting, the connection cap, the queue to
the engine), each ``connection``'s framing, reading and limits, the ``socket_file`` checks,
and the parsers: ``parse`` for StatsD/DogStatsD and JSON lines, ``frames`` for binary frames.
It knows the protocol and the data types, never the engine (an import-linter contract).
"""
