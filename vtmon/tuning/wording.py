"""The tuner's words: modes, the reasons for a revert, counts, durations, and the sentence
``stop`` answers with. Every message is one sentence a person reads in the console, the log
and the report."""

from __future__ import annotations

import time

MODE_WORDS = {"off": "recommend only", "ask": "wait for a key", "auto": "apply without asking"}
REVERT_WHY = {
    "ineffective": "it did not help",
    "you": "asked",
    "stop": "vtmon is stopping",
    "recovered": "left applied by a previous run",
    "registered": "its application registered it again",
    "failed": "the change failed",
}


def revert_why(why: str) -> str:
    """Why a revert was started, in words."""
    return REVERT_WHY.get(why, why)


def lead(action_id: str, message: str) -> str:
    """A message about an action as an event: ``"Kept: ..."`` -> ``"a3 kept: ..."``."""
    return f"{action_id} {message[0].lower()}{message[1:]}"


def count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def minutes(s: float) -> str:
    return f"{s / 60:g} min" if s >= 60 else f"{s:g} s"


def hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def stopped_text(n: int, kept: bool, failed: int = 0) -> str:
    """What ``stop`` did: ``n`` actions left applied (``kept``) or reverted, ``failed`` not."""
    if kept:
        return (
            f"Left {count(n, 'action')} applied; the next start offers to revert them."
            if n
            else "Nothing was applied."
        )
    text = f"Reverted {count(n, 'action')} as vtmon stopped." if n else ""
    if failed:
        text += f" {count(failed, 'action')} could not be reverted; the next start offers it."
    return text.strip() or "Nothing was applied."
