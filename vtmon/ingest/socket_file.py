"""The socket file and who is at the other end: the folder's check and rights, a stale or live
socket at the path, the group that may connect, and the peer's uid as the kernel recorded it
(docs/security.md)."""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from vtmon.protocol.access import UnsafeFolder, check_folder

# The server's logger: what it logs keeps the name it had before the server was split.
log = logging.getLogger("vtmon.ingest.server")


class SocketInUse(Exception):
    """Another live vtmon listens on the path (message is one sentence for the user)."""


class SocketError(Exception):
    """The socket cannot be set up (message is one sentence for the user)."""


def probe(path: str | os.PathLike[str], timeout: float = 1.0) -> bool:
    """True when something accepts connections on the Unix socket at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def prepare_path(path: Path, socket_mode: int = 0o600, gid: int | None = None) -> None:
    """Check the socket's folder (vtmon.protocol.access), creating it 0700 when it is missing;
    refuse a live socket, replace a stale one. ``socket_mode`` and ``gid``: who else the socket
    admits (``[server]``): a folder created here lets them through, never write."""
    folder = path.parent
    created = False
    if not os.path.lexists(folder):
        try:
            folder.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            pass  # made meanwhile by someone else: the check decides
        except OSError as e:
            raise SocketError(f"Cannot create the socket folder {folder}: {e.strerror}.") from e
    try:
        check_folder(path, serving=True)
    except UnsafeFolder as e:
        raise SocketError(str(e)) from None
    if created:
        _admit(folder, socket_mode, gid)
    elif _traverse(socket_mode) & ~os.stat(folder).st_mode:
        log.warning(
            "The socket admits other users (mode %04o) but its folder %s does not let them "
            "through; a folder vtmon creates does.",
            socket_mode,
            folder,
        )
    if path.exists() or path.is_symlink():
        mode = path.lstat().st_mode
        if not stat.S_ISSOCK(mode):
            raise SocketError(
                f"{path} exists and is not a socket; remove it or pass --socket "
                "to use another path."
            )
        if probe(path):
            raise SocketInUse(
                f"Another vtmon is already listening on {path}; stop it or pass --socket "
                "to use another path."
            )
        path.unlink()  # stale: nothing listens


def _traverse(socket_mode: int) -> int:
    """The folder's execute bits the socket's mode needs: the group's, the others'."""
    return (0o010 if socket_mode & 0o060 else 0) | (0o001 if socket_mode & 0o006 else 0)


def _admit(folder: Path, socket_mode: int, gid: int | None) -> None:
    """Let whom the socket admits through the folder vtmon created: to search it, not write."""
    try:
        if gid is not None:
            os.chown(folder, -1, gid)
        os.chmod(folder, 0o700 | _traverse(socket_mode))
    except OSError as e:
        who = f"group {gid} (vtmon's user must belong to it)" if gid is not None else "others"
        raise SocketError(f"Cannot open the socket folder {folder} to {who}: {e.strerror}.") from e


def resolve_group(group: str | int | None) -> int | None:
    """``[server] socket_group`` as a gid; SocketError (one sentence) for an unknown name."""
    if group is None or isinstance(group, int):
        return group
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketError(
            f"There is no group {group!r} ([server] socket_group); name an existing group or "
            "give its gid."
        ) from None


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, as the kernel
    recorded it when it connected; None where the platform does not say."""
    if sock is None:
        return None
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
            data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return int(struct.unpack("3i", data)[1])
        if hasattr(socket, "LOCAL_PEERCRED"):  # macOS, BSD: struct xucred {version, uid, ...}
            data = sock.getsockopt(0, socket.LOCAL_PEERCRED, 128)  # level 0: SOL_LOCAL
            return int(struct.unpack_from("=II", data)[1])
    except (OSError, struct.error):
        pass
    return None
