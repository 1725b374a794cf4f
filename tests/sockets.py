"""Talking to the real socket the way an application does, shared by the socket tests."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.fspath(path))
    return s


def connection_stats(s: socket.socket) -> dict[str, Any]:
    """This connection's counters; the answer comes after every earlier line on it is handled."""
    s.sendall(b'{"jsonrpc":"2.0","id":99,"method":"connection.stats"}\n')
    buf = b""
    while b"\n" not in buf:
        buf += s.recv(65536)
    return json.loads(buf.split(b"\n")[0])["result"]
