"""The machine: CPU, memory, disk, network, pressure, and charts of their recent history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static

from vtmon.model import ProcessStats, ResourceHistory, Resources, Snapshot
from vtmon.tui import fmt
from vtmon.tui.charts import Chart, ChartData, Line
from vtmon.tui.live import LiveStatic, Panel, flow

LABEL_W = 6  # "Disk  ", so values line up in a column
STACK_BELOW = 48  # narrower than this, the two charts go one above the other
_SHORT = {"memory": "mem"}


def level(value: float | None, warn: float, bad: float) -> str:
    """A theme variable for a usage figure: nothing below ``warn``, then warning, then error."""
    if value is None:
        return ""
    if value >= bad:
        return "$error bold"
    if value >= warn:
        return "$warning"
    return ""


def meter(p: float | None, width: int = 10) -> Content:
    """``▕████░░░░░░▏`` for 0..100 %, coloured by level."""
    if p is None:
        return Content("")
    filled = round(max(0.0, min(100.0, p)) / 100 * width)
    style = level(p, 70, 90) or "$primary"
    return Content.assemble(
        ("▕", "dim"), ("█" * filled, style), ("░" * (width - filled), "dim"), ("▏", "dim")
    )


def _label(text: str) -> Content:
    return Content.styled(text.ljust(LABEL_W), "bold $secondary")


def _kv(key: str, value: str, style: str = "") -> Content:
    return Content.assemble((key + " ", "dim"), (value, style))


def resources_text(r: Resources, width: int = 80) -> Content:
    """Every reading as labelled rows; items flow onto indented lines when the panel is
    narrow instead of being cut."""
    if r.cpu_percent is None and not r.mem_total:
        return Content.from_markup("[dim]Reading the machine…[/dim]")
    lines: list[Content] = []
    indent = Content(" " * LABEL_W)

    cpu = [
        Content.assemble(
            (fmt.percent(r.cpu_percent).rjust(4), level(r.cpu_percent, 70, 90)),
            " ",
            meter(r.cpu_percent),
        )
    ]
    if r.load is not None:
        cpu.append(_kv("load", " ".join(f"{x:.2f}" for x in r.load)))
    if r.cpu_count:
        cpu.append(_kv("cores", str(r.cpu_count)))
    if r.iowait_percent is not None:
        cpu.append(_kv("iowait", fmt.percent(r.iowait_percent, 1), level(r.iowait_percent, 10, 30)))
    lines += flow(_label("CPU"), cpu, width)
    if r.per_cpu:
        # One cell per core, so even 64 cores take a line or two.
        room = max(8, width - LABEL_W)
        cells = "".join(fmt.spark_cell(p) for p in r.per_cpu)
        for i in range(0, len(cells), room):
            lines.append(Content.assemble(indent, (cells[i : i + room], "$primary")))

    mem = [
        Content.assemble(
            (fmt.percent(r.mem_percent).rjust(4), level(r.mem_percent, 80, 92)),
            " ",
            meter(r.mem_percent),
        ),
        Content(f"{fmt.size(r.mem_used)} / {fmt.size(r.mem_total)}"),
    ]
    lines += flow(_label("Mem"), mem, width)
    if r.swap_total:
        swap = [
            Content.assemble(
                (fmt.percent(r.swap_percent).rjust(4), level(r.swap_percent, 50, 80)),
                " ",
                meter(r.swap_percent),
            ),
            Content(f"{fmt.size(r.swap_used)} / {fmt.size(r.swap_total)}"),
        ]
        if r.swap_in_rate or r.swap_out_rate:
            swap.append(_kv("in", fmt.byte_rate(r.swap_in_rate), "$warning"))
            swap.append(_kv("out", fmt.byte_rate(r.swap_out_rate), "$warning"))
        lines += flow(_label("Swap"), swap, width)

    io = [
        _kv("read", fmt.byte_rate(r.disk_read_rate))
        + (
            Content.styled(f" {fmt.rate(r.disk_read_iops)} io/s", "dim")
            if r.disk_read_iops is not None
            else Content("")
        ),
        _kv("write", fmt.byte_rate(r.disk_write_rate))
        + (
            Content.styled(f" {fmt.rate(r.disk_write_iops)} io/s", "dim")
            if r.disk_write_iops is not None
            else Content("")
        ),
    ]
    io += [
        Content.assemble(
            (d.mount, "dim"),
            " ",
            (fmt.percent(d.percent), level(d.percent, 80, 92)),
            (f" of {fmt.size(d.total)}", "dim"),
        )
        for d in r.disks[:6]
    ]
    if len(r.disks) > 6:
        io.append(Content.styled(f"+{len(r.disks) - 6} more", "dim"))
    lines += flow(_label("Disk"), io, width)

    net = [_kv("rx", fmt.byte_rate(r.net_rx_rate)), _kv("tx", fmt.byte_rate(r.net_tx_rate))]
    if r.net_rx_packets is not None and r.net_tx_packets is not None:
        net.append(
            Content.styled(
                f"{fmt.rate(r.net_rx_packets)}/{fmt.rate(r.net_tx_packets)} pkt/s", "dim"
            )
        )
    if r.net_errors:
        net.append(_kv("errors", f"{fmt.rate(r.net_errors)}/s", "$warning bold"))
    lines += flow(_label("Net"), net, width)

    if r.process is not None:
        lines += flow(_label("Proc"), process_items(r.process, r.cpu_count), width)

    if r.pressure:
        psi = [Content.styled("some avg10", "dim")]
        psi += [
            _kv(
                _SHORT.get(p.resource, p.resource),
                fmt.percent(p.some_avg10, 1),
                level(p.some_avg10, 10, 25),
            )
            for p in r.pressure
        ]
        lines += flow(_label("PSI"), psi, width)
    elif r.pressure_note:
        lines += flow(
            _label("PSI"),
            [Content.styled(w, "dim italic") for w in r.pressure_note.split()],
            width,
            sep=" ",
        )
    return Content("\n").join(lines)


def process_items(p: ProcessStats, cores: int | None = None) -> list[Content]:
    """The watched process: name and pid, then its readings, or why there are none."""
    items = [Content.assemble((p.name or "process", "bold"), (f" {p.pid}", "dim"))]
    if not p.running:
        items.append(Content.styled("gone", "$error bold"))
    if p.cpu_percent is not None:
        # Of one core (top's way): 200 % is two busy cores; coloured by its share of all cores.
        share = p.cpu_percent / max(1, cores or 1)
        items.append(_kv("cpu", fmt.percent(p.cpu_percent), level(share, 70, 90)))
    if p.rss is not None:
        items.append(_kv("rss", fmt.size(p.rss)))
    if p.threads is not None:
        items.append(_kv("threads", str(p.threads)))
    if p.nice is not None:
        items.append(_kv("nice", str(p.nice)))
    if p.note:
        items += [Content.styled(w, "dim italic") for w in p.note.split()]
    return items


def _percent_tick(v: float) -> str:
    return f"{v:.0f}%"


def _bytes_tick(v: float) -> str:
    return fmt.size(v).replace(" ", "")


def cpu_mem_chart(h: ResourceHistory) -> ChartData:
    xs = tuple(t - h.t[-1] for t in h.t) if h.t else ()
    return ChartData(
        lines=(
            Line("cpu", xs, h.cpu, "chart-1"),
            Line("mem", xs, h.mem, "chart-2"),
        ),
        y_min=0.0,
        y_max=100.0,
        y_format=_percent_tick,
        x_span=max(10.0, -xs[0]) if xs else 0.0,
        message="collecting…",
    )


def io_net_chart(h: ResourceHistory) -> ChartData:
    xs = tuple(t - h.t[-1] for t in h.t) if h.t else ()
    return ChartData(
        lines=(
            Line("read", xs, h.disk_read, "chart-1"),
            Line("write", xs, h.disk_write, "chart-2"),
            Line("rx", xs, h.net_rx, "chart-3"),
            Line("tx", xs, h.net_tx, "chart-4"),
        ),
        y_min=0.0,
        y_format=_bytes_tick,
        binary=True,
        x_span=max(10.0, -xs[0]) if xs else 0.0,
        message="collecting…",
    )


class ResourcesPanel(Panel):
    def compose(self) -> ComposeResult:
        yield LiveStatic(id="resources-text")
        with Horizontal(id="resources-charts", classes="charts"):
            with Vertical(classes="chart-box"):
                yield Static(
                    Content.from_markup("[$chart-1]━ cpu %[/] [$chart-2]━ mem %[/]"),
                    classes="chart-legend",
                )
                yield Chart(id="cpu-chart", classes="chart")
            with Vertical(classes="chart-box"):
                yield Static(
                    Content.from_markup(
                        "[$chart-1]━ read[/] [$chart-2]━ write[/] "
                        "[$chart-3]━ rx[/] [$chart-4]━ tx[/] [dim]/s[/]"
                    ),
                    classes="chart-legend",
                )
                yield Chart(id="io-chart", classes="chart")

    def on_mount(self) -> None:
        self.border_title = "Resources"

    def render_snapshot(self, snap: Snapshot, window: str) -> None:
        width = self.content_size.width or 80
        self.set_class(width < STACK_BELOW, "-stacked")
        self.query_one("#resources-text", LiveStatic).show(resources_text(snap.resources, width))
        self.query_one("#cpu-chart", Chart).set_data(cpu_mem_chart(snap.resource_history))
        self.query_one("#io-chart", Chart).set_data(io_net_chart(snap.resource_history))
