"""The export floor, above the engine: Prometheus ``/metrics`` (``prometheus``, with the
Snapshot's ``families``, the ``labels`` rules and the ``httpd`` that serves them), and
``recording`` / ``replay`` of everything that arrives on the socket.
"""
