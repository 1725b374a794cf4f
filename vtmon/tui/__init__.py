"""The console (Textual): ``app`` with one module per panel, the screens (``detail``,
``help``, the tuning confirmations), ``charts`` and ``themes``. It sees the engine only
through ``source`` (Protocols the Monitor satisfies), an import-linter contract.
"""
