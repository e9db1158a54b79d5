"""One root exception for the project; subclasses carry the context a dead-letter record needs."""
from __future__ import annotations


class LineageError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(LineageError):
    """Settings are invalid or name an unknown key."""


class StackError(LineageError):
    """A local stack component could not be installed, started or reached."""


class SchemaError(LineageError):
    """An Avro schema is missing, unparsable or incompatible."""


class DecodeError(LineageError):
    """Bytes could not be decoded into an event.

    Carries the reason code used on the dead-letter topic.
    """

    def __init__(self, reason: str, detail: str, raw: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.raw = raw


class EncodeError(LineageError):
    """An event does not match its schema and was not sent."""


class DeliveryError(LineageError):
    """Records were not acknowledged by the broker (timeout or a delivery error)."""
