"""The watermark gate: when a closed window may be evaluated (pure logic, readings built by hand)."""
from __future__ import annotations

from stream_apps.alerts.config import AlertSettings
from stream_apps.alerts.watermarks import (
    Committed,
    Progress,
    WatermarkGate,
    commits_behind,
    decode_watermark,
    encode_watermark,
    inputs_behind,
)

INF, FEED = "inf", "feed"
END = 1_000.0  # window end, epoch s
LATE = 2.0
NEED_MS = int((END + LATE) * 1000)


def _reading(inputs: dict[int, tuple[int, int | None, int | None]],
             feed: dict[int, tuple[int, int | None]] | None = None) -> Progress:
    """inputs: partition -> (high, committed offset or None, watermark ms or None);
    feed: partition -> (high, committed offset or None)."""
    feed = feed or {0: (0, None)}
    return Progress(
        inputs={(INF, p): h for p, (h, _, _) in inputs.items()},
        input_commits={(INF, p): Committed(c, w) for p, (_, c, w) in inputs.items() if c is not None},
        feed={(FEED, p): h for p, (h, _) in feed.items()},
        app_commits={(FEED, p): Committed(c) for p, (_, c) in feed.items() if c is not None},
    )


def test_watermark_metadata_round_trip_and_foreign_metadata() -> None:
    assert decode_watermark(encode_watermark(1_700_000_000_123)) == 1_700_000_000_123
    for foreign in (None, "", "something else", "wm=", "wm=12x"):
        assert decode_watermark(foreign) is None


def test_input_partition_rules() -> None:
    p = _reading({
        0: (0, None, None),            # never written: idle
        1: (50, 50, 1),                # drained: idle, whatever its watermark
        2: (80, 60, NEED_MS),          # busy, watermark exactly at end + lateness
        3: (80, 60, NEED_MS - 1),      # busy, watermark short by a millisecond
        4: (10, None, None),           # holds data nobody committed
        5: (10, 5, None),              # committed without a watermark (older worker): position only
    })
    assert inputs_behind(p, NEED_MS) == [(INF, 3), (INF, 4), (INF, 5)]


def test_commits_behind_counts_a_missing_commit_as_zero() -> None:
    commits = {(FEED, 0): Committed(7)}
    assert commits_behind({(FEED, 0): 7, (FEED, 1): 0, (FEED, 2): 1}, commits) == [(FEED, 2)]


def test_window_passes_two_phases_one_reading_each() -> None:
    gate = WatermarkGate(LATE, 60.0)
    now = END + LATE
    # An input partition behind: held.
    assert gate.advance([END], now, _reading({0: (10, 4, 1)})) == []
    # Inputs drained: phase 1 starts, its targets come from the next reading.
    assert gate.advance([END], now, _reading({0: (10, 10, 1)})) == []
    # The feed records written meanwhile: partition 1 has 5, 3 committed by the app group.
    assert gate.advance([END], now, _reading({0: (10, 10, 1)}, {0: (4, 4), 1: (5, 3)})) == []
    # More feed records arriving later do not move the target (only what was written before counts).
    assert gate.advance([END], now, _reading({0: (10, 10, 1)}, {0: (9, 4), 1: (9, 4)})) == []
    (rel,) = gate.advance([END], now, _reading({0: (10, 10, 1)}, {0: (9, 4), 1: (9, 5)}))
    assert rel.end == END and not rel.timed_out
    # Released once; later readings leave it released.
    assert gate.waiting([END]) == [] and gate.advance([END], now + 1, _reading({0: (99, 0, None)})) == []


def test_busy_partition_releases_by_watermark() -> None:
    gate = WatermarkGate(LATE, 60.0)
    busy = {0: (500, 400, NEED_MS + 5), 1: (0, None, None)}
    assert gate.advance([END], END + LATE, _reading(busy)) == []  # phase 0 seen complete
    assert [r.end for r in gate.advance([END], END + LATE, _reading(busy))] == [END]


def test_paused_partition_holds_until_the_bounded_wait_then_names_it() -> None:
    gate = WatermarkGate(LATE, 30.0)
    held = _reading({0: (10, 10, 1), 1: (40, 12, 1)})  # partition 1's owner stopped committing
    t = END + LATE
    while t < END + LATE + 30.0:
        assert gate.advance([END], t, held) == [], t
        t += 0.5
    (rel,) = gate.advance([END], END + LATE + 30.0, held)
    assert rel.timed_out and rel.behind == ((INF, 1),)


def test_no_reading_only_the_bounded_wait_releases() -> None:
    gate = WatermarkGate(LATE, 10.0)
    assert gate.advance([END], END + LATE + 9.9, None) == []
    (rel,) = gate.advance([END], END + LATE + 10.0, None)
    assert rel.timed_out and rel.behind == ()


def test_windows_are_gated_separately_and_forgotten_past_the_horizon() -> None:
    gate = WatermarkGate(LATE, 60.0)
    e1, e2 = END, END + 10
    # Inputs past e1 + lateness but not e2 + lateness.
    busy = _reading({0: (500, 400, NEED_MS + 1000)})
    for _ in range(2):
        gate.advance([e1, e2], e2 + LATE, busy)
    assert gate.released == {e1} and gate.waiting([e1, e2]) == [e2]
    gate.forget(e2)
    assert gate.released == set() and gate.waiting([e2]) == [e2]


def test_bounded_wait_setting_is_capped_inside_the_horizon() -> None:
    assert AlertSettings().watermark_wait_s == 30.0
    cfg = AlertSettings(window_s=10, eval_horizon_s=20, window_grace_s=2, eval_interval_s=1, watermark_max_wait_s=60)
    assert cfg.watermark_wait_s == 16.0  # a held window is still evaluated inside the horizon


def test_restart_reads_held_windows_again_and_keeps_released_ones() -> None:
    gate = WatermarkGate(LATE, 60.0)
    drained = _reading({0: (10, 10, 1)}, {0: (4, 0)})
    gate.advance([END], END + LATE, drained)
    gate.advance([END], END + LATE, drained)
    assert gate.held[END].phase == 1 and gate.held[END].targets == {(FEED, 0): 4}
    gate.restart()  # partitions moved: start over from phase 0
    assert gate.waiting([END]) == [END] and END not in gate.held
    gate.released.add(END - 10)
    gate.restart()
    assert gate.waiting([END - 10]) == []
