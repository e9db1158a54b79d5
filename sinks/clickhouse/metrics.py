"""The sink's own counters, served on ``/health`` and ``/metrics`` (Prometheus text format)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class SinkMetrics:
    """Monotonic counters plus a few gauges; updated by the sink thread, read by the API."""

    started_at: float = field(default_factory=time.time)
    messages_consumed: int = 0
    batches_written: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    replayed_skipped: int = 0
    decode_errors: int = 0
    insert_failures: int = 0
    commit_failures: int = 0
    audit_rows_pruned: int = 0
    prune_failures: int = 0  # failed prunes, and chains left unpruned because they do not verify
    checkpoints_published: int = 0  # signed checkpoints acknowledged by Kafka
    checkpoint_failures: int = 0  # checkpoints Kafka did not acknowledge (their rows go in the next)
    pending_messages: int = 0
    last_batch_seconds: float = 0.0
    last_error: str = ""
    backpressure: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_rows(self, rows: dict[str, int]) -> None:
        with self._lock:
            for table, n in rows.items():
                self.rows_written[table] = self.rows_written.get(table, 0) + n

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "uptime_s": round(time.time() - self.started_at, 3),
                "messages_consumed": self.messages_consumed,
                "batches_written": self.batches_written,
                "rows_written": dict(self.rows_written),
                "replayed_skipped": self.replayed_skipped,
                "decode_errors": self.decode_errors,
                "insert_failures": self.insert_failures,
                "commit_failures": self.commit_failures,
                "audit_rows_pruned": self.audit_rows_pruned,
                "prune_failures": self.prune_failures,
                "checkpoints_published": self.checkpoints_published,
                "checkpoint_failures": self.checkpoint_failures,
                "pending_messages": self.pending_messages,
                "last_batch_seconds": round(self.last_batch_seconds, 4),
                "backpressure": self.backpressure,
                "last_error": self.last_error,
            }

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = []
        for key in ("messages_consumed", "batches_written", "replayed_skipped", "decode_errors",
                    "insert_failures", "commit_failures", "audit_rows_pruned", "prune_failures",
                    "checkpoints_published", "checkpoint_failures"):
            lines += [f"# TYPE lineage_sink_{key}_total counter", f"lineage_sink_{key}_total {snap[key]}"]
        lines.append("# TYPE lineage_sink_rows_written_total counter")
        rows = snap["rows_written"]
        assert isinstance(rows, dict)
        lines += [f'lineage_sink_rows_written_total{{table="{t}"}} {n}' for t, n in sorted(rows.items())]
        lines += ["# TYPE lineage_sink_pending_messages gauge", f"lineage_sink_pending_messages {snap['pending_messages']}"]
        lines += ["# TYPE lineage_sink_backpressure gauge", f"lineage_sink_backpressure {int(bool(snap['backpressure']))}"]
        return "\n".join(lines) + "\n"
