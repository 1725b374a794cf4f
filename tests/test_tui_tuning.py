"""The Tuning panel and its keys, driven as a user would: a real Monitor on a ManualClock finds
a real memory bottleneck in the gauges fed to it, its tuner proposes, Pilot presses a, x, r,
R (and confirms), m and q, and the assertions read what the panel shows.

The tuner acts through ``FakeKnobs`` (tests/test_tuner.py), an in-process double at the
actuator boundary; the real knob actuator through the real socket is tests/test_tuner_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.screen import screen_monitor, screen_text
from tests.test_tuner import BUFFERS, FakeKnobs
from vtmon.analysis.common import MIB
from vtmon.clock import ManualClock
from vtmon.engine.monitor import Monitor
from vtmon.model import ActionState, Batch, Kind, Knob, SeriesKey, make_tags
from vtmon.store.journal import MemoryJournal
from vtmon.tui import keys
from vtmon.tui.app import VtmonApp
from vtmon.tui.help import help_text
from vtmon.tui.live import LiveStatic
from vtmon.tui.tuning import ConfirmScreen, QuitScreen, TuningPanel
from vtmon.tuning.tuner import Tuner

S = ActionState
HEAP = SeriesKey("voice.memory_heap_used", make_tags({"component": "voice-engine"}), Kind.GAUGE)
API_HEAP = SeriesKey("api.memory_heap_used", make_tags({"component": "api-server"}), Kind.GAUGE)
API_BUF = Knob("api.buffer_kb", 32, 8, 64, step=1, component="api-server", kind="buffers")


class Rig:
    def __init__(self, monitor: Monitor, clock: ManualClock, fake: FakeKnobs) -> None:
        self.monitor, self.clock, self.fake = monitor, clock, fake
        self.heap = {HEAP: 172.0}

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(1.0)
            batch = Batch(received=self.clock.time())
            for key, mb in self.heap.items():
                batch.gauges[key] = [(False, mb * MIB)]
                batch.accepted += 1
            self.monitor.submit(batch)
            self.monitor.tick()

    @property
    def tuner(self) -> Tuner:
        return self.monitor.tuner


@pytest.fixture
def rig(tmp_path: Path, clock: ManualClock) -> Rig:
    monitor = screen_monitor(tmp_path, clock)
    journal = MemoryJournal()
    fake = FakeKnobs(journal, {BUFFERS.name: BUFFERS, API_BUF.name: API_BUF})
    monitor.tuner = Tuner(monitor.config, journal, [fake])
    r = Rig(monitor, clock, fake)
    r.tick(40)  # the memory rule fires after its pending period; a proposal follows
    assert [p.id for p in monitor.tuner.proposals()] == ["a1"]
    return r


def panel_text(app: VtmonApp) -> str:
    return app.main_screen.query_one("#tuning-text", LiveStatic).shown_text


async def show(pilot, rig: Rig, n: int = 1) -> None:  # type: ignore[no-untyped-def]
    rig.tick(n)
    await pilot.pause()


async def test_a_proposal_is_shown_and_a_approves_it(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        text = panel_text(app)
        assert "▸ a1   PROPOSED   [knob ask] Reduce buffer sizes in voice-engine: " in text
        assert "voice.audio_buffer_kb 64 -> 45" in text
        assert "why  memory:voice-engine (high): voice-engine" in text
        assert "gain memory down by about 20 % (learned effectiveness 0.70)" in text
        panel = app.main_screen.query_one(TuningPanel)
        assert panel.border_title == "Tuning · 1 proposal"
        assert "knob ask · process ask · command ask · m mode" in screen_text(app)
        await pilot.press("a")
        await pilot.pause()
        assert any("Approved a1" in n.message for n in app._notifications)
        await show(pilot, rig)
        assert rig.fake.calls[0].op == "apply"
        text = panel_text(app)
        assert "a1   EVALUATING 1m10s left · memory voice-engine 172 MB before  Reduce" in text
        assert app.main_screen.query_one(TuningPanel).border_title == "Tuning · 1 applied"
        rig.heap = {HEAP: 130.0}
        await show(pilot, rig, 30)
        assert "memory voice-engine 172 MB -> 130 MB (-24 %) so far" in panel_text(app)
        await show(pilot, rig, 41)
        text = panel_text(app)
        assert "a1   KEPT       1.00 memory voice-engine 172 MB -> 130 MB (-24 %)  Reduce" in text


async def test_x_rejects_and_the_history_says_so(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        await pilot.press("x")
        await show(pilot, rig)
        assert rig.tuner.get("a1").state is S.REJECTED  # type: ignore[union-attr]
        text = panel_text(app)
        assert "a1   REJECTED" in text and "not proposed again for 5 min" in text
        assert "No applicable action for memory:voice-engine" in text
        assert not rig.fake.calls


async def test_r_reverts_the_selected_applied_action_at_once(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        await pilot.press("a")
        await show(pilot, rig, 5)
        await pilot.press("r")
        await pilot.pause()
        assert any("Reverting a1" in n.message for n in app._notifications)
        await show(pilot, rig)
        assert [(c.op, c.value) for c in rig.fake.calls] == [("apply", 45.0), ("revert", 64)]
        assert "a1   REVERTED" in panel_text(app)
        assert rig.fake.knobs[BUFFERS.name].value == 64


async def test_shift_r_asks_then_reverts_everything(rig: Rig) -> None:
    rig.heap[API_HEAP] = 90.0  # a second component over its budget: a second proposal
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig, 40)
        for p in rig.tuner.proposals():
            rig.tuner.approve(p.id)
        await show(pilot, rig)
        assert {a.state for a in rig.tuner.actions()} == {S.EVALUATING}
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Revert all 2 applied tuning actions?" in screen_text(app)
        await pilot.press("n")  # no: nothing happens
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await show(pilot, rig)
        assert [c.op for c in rig.fake.calls] == ["apply", "apply"]
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await show(pilot, rig)
        assert [c.op for c in rig.fake.calls].count("revert") == 2
        assert panel_text(app).count("REVERTED") == 2


async def test_m_cycles_the_mode_of_the_selected_rows_class(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        await pilot.press("m")
        await pilot.pause()
        assert rig.tuner.modes()["knob"] == "auto"
        assert any("Knob actions: auto" in n.message for n in app._notifications)
        await show(pilot, rig)  # auto applies the waiting proposal
        assert rig.fake.calls and rig.fake.calls[0].op == "apply"
        assert "knob auto · process ask · command ask · m mode" in screen_text(app)
        await pilot.press("m")
        await pilot.pause()
        assert rig.tuner.modes()["knob"] == "off"


async def test_tab_and_arrows_choose_the_row_the_keys_act_on(rig: Rig) -> None:
    rig.heap[API_HEAP] = 90.0
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig, 40)
        ids = [p.id for p in rig.tuner.proposals()]
        assert ids == ["a2", "a1"]  # newest first
        panel = app.main_screen.query_one(TuningPanel)
        while not panel.has_focus:
            await pilot.press("tab")
        await pilot.press("down")
        await pilot.pause()
        assert panel.selected().id == "a1"  # type: ignore[union-attr]
        assert "▸ a1" in panel_text(app)
        await pilot.press("x")
        await show(pilot, rig)
        assert rig.tuner.get("a1").state is S.REJECTED  # type: ignore[union-attr]
        assert rig.tuner.get("a2").state is S.PROPOSED  # type: ignore[union-attr]


async def test_quitting_with_applied_actions_asks_first(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        rig.tuner.approve("a1")
        await show(pilot, rig)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen)
        text = screen_text(app)
        assert "1 tuning action applied (a1)" in text
        assert "Revert and quit (r)" in text and "Keep and quit (k)" in text
        await pilot.press("escape")  # cancel: still running
        await pilot.pause()
        assert not isinstance(app.screen, QuitScreen) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()
    assert rig.tuner.keep_at_exit
    assert rig.monitor.stop_tuning() == (
        "Left 1 action applied; the next start offers to revert them."
    )


async def test_revert_and_quit_reverts_on_the_way_out(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        rig.tuner.approve("a1")
        await show(pilot, rig)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
    assert not rig.tuner.keep_at_exit
    # what `vtmon` does after the app returns, while applications are still connected
    assert rig.monitor.stop_tuning() == "Reverted 1 action as vtmon stopped."
    assert rig.fake.knobs[BUFFERS.name].value == 64


async def test_quitting_with_nothing_applied_does_not_ask(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def test_the_footer_shows_a_x_r_only_when_they_have_something_to_act_on(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(160, 45)) as pilot:
        await show(pilot, rig)
        footer = screen_text(app).splitlines()[-1]
        assert "a Approve" in footer and "x Reject" in footer and "r Revert" not in footer
        rig.tuner.approve("a1")
        await show(pilot, rig)
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "a Approve" not in footer and "r Revert" in footer


async def test_a_small_screen_shows_one_summary_line(rig: Rig) -> None:
    app = VtmonApp(rig.monitor)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, rig)
        assert panel_text(app) == "1 proposal · a approve · x reject"


def test_the_keys_are_in_the_registry_footer_help_and_palette() -> None:
    for key_id, key in (
        ("approve", "a"),
        ("reject", "x"),
        ("revert", "r"),
        ("revert-all", "R"),
        ("mode", "m"),
    ):
        action = keys.BY_ID[key_id]
        assert action.key == key and action.palette
    shown = {b.key for b in keys.bindings() if b.show}
    assert {"a", "x", "r"} <= shown and "m" not in shown  # the panel's border says "m mode"
    help_plain = help_text().plain
    assert "Revert all" in help_plain and "Tab to the Tuning panel" in help_plain
