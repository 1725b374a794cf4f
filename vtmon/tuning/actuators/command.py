"""Commands from the config (``[[actions]]``), run as configured, never through a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterable
from typing import Final

from vtmon.config import ActionCommand
from vtmon.model import TuningAction
from vtmon.tuning.actuators.base import Done, Outcome, call_done

STDERR_KEEP = 4096  # bytes of a failed command's stderr kept for its first line


class CommandActuator:
    """Runs the config's ``[[actions]]`` commands: ``action.target`` names the command;
    ``apply`` runs its apply argv, ``revert`` its revert argv, exactly as configured.

    Never through a shell, and nothing from the action (metric names, values, ids) is put into
    the argv. Each run has a thread of its own; ``done`` is called from it when the process
    exits (status 0 is success) or is killed at the command's ``timeout_s``.
    """

    kind: Final = "command"

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
        call_done(done, run_command(argv, which, timeout_s))


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
        within = f"{timeout_s:g}"
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
