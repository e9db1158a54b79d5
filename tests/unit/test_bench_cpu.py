"""The bench's CPU accounting (shell.bench.cpu): /proc parsing, process groups, span interpolation."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from shell.bench import cpu


def test_parse_stat_takes_ticks_after_a_name_with_spaces_and_parens() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    line = "4242 (rdk:broker (1) x) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 123 0 0"
    assert cpu.parse_stat(line) == (17, 290)


def test_machine_busy_leaves_out_idle_and_iowait() -> None:
    stat = "cpu  100 5 50 1000 30 0 7 0 0 0\ncpu0 50 2 25 500 15 0 3 0 0 0\n"
    assert cpu.machine_busy(stat) == 100 + 5 + 50 + 7


def test_group_members_follow_descendants_only_when_asked() -> None:
    table = {1: (0, 10), 10: (1, 5), 11: (10, 7), 12: (11, 1), 20: (1, 100)}
    assert cpu.group_members(table, [10], descendants=False) == {10}
    assert cpu.group_members(table, [10], descendants=True) == {10, 11, 12}
    assert cpu.group_members(table, [99], descendants=True) == set()


def _sampler(times: list[float], ticks: list[int]) -> cpu.CpuSampler:
    sampler = cpu.CpuSampler({})
    sampler.times = times
    sampler.ticks = {cpu.MACHINE: ticks}
    return sampler


def test_spent_interpolates_between_samples_and_clamps_outside_them() -> None:
    hz = cpu._ticks_per_s()
    sampler = _sampler([10.0, 11.0, 12.0], [0, 100, 300])
    # 10.5 -> 50 ticks, 11.5 -> 200 ticks
    assert sampler.spent(10.5, 11.5)[cpu.MACHINE] == pytest.approx(150 / hz)
    assert sampler.spent(5.0, 20.0)[cpu.MACHINE] == pytest.approx(300 / hz)
    assert cpu.per_event({"machine": 0.5}, 1000) == {"machine": 500.0}


def test_an_exited_member_keeps_what_it_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = iter([
        {1: (0, 0), 10: (1, 50), 11: (10, 30)},
        {1: (0, 0), 10: (1, 60)},  # 11 exited
        {1: (0, 0), 10: (1, 70), 12: (10, 5)},  # 12 started
    ])
    monkeypatch.setattr(cpu, "process_table", lambda: next(tables))
    sampler = cpu.CpuSampler({"worker": cpu.Group(lambda: [10], descendants=True)})
    for _ in range(3):
        sampler.sample()
    assert sampler.ticks["worker"] == [80, 90, 105]


@pytest.mark.skipif(not cpu.available(), reason="needs Linux /proc")
def test_a_busy_child_process_is_counted_in_its_parents_group() -> None:
    sampler = cpu.CpuSampler({"tree": cpu.Group(lambda: [os.getpid()], descendants=True)}, interval=0.05).start()
    start = time.time()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    subprocess.run([sys.executable, "-c", busy], check=True, timeout=60)
    end = time.time()
    sampler.stop()
    spent = sampler.spent(start, end)
    assert spent["tree"] >= 0.4
    assert spent[cpu.MACHINE] >= spent["tree"] * 0.8
