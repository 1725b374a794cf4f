"""Limits of a real `vtmon serve`: its open-file limit, connections beyond `[limits]
max_connections`, and log lines that repeat. The child processes run with an open-file limit
the test sets, so that it is reached with a few dozen connections."""

from __future__ import annotations

import io
import logging
import resource
from typing import Any

import psutil
import pytest

from tests.serve import serve
from vtmon.engine.clock import ManualClock
from vtmon.process import RepeatFilter


def test_serving_raises_the_soft_open_file_limit_to_the_hard_one(sock_dir, tmp_path, procs):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip("needs a finite hard limit on open files above 64")
    procs.append(
        proc := serve(sock_dir / "v.sock", tmp_path / "data", "--no-history", open_files=(64, hard))
    )
    assert psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)


# ---------------------------------------------------------------------------------------------
# one filter for every repeated log line


@pytest.fixture
def logged() -> Any:
    """A logger whose lines go through a RepeatFilter (60 s, a ManualClock) into a buffer."""
    clock = ManualClock()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.addFilter(RepeatFilter(60.0, clock=clock.monotonic))
    logger = logging.getLogger("vtmon.test.repeat")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, clock, out
    logger.removeHandler(handler)


def test_a_repeated_line_is_said_once_a_period_with_how_many_were_held_back(logged):
    logger, clock, out = logged
    for fd in range(1000):
        logger.warning("Cannot accept connections (fd %d)", fd)
        clock.advance(0.01)
    logger.warning("Something else")  # another message is not held back by the first
    assert out.getvalue().splitlines() == [
        "vtmon.test.repeat: Cannot accept connections (fd 0)",
        "vtmon.test.repeat: Something else",
    ]
    clock.advance(51.0)  # 61 s after the first
    logger.warning("Cannot accept connections (fd %d)", 1000)
    logger.warning("Cannot accept connections (fd %d)", 1001)
    assert out.getvalue().splitlines()[2:] == [
        "vtmon.test.repeat: Cannot accept connections (fd 1000) "
        "(999 more like this in the last 61s)"
    ]
    clock.advance(61.0)
    logger.warning("Cannot accept connections (fd %d)", 1002)
    assert out.getvalue().splitlines()[3:] == [
        "vtmon.test.repeat: Cannot accept connections (fd 1002) (1 more like this in the last 61s)"
    ]


def test_the_same_message_with_another_exception_is_not_held_back(logged):
    logger, clock, out = logged
    for exc in (OSError("a"), OSError("b"), ValueError("c")):
        try:
            raise exc
        except Exception:
            logger.exception("rpc failed")
    text = out.getvalue()
    assert text.count("rpc failed") == 2 and text.count("Traceback") == 2
    assert "OSError: a" in text and "ValueError: c" in text and "OSError: b" not in text
