"""The demo workload: a synthetic voice-driven terminal application with three components.

It speaks to vtmon through the real socket, as any application would: DogStatsD lines for
latencies, throughput and errors, JSON lines for memory gauges. Every three minutes an
incident starts (a latency spike, an error burst, slow memory growth) so that detection has
something real to catch. The memory growth is a leak in voice-engine's buffers: from the first
one on, the buffers stay full (a memory bottleneck that lasts) until they are made smaller.

It also registers knobs (``vtmon.client``) that really change what it sends, so a tuning
action can be approved and seen to work, or not:

* ``api.cache_enabled`` (0/1): on, api.request_latency's median and tail drop by about 65 %.
* ``api.db_pool_size`` (4..64): larger cuts api-server latency, most of all in the spike.
* ``voice.buffer_mb`` (8..128): voice-engine's memory moves with it, MB for MB, and the leak
  fills in proportion to it: smaller buffers end the memory bottleneck.
* ``terminal.workers`` (1..16): more workers cut terminal.command_latency (by sqrt(4/n)).
* ``voice.gc_level`` (0..5, a garbage-collection knob): does nothing at all, so an action on
  it is measured as useless and reverted on its own.
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from vtmon.client import Client
from vtmon.config import Config, config_from_dict

INCIDENT_PERIOD_S = 180.0
INCIDENT_START_S = 60.0  # into each period
INCIDENT_LENGTH_S = 90.0
INCIDENTS = ("latency spike", "error burst", "memory growth")


@dataclass(frozen=True)
class Operation:
    component: str
    metric: str
    median_ms: float
    sigma: float
    per_second: float
    error_rate: float
    error_types: tuple[str, ...]


# Baseline error rates are about a fifth of each component's limit (config error_rate), so the
# healthy demo scores near 1 and only the error burst crosses a limit.
OPERATIONS: tuple[Operation, ...] = (
    Operation("voice-engine", "voice.transcribe_latency", 140.0, 0.33, 20, 0.001,
              ("timeout", "decode_error")),
    Operation("voice-engine", "voice.synthesize_latency", 110.0, 0.30, 12, 0.001, ("timeout",)),
    Operation("terminal-processor", "terminal.command_latency", 18.0, 0.45, 60, 0.0002,
              ("parse_error", "exec_failed")),
    Operation("api-server", "api.request_latency", 45.0, 0.40, 40, 0.002,
              ("http_500", "http_503", "timeout")),
    Operation("api-server", "api.db_query_latency", 8.0, 0.6, 80, 0.0005, ("deadlock",)),
)  # fmt: skip

MEMORY_BASE_MB = {"voice-engine": 120.0, "terminal-processor": 28.0, "api-server": 60.0}

# The demo's own configuration (`vtmon demo` reads a --config file over it): each component's
# latency target, memory budget and acceptable error rate, as [components.NAME] would say.
SETTINGS: dict[str, Any] = {
    "components": {
        "voice-engine": {
            "target_ms": 300.0,
            "max_memory_mb": 200.0,
            "error_rate": 0.005,
            "memory_advice": "pool and reuse audio frame buffers instead of allocating one per "
            "chunk, cap the audio queue, unload speech models that are not in use, and stream "
            "long recordings rather than holding them whole",
            "latency_advice": "keep the model warm and loaded, transcribe in streaming chunks, "
            "and run audio capture, recognition and synthesis as an async pipeline so the "
            "stages overlap",
        },
        "terminal-processor": {
            "target_ms": 50.0,
            "max_memory_mb": 50.0,
            "error_rate": 0.001,
            "memory_advice": "cap the scrollback and command-history buffers, pool output "
            "buffers, and release finished command results instead of keeping them in a list",
            "latency_advice": "cache parsed commands and completions, precompile the patterns "
            "it matches, and run slow commands off the input path asynchronously",
        },
        "api-server": {
            "target_ms": 100.0,
            "max_memory_mb": 100.0,
            "error_rate": 0.01,
            "memory_advice": "bound the response cache (an LRU with a maxsize), pool request "
            "objects and stream large bodies instead of reading them into memory",
            "latency_advice": "cache repeated responses and queries with a TTL, pool database "
            "and HTTP connections, add the indexes the slow queries need, and batch small "
            "downstream calls",
        },
    }
}


def demo_config() -> Config:
    """The demo's configuration alone (no config file): SETTINGS over the defaults."""
    return config_from_dict(SETTINGS, source="vtmon demo")


@dataclass(frozen=True)
class DemoKnob:
    name: str
    value: float  # the default, at which the workload sends what it always sent
    min: float
    max: float
    step: float
    unit: str
    component: str
    kind: str


DEMO_KNOBS: tuple[DemoKnob, ...] = (
    DemoKnob("api.cache_enabled", 0, 0, 1, 1, "", "api-server", "caching"),
    DemoKnob("api.db_pool_size", 16, 4, 64, 1, "connections", "api-server", "connection_pools"),
    DemoKnob("voice.buffer_mb", 64, 8, 128, 8, "MB", "voice-engine", "buffers"),
    DemoKnob("terminal.workers", 4, 1, 16, 1, "workers", "terminal-processor", "workers"),
    DemoKnob("voice.gc_level", 2, 0, 5, 1, "", "voice-engine", "gc"),
)
CACHE_FACTOR = 0.35  # api.request_latency with the cache on


def incident_at(t: float) -> tuple[str, float] | None:
    """The incident active at ``t`` (seconds since the workload started) and its progress 0..1."""
    into = t % INCIDENT_PERIOD_S
    if not INCIDENT_START_S <= into < INCIDENT_START_S + INCIDENT_LENGTH_S:
        return None
    kind = INCIDENTS[int(t // INCIDENT_PERIOD_S) % len(INCIDENTS)]
    return kind, (into - INCIDENT_START_S) / INCIDENT_LENGTH_S


LEAK_MB = 45.0  # at the default 64 MB of buffers: 165 MB of voice-engine's 200 MB budget


def leak_mb(t: float) -> float:
    """voice-engine's leaked buffer memory at the default buffer size: none before the first
    memory-growth incident, then filling over the incident, then staying."""
    first = INCIDENTS.index("memory growth") * INCIDENT_PERIOD_S + INCIDENT_START_S
    return LEAK_MB * min(1.0, max(0.0, (t - first) / INCIDENT_LENGTH_S))


class DemoWorkload:
    """Generates the lines an interval of the workload sends; deterministic for a seed."""

    def __init__(self, seed: int = 7, knobs: dict[str, float] | None = None) -> None:
        self.rng = random.Random(seed)
        self.knobs: dict[str, float] = {k.name: float(k.value) for k in DEMO_KNOBS}
        for name, value in (knobs or {}).items():
            self.set_knob(name, value)

    def set_knob(self, name: str, value: float) -> float:
        """Change a knob (any thread); returns the value in effect (whole steps)."""
        spec = next((k for k in DEMO_KNOBS if k.name == name), None)
        if spec is None:
            raise ValueError(f"The demo has no knob named {name!r}.")
        v = spec.min + round((float(value) - spec.min) / spec.step) * spec.step
        if not spec.min <= v <= spec.max:
            raise ValueError(f"{value:g} is outside {name}'s bounds [{spec.min:g}, {spec.max:g}].")
        self.knobs[name] = v
        return v

    def _factors(self) -> tuple[dict[str, float], float, float, float]:
        """Per metric a latency factor; the spike's amplitude; the tail's; voice memory, MB.
        All exactly neutral at the default knob values, so the lines are what they were."""
        k = self.knobs
        crowd = 16.0 / k["api.db_pool_size"]  # requests per pooled connection, relative
        pool = 1.0 + 0.25 * (crowd - 1.0)
        cache = CACHE_FACTOR if k["api.cache_enabled"] >= 0.5 else 1.0
        workers = math.sqrt(4.0 / k["terminal.workers"])
        factors = {
            "api.request_latency": pool * cache,
            "api.db_query_latency": pool,
            "terminal.command_latency": workers,
        }
        return factors, 4.0 * math.sqrt(crowd), cache, k["voice.buffer_mb"] - 64.0

    def lines(self, t: float, dt: float) -> list[str]:
        """Lines for the interval [t, t+dt), t in seconds since the workload started."""
        rng = self.rng
        incident = incident_at(t)
        factors, spike, tail_cut, voice_mb = self._factors()
        out: list[str] = []
        for op in OPERATIONS:
            n = _poisson(rng, op.per_second * dt)
            slow = factors.get(op.metric, 1.0)
            tail = tail_cut if op.metric == "api.request_latency" else 1.0
            err_rate = op.error_rate
            if incident and incident[0] == "latency spike" and op.component == "api-server":
                slow *= 1.0 + spike * math.sin(math.pi * incident[1])
            if incident and incident[0] == "error burst" and op.component == "voice-engine":
                err_rate = 0.08
            tags = f"#component:{op.component}"
            for _ in range(n):
                v = rng.lognormvariate(math.log(op.median_ms * slow), op.sigma)
                if rng.random() < 0.01:  # a long tail, as real services have
                    m = rng.uniform(2.0, 4.0)
                    v *= m if tail == 1.0 else 1.0 + (m - 1.0) * tail
                out.append(f"{op.metric}:{v:.3f}|ms|{tags}")
            if n:
                prefix = op.metric.split(".", 1)[0]
                out.append(f"{prefix}.throughput:{n}|c|{tags}")
            errors = sum(1 for _ in range(n) if rng.random() < err_rate)
            for _ in range(errors):
                etype = rng.choice(op.error_types)
                out.append(
                    f"{op.metric.split('.', 1)[0]}.error_count:1|c|{tags},error_type:{etype}"
                )
        for comp, base in MEMORY_BASE_MB.items():
            if comp == "voice-engine":
                base += voice_mb  # its buffers
            mb = base + rng.uniform(-2, 2)
            if comp == "voice-engine":
                mb += leak_mb(t) * self.knobs["voice.buffer_mb"] / 64.0
            out.append(
                json.dumps(
                    {
                        "name": "memory_heap_used",
                        "value": round(mb * 1024 * 1024),
                        "unit": "bytes",
                        "context": {"component": comp},
                    },
                    separators=(",", ":"),
                )
            )
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method is fine for the small rates of one tick.
    if lam <= 0:
        return 0
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def run(
    socket_path: str,
    stop: threading.Event,
    tick_s: float = 0.1,
    seed: int = 7,
    knobs: bool = True,
) -> None:
    """Send the workload to ``socket_path`` until ``stop`` is set; reconnects on its own.
    With ``knobs`` it registers DEMO_KNOBS over a ``vtmon.client.Client`` connection."""
    workload = DemoWorkload(seed)
    client = Client(socket_path) if knobs else None
    try:
        if client is not None:
            for k in DEMO_KNOBS:
                client.knob(
                    k.name,
                    workload.knobs[k.name],
                    k.min,
                    k.max,
                    step=k.step,
                    unit=k.unit,
                    component=k.component,
                    kind=k.kind,
                    on_change=partial(workload.set_knob, k.name),
                )
        _send(workload, socket_path, stop, tick_s)
    finally:
        if client is not None:
            client.close()


def _send(workload: DemoWorkload, socket_path: str, stop: threading.Event, tick_s: float) -> None:
    start = time.monotonic()
    deadline = start
    sock: socket.socket | None = None
    while not stop.is_set():
        deadline += tick_s
        if stop.wait(max(0.0, deadline - time.monotonic())):
            break
        payload = ("\n".join(workload.lines(deadline - start - tick_s, tick_s)) + "\n").encode()
        try:
            if sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(socket_path)
            sock.sendall(payload)
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()


def start_thread(socket_path: str, stop: threading.Event) -> threading.Thread:
    t = threading.Thread(target=run, args=(socket_path, stop), name="vtmon-demo", daemon=True)
    t.start()
    return t
