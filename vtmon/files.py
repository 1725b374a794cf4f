"""Files vtmon keeps for its user alone (docs/security.md, "Files"): the history file and its
WAL, the log, recordings and reports hold series names, tags and findings, which are nobody
else's business. They are created 0600 in folders created 0700, with the mode given when the
file is made (``os.open``) rather than by a chmod after it, so there is no moment in which
another user could open them; what an older vtmon left wider is narrowed when found.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ForeignFolder(Exception):
    """A folder vtmon would keep its files in belongs to another user (message: why, as the
    middle of a sentence)."""


def private_folder(folder: str | os.PathLike[str], *, own: bool = False) -> str:
    """Make sure ``folder`` exists and is this user's; returns a note for the log, or "".

    A missing folder is created 0700 (its missing parents as usual). An existing one owned by
    another user raises ForeignFolder: whoever owns it can read or replace what vtmon writes.
    One that is vtmon's own (``own``: its default place, not one the user named) and that
    others may enter is tightened to 0700, and the note says so. Raises OSError when the
    folder cannot be created or is not a folder.
    """
    path = Path(folder)
    try:
        path.mkdir(mode=0o700, parents=True)
        return ""
    except FileExistsError:
        pass
    st = path.stat()  # a link is followed: a home folder kept elsewhere is common
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "not a folder", str(path))
    me = os.geteuid()
    if st.st_uid != me:
        raise ForeignFolder(f"{path} belongs to uid {st.st_uid}, not to this user (uid {me})")
    mode = stat.S_IMODE(st.st_mode)
    if own and mode & 0o077:
        os.chmod(path, mode & 0o700)
        return (
            f"{path} could be read by other users (mode {mode:04o}); vtmon made it private "
            f"({mode & 0o700:04o})."
        )
    return ""


def private_file(path: str | os.PathLike[str], *also: str | os.PathLike[str]) -> None:
    """Create ``path`` empty and 0600 when it is missing; an existing one (and each of
    ``also`` that exists) of this user that others may read or write is made 0600.

    For the history file: SQLite gives its ``-wal`` and ``-shm`` files the mode of the
    database, so a database made 0600 here never has a wider companion. Failures are left to
    whoever opens the file next (it says why in its own words)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except OSError:
        pass
    for p in (path, *also):
        narrow(p)


def narrow(path: str | os.PathLike[str]) -> None:
    """Make an existing file of this user that others may open 0600 (an older vtmon's)."""
    try:
        st = os.stat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o600)
    except OSError:
        pass
