"""The store floor: SQLite only. The history file (``vtmon.store.history``), the journal of
tuning actions kept in it (``journal``), their tables (``schema``), what a stored row holds
(``rollup``), the file's size bound (``bound``) and the findings kept for reports
(``findings``).

Nothing here imports the screen; the engine hands data in, the report and charts read it out.
"""
