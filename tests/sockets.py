"""Talking to the real socket the way an application does, shared by the socket tests."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np

from vtmon.protocol.frames import FORMAT


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


# -- binary frames (docs/protocol.md, "Binary frames") ------------------------------------

HELLO: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {"format": FORMAT}}


def frame(ftype: int, payload: bytes, magic: bytes = b"VT", reserved: int = 0) -> bytes:
    return magic + bytes((ftype, reserved)) + struct.pack("<I", len(payload)) + payload


def declare(sid: int, kind: int, name: bytes) -> bytes:
    return frame(1, struct.pack("<IB", sid, kind) + name)


def values(sid: int, vals) -> bytes:
    return frame(2, struct.pack("<I", sid) + np.asarray(vals, dtype="<f8").tobytes())


def lines(text: bytes) -> bytes:
    return frame(3, text)


def read_json(s: socket.socket) -> dict[str, Any]:
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "vtmon closed the connection"
        buf += chunk
    return json.loads(buf.split(b"\n")[0])


def binary(path: Path) -> socket.socket:
    """A connection that said hello and got the binary format."""
    s = connect(path)
    s.sendall(json.dumps(HELLO).encode() + b"\n")
    answer = read_json(s)
    assert answer["result"]["format"] == FORMAT
    return s
