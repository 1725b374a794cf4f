"""The analysis floor: what is wrong, why, and what next, computed from Snapshots.

``analyzer`` composes the rest once per tick: the bottleneck ``rules`` and the ``detector``'s
state machine that keeps them from flapping, the likely ``causes`` among the machine's
signals, ``regress`` (step changes), ``predict`` (forecasts to a limit), ``health`` (scores and
recommendations) and ``alerts`` (the per-sample rules and the alerts log). ``common`` holds
what they agree on. docs/detection.md describes every rule.
"""
