"""SensorReader on fake sysfs trees laid out like real machines (symlinks and all)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from vtmon.engine import sensors as sensors_mod
from vtmon.engine.sensors import SensorReader
from vtmon.model import Battery, PowerReading

MAX_RANGE = 262_143_328_850  # a real RAPL package's max_energy_range_uj


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def add_rapl(sys: Path, energy: int = 1_000_000, core: int = 500_000, mode: int = 0o400) -> None:
    """intel-rapl the way the kernel lays it out: zones live under devices/, the class folder
    links to each zone and subzone flatly, and the control type itself has no energy_uj."""
    dev = sys / "devices" / "virtual" / "powercap" / "intel-rapl"
    write(dev / "enabled", "1")
    pkg = dev / "intel-rapl:0"
    write(pkg / "name", "package-0")
    write(pkg / "energy_uj", str(energy), mode)  # root-only since Linux 5.10
    write(pkg / "max_energy_range_uj", str(MAX_RANGE))
    sub = pkg / "intel-rapl:0:0"
    write(sub / "name", "core")
    write(sub / "energy_uj", str(core), mode)
    write(sub / "max_energy_range_uj", str(MAX_RANGE))
    cls = sys / "class" / "powercap"
    cls.mkdir(parents=True, exist_ok=True)
    for target in (dev, pkg, sub):
        (cls / target.name).symlink_to(target)


def set_energy(sys: Path, zone: str, uj: int) -> None:
    path = sys / "class" / "powercap" / zone / "energy_uj"
    mode = path.stat().st_mode
    path.chmod(0o600)
    path.write_text(f"{uj}\n")
    path.chmod(mode)


def add_hwmon(sys: Path) -> None:
    dev = sys / "devices" / "pci0000:00" / "0000:00:18.3" / "hwmon" / "hwmon0"
    write(dev / "name", "k10temp")
    write(dev / "power1_input", "12500000")  # microwatts
    write(dev / "power1_label", "PPT")
    write(dev / "power2_average", "3250000")  # no _input and no label for channel 2
    write(dev / "in0_input", "1200")  # voltages are not our business
    cls = sys / "class" / "hwmon"
    cls.mkdir(parents=True, exist_ok=True)
    (cls / "hwmon0").symlink_to(dev)


def by_label(readings: tuple[PowerReading, ...]) -> dict[str, PowerReading]:
    return {r.label: r for r in readings}


# ---------------------------------------------------------------------------------------------
# powercap


def test_powercap_watts_from_two_reads(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_rapl(sys)
    reader = SensorReader(sys, use_psutil=False)
    first = reader.read(100.0)
    assert first.power == ()  # energy needs two reads
    assert "next sample" in first.note

    set_energy(sys, "intel-rapl:0", 1_000_000 + 20_000_000)  # 20 J in 2 s
    set_energy(sys, "intel-rapl:0:0", 500_000 + 7_000_000)  # 7 J in 2 s
    second = reader.read(102.0)
    p = by_label(second.power)
    assert set(p) == {"package-0", "package-0/core"}
    assert p["package-0"].watts == pytest.approx(10.0)
    assert p["package-0/core"].watts == pytest.approx(3.5)
    assert all(r.source == "powercap" for r in second.power)
    assert second.note == ""


def test_powercap_wraparound_uses_max_energy_range(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_rapl(sys, energy=MAX_RANGE - 1_000_000, core=10)
    reader = SensorReader(sys, use_psutil=False)
    reader.read(0.0)
    set_energy(sys, "intel-rapl:0", 4_000_000 - 1)  # 1 J to the top, wrap, 4 J more
    set_energy(sys, "intel-rapl:0:0", 10)
    p = by_label(reader.read(1.0).power)
    assert p["package-0"].watts == pytest.approx(5.0)
    assert p["package-0/core"].watts == pytest.approx(0.0)


def test_powercap_reset_without_range_is_skipped_not_negative(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_rapl(sys, energy=9_000_000)
    (sys / "class" / "powercap" / "intel-rapl:0" / "max_energy_range_uj").unlink()
    reader = SensorReader(sys, use_psutil=False)
    reader.read(0.0)
    set_energy(sys, "intel-rapl:0", 1_000)
    set_energy(sys, "intel-rapl:0:0", 600_000)
    p = by_label(reader.read(1.0).power)
    assert "package-0" not in p
    assert p["package-0/core"].watts == pytest.approx(0.1)
    # the reset value is the new baseline
    set_energy(sys, "intel-rapl:0", 2_001_000)
    assert by_label(reader.read(2.0).power)["package-0"].watts == pytest.approx(2.0)


def test_powercap_same_instant_gives_no_watts(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_rapl(sys)
    reader = SensorReader(sys, use_psutil=False)
    reader.read(5.0)
    assert reader.read(5.0).power == ()


# ---------------------------------------------------------------------------------------------
# hwmon


def test_hwmon_power_input_label_and_average(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_hwmon(sys)
    s = SensorReader(sys, use_psutil=False).read(1.0)
    p = by_label(s.power)
    assert set(p) == {"PPT", "k10temp power2"}
    assert p["PPT"] == PowerReading("hwmon", "PPT", 12.5)
    assert p["k10temp power2"].watts == pytest.approx(3.25)
    assert s.note == ""


def test_hwmon_attributes_in_device_folder_and_garbage(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    hw = sys / "class" / "hwmon" / "hwmon3"
    write(hw / "device" / "name", "acpi_power_meter")  # older drivers: everything in device/
    write(hw / "device" / "power1_average", "98000000")
    write(hw / "device" / "power2_input", "not a number")
    write(hw / "device" / "power3_input", "-5")
    (hw / "device" / "power4_input").mkdir()
    s = SensorReader(sys, use_psutil=False).read(1.0)
    assert s.power == (PowerReading("hwmon", "acpi_power_meter power1", 98.0),)


def test_both_sources_together(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    add_rapl(sys)
    add_hwmon(sys)
    reader = SensorReader(sys, use_psutil=False)
    first = reader.read(0.0)
    assert {r.source for r in first.power} == {"hwmon"}
    assert first.note == ""  # something to show, so no "next sample" note
    set_energy(sys, "intel-rapl:0", 1_000_000 + 30_000_000)
    second = reader.read(1.0)
    assert {r.source for r in second.power} == {"hwmon", "powercap"}


# ---------------------------------------------------------------------------------------------
# nothing there


def test_empty_tree_says_no_sensors(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    s = SensorReader(tmp_path / "sys", use_psutil=False).read(1.0)
    assert s.empty
    assert s.note.startswith("No hardware sensors are exposed")
    assert "looks like" not in s.note  # nothing in the fake tree says container or VM
    assert "class/hwmon" in s.note and s.note.endswith(".")


def test_empty_tree_in_a_container(tmp_path: Path) -> None:
    (tmp_path / "sys" / "class" / "thermal").mkdir(parents=True)  # present but empty, as here
    (tmp_path / ".dockerenv").touch()
    s = SensorReader(tmp_path / "sys", use_psutil=False).read(1.0)
    assert "this looks like a container (" in s.note


def test_empty_tree_in_a_container_by_cgroup(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    write(tmp_path / "proc" / "1" / "cgroup", "0::/kubepods/besteffort/pod1234/abcdef")
    s = SensorReader(tmp_path / "sys", use_psutil=False).read(1.0)
    assert "this looks like a container (" in s.note


def test_empty_tree_in_a_vm(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    write(sys / "class" / "dmi" / "id" / "sys_vendor", "QEMU")
    write(sys / "class" / "dmi" / "id" / "product_name", "Standard PC (Q35 + ICH9, 2009)")
    s = SensorReader(sys, use_psutil=False).read(1.0)
    assert "this looks like a virtual machine (QEMU)" in s.note


def test_empty_tree_in_a_container_in_a_microvm(tmp_path: Path) -> None:
    # Firecracker has no DMI at all; the CPU flag is the only cheap hint.
    (tmp_path / "sys").mkdir()
    (tmp_path / ".dockerenv").touch()
    write(
        tmp_path / "proc" / "cpuinfo", "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor lahf_lm"
    )
    s = SensorReader(tmp_path / "sys", use_psutil=False).read(1.0)
    assert "this looks like a container in a virtual machine (" in s.note


def test_sensor_chips_without_readings(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    write(sys / "class" / "hwmon" / "hwmon0" / "name", "nvme")
    write(sys / "class" / "hwmon" / "hwmon0" / "temp1_input", "41000")
    s = SensorReader(sys, use_psutil=False).read(1.0)
    assert s.empty and s.note and "No hardware sensors" not in s.note


def test_garbage_tree_never_raises(tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    write(sys / "class" / "powercap", "a file where a folder should be")
    write(sys / "class" / "hwmon" / "hwmon0", "also a file")
    reader = SensorReader(sys, use_psutil=False)
    assert reader.read(1.0).empty
    assert reader.read(2.0).empty


# ---------------------------------------------------------------------------------------------
# permission denied


def _read_as_nobody(sys: Path) -> dict[str, object]:
    """Read the tree in a forked child that dropped to uid 65534, as a non-root vtmon would.

    Root reads a mode-000 file regardless, so in-process chmod cannot produce EACCES for root.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            reader = SensorReader(sys, use_psutil=False)
            reader.read(0.0)
            s = reader.read(1.0)
            out = {"note": s.note, "power": [[p.source, p.label, p.watts] for p in s.power]}
            os.write(w, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        pytest.skip("could not drop privileges to uid 65534 here")
    return json.loads(data)


@pytest.mark.parametrize("with_hwmon", [True, False])
def test_unreadable_energy_uj_is_skipped_and_noted(tmp_path: Path, with_hwmon: bool) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    if os.geteuid() != 0:
        sys = tmp_path / "sys"
        add_rapl(sys, mode=0o000)
        if with_hwmon:
            add_hwmon(sys)
        reader = SensorReader(sys, use_psutil=False)
        reader.read(0.0)
        s = reader.read(1.0)
        result = {"note": s.note, "power": [[p.source, p.label, p.watts] for p in s.power]}
    else:
        # pytest's tmp_path sits under a 0700 folder the child could not enter
        root = Path(tempfile.mkdtemp(prefix="vtmon-sensors-"))
        try:
            root.chmod(0o755)
            sys = root / "sys"
            add_rapl(sys, mode=0o400)  # root-owned and 0400, exactly as the kernel ships it
            if with_hwmon:
                add_hwmon(sys)
            for d, _, _ in os.walk(root):
                os.chmod(d, 0o755)
            result = _read_as_nobody(sys)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    assert result["note"] == "Power readings need root: energy_uj is not readable."
    # what could be read still is; with nothing else, the root note wins over "no sensors"
    expected = ["PPT", "k10temp power2"] if with_hwmon else []
    assert [p[1] for p in result["power"]] == expected  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# psutil mapping (this machine has no sensors, so psutil's answers are faked)

T = namedtuple("T", "label current high critical")
F = namedtuple("F", "label current")
B = namedtuple("B", "percent secsleft power_plugged")


def test_psutil_temperatures_fans_battery_are_mapped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    temps = {
        "coretemp": [T("Package id 0", 55.0, 80.0, 100.0), T("", 50.0, None, None)],
        "nvme": [T("Sensor 2", 65261.85, 65261.85, 65261.85), T("Composite", 38.9, 84.8, -273.2)],
        "acpitz": [T("", None, None, None), T("", -273.0, None, None)],
    }
    fans = {"nct6775": [F("fan1", 1200), F("fan2", 0), F("fan3", 65535)]}
    monkeypatch.setattr(sensors_mod.psutil, "sensors_temperatures", lambda: temps, raising=False)
    monkeypatch.setattr(sensors_mod.psutil, "sensors_fans", lambda: fans, raising=False)
    battery = [B(87.0, psutil.POWER_TIME_UNLIMITED, True)]
    monkeypatch.setattr(sensors_mod.psutil, "sensors_battery", lambda: battery[0], raising=False)
    (tmp_path / "sys").mkdir()
    reader = SensorReader(tmp_path / "sys")
    s = reader.read(1.0)
    assert [(t.chip, t.label, t.current) for t in s.temperatures] == [
        ("coretemp", "Package id 0", 55.0),
        ("coretemp", "coretemp", 50.0),
        ("nvme", "Composite", 38.9),
    ]
    assert s.temperatures[0].high == 80.0 and s.temperatures[0].critical == 100.0
    assert s.temperatures[2].critical is None  # -273.2 is a sentinel, not a limit
    assert [(f.label, f.rpm) for f in s.fans] == [("fan1", 1200.0), ("fan2", 0.0)]
    assert s.battery == Battery(87.0, True, None)
    assert s.note == ""

    battery[0] = B(40.0, psutil.POWER_TIME_UNKNOWN, None)
    assert reader.read(2.0).battery == Battery(40.0, None, None)
    battery[0] = B(40.0, 5400, False)
    assert reader.read(3.0).battery == Battery(40.0, False, 5400)


def test_psutil_failures_are_swallowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom() -> None:
        raise OSError("EIO from a flaky embedded controller")

    for name in ("sensors_temperatures", "sensors_fans", "sensors_battery"):
        monkeypatch.setattr(sensors_mod.psutil, name, boom, raising=False)
    (tmp_path / "sys").mkdir()
    s = SensorReader(tmp_path / "sys").read(1.0)
    assert s.empty and s.note.startswith("No hardware sensors")
