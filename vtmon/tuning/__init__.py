"""The tuning floor: ``tuner`` proposes a change for each bottleneck (``proposals``,
``strategies``), applies and reverts it through ``actuators`` (``changes``), judges it
(``evaluator``, with the rules of ``evaluation``), learns from it and journals every step
(``journaling``, ``ledger``, ``recovery``); ``inbox`` takes commands from other threads and
``wording`` says what happened. docs/tuning.md describes the flow.
"""
