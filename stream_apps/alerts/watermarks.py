"""When a closed window may be evaluated: per-partition watermarks along the stream, with a bounded wait.

A prediction reaches a window's counts in two hops: the event path consumes it from an
inference-topic partition and produces its counters to the window feed (with its graph record);
``count_windows`` adds them to the window. Each hop is done with a record once its consumer group
has committed past it (the event path commits after its outputs were acknowledged; Faust flushes
its producer and changelogs before it commits). So the progress of every partition, whichever
worker owns it, is read from the groups' committed offsets; the event path also commits, as the
offset's metadata, the partition's event-time watermark: the latest record timestamp it has
processed there (:func:`encode_watermark`).

A window ending at ``end`` is released for evaluation in two phases:

0. every inference partition is caught up (committed offset at its high watermark: idle or
   drained, so an empty partition never holds a window back) or its watermark is at or past
   ``end + lateness``;
1. then every feed partition this worker owns is committed past the high watermark it had once
   phase 0 was seen complete (read afterwards, so it covers the counters of those predictions).

A paused worker commits nothing, so its partitions hold every later window back; a window still
held ``max_wait`` after ``end + lateness`` is released anyway (the partitions still behind are
reported), and the re-evaluation of closed windows corrects it when the held data arrives.
Nothing here does I/O: :class:`Progress` is one reading of offsets and watermarks.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

WATERMARK_PREFIX = "wm="

#: (topic, partition)
TP = tuple[str, int]


def encode_watermark(timestamp_ms: int) -> str:
    """The offset-commit metadata that carries a partition's event-time watermark (epoch ms)."""
    return f"{WATERMARK_PREFIX}{int(timestamp_ms)}"


def decode_watermark(metadata: str | None) -> int | None:
    """The watermark (epoch ms) in commit metadata, or None if it carries none."""
    if not metadata or not metadata.startswith(WATERMARK_PREFIX):
        return None
    try:
        return int(metadata[len(WATERMARK_PREFIX):])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Committed:
    """A group's committed position on a partition and, for the input hop, its watermark."""

    offset: int
    watermark_ms: int | None = None


@dataclass(slots=True)
class Progress:
    """One reading of the stream's progress (high watermarks first, then commits, so a commit
    read here is never compared with a high watermark older than itself)."""

    #: Inference-topic partitions and their high watermarks (next offset to be written).
    inputs: Mapping[TP, int]
    #: The event path group's commits on them.
    input_commits: Mapping[TP, Committed]
    #: Window-feed partitions this worker owns and their high watermarks.
    feed: Mapping[TP, int]
    #: The Faust group's commits on them.
    app_commits: Mapping[TP, Committed]


def inputs_behind(progress: Progress, need_ms: int) -> list[TP]:
    """Input partitions neither caught up nor with a watermark at ``need_ms`` or later."""
    behind = []
    for tp, high in sorted(progress.inputs.items()):
        c = progress.input_commits.get(tp)
        offset = c.offset if c is not None else 0
        if offset >= high:
            continue
        if c is not None and c.watermark_ms is not None and c.watermark_ms >= need_ms:
            continue
        behind.append(tp)
    return behind


def commits_behind(targets: Mapping[TP, int], commits: Mapping[TP, Committed]) -> list[TP]:
    """Partitions whose commit has not reached the target offset."""
    return sorted(tp for tp, want in targets.items()
                  if (commits[tp].offset if tp in commits else 0) < want)


@dataclass(slots=True)
class _Held:
    phase: int = 0
    targets: dict[TP, int] | None = None
    behind: list[TP] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Release:
    """A window released for evaluation: by the watermarks, or by the bounded wait (with the
    partitions still behind then)."""

    end: float
    timed_out: bool
    behind: tuple[TP, ...] = ()


class WatermarkGate:
    """Which closed windows (by end time) this worker may evaluate; state is per worker and
    starts over after a restart or a rebalance (a window is then simply checked again)."""

    def __init__(self, lateness_s: float, max_wait_s: float) -> None:
        self.lateness_s = lateness_s
        self.max_wait_s = max_wait_s
        self.released: set[float] = set()
        self.held: dict[float, _Held] = {}

    def waiting(self, ends: Iterable[float]) -> list[float]:
        """The ends among ``ends`` not released yet (a reading of progress is needed for them)."""
        return sorted(e for e in set(ends) if e not in self.released)

    def advance(self, ends: Iterable[float], now: float, progress: Progress | None) -> list[Release]:
        """Move each waiting window through its phases with ``progress`` (None: no reading could be
        taken; only the bounded wait can release then). Returns the windows released now."""
        out: list[Release] = []
        for end in self.waiting(ends):
            held = self.held.setdefault(end, _Held())
            if progress is not None and self._step(held, end, progress):
                out.append(Release(end, False))
            elif now >= end + self.lateness_s + self.max_wait_s:
                out.append(Release(end, True, tuple(held.behind)))
            else:
                continue
            self.released.add(end)
            del self.held[end]
        return out

    def _step(self, held: _Held, end: float, p: Progress) -> bool:
        """One reading moves a window at most one phase on: the feed's targets are high watermarks
        read after phase 0 was seen complete (in the next reading), so they cover every record the
        event path wrote before committing."""
        if held.phase == 0:
            held.behind = inputs_behind(p, int((end + self.lateness_s) * 1000))
            if not held.behind:
                held.phase, held.targets = 1, None
            return False
        if held.targets is None:
            held.targets = dict(p.feed)
        held.behind = commits_behind(held.targets, p.app_commits)
        return not held.behind

    def restart(self) -> None:
        """Start the windows still held over (this worker's partitions changed: the targets read
        so far do not cover the new ones). Released windows stay released."""
        self.held.clear()

    def forget(self, before: float) -> None:
        """Drop what is remembered of windows that ended before ``before`` (past the horizon)."""
        self.released = {e for e in self.released if e >= before}
        self.held = {e: h for e, h in self.held.items() if e >= before}
