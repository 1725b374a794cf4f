"""Where a tuning action takes effect: an application's knob, a watched process, a command.

The tuner (vtmon/tuning/tuner.py) decides *what* to change; an actuator changes it and reports
back. ``base`` holds what every actuator is (``Actuator``, ``Outcome``); one module per kind:

* ``knobs``: ``KnobRegistry`` keeps the knobs applications register on their connections
  (``knobs.register``, docs/protocol.md) and sends them ``knobs.set``; ``KnobActuator`` is the
  tuner's face of it.
* ``process``: ``ProcessActuator`` changes a watched process's nice value, IO priority and CPU
  affinity.
* ``command``: ``CommandActuator`` runs the ``[[actions]]`` commands of the config, never
  through a shell.

The names below are the package's public face; import them from here.
"""

from vtmon.tuning.actuators.base import Actuator, Done, Outcome
from vtmon.tuning.actuators.command import CommandActuator, run_command
from vtmon.tuning.actuators.knobs import (
    Connection,
    KnobActuator,
    KnobRegistry,
    KnobTaken,
    knob_dict,
    wire_number,
)
from vtmon.tuning.actuators.process import ProcessActuator

__all__ = [
    "Actuator",
    "CommandActuator",
    "Connection",
    "Done",
    "KnobActuator",
    "KnobRegistry",
    "KnobTaken",
    "Outcome",
    "ProcessActuator",
    "knob_dict",
    "run_command",
    "wire_number",
]
