"""A watched process (``--pid``): its nice value, IO priority and CPU affinity, through psutil."""

from __future__ import annotations

import os
import sys
from typing import Any, Final

import psutil

from vtmon.model import TuningAction
from vtmon.tuning.actuators.base import Done, Outcome

PROCESS_TARGETS = ("nice", "ionice", "affinity")
IONICE_CLASSES = {"none": 0, "realtime": 1, "best-effort": 2, "idle": 3}
CAP_SYS_NICE = 23


class ProcessActuator:
    """Nice value, IO priority and CPU affinity of one process, through psutil.

    Values (what ``read`` returns and ``apply``/``revert`` take):

    * ``nice``: an int, -20 (most favoured) .. 19.
    * ``ionice`` (Linux): ``[class, level]`` with class 0 none, 1 realtime, 2 best-effort,
      3 idle, and level 0..7 for realtime and best-effort (0 otherwise); a bare class is
      ``[class, 0]``.
    * ``affinity``: a list of CPU numbers.

    Every call completes before it returns (``done`` is called synchronously). A change that
    could not be undone is refused: raising the nice value when this vtmon could not lower it
    back (no CAP_SYS_NICE and the process's RLIMIT_NICE does not allow it).
    """

    kind: Final = "process"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc: psutil.Process | None = None

    def _process(self) -> psutil.Process:
        if self._proc is None:
            self._proc = psutil.Process(self.pid)  # remembers its start time: reuse is caught
        return self._proc

    def read(self, target: str) -> Any:
        """The current value of ``target``; raises ValueError with one sentence when it
        cannot be read (unknown target, process gone, not permitted, not supported)."""
        try:
            return self._read(target)
        except _Refused as e:
            raise ValueError(str(e)) from None
        except psutil.NoSuchProcess:
            raise ValueError(f"Process {self.pid} no longer exists.") from None
        except psutil.AccessDenied:
            raise ValueError(f"Not permitted to read the {target} of process {self.pid}.") from None

    def _read(self, target: str) -> Any:
        p = self._process()
        if target == "nice":
            return int(p.nice())
        if target == "ionice":
            if not hasattr(p, "ionice") or not sys.platform.startswith("linux"):
                raise _Refused("IO priority cannot be changed on this platform.")
            io = p.ionice()
            return [int(io.ioclass), int(io.value)]
        if target == "affinity":
            if not hasattr(p, "cpu_affinity"):
                raise _Refused("CPU affinity cannot be changed on this platform.")
            return sorted(int(c) for c in p.cpu_affinity())
        raise _Refused(f"{target!r} is not a process target; known: {', '.join(PROCESS_TARGETS)}.")

    def apply(self, action: TuningAction, done: Done) -> None:
        done(self._set(action.target, action.value, action.previous))

    def revert(self, action: TuningAction, done: Done) -> None:
        done(self._set(action.target, action.previous, None))

    def _set(self, target: str, value: Any, previous: Any) -> Outcome:
        try:
            if target == "nice":
                self._set_nice(value, previous)
            elif target == "ionice":
                self._set_ionice(value)
            elif target == "affinity":
                self._set_affinity(value)
            else:
                self._read(target)  # says why
            now = self._read(target)
        except _Refused as e:
            return Outcome(False, str(e))
        except psutil.NoSuchProcess:
            return Outcome(False, f"Process {self.pid} no longer exists.")
        except psutil.AccessDenied:
            return Outcome(False, f"Not permitted to change the {target} of process {self.pid}.")
        except (OSError, ValueError, TypeError) as e:
            return Outcome(False, f"The {target} of process {self.pid} was not changed: {e}.")
        return Outcome(True, f"The {target} of process {self.pid} is now {now}.", now)

    def _set_nice(self, value: Any, previous: Any) -> None:
        n = _int(value)
        if n is None or not -20 <= n <= 19:
            raise _Refused(f"A nice value is a whole number from -20 to 19, not {value!r}.")
        p = self._process()
        back = _int(previous)
        current = int(p.nice())
        lowest = back if back is not None else current
        if n > lowest and not _can_lower_nice(p, lowest):
            raise _Refused(
                f"Raising the nice value of process {self.pid} to {n} could not be undone "
                f"without CAP_SYS_NICE or a higher RLIMIT_NICE; it was not changed."
            )
        p.nice(n)

    def _set_ionice(self, value: Any) -> None:
        p = self._process()
        if not hasattr(p, "ionice") or not sys.platform.startswith("linux"):
            raise _Refused("IO priority cannot be changed on this platform.")
        if isinstance(value, str):
            value = IONICE_CLASSES.get(value, value)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            ioclass, level = _int(value[0]), _int(value[1])
        else:
            ioclass, level = _int(value), 0
        if ioclass is None or level is None or not 0 <= ioclass <= 3 or not 0 <= level <= 7:
            raise _Refused(f"An IO priority is [class 0..3, level 0..7], not {value!r}.")
        if ioclass in (0, 3):
            p.ionice(ioclass, None if level == 0 else level)
        else:
            p.ionice(ioclass, level)

    def _set_affinity(self, value: Any) -> None:
        p = self._process()
        if not hasattr(p, "cpu_affinity"):
            raise _Refused("CPU affinity cannot be changed on this platform.")
        if not isinstance(value, (list, tuple)) or not value:
            raise _Refused(f"A CPU affinity is a non-empty list of CPU numbers, not {value!r}.")
        cpus = [c for c in map(_int, value) if c is not None and c >= 0]
        if len(cpus) != len(value):
            raise _Refused(f"A CPU affinity is a non-empty list of CPU numbers, not {value!r}.")
        p.cpu_affinity(cpus)


class _Refused(Exception):
    """A change refused before trying it (one sentence)."""


def _int(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _can_lower_nice(p: psutil.Process, to: int) -> bool:
    """Whether this process may set ``p``'s nice value down to ``to`` (Linux rules:
    CAP_SYS_NICE, or ``to`` within the target's RLIMIT_NICE soft limit, 20 - rlim)."""
    if not sys.platform.startswith("linux"):
        return os.geteuid() == 0 if hasattr(os, "geteuid") else False
    if _has_cap_sys_nice():
        return True
    try:
        soft, _ = p.rlimit(psutil.RLIMIT_NICE)
    except (psutil.Error, AttributeError, OSError):
        return False
    return soft == psutil.RLIM_INFINITY or 20 - to <= soft


def _has_cap_sys_nice() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0
