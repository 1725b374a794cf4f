"""Hardware sensors: temperatures, fans and battery through psutil, power straight from sysfs.

Power has two sources. Powercap (RAPL) zones expose a cumulative ``energy_uj`` counter, so watts
need two reads and the wall time between them; hwmon drivers expose instantaneous microwatts.
Since the late-2020 fix for the PLATYPUS side channel ``energy_uj`` is readable by root only,
so the common failure is permission, and the note says so rather than showing an empty panel.

Every path, including the container and virtual-machine hints, is taken relative to the roots
given to the reader, so tests can fake a whole machine in a temporary folder.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from vtmon.model import Battery, Fan, PowerReading, Sensors, Temperature

_T = TypeVar("_T")

# Outside these a reading is a driver sentinel (-273, 127 on an unplugged header, 65535 ...)
_TEMP_RANGE = (-40.0, 150.0)
_LIMIT_RANGE = (0.0, 200.0)
_FAN_MAX_RPM = 30_000.0
_WATTS_MAX = 10_000.0  # beyond any single socket or board: a misread or a missed wrap

_VM_VENDORS = (
    "kvm",
    "qemu",
    "vmware",
    "virtualbox",
    "innotek",
    "xen",
    "bochs",
    "parallels",
    "bhyve",
    "openstack",
    "virtual machine",  # Hyper-V product_name
    "amazon ec2",
    "google compute engine",
)
_CONTAINER_CGROUP_WORDS = ("docker", "kubepods", "containerd", "lxc", "libpod", "crio")

_POWER_FILE = re.compile(r"^power(\d+)_(input|average)$")


def _natural(s: str) -> tuple[Any, ...]:
    # hwmon10 after hwmon2, intel-rapl:0:1 after intel-rapl:0
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def _read_text(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path), key=_natural)
    except OSError:
        return []


def _safe(fn: Callable[[], _T]) -> _T | None:
    try:
        return fn()
    except Exception:  # psutil raises whatever the platform throws at it; no sensor is worth it
        return None


def _in(v: float | None, lo: float, hi: float) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and lo < v < hi


def _limit(v: float | None) -> float | None:
    return float(v) if v is not None and _in(v, *_LIMIT_RANGE) else None


class _Unreadable(Exception):
    """A sensor file exists but the kernel refused to let us read it."""


def _read_int(path: Path) -> int | None:
    """The integer in a sysfs attribute; None when absent or garbage, _Unreadable on EACCES."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            raw = f.read(64)
    except PermissionError as exc:
        raise _Unreadable(path.name) from exc
    except OSError:
        return None  # missing, or ENODATA/EIO from a sensor that is powered down
    try:
        return int(raw.strip())
    except ValueError:
        return None


class SensorReader:
    """Reads hardware sensors. ``read`` never raises.

    ``proc_root`` defaults to ``proc`` beside ``sys_root`` and the container marker files are
    looked for in ``sys_root``'s parent, so ``SensorReader(tmp / "sys")`` is a whole fake machine.
    """

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        use_psutil: bool = True,
        *,
        proc_root: str | Path | None = None,
    ) -> None:
        self.sys_root = Path(sys_root)
        self.proc_root = Path(proc_root) if proc_root is not None else self.sys_root.parent / "proc"
        self.fs_root = self.sys_root.parent
        self.use_psutil = use_psutil
        # zone folder -> (energy in µJ, time read); only zones seen in the last read survive
        self._energy: dict[str, tuple[int, float]] = {}
        self._virt: str | None = None  # cached: what the machine looks like, "" when bare metal

    # -- public ---------------------------------------------------------------------------

    def read(self, now: float) -> Sensors:
        """One reading of every sensor; ``note`` says why there is nothing, or what is hidden."""
        try:
            return self._read(now)
        except Exception as exc:  # a reader bug must not take the engine down
            return Sensors(note=f"Sensors could not be read: {exc}.")

    # -- parts ----------------------------------------------------------------------------

    def _read(self, now: float) -> Sensors:
        temps: tuple[Temperature, ...] = ()
        fans: tuple[Fan, ...] = ()
        battery: Battery | None = None
        if self.use_psutil:
            temps = self._temperatures()
            fans = self._fans()
            battery = self._battery()
        denied: set[str] = set()
        rapl, pending = self._powercap(now, denied)
        hw = self._hwmon_power(denied)
        s = Sensors(temperatures=temps, fans=fans, power=rapl + hw, battery=battery)
        note = self._note(s, denied, pending)
        return Sensors(s.temperatures, s.fans, s.power, s.battery, note) if note else s

    def _temperatures(self) -> tuple[Temperature, ...]:
        data = (
            _safe(psutil.sensors_temperatures) if hasattr(psutil, "sensors_temperatures") else None
        )
        out: list[Temperature] = []
        for chip, entries in (data or {}).items():
            for e in entries:
                if not _in(e.current, *_TEMP_RANGE):
                    continue
                out.append(
                    Temperature(
                        chip=chip,
                        label=e.label or chip,
                        current=float(e.current),
                        high=_limit(e.high),
                        critical=_limit(e.critical),
                    )
                )
        return tuple(out)

    def _fans(self) -> tuple[Fan, ...]:
        data = _safe(psutil.sensors_fans) if hasattr(psutil, "sensors_fans") else None
        out: list[Fan] = []
        for chip, entries in (data or {}).items():
            for e in entries:
                # 0 rpm stays: a stopped fan is exactly what someone may be looking for
                if e.current is None or not (0 <= e.current < _FAN_MAX_RPM):
                    continue
                out.append(Fan(chip=chip, label=e.label or chip, rpm=float(e.current)))
        return tuple(out)

    def _battery(self) -> Battery | None:
        b = _safe(psutil.sensors_battery) if hasattr(psutil, "sensors_battery") else None
        if b is None or b.percent is None:
            return None
        secs = b.secsleft
        unknown = (
            secs in (psutil.POWER_TIME_UNLIMITED, psutil.POWER_TIME_UNKNOWN)
            or not isinstance(secs, (int, float))
            or secs < 0
        )
        plugged = b.power_plugged if isinstance(b.power_plugged, bool) else None
        left = None if unknown else float(secs)
        return Battery(percent=float(b.percent), plugged=plugged, seconds_left=left)

    def _powercap(self, now: float, denied: set[str]) -> tuple[tuple[PowerReading, ...], bool]:
        """Watts per zone from energy deltas; also whether some zone awaits its second read."""
        base = self.sys_root / "class" / "powercap"
        zones = _listdir(base)
        names: dict[str, str] = {}
        for z in zones:
            names[z] = _read_text(base / z / "name") or z
        seen: dict[str, tuple[int, float]] = {}
        labels: set[str] = set()
        out: list[PowerReading] = []
        pending = False
        for z in zones:
            zdir = base / z
            try:
                uj = _read_int(zdir / "energy_uj")
            except _Unreadable as exc:
                denied.add(str(exc))
                continue
            if uj is None or uj < 0:
                continue  # a control type folder (intel-rapl) or a broken zone
            seen[z] = (uj, now)
            prev = self._energy.get(z)
            if prev is None:
                pending = True
                continue
            watts = self._watts(zdir, prev, uj, now)
            if watts is None:
                continue
            out.append(PowerReading("powercap", self._zone_label(z, names, labels), watts))
        self._energy = seen
        return tuple(out), pending

    @staticmethod
    def _watts(zdir: Path, prev: tuple[int, float], uj: int, now: float) -> float | None:
        old, t0 = prev
        dt = now - t0
        if dt <= 0:
            return None
        delta = uj - old
        if delta < 0:
            # The counter wraps at max_energy_range_uj (about 262 kJ, minutes at full load).
            try:
                rng = _read_int(zdir / "max_energy_range_uj")
            except _Unreadable:
                rng = None
            if not rng or old > rng:
                return None  # a reset, not a wrap: skip one reading rather than guess
            delta += rng + 1
        watts = delta / 1e6 / dt
        return watts if 0 <= watts < _WATTS_MAX else None

    @staticmethod
    def _zone_label(zone: str, names: dict[str, str], used: set[str]) -> str:
        label = names.get(zone, zone)
        # Subzones (intel-rapl:0:0 "core") are named only within their package.
        parent = zone.rsplit(":", 1)[0]
        if zone.count(":") >= 2 and parent in names:
            label = f"{names[parent]}/{label}"
        if label in used:
            # intel-rapl-mmio:0 repeats intel-rapl:0's "package-0"
            label = f"{label} ({zone})"
        used.add(label)
        return label

    def _hwmon_power(self, denied: set[str]) -> tuple[PowerReading, ...]:
        base = self.sys_root / "class" / "hwmon"
        out: list[PowerReading] = []
        for h in _listdir(base):
            hdir = base / h
            name = _read_text(hdir / "name") or _read_text(hdir / "device" / "name") or h
            # Older drivers keep their attributes in device/ instead of the hwmon folder.
            for d in (hdir, hdir / "device"):
                chans: dict[int, dict[str, str]] = {}
                for f in _listdir(d):
                    m = _POWER_FILE.match(f)
                    if m:
                        chans.setdefault(int(m.group(1)), {})[m.group(2)] = f
                for idx in sorted(chans):
                    # Per channel, the instantaneous value when there is one, else the average.
                    uw: int | None = None
                    for kind in ("input", "average"):
                        file = chans[idx].get(kind)
                        if file is None:
                            continue
                        try:
                            uw = _read_int(d / file)
                        except _Unreadable:
                            denied.add(file)
                            continue
                        if uw is not None:
                            break
                    if uw is None:
                        continue
                    watts = uw / 1e6
                    if not 0 <= watts < _WATTS_MAX:
                        continue
                    label = _read_text(d / f"power{idx}_label") or f"{name} power{idx}"
                    out.append(PowerReading("hwmon", label, watts))
        return tuple(out)

    # -- notes ----------------------------------------------------------------------------

    def _note(self, s: Sensors, denied: set[str], pending: bool) -> str:
        if denied:
            files = sorted(denied, key=_natural)
            shown = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
            verb = "is" if len(files) == 1 else "are"
            if _euid() == 0:
                return (
                    f"Power readings are blocked: {shown} {verb} not readable even as root "
                    "(a container or security policy hides it)."
                )
            return f"Power readings need root: {shown} {verb} not readable."
        if not s.empty:
            return ""
        if pending:
            return "Power readings start with the next sample (energy counters need two reads)."
        sysfs = self.sys_root
        has_hwmon = bool(_listdir(sysfs / "class" / "hwmon"))
        has_thermal = any(
            z.startswith("thermal_zone") for z in _listdir(sysfs / "class" / "thermal")
        )
        has_powercap = bool(_listdir(sysfs / "class" / "powercap"))
        if not (has_hwmon or has_thermal or has_powercap):
            where = f"no {sysfs}/class/hwmon, {sysfs}/class/thermal or powercap entries"
            virt = self._virtualization()
            if virt:
                return f"No hardware sensors are exposed: this looks like {virt} ({where})."
            return f"No hardware sensors are exposed ({where})."
        if not self.use_psutil:
            return (
                "Sensor chips exist but expose no power readings (temperatures and fans are off)."
            )
        return "The sensor chips found expose no temperature, fan, power or battery readings."

    def _virtualization(self) -> str:
        if self._virt is None:
            self._virt = self._detect_virtualization()
        return self._virt

    def _detect_virtualization(self) -> str:
        """ "a container", "a virtual machine (QEMU)", both, or "" — from cheap file checks only."""
        container = any((self.fs_root / p).exists() for p in (".dockerenv", "run/.containerenv"))
        if not container:
            cg = (_read_text(self.proc_root / "1" / "cgroup") or "").lower()
            container = any(w in cg for w in _CONTAINER_CGROUP_WORDS)
        vm = ""
        dmi = self.sys_root / "class" / "dmi" / "id"
        for f in ("sys_vendor", "product_name"):
            text = _read_text(dmi / f) or ""
            if any(v in text.lower() for v in _VM_VENDORS):
                vm = text
                break
        if not vm:
            hyp = _read_text(self.sys_root / "hypervisor" / "type")
            if hyp:
                vm = hyp
        if not vm and _cpu_has_hypervisor_flag(self.proc_root / "cpuinfo"):
            vm = "hypervisor"
        if not vm:
            vm_text = ""
        elif vm == "hypervisor":
            vm_text = "a virtual machine"
        else:
            vm_text = f"a virtual machine ({vm})"
        if container and vm_text:
            return f"a container in {vm_text}"
        if container:
            return "a container"
        return vm_text


def _cpu_has_hypervisor_flag(path: Path) -> bool:
    # Only the first "flags" line matters; stop there so a 128-CPU cpuinfo is not read whole.
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return " hypervisor" in line
    except OSError:
        pass
    return False


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1
