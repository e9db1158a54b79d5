"""CPU time spent during a measured span, per process group and for the whole machine (Linux ``/proc``).

A bench figure says how fast; this says what it cost. :class:`CpuSampler` reads, every
``interval`` seconds on a background thread, the machine's busy time (``/proc/stat``) and the CPU
time (user + system) of named process groups: a group is a set of root pids and, optionally,
every descendant of them (a worker and its processing child). :meth:`CpuSampler.spent` then gives
the CPU seconds each group used between two wall-clock instants, interpolated between the
samples around them, so the span can be the one measured on the output topic afterwards
(broker timestamps), not the one the sampler happened to see. Where ``/proc`` is missing (not
Linux), :func:`available` is False and the bench reports no CPU figures.
"""
from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
MACHINE = "machine"


def available() -> bool:
    return (PROC / "stat").is_file() and (PROC / "self" / "stat").is_file()


def _ticks_per_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, user + system ticks) from a ``/proc/<pid>/stat`` line (the name may hold spaces)."""
    rest = text.rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def machine_busy(text: str) -> int:
    """Busy ticks of all CPUs from ``/proc/stat``'s first line (everything but idle and iowait)."""
    fields = [int(v) for v in text.split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process exited between listing and reading
        return None


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks) of every process now."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            text = _read(PROC / entry.name / "stat")
            if text is not None:
                table[int(entry.name)] = parse_stat(text)
    return table


def group_members(table: Mapping[int, tuple[int, int]], roots: Iterable[int], descendants: bool) -> set[int]:
    """``roots`` (and, if asked, every process below them) that are in ``table``."""
    members = {pid for pid in roots if pid in table}
    if descendants:
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(members)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in members:
                    members.add(child)
                    todo.append(child)
    return members


@dataclass
class Group:
    """Processes measured together: ``roots`` (called each sample: pids may appear late), and their
    descendants if ``descendants``."""

    roots: Callable[[], Iterable[int]]
    descendants: bool = False


@dataclass
class CpuSampler:
    """Samples cumulative CPU ticks of the machine and of each group until :meth:`stop`."""

    groups: Mapping[str, Group]
    interval: float = 0.2
    times: list[float] = field(default_factory=list)
    ticks: dict[str, list[int]] = field(default_factory=dict)
    _gone: dict[str, int] = field(default_factory=dict)  # ticks of members that exited
    _last: dict[str, dict[int, int]] = field(default_factory=dict)  # members' ticks at the last sample
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CpuSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (after one last sample); later calls do nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        stat = _read(PROC / "stat")
        if stat is None:
            return
        table = process_table()
        now = time.time()
        values = {MACHINE: machine_busy(stat)}
        for name, group in self.groups.items():
            # Cumulative per group: a member that exited keeps what it had spent at the last sample.
            now_ticks = {pid: table[pid][1] for pid in group_members(table, group.roots(), group.descendants)}
            last = self._last.get(name, {})
            self._gone[name] = self._gone.get(name, 0) + sum(t for pid, t in last.items() if pid not in now_ticks)
            self._last[name] = now_ticks
            values[name] = self._gone[name] + sum(now_ticks.values())
        self.times.append(now)
        for name, value in values.items():
            self.ticks.setdefault(name, []).append(value)

    def _at(self, name: str, when: float) -> float:
        """Cumulative ticks of ``name`` at ``when``, linear between the samples around it."""
        times, values = self.times, self.ticks[name]
        i = bisect.bisect_left(times, when)
        if i <= 0:
            return float(values[0])
        if i >= len(times):
            return float(values[-1])
        t0, t1 = times[i - 1], times[i]
        share = (when - t0) / (t1 - t0) if t1 > t0 else 1.0
        return values[i - 1] + (values[i] - values[i - 1]) * share

    def spent(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per group (and ``machine``: every CPU's busy time) between two instants."""
        hz = _ticks_per_s()
        return {name: max(0.0, self._at(name, end) - self._at(name, start)) / hz for name in self.ticks}


def per_event(spent: Mapping[str, float], events: int) -> dict[str, float]:
    """CPU microseconds per event for each group."""
    return {name: round(seconds / max(1, events) * 1e6, 1) for name, seconds in spent.items()}
