"""What a serving vtmon sets up for its whole process: as many open files as it may have, a
pause instead of a spin when it has none left, and logging that a repeated error cannot flood.

Every connection, on the socket or the Prometheus port, is an open file. At the soft limit
(often 1,024) ``accept`` fails until a file is closed; a server that retries at once spins and
logs the failure thousands of times a second.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

# Files vtmon needs besides its connections: the history file and its journal, /proc readings,
# sensor files, the Prometheus port, pipes. Only a guide for the warning about a low limit.
OWN_FILES = 64

# accept() failures that last until something else closes a file or frees memory.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

REPEAT_PERIOD_S = 60.0


def raise_open_file_limit() -> int | None:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now in
    force (None where the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    inf = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == inf:
        return None
    # macOS reports no hard limit but refuses a soft one above its per-process maximum.
    for n in [hard] if hard != inf else [inf, 1 << 20, 10_240]:
        if n != inf and n <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
        except (ValueError, OSError):
            continue
        soft = n
        break
    return None if soft == inf else int(soft)


def open_file_warning(limit: int | None, max_connections: int) -> str | None:
    """One sentence when the open-file limit is too low for ``max_connections``, else None."""
    if limit is None or limit >= max_connections + OWN_FILES:
        return None
    return (
        f"The open-file limit ({limit}) is too low for [limits] max_connections "
        f"({max_connections}) and the {OWN_FILES} or so files vtmon needs itself: at that limit "
        "new connections wait until others close; raise it (ulimit -n) or lower max_connections."
    )


class Backoff:
    """How long a server stops accepting after ``accept`` failed: ``first_s``, doubling up to
    ``most_s`` while it keeps failing, ``first_s`` again after a success. A failure that lasts
    (no file left) then costs a few attempts a second instead of a spinning loop."""

    def __init__(self, first_s: float = 0.05, most_s: float = 1.0) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self._next = first_s

    def failed(self) -> float:
        """The pause before the next attempt."""
        delay = self._next
        self._next = min(delay * 2, self.most_s)
        return delay

    def succeeded(self) -> None:
        self._next = self.first_s


class RepeatFilter(logging.Filter):
    """Lets the first record of a kind through, then at most one per ``period_s``, which says
    how many were held back: "(N more like this in the last Ns)".

    A kind is the logger, the message template (before its arguments are put in) and the type
    of the exception logged with it, so "cannot accept: [Errno 24]" a thousand times a second
    is one line a minute while a different error still shows at once. Put one instance on
    every handler of the root logger: a record is judged once, whichever handler sees it first.
    """

    def __init__(
        self,
        period_s: float = REPEAT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1024,
    ) -> None:
        super().__init__()
        self.period_s = period_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._lock = threading.Lock()
        # kind -> [when one was last let through, how many were held back since]
        self._kinds: dict[tuple[str, str, str], list[Any]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        judged = getattr(record, "_vtmon_repeat", None)
        if judged is not None:
            return bool(judged)
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, str(record.msg), exc)
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.period_s:
                seen[1] += 1
                passes, held, since = False, 0, now
            else:
                passes = True
                held, since = (seen[1], seen[0]) if seen is not None else (0, now)
                if len(self._kinds) >= self._max_kinds and seen is None:
                    self._forget(now)
                self._kinds[kind] = [now, 0]
        if passes and held:
            try:
                text = record.getMessage()
            except Exception:  # a bad format is logging's to report, not ours
                text = str(record.msg)
            record.msg = f"{text} ({held} more like this in the last {now - since:.0f}s)"
            record.args = None
        record._vtmon_repeat = passes
        return passes

    def _forget(self, now: float) -> None:
        """Keep the table bounded (messages built with f-strings are each a kind): forget the
        kinds whose period is over, or all of them when none is."""
        old = [k for k, (t, _) in self._kinds.items() if now - t >= self.period_s]
        for k in old:
            del self._kinds[k]
        if len(self._kinds) >= self._max_kinds:
            self._kinds.clear()


def configure_logging(**basic_config: Any) -> None:
    """``logging.basicConfig(**basic_config)``, and a RepeatFilter on the handlers it made
    (nothing changes when the root logger was configured before)."""
    root = logging.getLogger()
    before = set(root.handlers)
    logging.basicConfig(**basic_config)
    repeat = RepeatFilter()
    for handler in root.handlers:
        if handler not in before:
            handler.addFilter(repeat)
