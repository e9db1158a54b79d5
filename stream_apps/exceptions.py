"""Errors of the stream apps. A :class:`Rejected` event goes to the dead-letter topic."""
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

