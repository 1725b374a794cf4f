"""The process and command actuators, on real processes; the [[actions]] config."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.outcomes import Outcomes
from vtmon.config import EXAMPLE_CONFIG, ActionCommand, ConfigError, config_from_dict
from vtmon.model import TuningAction
from vtmon.tuning.actuators import CommandActuator, Outcome, ProcessActuator
from vtmon.tuning.actuators import process as actuators


def action(target: str, value: Any = None, previous: Any = None, actuator: str = "process"):
    return TuningAction(
        id="a1",
        strategy="test",
        actuator=actuator,
        target=target,
        component="system",
        bottleneck="cpu:system",
        bottleneck_type="cpu",
        title="test",
        why="test",
        expected="test",
        previous=previous,
        value=value,
    )


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


# -- a watched process ----------------------------------------------------------------------


def test_nice_raised_and_reverted(child):
    act = ProcessActuator(child.pid)
    before = act.read("nice")
    assert before == psutil.Process(child.pid).nice()
    raised = min(before + 5, 19)
    a = action("nice", raised, before)
    done = Outcomes()
    act.apply(a, done)
    got = done.wait(timeout=0)  # synchronous
    assert got.ok and got.value == raised, got
    assert psutil.Process(child.pid).nice() == raised
    act.revert(a, done)
    assert done.wait(2, timeout=0) == Outcome(
        True, f"The nice of process {child.pid} is now {before}.", before
    )
    assert psutil.Process(child.pid).nice() == before


def test_nice_that_could_not_be_undone_is_refused(child, monkeypatch):
    monkeypatch.setattr(actuators, "_can_lower_nice", lambda p, to: False)
    act = ProcessActuator(child.pid)
    before = act.read("nice")
    done = Outcomes()
    act.apply(action("nice", min(before + 5, 19), before), done)
    got = done.wait(timeout=0)
    assert not got.ok and "could not be undone" in got.message
    assert psutil.Process(child.pid).nice() == before


def test_affinity_to_one_cpu_and_back(child):
    act = ProcessActuator(child.pid)
    before = act.read("affinity")
    if len(before) < 2:
        pytest.skip(f"this machine lets the process use {len(before)} CPU; nothing to narrow")
    a = action("affinity", [before[-1]], before)
    done = Outcomes()
    act.apply(a, done)
    assert done.wait(timeout=0).ok
    assert psutil.Process(child.pid).cpu_affinity() == [before[-1]]
    act.revert(a, done)
    assert done.wait(2, timeout=0).value == before
    assert sorted(psutil.Process(child.pid).cpu_affinity()) == before


@pytest.mark.skipif(
    not hasattr(psutil.Process, "ionice") or not sys.platform.startswith("linux"),
    reason="psutil has no ionice on this platform",
)
def test_ionice_to_idle_and_back(child):
    act = ProcessActuator(child.pid)
    before = act.read("ionice")
    idle = [int(psutil.IOPRIO_CLASS_IDLE), 0]
    a = action("ionice", idle, before)
    done = Outcomes()
    act.apply(a, done)
    assert done.wait(timeout=0).ok
    assert psutil.Process(child.pid).ionice().ioclass == psutil.IOPRIO_CLASS_IDLE
    act.revert(a, done)
    assert done.wait(2, timeout=0).ok
    assert act.read("ionice") == before


@pytest.mark.parametrize(
    ("target", "value", "words"),
    [
        ("nice", 40, "from -20 to 19"),
        ("nice", "5; rm -rf /", "from -20 to 19"),
        ("affinity", [], "non-empty list"),
        ("affinity", [99999], "was not changed"),
        ("ionice", [2, 9], "IO priority"),
        ("priority", 1, "not a process target"),
    ],
)
def test_bad_values_fail_in_one_sentence(child, target, value, words):
    if target == "ionice" and not hasattr(psutil.Process, "ionice"):
        pytest.skip("psutil has no ionice on this platform")
    done = Outcomes()
    ProcessActuator(child.pid).apply(action(target, value, None), done)
    got = done.wait(timeout=0)
    assert not got.ok and words in got.message, got.message
    assert "\n" not in got.message and got.message.endswith(".")


def test_a_gone_process_fails(child):
    act = ProcessActuator(child.pid)
    before = act.read("nice")
    child.kill()
    child.wait()
    done = Outcomes()
    act.apply(action("nice", min(before + 1, 19), before), done)
    assert done.wait(timeout=0) == Outcome(False, f"Process {child.pid} no longer exists.")
    with pytest.raises(ValueError, match="no longer exists"):
        act.read("affinity")


# -- commands from the config -----------------------------------------------------------------

WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"


def _cmd(name: str, apply: list[str], revert: list[str], timeout_s: float = 30.0):
    return ActionCommand(name, ("latency",), tuple(apply), tuple(revert), timeout_s)


def test_command_apply_and_revert_run_their_argv(tmp_path: Path):
    out = tmp_path / "state"
    cmd = _cmd(
        "scale",
        [sys.executable, "-c", WRITE, str(out), "up"],
        [sys.executable, "-c", WRITE, str(out), "down"],
    )
    act = CommandActuator([cmd])
    assert act.applies_to("latency") == (cmd,) and act.applies_to("memory") == ()
    done = Outcomes()
    act.apply(action("scale", actuator="command"), done)
    assert done.wait() == Outcome(True, "The apply command finished.")
    assert out.read_text() == "up"
    act.revert(action("scale", actuator="command"), done)
    assert done.wait(2) == Outcome(True, "The revert command finished.")
    assert out.read_text() == "down"


def test_a_failing_command_says_its_status_and_first_stderr_line():
    fail = [sys.executable, "-c", "import sys; sys.stderr.write('\\nno capacity left\\nx\\n'); "
            "sys.exit(3)"]  # fmt: skip
    act = CommandActuator([_cmd("scale", fail, fail)])
    done = Outcomes()
    act.apply(action("scale", actuator="command"), done)
    assert done.wait() == Outcome(False, "The apply command exited with 3: no capacity left")


def test_a_command_past_its_timeout_is_killed():
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    act = CommandActuator([_cmd("slow", slow, slow, timeout_s=0.3)])
    done = Outcomes()
    act.apply(action("slow", actuator="command"), done)
    got = done.wait()
    assert got == Outcome(False, "The apply command did not finish within 0.3 s; killed.")


def test_a_missing_program_or_command_fails():
    act = CommandActuator([_cmd("ghost", ["/nonexistent/vtmon-ghost"], ["/bin/true"])])
    done = Outcomes()
    act.apply(action("ghost", actuator="command"), done)
    assert done.wait() == Outcome(
        False, "The apply command '/nonexistent/vtmon-ghost' was not found."
    )
    act.apply(action("nope", actuator="command"), done)
    assert not done.wait(2, timeout=0).ok


def test_shell_metacharacters_are_never_interpreted(tmp_path: Path):
    out = tmp_path / "arg"
    pwned = tmp_path / "pwned"
    nasty = f"; touch {pwned} && echo $(touch {pwned}) `touch {pwned}` | cat > {pwned} $HOME *"
    cmd = _cmd("scale", [sys.executable, "-c", WRITE, str(out), nasty], ["/bin/true"])
    act = CommandActuator([cmd])
    done = Outcomes()
    # The action's own fields carry metacharacters too; none of them reaches the argv.
    a = action("scale", value=f"$(touch {pwned})", previous="; reboot", actuator="command")
    a = replace(a, why=f"`touch {pwned}`", component=f"api;touch {pwned}")
    act.apply(a, done)
    assert done.wait().ok
    assert out.read_text() == nasty  # one argument, byte for byte
    assert not pwned.exists()


# -- [[actions]] in the config ----------------------------------------------------------------


def test_actions_config_parses():
    cfg = config_from_dict(
        {
            "actions": [
                {
                    "name": "scale",
                    "applies_to": ["latency", "cpu"],
                    "apply": ["/usr/local/bin/scale", "+1"],
                    "revert": ["/usr/local/bin/scale", "-1"],
                    "timeout_s": 10,
                }
            ]
        }
    )
    assert cfg.actions == (
        ActionCommand(
            "scale", ("latency", "cpu"), ("/usr/local/bin/scale", "+1"),
            ("/usr/local/bin/scale", "-1"), 10.0,
        ),
    )  # fmt: skip
    assert config_from_dict({}).actions == ()


def test_the_commented_example_parses_when_uncommented():
    block = EXAMPLE_CONFIG.split("# [[actions]]", 1)[1]
    text = "[[actions]]" + "\n".join(
        ln[2:] if ln.startswith("# ") else ln for ln in block.splitlines()
    )
    (cmd,) = config_from_dict(tomllib.loads(text)).actions
    assert cmd.name == "add-api-replica" and cmd.apply[0] == "/usr/local/bin/scale"


GOOD = {"name": "x", "applies_to": ["cpu"], "apply": ["/bin/true"], "revert": ["/bin/true"]}


@pytest.mark.parametrize(
    ("actions", "words"),
    [
        ({"name": "x"}, "[[actions]] tables"),
        ([{**GOOD, "apply": "/bin/scale up"}], "never a shell line"),
        ([{**GOOD, "revert": []}], "never a shell line"),
        ([{k: v for k, v in GOOD.items() if k != "revert"}], "revert must be a command"),
        ([{**GOOD, "applies_to": ["slowness"]}], "bottleneck types"),
        ([{**GOOD, "name": ""}], "needs a name"),
        ([GOOD, GOOD], "defined twice"),
        ([{**GOOD, "shell": True}], "no setting 'shell'"),
        ([{**GOOD, "timeout_s": 0}], "timeout_s must be a number above 0"),
    ],
)
def test_actions_config_errors_are_one_sentence(actions, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"actions": actions}, source="c.toml")
    msg = str(e.value)
    assert words in msg and msg.startswith("c.toml: ") and msg.endswith(".")
    assert "\n" not in msg
