"""Where a tuning action takes effect: an application's knob, a watched process, a command.

The tuner (vtmon/tuning/tuner.py) decides *what* to change; an actuator changes it and reports
back. Every actuator is non-blocking: ``apply`` and ``revert`` start the change and return at
once; ``done`` is called later with the ``Outcome`` -- possibly from another thread (a knob's
answer arrives on the socket server's thread), so the tuner must hand it over under its lock
and never act on it inside the callback. An actuator never sleeps: a knob's answer is awaited
by ``KnobRegistry.expire(now)``, which its caller drives with the injected clock, and a command
waits for its process on a thread of its own.

Implementations below the interface:

* ``KnobRegistry`` keeps the knobs applications register on their connections
  (``knobs.register``, docs/protocol.md) and sends them ``knobs.set``; ``KnobActuator`` is the
  tuner's face of it.
* ``ProcessActuator`` changes a watched process's nice value, IO priority and CPU affinity.
* ``CommandActuator`` runs the ``[[actions]]`` commands of the config, never through a shell.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import psutil

from vtmon.config import ActionCommand
from vtmon.model import VALUE_MAX, Knob, TuningAction, bounded
from vtmon.protocol import jsonrpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one apply or revert."""

    ok: bool
    message: str = ""  # one sentence; why it failed, or what was set
    value: Any = None  # the value now in effect, when the actuator knows it


Done = Callable[[Outcome], None]


class Actuator(Protocol):
    kind: str  # one of vtmon.model.ACTUATORS: "knob", "process", "command"

    def apply(self, action: TuningAction, done: Done) -> None:
        """Set ``action.value`` on ``action.target``; ``action.previous`` was saved first."""
        ...

    def revert(self, action: TuningAction, done: Done) -> None:
        """Set ``action.previous`` back."""
        ...


class Connection(Protocol):
    """One application connection on the socket, as the engine sees it (the server owns it)."""

    id: int
    owner: bool  # the peer is vtmon's own user or root (docs/protocol.md, "Who may call what")

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one JSON-RPC message to the application (any thread); False when closed."""
        ...


# -- knobs of the monitored application ---------------------------------------------------------

KNOB_KINDS = ("buffers", "caching", "connection_pools", "workers", "quality", "gc", "custom")
KNOB_NAME_MAX = 200
KNOB_TEXT_MAX = 200  # unit and component
KNOBS_MAX = 1000  # knobs held at once, over every connection
KNOB_TIMEOUT_S = 5.0
ERROR_TEXT_MAX = 300  # how much of an application's error message an Outcome keeps


class KnobTaken(ValueError):
    """The knob's name is held by another live connection (JSON-RPC code REFUSED)."""

    code = jsonrpc.REFUSED


@dataclass(slots=True)
class _Pending:
    conn_id: int
    name: str
    value: float
    action: str
    done: Done
    deadline: float


LostCallback = Callable[[int, tuple[str, ...]], None]
RegisteredCallback = Callable[[Knob], None]


class KnobRegistry:
    """The knobs applications registered on their connections, and the ``knobs.set`` requests
    in flight to them.

    Thread-safe: the socket server's thread registers, answers and closes; the tuner sets and
    expires from the engine's thread. Callbacks (``done``, ``on_lost``, ``on_registered``) are
    called outside the registry's lock, from whichever of those threads caused them; a set
    refused at once (unknown knob, value out of bounds, closed connection) calls ``done``
    before ``set`` returns.

    ``clock`` is a monotonic clock in seconds (the engine's injected one); a set not answered
    within ``timeout_s`` of being sent fails at the first ``expire`` at or after its deadline.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = KNOB_TIMEOUT_S,
        on_lost: LostCallback | None = None,
        on_registered: RegisteredCallback | None = None,
        max_knobs: int = KNOBS_MAX,
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        # Set these after construction when the listener comes later (the tuner does):
        self.on_lost = on_lost  # (conn_id, knob names): a connection closed with these knobs
        self.on_registered = on_registered  # (knob): registered or registered again
        self.max_knobs = max_knobs
        self._lock = threading.Lock()
        self._knobs: dict[str, Knob] = {}
        self._conns: dict[int, Connection] = {}  # the connections that hold knobs
        self._pending: dict[int, _Pending] = {}  # by the JSON-RPC id vtmon sent
        self._last_id = 0

    # -- what applications do (the server's thread) -------------------------------------------

    def register(self, conn: Connection | None, params: Any) -> dict[str, Any]:
        """Register (or, from the same connection, update) a knob; returns the knob as the
        JSON-RPC result. Raises ValueError (KnobTaken when another connection holds the name)
        with one sentence for the application."""
        if conn is None:
            raise ValueError("knobs.register must come on the application's own connection.")
        knob = _knob_from_params(params, conn.id)
        with self._lock:
            held = self._knobs.get(knob.name)
            if held is not None and held.connection != conn.id:
                raise KnobTaken(
                    f"Knob {knob.name!r} is already registered by another connection; "
                    "a knob belongs to one connection until it closes."
                )
            if held is None and len(self._knobs) >= self.max_knobs:
                raise ValueError(
                    f"vtmon already holds {self.max_knobs} knobs; unregister some first."
                )
            self._knobs[knob.name] = knob
            self._conns[conn.id] = conn
        listener = self.on_registered
        if listener is not None:
            try:
                listener(knob)
            except Exception:  # the tuner's bug must not fail the application's request
                log.exception("on_registered failed")
        return knob_dict(knob)

    def unregister(self, conn: Connection | None, params: Any) -> bool:
        """Remove a knob the connection registered; True when it was there."""
        if conn is None:
            raise ValueError("knobs.unregister must come on the application's own connection.")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("knobs.unregister needs the knob's name as a non-empty string.")
        with self._lock:
            held = self._knobs.get(name)
            if held is None:
                return False
            if held.connection != conn.id:
                raise KnobTaken(f"Knob {name!r} is registered by another connection.")
            del self._knobs[name]
        return True

    def handle_response(self, conn_id: int, message: dict[str, Any]) -> bool:
        """An application's answer to a ``knobs.set``; False when it answers nothing in flight
        (a late answer after the timeout, an unknown id, or from the wrong connection)."""
        rid = message.get("id")
        if type(rid) is not int:
            return False
        with self._lock:
            p = self._pending.get(rid)
            if p is None or p.conn_id != conn_id:
                return False
            del self._pending[rid]
            if "error" in message:
                outcome = Outcome(
                    False,
                    f"The application refused {p.name} = {_num_text(p.value)}: "
                    f"{_error_text(message.get('error'))}",
                )
            else:
                value = _result_value(message.get("result"), p.value)
                held = self._knobs.get(p.name)
                if held is not None and held.connection == conn_id:
                    self._knobs[p.name] = replace(held, value=value)
                outcome = Outcome(True, f"{p.name} set to {_num_text(value)}.", value)
        _call(p.done, outcome)
        return True

    def connection_closed(self, conn_id: int) -> tuple[str, ...]:
        """Fail the sets in flight on the connection and drop its knobs; returns their names
        (``on_lost`` hears them too, so the tuner can mark the actions on them lost)."""
        with self._lock:
            failed = [(rid, p) for rid, p in self._pending.items() if p.conn_id == conn_id]
            for rid, _ in failed:
                del self._pending[rid]
            names = tuple(sorted(n for n, k in self._knobs.items() if k.connection == conn_id))
            for n in names:
                del self._knobs[n]
            self._conns.pop(conn_id, None)
        for _, p in failed:
            _call(p.done, Outcome(False, "The application disconnected before answering."))
        listener = self.on_lost
        if names and listener is not None:
            try:
                listener(conn_id, names)
            except Exception:
                log.exception("on_lost failed")
        return names

    # -- what the tuner does (the engine's thread) ---------------------------------------------

    def knobs(self) -> tuple[Knob, ...]:
        """Every registered knob, by name."""
        with self._lock:
            return tuple(self._knobs[n] for n in sorted(self._knobs))

    def get(self, name: str) -> Knob | None:
        with self._lock:
            return self._knobs.get(name)

    def in_flight(self) -> int:
        """How many sets wait for an answer."""
        with self._lock:
            return len(self._pending)

    def set(self, name: str, value: Any, action_id: str, done: Done) -> None:
        """Send ``knobs.set`` to the connection that registered ``name``; ``done`` gets the
        application's answer, or a failure (refused here, disconnect, or timeout)."""
        v = bounded(value)
        with self._lock:
            knob = self._knobs.get(name)
            conn = self._conns.get(knob.connection) if knob is not None else None
            if knob is None or conn is None:
                outcome = Outcome(
                    False, f"Knob {name!r} is not registered (its application is not connected)."
                )
            elif v is None:
                outcome = Outcome(False, f"{value!r} is not a number; {name} was not changed.")
            elif not knob.min <= v <= knob.max:
                outcome = Outcome(
                    False,
                    f"{_num_text(v)} is outside {name}'s bounds "
                    f"[{_num_text(knob.min)}, {_num_text(knob.max)}]; nothing was sent.",
                )
            else:
                self._last_id += 1
                rid = self._last_id
                # In flight before it is sent: the answer may come before send() returns.
                self._pending[rid] = _Pending(
                    knob.connection, name, v, action_id, done, self.clock() + self.timeout_s
                )
                message = jsonrpc.request(
                    "knobs.set",
                    {"name": name, "value": wire_number(v), "action": action_id},
                    rid,
                )
                if conn.send(message):
                    return
                del self._pending[rid]
                outcome = Outcome(False, f"The connection that registered {name} is closed.")
        _call(done, outcome)

    def expire(self, now: float | None = None) -> int:
        """Fail every set whose answer is overdue at ``now`` (the registry's clock when None);
        returns how many. A later answer to one of them is ignored."""
        t = self.clock() if now is None else now
        with self._lock:
            late = [(rid, p) for rid, p in self._pending.items() if p.deadline <= t]
            for rid, _ in late:
                del self._pending[rid]
        why = f"No answer from the application within {_num_text(self.timeout_s)} s."
        for _, p in late:
            _call(p.done, Outcome(False, why))
        return len(late)


class KnobActuator:
    """The tuner's actuator for application knobs (``action.target`` is the knob's name)."""

    kind = "knob"

    def __init__(self, registry: KnobRegistry) -> None:
        self.registry = registry

    def read(self, target: str) -> float | None:
        """The knob's current value, None when it is not registered."""
        knob = self.registry.get(target)
        return None if knob is None else knob.value

    def apply(self, action: TuningAction, done: Done) -> None:
        self.registry.set(action.target, action.value, action.id, done)

    def revert(self, action: TuningAction, done: Done) -> None:
        self.registry.set(action.target, action.previous, action.id, done)


def knob_dict(knob: Knob) -> dict[str, Any]:
    """A knob as JSON (the ``knobs.register`` result and a ``knobs.list`` entry)."""
    return {
        "name": knob.name,
        "value": wire_number(knob.value),
        "min": wire_number(knob.min),
        "max": wire_number(knob.max),
        "step": None if knob.step is None else wire_number(knob.step),
        "unit": knob.unit,
        "component": knob.component,
        "kind": knob.kind,
        "connection": knob.connection,
    }


def _knob_from_params(params: Any, conn_id: int) -> Knob:
    if not isinstance(params, dict):
        raise ValueError("knobs.register needs params as an object with name, value, min, max.")
    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("The knob's name must be a non-empty string.")
    if len(name) > KNOB_NAME_MAX:
        raise ValueError(f"The knob's name is longer than {KNOB_NAME_MAX} characters.")
    nums: dict[str, float] = {}
    for key in ("value", "min", "max"):
        if key not in params:
            raise ValueError(f"Knob {name!r} needs {key!r}.")
        v = bounded(params[key])
        if v is None:
            raise ValueError(
                f"Knob {name!r}: {key} must be a number from -1e100 to 1e100, "
                f"not {_shown(params[key])}."
            )
        nums[key] = v
    if nums["min"] > nums["max"]:
        raise ValueError(f"Knob {name!r}: min {nums['min']:g} is above max {nums['max']:g}.")
    if not nums["min"] <= nums["value"] <= nums["max"]:
        raise ValueError(
            f"Knob {name!r}: value {nums['value']:g} is outside [{nums['min']:g}, {nums['max']:g}]."
        )
    step = params.get("step")
    if step is not None:
        s = bounded(step)
        if s is None or s < 1 / VALUE_MAX:
            raise ValueError(
                f"Knob {name!r}: step must be a number from 1e-100 to 1e100, not {_shown(step)}."
            )
        step = s
    text: dict[str, str] = {}
    for key in ("unit", "component"):
        v = params.get(key, "")
        if v is None:
            v = ""
        if not isinstance(v, str) or len(v) > KNOB_TEXT_MAX:
            raise ValueError(
                f"Knob {name!r}: {key} must be a string of at most {KNOB_TEXT_MAX} characters."
            )
        text[key] = v
    kind = params.get("kind", "custom")
    if kind is None:
        kind = "custom"
    if kind not in KNOB_KINDS:
        raise ValueError(f"Knob {name!r}: kind {kind!r} is not one of {', '.join(KNOB_KINDS)}.")
    return Knob(
        name=name,
        value=nums["value"],
        min=nums["min"],
        max=nums["max"],
        step=step,
        unit=text["unit"],
        component=text["component"],
        kind=kind,
        connection=conn_id,
    )


def wire_number(v: float) -> int | float:
    """A whole number goes on the wire as an integer (``32``, not ``32.0``), so a client
    decoding into an integer type takes it."""
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def _shown(v: object) -> str:
    """A refused value in a message: its repr, cut short (an integer may have 4,000 digits)."""
    try:
        text = repr(v)
    except ValueError:  # an integer beyond Python's digit limit
        return "a number too long to show"
    return text if len(text) <= 40 else text[:37] + "..."


def _num_text(v: float) -> str:
    return f"{v:g}"


def _error_text(error: object) -> str:
    msg = error.get("message") if isinstance(error, dict) else None
    if not isinstance(msg, str) or not msg.strip():
        return "no reason given."
    line = msg.strip().splitlines()[0][:ERROR_TEXT_MAX].rstrip()
    return line if line.endswith((".", "!", "?")) else line + "."


def _result_value(result: object, sent: float) -> float:
    """The value the application says is in effect (it may round to its step), else the sent."""
    if isinstance(result, dict):
        v = bounded(result.get("value"))
        if v is not None:
            return v
    return sent


def _call(done: Done, outcome: Outcome) -> None:
    try:
        done(outcome)
    except Exception:  # the tuner's bug must not break the socket server or the engine
        log.exception("actuator callback failed")


# -- a watched process ------------------------------------------------------------------------

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

    kind = "process"

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
        cpus = [_int(c) for c in value]
        if any(c is None or c < 0 for c in cpus):
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


# -- commands from the config -----------------------------------------------------------------

STDERR_KEEP = 4096  # bytes of a failed command's stderr kept for its first line


class CommandActuator:
    """Runs the config's ``[[actions]]`` commands: ``action.target`` names the command;
    ``apply`` runs its apply argv, ``revert`` its revert argv, exactly as configured.

    Never through a shell, and nothing from the action (metric names, values, ids) is put into
    the argv. Each run has a thread of its own; ``done`` is called from it when the process
    exits (status 0 is success) or is killed at the command's ``timeout_s``.
    """

    kind = "command"

    def __init__(self, commands: Iterable[ActionCommand]) -> None:
        self.commands = {c.name: c for c in commands}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def applies_to(self, bottleneck_type: str) -> tuple[ActionCommand, ...]:
        """The configured commands for a bottleneck type, in config order."""
        return tuple(c for c in self.commands.values() if bottleneck_type in c.applies_to)

    def apply(self, action: TuningAction, done: Done) -> None:
        self._start(action.target, "apply", done)

    def revert(self, action: TuningAction, done: Done) -> None:
        self._start(action.target, "revert", done)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the commands started so far (stopping vtmon, tests)."""
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)

    def _start(self, name: str, which: str, done: Done) -> None:
        cmd = self.commands.get(name)
        if cmd is None:
            done(Outcome(False, f"No command named {name!r} is configured in [[actions]]."))
            return
        argv = list(cmd.apply if which == "apply" else cmd.revert)
        t = threading.Thread(
            target=self._run,
            args=(argv, which, cmd.timeout_s, done),
            name=f"vtmon-command-{name}",
            daemon=True,
        )
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    @staticmethod
    def _run(argv: list[str], which: str, timeout_s: float, done: Done) -> None:
        _call(done, run_command(argv, which, timeout_s))


def run_command(argv: list[str], which: str, timeout_s: float) -> Outcome:
    """Run ``argv`` (no shell) and wait up to ``timeout_s``; the Outcome of a command."""
    try:
        proc = subprocess.Popen(
            argv,
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except FileNotFoundError:
        return Outcome(False, f"The {which} command {argv[0]!r} was not found.")
    except PermissionError:
        return Outcome(False, f"The {which} command {argv[0]!r} is not executable.")
    except OSError as e:
        return Outcome(False, f"The {which} command {argv[0]!r} could not start: {e.strerror}.")
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        within = _num_text(timeout_s)
        return Outcome(False, f"The {which} command did not finish within {within} s; killed.")
    rc = proc.returncode
    if rc == 0:
        return Outcome(True, f"The {which} command finished.")
    lines = err[:STDERR_KEEP].decode(errors="replace").splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if rc < 0:
        what = f"The {which} command was killed by signal {-rc}"
    else:
        what = f"The {which} command exited with {rc}"
    return Outcome(False, f"{what}: {first}" if first else f"{what}.")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, AttributeError):
        proc.kill()
