"""The machine's own resources: CPU, memory, swap, disks, network and pressure stall information.

Everything here is read through psutil except PSI, which psutil does not expose. A reading never
raises: whatever the platform or the container hides is left None, so the screen can show a dash
instead of the engine dying on a missing ``/proc/vmstat``.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from vtmon.model import DiskUsage, Pressure, ProcessStats, ResourceHistory, Resources

_T = TypeVar("_T")

PSI_RESOURCES: tuple[str, ...] = ("cpu", "memory", "io")

# Filesystems whose usage means nothing to an operator (kernel interfaces, memory-backed scratch,
# read-only images that are always 100 % full).
PSEUDO_FS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "none",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)

# statvfs() on a dead network mount can block for minutes, so automatic discovery leaves these
# out; a path the user names explicitly is read whatever it is.
NETWORK_FS = frozenset(
    {
        "9p",
        "afs",
        "ceph",
        "cifs",
        "davfs",
        "glusterfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "smb3",
        "smbfs",
        "sshfs",
    }
)

# Interfaces whose traffic is already counted on another interface (loopback carries vtmon's own
# ingest; veths, bridges and IFBs repeat container and shaped traffic at every hop).
_VIRTUAL_NIC_PREFIXES = (
    "lo",
    "veth",
    "docker",
    "br-",
    "virbr",
    "cni",
    "flannel",
    "cali",
    "vxlan",
    "kube-",
    "ifb",
    "tunl",
)

_MOUNTS_REFRESH_S = 60.0


# ---------------------------------------------------------------------------------------------
# pressure stall information


def _psi_line(parts: list[str]) -> dict[str, float] | None:
    vals: dict[str, float] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        if not sep:
            return None
        try:
            v = float(raw)
        except ValueError:
            return None
        if not math.isfinite(v) or v < 0:
            return None
        vals[key] = v
    if not all(k in vals for k in ("avg10", "avg60", "avg300")):
        return None
    return vals


def parse_pressure(resource: str, text: str) -> Pressure | None:
    """One ``/proc/pressure/<resource>`` file, or None when it is not in the kernel's format."""
    lines: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue  # tolerate lines a future kernel might add
        vals = _psi_line(parts[1:])
        if vals is None:
            return None
        lines[parts[0]] = vals
    some = lines.get("some")
    if some is None:
        return None
    full = lines.get("full")
    # The kernel prints a system-wide cpu "full" line of zeros only for format compatibility
    # (full CPU stall is undefined system-wide), so showing it would suggest a measurement.
    if (
        full is not None
        and resource == "cpu"
        and full.get("total", 0.0) == 0.0
        and not any(full[k] for k in ("avg10", "avg60", "avg300"))
    ):
        full = None
    return Pressure(
        resource=resource,
        some_avg10=some["avg10"],
        some_avg60=some["avg60"],
        some_avg300=some["avg300"],
        full_avg10=full["avg10"] if full else None,
        full_avg60=full["avg60"] if full else None,
        full_avg300=full["avg300"] if full else None,
    )


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def read_pressure(proc_root: str | Path = "/proc") -> tuple[tuple[Pressure, ...], str]:
    """PSI for cpu, memory and io, and a one-sentence note on whatever could not be read."""
    folder = Path(proc_root) / "pressure"
    found: list[Pressure] = []
    missing: list[str] = []
    reason = ""
    for res in PSI_RESOURCES:
        path = folder / res
        why = ""
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                text = f.read(4096)
        except FileNotFoundError:
            why = f"{path} does not exist"
        except PermissionError:
            why = f"{path} is not readable (permission denied)"
        except OSError as exc:
            # e.g. EOPNOTSUPP from a kernel built with PSI but booted with psi=0 in a cgroup
            why = f"reading {path} failed ({exc.strerror or exc})"
        else:
            p = parse_pressure(res, text)
            if p is None:
                why = f"{path} could not be parsed"
            else:
                found.append(p)
        if why:
            missing.append(res)
            reason = reason or why
    if not missing:
        return tuple(found), ""
    if not found:
        if not folder.is_dir():
            reason = f"{folder} does not exist (kernel without CONFIG_PSI or psi=0)"
        return (), f"Pressure stall information is not available: {reason}."
    which = _join(missing)
    return tuple(found), f"Pressure stall information for {which} is not available: {reason}."


# ---------------------------------------------------------------------------------------------
# helpers


def _safe(fn: Callable[[], _T]) -> _T | None:
    """Call a psutil reader; any failure (AccessDenied, a file a container hides) is None."""
    try:
        with warnings.catch_warnings():
            # psutil warns (RuntimeWarning) when e.g. /proc/vmstat is missing; we degrade anyway
            warnings.simplefilter("ignore")
            return fn()
    except Exception:
        return None


def _rate(new: float | None, old: float | None, dt: float) -> float | None:
    """Per-second rate; a counter that went backwards (wrap or reset) gives None, not < 0."""
    if new is None or old is None or dt <= 0:
        return None
    d = new - old
    if d < 0:
        return None
    return d / dt


def _nic_is_virtual(name: str) -> bool:
    return name.startswith(_VIRTUAL_NIC_PREFIXES)


def _cpu_delta(new: Any, old: Any) -> tuple[float, float, float]:
    """(busy, total, iowait) seconds between two cpu_times entries, per-field deltas >= 0.

    Per-field clamping because iowait is documented to go backwards on Linux (proc(5)).
    """
    deltas = {f: max(0.0, getattr(new, f) - getattr(old, f)) for f in new._fields}
    total = sum(deltas.values()) - deltas.get("guest", 0.0) - deltas.get("guest_nice", 0.0)
    iowait = deltas.get("iowait", 0.0)
    idle = deltas.get("idle", 0.0) + iowait
    return max(0.0, total - idle), total, iowait


class SystemCollector:
    """Reads the machine's resources; rates come from the previous reading and ``now``.

    ``proc_root`` locates PSI only; psutil always reads the real /proc. Not thread-safe for
    concurrent ``collect`` calls (the engine calls it from one thread);
    ``history`` may be called from any thread.
    """

    def __init__(
        self,
        proc_root: str | Path = "/proc",
        history_len: int = 300,
        disk_paths: Sequence[str] | None = None,
        pid: int | None = None,
    ) -> None:
        self.proc_root = Path(proc_root)
        self.pid = pid
        self._proc: psutil.Process | None = None
        if pid is not None:
            proc = self._proc = _safe(lambda: psutil.Process(pid))
            if proc is not None:
                _safe(lambda: proc.cpu_percent(None))  # the baseline for the first reading
        self.history_len = max(1, int(history_len))
        # None: the root filesystem plus every real local mount; a sequence: root plus those
        self.disk_paths: tuple[str, ...] | None = (
            tuple(disk_paths) if disk_paths is not None else None
        )
        self._hist: deque[tuple[float, float, float, float, float, float, float]] = deque(
            maxlen=self.history_len
        )
        self._hist_lock = threading.Lock()
        self._hist_cache: ResourceHistory | None = ResourceHistory()
        self._seeded = 0  # readings from before a restart at the front of _hist
        self._seed_span_s = 0.0  # how long they stay behind the newest reading
        self._prev_t: float | None = None
        self._prev_swap: tuple[float, float] | None = None
        self._prev_disk: tuple[float, float, float, float] | None = None
        self._prev_net: dict[str, tuple[float, float, float, float, float]] | None = None
        self._mounts: list[tuple[str, str]] = []  # (mountpoint, fstype), longest first
        self._mounts_at: float | None = None
        # A baseline now, so the first collect() reports CPU use since construction rather than
        # nothing (like psutil.cpu_percent does from import time).
        self._prev_cpu: list[Any] | None = _safe(lambda: psutil.cpu_times(percpu=True))
        self._last_cpu: tuple[float | None, tuple[float, ...], float | None] = (None, (), None)

    # -- public ---------------------------------------------------------------------------

    def collect(self, now: float) -> Resources:
        """One reading of the machine. Never raises."""
        prev_t = self._prev_t
        dt = (now - prev_t) if prev_t is not None else 0.0
        fields: dict[str, Any] = {"t": now}
        for part in (
            self._cpu,
            self._memory,
            lambda: self._swap(dt),
            lambda: self._disk_io(dt),
            lambda: self._net(dt),
            lambda: self._disks(now),
        ):
            try:
                fields.update(part())
            except Exception:  # a reader bug must cost its own fields, not the whole reading
                pass
        try:
            fields["load"] = tuple(os.getloadavg())
        except (OSError, AttributeError):
            pass
        try:
            pressure, note = read_pressure(self.proc_root)
        except Exception as exc:  # read_pressure handles OSError itself; this is a last resort
            pressure, note = (), f"Pressure stall information could not be read: {exc}."
        fields["pressure"] = pressure
        fields["pressure_note"] = note
        if self.pid is not None:
            fields["process"] = self._process()
        self._prev_t = now
        res = Resources(**fields)
        self._remember(res)
        return res

    def history(self) -> ResourceHistory:
        """The last ``history_len`` readings, oldest first; missing values are 0.0."""
        with self._hist_lock:
            if self._hist_cache is None:
                cols = list(zip(*self._hist, strict=True)) if self._hist else [()] * 7
                self._hist_cache = ResourceHistory(*(tuple(c) for c in cols))
            return self._hist_cache

    def seed_history(self, seed: ResourceHistory, span_s: float) -> int:
        """Put readings from before a restart (oldest first, e.g. the history file's last
        minutes) in front of the live ones, so the charts continue where the last run left
        them. Live readings leave the history by count; seeded ones also by age, once they are
        more than ``span_s`` older than the newest reading (they may be coarser than live
        ones, so counting them would stretch the charts). Returns how many were added."""
        with self._hist_lock:
            first = self._hist[0][0] if self._hist else math.inf
            rows = [
                r
                for r in zip(
                    seed.t,
                    seed.cpu,
                    seed.mem,
                    seed.disk_read,
                    seed.disk_write,
                    seed.net_rx,
                    seed.net_tx,
                    strict=True,
                )
                if r[0] < first
            ]
            room = self.history_len - len(self._hist)
            rows = rows[-room:] if room > 0 else []
            self._hist.extendleft(reversed(rows))
            self._seeded += len(rows)
            self._seed_span_s = span_s
            self._hist_cache = None
            return len(rows)

    # -- parts ----------------------------------------------------------------------------

    def _process(self) -> ProcessStats:
        pid = self.pid or 0
        proc = self._proc
        if proc is None:
            return ProcessStats(pid, running=False, note=f"No process has pid {pid}.")
        try:
            with proc.oneshot():
                return ProcessStats(
                    pid,
                    name=proc.name(),
                    cpu_percent=proc.cpu_percent(None),
                    rss=proc.memory_info().rss,
                    threads=proc.num_threads(),
                    nice=proc.nice(),
                )
        except psutil.NoSuchProcess:
            return ProcessStats(pid, running=False, note=f"Process {pid} has exited.")
        except psutil.AccessDenied:
            return ProcessStats(pid, note=f"Not allowed to read process {pid}; run as its user.")

    def _remember(self, r: Resources) -> None:
        row = (
            r.t,
            r.cpu_percent or 0.0,
            r.mem_percent or 0.0,
            r.disk_read_rate or 0.0,
            r.disk_write_rate or 0.0,
            r.net_rx_rate or 0.0,
            r.net_tx_rate or 0.0,
        )
        with self._hist_lock:
            if self._seeded and len(self._hist) == self.history_len:
                self._seeded -= 1  # the append pushes out the oldest, a seeded one
            self._hist.append(row)
            while self._seeded and self._hist[0][0] < r.t - self._seed_span_s:
                self._hist.popleft()
                self._seeded -= 1
            self._hist_cache = None  # rebuilt lazily: history() is asked for every tick

    def _cpu(self) -> dict[str, Any]:
        # One /proc/stat read gives total, per-CPU and iowait together, and keeps our interval
        # private: psutil.cpu_percent(interval=None) shares one "last call" across the process.
        times = _safe(lambda: psutil.cpu_times(percpu=True)) or []
        out: dict[str, Any] = {"cpu_count": len(times) or (os.cpu_count() or 0)}
        prev = self._prev_cpu
        if prev is None or len(prev) != len(times) or not times:
            # first reading, CPU hot-plug or /proc/stat unreadable: a new baseline
            self._prev_cpu = times or None
            return out
        busy_sum = total_sum = iowait_sum = 0.0
        per: list[float] = []
        for new, old in zip(times, prev, strict=True):
            busy, total, iowait = _cpu_delta(new, old)
            busy_sum += busy
            total_sum += total
            iowait_sum += iowait
            per.append(min(100.0, 100.0 * busy / total) if total > 0 else 0.0)
        if total_sum <= 0:
            # Called again within one clock tick: keep the baseline, repeat the last answer.
            cpu, per_t, iow = self._last_cpu
            out.update(cpu_percent=cpu, per_cpu=per_t, iowait_percent=iow)
            return out
        self._prev_cpu = times
        cpu = min(100.0, 100.0 * busy_sum / total_sum)
        has_iowait = hasattr(times[0], "iowait")
        iow = min(100.0, 100.0 * iowait_sum / total_sum) if has_iowait else None
        self._last_cpu = (cpu, tuple(per), iow)
        out.update(cpu_percent=cpu, per_cpu=tuple(per), iowait_percent=iow)
        return out

    def _memory(self) -> dict[str, Any]:
        vm = _safe(psutil.virtual_memory)
        if vm is None:
            return {}
        return {
            "mem_total": int(vm.total),
            "mem_used": int(vm.used),
            "mem_available": int(vm.available),
            "mem_percent": float(vm.percent),
        }

    def _swap(self, dt: float) -> dict[str, Any]:
        sw = _safe(psutil.swap_memory)
        if sw is None:
            self._prev_swap = None
            return {}
        cur = (float(sw.sin), float(sw.sout))
        prev = self._prev_swap
        self._prev_swap = cur
        return {
            "swap_total": int(sw.total),
            "swap_used": int(sw.used),
            "swap_percent": float(sw.percent),
            "swap_in_rate": _rate(cur[0], prev[0], dt) if prev else None,
            "swap_out_rate": _rate(cur[1], prev[1], dt) if prev else None,
        }

    def _disk_io(self, dt: float) -> dict[str, Any]:
        # nowrap=False: psutil's wrap fix-up turns a removed disk into a huge spike; we would
        # rather show nothing for one reading.
        io = _safe(lambda: psutil.disk_io_counters(perdisk=False, nowrap=False))
        if io is None:
            self._prev_disk = None
            return {}
        cur = (
            float(io.read_bytes),
            float(io.write_bytes),
            float(io.read_count),
            float(io.write_count),
        )
        prev = self._prev_disk
        self._prev_disk = cur
        if prev is None:
            return {}
        return {
            "disk_read_rate": _rate(cur[0], prev[0], dt),
            "disk_write_rate": _rate(cur[1], prev[1], dt),
            "disk_read_iops": _rate(cur[2], prev[2], dt),
            "disk_write_iops": _rate(cur[3], prev[3], dt),
        }

    def _net(self, dt: float) -> dict[str, Any]:
        nics = _safe(lambda: psutil.net_io_counters(pernic=True, nowrap=False))
        if nics is None:
            self._prev_net = None
            return {}
        cur = {
            name: (
                float(c.bytes_recv),
                float(c.bytes_sent),
                float(c.packets_recv),
                float(c.packets_sent),
                float(c.errin + c.errout + c.dropin + c.dropout),
            )
            for name, c in nics.items()
            if not _nic_is_virtual(name)
        }
        prev = self._prev_net
        self._prev_net = cur
        if prev is None:
            return {}
        # Per-interface deltas, so an interface coming or going neither spikes nor dips the sum.
        names = ("net_rx_rate", "net_tx_rate", "net_rx_packets", "net_tx_packets", "net_errors")
        out: dict[str, Any] = {}
        for i, key in enumerate(names):
            total, known = 0.0, True
            for nic, vals in cur.items():
                old = prev.get(nic)
                if old is None:
                    continue
                r = _rate(vals[i], old[i], dt)
                if r is None:
                    known = False
                    break
                total += r
            out[key] = total if known and dt > 0 else None
        return out

    def _mount_table(self, now: float) -> list[tuple[str, str]]:
        stale = (
            self._mounts_at is None
            or now < self._mounts_at
            or now - self._mounts_at >= _MOUNTS_REFRESH_S
        )
        if stale:
            parts = _safe(lambda: psutil.disk_partitions(all=True))
            if parts is not None:
                table = [(p.mountpoint, p.fstype) for p in parts]
                table.sort(key=lambda m: len(m[0]), reverse=True)
                self._mounts = table
            self._mounts_at = now
        return self._mounts

    @staticmethod
    def _fstype_of(path: str, table: list[tuple[str, str]]) -> str | None:
        # Longest mount point that prefixes the path; the table is sorted longest first.
        for mnt, fstype in table:
            if path == mnt or path.startswith(mnt.rstrip("/") + "/"):
                return fstype
        return None

    def _disks(self, now: float) -> dict[str, Any]:
        table = self._mount_table(now)
        candidates: list[str] = ["/"]
        auto = self.disk_paths is None
        if self.disk_paths is None:
            for mnt, fstype in sorted(table):
                if (
                    fstype in PSEUDO_FS
                    or fstype in NETWORK_FS
                    or fstype == "fuse"
                    or fstype.startswith("fuse.")
                ):
                    continue
                candidates.append(mnt)
        else:
            for p in self.disk_paths:
                path = os.path.abspath(p)
                kind = self._fstype_of(path, table)
                # A named tmpfs (/dev/shm) or overlay root is wanted; kernel interfaces are not.
                if kind in PSEUDO_FS and kind not in ("tmpfs", "overlay"):
                    continue
                candidates.append(path)
        seen: set[int] = set()
        disks: list[DiskUsage] = []
        for path in candidates:
            # Each mount on its own: one stale or forbidden mount must not hide the others.
            try:
                st = os.stat(path)
                if st.st_dev in seen:
                    continue  # bind mounts and paths inside an already-listed filesystem
                if auto and path != "/" and not stat.S_ISDIR(st.st_mode):
                    continue  # a container's bind-mounted /etc/hosts is not a disk
                du = psutil.disk_usage(path)
            except Exception:
                continue
            seen.add(st.st_dev)
            if du.total <= 0:
                continue  # a pseudo filesystem the mount table did not name as one
            disks.append(DiskUsage(path, int(du.total), int(du.used), float(du.percent)))
        return {"disks": tuple(disks)}
