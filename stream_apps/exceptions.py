"""Errors of the stream apps. A :class:`Rejected` event goes to the dead-letter topic; a
:class:`BatchNotProcessed` batch is processed again, never dead-lettered."""
from __future__ import annotations

from lineage.exceptions import LineageError


class StreamAppError(LineageError):
    """Root of the stream apps' errors."""


class Rejected(StreamAppError):
    """An event failed decoding or validation; carries the dead-letter reason code and text."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        #: Set once known: the event class and the keyed reference of its data subject, which
        #: decide how the dead letter is sealed (never the subject id itself).
        self.kind = ""
        self.subject_ref = ""


class BatchNotProcessed(StreamAppError):
    """The processing child hit an infrastructure error (or died); the batch is retried, never committed."""
