"""Persistence and exposition: the SQLite history, recordings, and the Prometheus endpoint.

Nothing here imports the screen; the engine hands data in, the report and charts read it out.
"""
