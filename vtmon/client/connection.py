"""The client's connection to vtmon: opening it with the hello handshake (and telling vtmon's
refusal from a failure), and the reader loop that hands each line vtmon writes to the client."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vtmon.protocol import access, frames, jsonrpc, wire

HELLO_TIMEOUT_S = 2.0  # how long a new connection waits for the answer to its hello
SEND_TIMEOUT_S = 5.0  # a write vtmon does not take within this gives the connection up
MAX_MESSAGE = 1 << 20  # a longer line from vtmon is dropped


@dataclass(frozen=True)
class Hello:
    """What vtmon's answer to the hello agreed on."""

    binary: bool  # binary frames; False: text lines, for a vtmon that refused the hello
    max_frame: object  # the answer's "max_frame" as it came (None for text), checked by the client
    max_series: object  # the answer's "max_series" as it came (None for text), likewise
    rest: bytes  # what vtmon wrote after the answer: the reader's first bytes


def open_connection(path: str, named: bool) -> tuple[socket.socket, Hello]:
    """Connect to vtmon's socket at ``path`` and agree on the format; the socket comes back
    blocking, its writes bounded by SEND_TIMEOUT_S. Raises access.UnsafeFolder for a socket
    folder the client must not trust, OSError with vtmon's reason or the failure's otherwise."""
    access.check_folder(path, named=named)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(HELLO_TIMEOUT_S)
        s.connect(path)
        s.sendall(wire.HELLO)
        answer, rest = _answer(s, time.monotonic() + HELLO_TIMEOUT_S)
    except (OSError, ValueError) as e:
        why = _refused_already(s) or str(e) or type(e).__name__
        s.close()
        raise OSError(why) from e
    refused = jsonrpc.refusal(answer)
    if refused is not None:
        # No answer to the hello but vtmon refusing the connection (all the connections
        # it takes are open): it is closed; its reason is the one to report.
        s.close()
        raise OSError(refused)
    result = answer.get("result")
    said: dict[str, Any] = result if isinstance(result, dict) else {}
    binary = said.get("format") == frames.FORMAT
    if not binary and "error" not in answer:
        s.close()
        raise OSError(f"vtmon answered the hello with {answer!r}")
    max_frame = said.get("max_frame") if binary else None
    max_series = said.get("max_series") if binary else None
    s.settimeout(None)  # blocking: a send is one system call; vtmon's stall is bounded by
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SEND_TIMEOUT_S))
    return s, Hello(binary, max_frame, max_series, rest)


def read_lines(
    sock: socket.socket, buf: bytes, closed: threading.Event, handle: Callable[[bytes], None]
) -> None:
    """Hand each non-blank line vtmon writes on ``sock`` (``buf``: what came already) to
    ``handle``, until the connection ends or ``closed`` is set; a line longer than
    MAX_MESSAGE is dropped."""
    while not closed.is_set():
        *lines, buf = buf.split(b"\n")
        if len(buf) > MAX_MESSAGE:
            buf = b""
        for line in lines:
            if line.strip():
                handle(line)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        buf += data


def _answer(s: socket.socket, deadline: float) -> tuple[dict[str, Any], bytes]:
    """The first line vtmon writes on a new connection (the hello's answer), and the bytes
    after it."""
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("vtmon did not answer the hello")
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except TimeoutError:
            raise TimeoutError("vtmon did not answer the hello") from None
        if not data:
            raise ConnectionError("vtmon closed the connection before answering the hello")
        buf += data
        if len(buf) > MAX_MESSAGE:
            raise ValueError("vtmon's answer to the hello is too long")
    line, rest = buf.split(b"\n", 1)
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("vtmon's answer to the hello is no JSON object")
    return msg, rest


def _refused_already(s: socket.socket) -> str | None:
    """vtmon's reason when it refused the connection before the hello went out (it writes one
    line and closes at once, so the hello may meet a closed socket), else None."""
    try:
        s.setblocking(False)
        return jsonrpc.refusal(json.loads(s.recv(65536).split(b"\n", 1)[0]))
    except (OSError, ValueError):
        return None


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
