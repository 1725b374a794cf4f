"""The engine floor: the ``monitor`` thread that applies ingest's batches to the ``series``,
reads the machine (``collector``, ``sensors``), runs analysis and tuning, and publishes one
Snapshot a second; ``rpc`` is the table of JSON-RPC methods it answers.
"""
