"""Errors the emitter SDK raises on purpose; all subclass :class:`lineage.exceptions.LineageError`."""
from __future__ import annotations

from lineage.exceptions import LineageError
from lineage.rules import InvalidEvent


class ProducerError(LineageError):
    """Root of the SDK's errors."""


class SpoolFullError(ProducerError):
    """The durable spool reached ``producer.spool_max_bytes``; the event was NOT accepted.

    Raised by ``emit()`` so the caller can decide (shed load, fail the request, page someone);
    the SDK never drops an event silently.
    """

    def __init__(self, spool_dir: str, used: int, cap: int) -> None:
        super().__init__(
            f"lineage spool {spool_dir} is full ({used:,} of {cap:,} bytes): the broker has been "
            "unreachable or slower than the emit rate; event not accepted "
            "(raise LINEAGE_PRODUCER__SPOOL_MAX_BYTES or restore the broker)"
        )
        self.spool_dir = spool_dir
        self.used = used
        self.cap = cap


class EventTooLargeError(ProducerError):
    """One event is larger than a spool segment can hold."""


class SpoolCorruptError(ProducerError):
    """A spool segment has an unreadable header (not merely a torn tail)."""


class EmitterClosedError(ProducerError):
    """``emit()`` after ``close()``."""


class OpenLineageError(ProducerError):
    """An OpenLineage event is invalid; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SealingError(ProducerError):
    """An inference event cannot be sealed for the pipeline (no seal public key configured)."""


class InvalidEventError(ProducerError, InvalidEvent):
    """``emit()`` refused an event the pipeline would refuse (``reason`` as on the dead-letter topic)."""

    def __init__(self, reason: str, detail: str) -> None:
        InvalidEvent.__init__(self, reason, detail)
