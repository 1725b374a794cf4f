"""Whether the folder of vtmon's socket can be trusted: one check for the server, the client
and the command line (docs/security.md, "The socket's folder").

A Unix socket is only as private as its folder. Whoever can write the folder can remove the
socket and listen in vtmon's place: an application would then send its metrics and knob
registrations to them, and `vtmon approve` would talk to them. A folder that is a symbolic link
can be pointed at a folder of its owner's choosing. So:

* vtmon serves only in a folder that is its own user's, that no group or other user can write,
  and that is no symbolic link;
* a client (``vtmon.client``, ``vtmon snapshot``, ``vtmon send``, ...) connects only through a
  folder that no group or other user can write and that is no symbolic link, owned by the
  caller or root; when the caller named the path (``socket=``, ``--socket``,
  ``$VTMON_SOCKET``), the folder may belong to another user: the service case, where vtmon
  runs as a service user and applications of a group connect to its socket.

This module imports nothing of the engine: the client library uses it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFolder(PermissionError):
    """The socket's folder fails the check; ``str()`` is one sentence for the user."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "The socket's folder cannot be trusted."


def resolve_socket_path(explicit: str | None = None) -> Path:
    """``--socket``, else ``$VTMON_SOCKET``, else ``$XDG_RUNTIME_DIR/vtmon/vtmon.sock``,
    else ``/tmp/vtmon-$UID/vtmon.sock``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("VTMON_SOCKET")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "vtmon" / "vtmon.sock"
    return Path(f"/tmp/vtmon-{os.getuid()}") / "vtmon.sock"


def socket_path(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The socket path (``--socket``, ``$VTMON_SOCKET``, else the default), and whether it
    was named by the caller rather than guessed."""
    given = os.fspath(explicit) if explicit else ""
    named = bool(given or os.environ.get("VTMON_SOCKET"))
    return resolve_socket_path(given or None), named


def check_folder(
    path: str | os.PathLike[str], *, serving: bool = False, named: bool = False
) -> None:
    """Raise ``UnsafeFolder`` when the folder of the socket ``path`` must not be used.

    ``serving``: vtmon is about to listen there (the folder must be its own user's).
    ``named``: a client was given the path (the folder may be another user's).
    A folder that does not exist passes: nothing listens in it, and a server creates it.
    """
    folder = Path(path).parent
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UnsafeFolder(
            f"Cannot look at the socket folder {folder}: {e.strerror}; pass --socket with "
            "a path in a folder of your own."
        ) from None
    fix = (
        "pass a socket path in a folder only its owner can write"
        if named and not serving
        else "remove it (vtmon creates it afresh, 0700) or pass --socket with another path"
    )
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFolder(
            f"The socket folder {folder} is a symbolic link, which vtmon never follows "
            f"(whoever owns the link chooses where it leads); {fix}."
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFolder(f"The socket folder {folder} is not a folder; {fix}.")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafeFolder(
            f"The socket folder {folder} can be written by other users (mode {mode:04o}), so "
            f"one of them could replace the socket; {fix}."
        )
    me = os.geteuid()
    if serving:
        ok = st.st_uid == me
    else:
        ok = named or st.st_uid in (me, 0)
    if not ok:
        raise UnsafeFolder(
            f"The socket folder {folder} belongs to uid {st.st_uid}, not to this user "
            f"(uid {me}), so another user could listen there in vtmon's place; {fix}."
        )
