"""vtmon: a terminal console for watching and tuning an application's performance."""

__version__ = "0.1.0"
