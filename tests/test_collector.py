"""SystemCollector on the real machine (sanity only) and the PSI reader on fake /proc trees."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from vtmon.engine import collector as collector_mod
from vtmon.engine.collector import SystemCollector, parse_pressure, read_pressure
from vtmon.model import Pressure

RATE_FIELDS = (
    "swap_in_rate",
    "swap_out_rate",
    "disk_read_rate",
    "disk_write_rate",
    "disk_read_iops",
    "disk_write_iops",
    "net_rx_rate",
    "net_tx_rate",
    "net_rx_packets",
    "net_tx_packets",
    "net_errors",
)

PSI_CPU = (
    "some avg10=1.50 avg60=0.75 avg300=0.25 total=123456\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
PSI_MEMORY = (
    "some avg10=2.00 avg60=1.00 avg300=0.50 total=9999\n"
    "full avg10=1.25 avg60=0.50 avg300=0.10 total=8888\n"
)
PSI_IO = (
    "some avg10=10.00 avg60=5.00 avg300=2.50 total=77\n"
    "full avg10=8.00 avg60=4.00 avg300=2.00 total=66\n"
)


def make_proc(root: Path, files: dict[str, str]) -> Path:
    """A fake /proc holding just pressure/<name> files."""
    d = root / "proc" / "pressure"
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return root / "proc"


# ---------------------------------------------------------------------------------------------
# the real machine


def test_first_reading_has_no_rates_and_second_has_non_negative_ones() -> None:
    c = SystemCollector()
    first = c.collect(1000.0)
    for f in RATE_FIELDS:
        assert getattr(first, f) is None, f
    second = c.collect(1002.0)
    assert second.t == 1002.0
    for f in RATE_FIELDS:
        v = getattr(second, f)
        assert v is None or v >= 0.0, (f, v)
    # /proc/diskstats may be hidden in a container, but /proc/net/dev is always there
    assert second.net_rx_rate is not None and second.net_tx_rate is not None


def test_reading_is_sane() -> None:
    c = SystemCollector()
    c.collect(1.0)
    r = c.collect(2.0)
    assert r.cpu_count >= 1
    if r.cpu_percent is not None:
        assert 0.0 <= r.cpu_percent <= 100.0
        assert len(r.per_cpu) == r.cpu_count
        assert all(0.0 <= p <= 100.0 for p in r.per_cpu)
    if r.iowait_percent is not None:
        assert 0.0 <= r.iowait_percent <= 100.0
    assert r.mem_total > 0 and 0 <= r.mem_available <= r.mem_total
    assert r.mem_percent is not None and 0.0 <= r.mem_percent <= 100.0
    assert r.load is None or (len(r.load) == 3 and all(x >= 0 for x in r.load))
    assert r.disks and r.disks[0].mount == "/"
    for d in r.disks:
        assert d.total > 0 and 0 <= d.used <= d.total and 0.0 <= d.percent <= 100.0
    # either PSI is there, or we are told why not
    assert r.pressure or r.pressure_note
    assert {p.resource for p in r.pressure} <= {"cpu", "memory", "io"}


def test_no_time_elapsed_gives_no_rates() -> None:
    c = SystemCollector()
    c.collect(50.0)
    r = c.collect(50.0)
    for f in RATE_FIELDS:
        assert getattr(r, f) is None, f


def test_explicit_disk_paths_skip_pseudo_missing_and_duplicate_filesystems(tmp_path: Path) -> None:
    c = SystemCollector(disk_paths=["/proc", "/sys", str(tmp_path / "nope"), "/", "/usr"])
    mounts = [d.mount for d in c.collect(1.0).disks]
    assert mounts[0] == "/"
    assert "/proc" not in mounts and "/sys" not in mounts
    assert str(tmp_path / "nope") not in mounts
    assert mounts.count("/") == 1


Part = namedtuple("Part", "device mountpoint fstype opts")


def test_automatic_disks_skip_pseudo_network_and_file_mounts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    table = [
        Part("/dev/vda", "/", "ext4", "rw"),
        Part("/dev/sdz", str(hosts), "ext4", "rw"),  # docker's bind-mounted /etc/hosts
        Part("proc", "/proc", "proc", "rw"),
        Part("server:/x", "/net/dead", "nfs4", "rw"),  # statvfs could hang: never touched
        Part("sshfs", "/mnt/remote", "fuse.sshfs", "rw"),
        Part("shm", "/dev/shm", "ext4", "rw"),  # lies about its type: a separate real fs
    ]
    monkeypatch.setattr(collector_mod.psutil, "disk_partitions", lambda all=False: table)
    mounts = [d.mount for d in SystemCollector().collect(1.0).disks]
    assert mounts[0] == "/"
    for m in (str(hosts), "/proc", "/net/dead", "/mnt/remote"):
        assert m not in mounts
    if Path("/dev/shm").is_dir() and os.stat("/dev/shm").st_dev != os.stat("/").st_dev:
        assert "/dev/shm" in mounts


# ---------------------------------------------------------------------------------------------
# counters that go backwards, and psutil failing


Net = namedtuple(
    "Net",
    "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout",
)
Disk = namedtuple("Disk", "read_count write_count read_bytes write_bytes")


class FakeCounters:
    def __init__(self) -> None:
        self.net = {"eth0": Net(1000, 2000, 10, 20, 0, 0, 0, 0), "lo": Net(5, 5, 1, 1, 0, 0, 0, 0)}
        self.disk = Disk(100, 200, 4096, 8192)

    def net_io_counters(self, pernic: bool = False, nowrap: bool = True) -> dict[str, Net]:
        return dict(self.net)

    def disk_io_counters(self, perdisk: bool = False, nowrap: bool = True) -> Disk:
        return self.disk


def test_rates_from_deltas_skip_loopback_and_survive_resets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCounters()
    monkeypatch.setattr(collector_mod.psutil, "net_io_counters", fake.net_io_counters)
    monkeypatch.setattr(collector_mod.psutil, "disk_io_counters", fake.disk_io_counters)
    c = SystemCollector()
    c.collect(10.0)

    fake.net["eth0"] = Net(3000, 2000 + 4000, 30, 20 + 40, 1, 0, 1, 0)
    fake.net["lo"] = Net(10**9, 10**9, 10**6, 10**6, 0, 0, 0, 0)  # vtmon's own traffic: ignored
    fake.disk = Disk(110, 220, 4096 + 2048, 8192 + 4096)
    r = c.collect(12.0)
    assert r.net_tx_rate == pytest.approx(1000.0)
    assert r.net_rx_rate == pytest.approx(2000.0)
    assert r.net_tx_packets == pytest.approx(10.0)
    assert r.net_rx_packets == pytest.approx(20.0)
    assert r.net_errors == pytest.approx(1.0)
    assert r.disk_read_rate == pytest.approx(1024.0)
    assert r.disk_write_rate == pytest.approx(2048.0)
    assert r.disk_read_iops == pytest.approx(5.0)
    assert r.disk_write_iops == pytest.approx(10.0)

    # a reset (driver reload, disk removed): None for one reading, never negative
    fake.net["eth0"] = Net(0, 0, 0, 0, 0, 0, 0, 0)
    fake.disk = Disk(0, 0, 0, 0)
    r = c.collect(13.0)
    for f in ("net_rx_rate", "net_tx_rate", "disk_read_rate", "disk_write_iops"):
        assert getattr(r, f) is None, f
    # ... and the next reading counts from the new baseline
    fake.net["eth0"] = Net(500, 0, 0, 0, 0, 0, 0, 0)
    fake.disk = Disk(0, 0, 100, 0)
    r = c.collect(14.0)
    assert r.net_tx_rate == pytest.approx(500.0)
    assert r.disk_read_rate == pytest.approx(100.0)

    # an interface appearing does not count its whole lifetime as one second of traffic
    fake.net["wlan0"] = Net(10**12, 10**12, 0, 0, 0, 0, 0, 0)
    r = c.collect(15.0)
    assert r.net_tx_rate == pytest.approx(0.0)


def test_failing_psutil_leaves_fields_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*a: object, **k: object) -> None:
        raise psutil.AccessDenied()

    def missing(*a: object, **k: object) -> None:
        raise FileNotFoundError("/proc/vmstat")

    c = SystemCollector()
    for name in ("virtual_memory", "disk_io_counters", "net_io_counters", "disk_usage"):
        monkeypatch.setattr(collector_mod.psutil, name, denied)
    monkeypatch.setattr(collector_mod.psutil, "swap_memory", missing)
    monkeypatch.setattr(collector_mod.psutil, "cpu_times", denied)
    c.collect(1.0)
    r = c.collect(2.0)
    assert r.mem_percent is None and r.mem_total == 0
    assert r.swap_percent is None and r.swap_in_rate is None
    assert r.cpu_percent is None and r.per_cpu == ()
    assert r.disk_read_rate is None and r.net_rx_rate is None
    assert r.disks == ()
    assert r.t == 2.0
    assert len(c.history().t) == 2


CpuT = namedtuple(
    "CpuT", "user nice system idle iowait irq softirq steal guest guest_nice", defaults=(0.0,) * 6
)


def test_cpu_percent_from_cpu_time_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    times = [[CpuT(10, 0, 10, 100, 0), CpuT(10, 0, 10, 100, 0)]]
    monkeypatch.setattr(collector_mod.psutil, "cpu_times", lambda percpu=False: times[0])
    c = SystemCollector()  # baseline taken here
    # cpu0: 3 s user + 1 s iowait of 4 s; cpu1: 1 s system + 3 s idle; guest is inside user
    times[0] = [CpuT(13, 0, 10, 100, 1, guest=2), CpuT(10, 0, 11, 103, 0)]
    r = c.collect(1.0)
    assert r.per_cpu == pytest.approx((75.0, 25.0))
    assert r.cpu_percent == pytest.approx(50.0)
    assert r.iowait_percent == pytest.approx(12.5)
    assert r.cpu_count == 2
    # no clock tick since: the same answer, not a division by zero or a sudden 0 %
    r = c.collect(2.0)
    assert r.cpu_percent == pytest.approx(50.0)
    # iowait going backwards (proc(5) says it can) is clamped, not a negative share
    times[0] = [CpuT(13, 0, 10, 104, 0, guest=2), CpuT(10, 0, 11, 107, 0)]
    r = c.collect(3.0)
    assert r.cpu_percent == pytest.approx(0.0) and r.iowait_percent == pytest.approx(0.0)
    # a CPU coming online: new baseline, no per-CPU mismatch
    times[0] = [*times[0], CpuT(0, 0, 0, 0, 0)]
    r = c.collect(4.0)
    assert r.cpu_count == 3


# ---------------------------------------------------------------------------------------------
# history


def test_history_is_bounded_and_oldest_first() -> None:
    c = SystemCollector(history_len=5)
    assert c.history().t == ()
    for i in range(8):
        c.collect(100.0 + i)
    h = c.history()
    assert h.t == (103.0, 104.0, 105.0, 106.0, 107.0)
    for col in (h.cpu, h.mem, h.disk_read, h.disk_write, h.net_rx, h.net_tx):
        assert isinstance(col, tuple) and len(col) == 5
        assert all(isinstance(v, float) and v >= 0.0 for v in col)
    # the first reading's missing rates became 0.0 rather than None
    c2 = SystemCollector(history_len=3)
    c2.collect(1.0)
    assert c2.history().disk_read == (0.0,)


# ---------------------------------------------------------------------------------------------
# pressure stall information


def test_pressure_full_tree(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"cpu": PSI_CPU, "memory": PSI_MEMORY, "io": PSI_IO})
    pressure, note = read_pressure(proc)
    assert note == ""
    by = {p.resource: p for p in pressure}
    assert [p.resource for p in pressure] == ["cpu", "memory", "io"]
    assert by["cpu"] == Pressure("cpu", 1.5, 0.75, 0.25)  # all-zero system cpu "full" is dropped
    assert by["memory"] == Pressure("memory", 2.0, 1.0, 0.5, 1.25, 0.5, 0.1)
    assert by["io"].some_avg10 == 10.0 and by["io"].full_avg300 == 2.0


def test_pressure_cpu_without_full_line_and_with_real_full_values() -> None:
    p = parse_pressure("cpu", "some avg10=0.12 avg60=0.05 avg300=0.01 total=12345\n")
    assert p == Pressure("cpu", 0.12, 0.05, 0.01)
    # a cgroup's cpu.pressure has a meaningful cpu "full": keep it
    text = "some avg10=1 avg60=2 avg300=3 total=4\nfull avg10=0.5 avg60=0 avg300=0 total=9\n"
    p = parse_pressure("cpu", text)
    assert p is not None and p.full_avg10 == 0.5
    # memory full of zeros is a measurement (nothing stalled), not a placeholder
    text = "some avg10=0 avg60=0 avg300=0 total=0\nfull avg10=0 avg60=0 avg300=0 total=0\n"
    p = parse_pressure("memory", text)
    assert p is not None and p.full_avg10 == 0.0


def test_pressure_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    pressure, note = read_pressure(tmp_path / "proc")
    assert pressure == ()
    assert note.startswith("Pressure stall information is not available:")
    assert "pressure does not exist" in note and "CONFIG_PSI" in note
    assert note.count(".") >= 1 and note.endswith(".")


def test_pressure_malformed_file_costs_only_itself(tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"cpu": PSI_CPU, "memory": "some avg10=abc avg60=1 avg300=2 total=3\n", "io": PSI_IO},
    )
    pressure, note = read_pressure(proc)
    assert [p.resource for p in pressure] == ["cpu", "io"]
    assert "memory" in note and "could not be parsed" in note


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "full avg10=1 avg60=1 avg300=1 total=1\n",  # no "some"
        "some avg10=1 avg60=1\n",  # a missing average
        "some avg10=nan avg60=1 avg300=1 total=1\n",
        "some avg10=-1 avg60=1 avg300=1 total=1\n",
        "some avg10 avg60=1 avg300=1 total=1\n",
        "\x00\xff\xfe binary",
    ],
)
def test_pressure_malformed_inputs_do_not_raise(tmp_path: Path, text: str) -> None:
    proc = make_proc(tmp_path, {"cpu": text, "memory": text, "io": text})
    pressure, note = read_pressure(proc)
    assert pressure == ()
    assert note.startswith("Pressure stall information is not available:")


def test_pressure_partly_missing_and_directory_in_place_of_file(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"cpu": PSI_CPU})
    (proc / "pressure" / "io").mkdir()  # open() fails with IsADirectoryError, an OSError
    pressure, note = read_pressure(proc)
    assert [p.resource for p in pressure] == ["cpu"]
    assert note.startswith("Pressure stall information for memory and io is not available:")


def test_collector_reads_pressure_from_its_proc_root(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"cpu": PSI_CPU, "memory": PSI_MEMORY, "io": PSI_IO})
    r = SystemCollector(proc_root=proc).collect(1.0)
    assert len(r.pressure) == 3 and r.pressure_note == ""
    r = SystemCollector(proc_root=tmp_path / "elsewhere").collect(1.0)
    assert r.pressure == () and "does not exist" in r.pressure_note


def test_watched_process_cpu_and_memory() -> None:
    import os as _os

    c = SystemCollector(pid=_os.getpid())
    c.collect(1.0)
    sum(i * i for i in range(200_000))  # some CPU for this process between the readings
    p = c.collect(2.0).process
    assert p is not None and p.running
    assert p.pid == _os.getpid()
    assert p.rss and p.rss > 1_000_000
    assert p.cpu_percent is not None and p.cpu_percent >= 0


def test_watched_process_that_is_gone_says_so() -> None:
    import subprocess
    import sys as _sys

    child = subprocess.Popen([_sys.executable, "-c", "pass"])
    child.wait()
    r = SystemCollector(pid=child.pid).collect(1.0)
    assert r.process is not None and not r.process.running
    assert str(child.pid) in r.process.note
