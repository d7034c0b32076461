"""agent.offload.ShareBalancer: the render share moves towards the process with spare CPU."""

from __future__ import annotations

import os
import time
import types
from typing import Any

import pytest

from agent import offload


class _Clocks:
    """The balancer's clocks and the helper's CPU, set by the test."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.own = 10.0
        self.helper = 5.0

    def advance(self, seconds: float, *, own_busy: float, helper_busy: float) -> None:
        self.wall += seconds
        self.own += seconds * own_busy
        self.helper += seconds * helper_busy


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> _Clocks:
    c = _Clocks()
    monkeypatch.setattr(offload, "time", types.SimpleNamespace(monotonic=lambda: c.wall,
                                                               process_time=lambda: c.own))
    monkeypatch.setattr(offload, "process_cpu_seconds", lambda pid: c.helper if pid else None)
    return c


def _balancer(pid: Any = 4242) -> offload.ShareBalancer:
    return offload.ShareBalancer(types.SimpleNamespace(pid=pid), 0.5)  # type: ignore[arg-type]


def test_the_share_grows_while_the_agent_is_the_busier_process_up_to_its_cap(clocks: _Clocks) -> None:
    b = _balancer()
    assert b.update() == 0.5  # the first reading only sets the baseline
    shares = []
    for _ in range(12):
        clocks.advance(0.5, own_busy=0.95, helper_busy=0.4)
        shares.append(b.update())
    assert shares[:3] == pytest.approx([0.55, 0.6, 0.65])
    assert shares[-1] == pytest.approx(0.85)  # hi


def test_the_share_shrinks_while_the_helper_is_busier_down_to_its_floor(clocks: _Clocks) -> None:
    b = _balancer()
    b.update()
    for _ in range(12):
        clocks.advance(0.5, own_busy=0.5, helper_busy=1.0)
        b.update()
    assert b.share == pytest.approx(0.2)  # lo


def test_a_balanced_pair_keeps_the_share_and_readings_within_the_interval_change_nothing(
        clocks: _Clocks) -> None:
    b = _balancer()
    b.update()
    clocks.advance(0.5, own_busy=0.9, helper_busy=0.88)  # within the margin
    assert b.update() == 0.5
    clocks.advance(0.1, own_busy=1.0, helper_busy=0.0)  # sooner than the interval: not looked at
    assert b.update() == 0.5


def test_a_restarted_helper_is_a_new_baseline_not_a_negative_reading(clocks: _Clocks) -> None:
    helper = types.SimpleNamespace(pid=1)
    b = offload.ShareBalancer(helper, 0.5)  # type: ignore[arg-type]
    b.update()
    helper.pid = 2
    clocks.helper = 0.0  # the new process's CPU starts from zero
    clocks.advance(0.5, own_busy=1.0, helper_busy=0.0)
    assert b.update() == 0.5
    clocks.advance(0.5, own_busy=1.0, helper_busy=0.1)
    assert b.update() == pytest.approx(0.55)


def test_without_a_helper_the_share_stays(clocks: _Clocks) -> None:
    b = _balancer(pid=None)
    for _ in range(3):
        clocks.advance(0.5, own_busy=1.0, helper_busy=0.0)
        assert b.update() == 0.5


def test_process_cpu_seconds_reads_a_real_process() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc on this host (the balancer keeps its share there)")
    before = offload.process_cpu_seconds(os.getpid())
    t = time.process_time()
    while time.process_time() - t < 0.05:  # spend some CPU
        pass
    after = offload.process_cpu_seconds(os.getpid())
    assert before is not None and after is not None and after > before
    assert offload.process_cpu_seconds(2**22 + 12345) is None  # no such process
