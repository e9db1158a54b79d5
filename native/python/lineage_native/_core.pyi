from collections.abc import Callable
from typing import Any

DecodedTuple = tuple[str, dict[str, Any], int, str]

class Decoder:
    def __init__(self, error_type: Callable[[str, str, bytes], BaseException]) -> None: ...
    def add_fingerprint(self, fingerprint: bytes, kind: str, version: int, writer: str, reader: str | None = None) -> None: ...
    def add_schema_id(self, schema_id: int, kind: str, version: int, writer: str, reader: str | None = None) -> None: ...
    def set_resolver(self, resolver: Callable[[int], tuple[str, int, str, str | None] | None]) -> None: ...
    def decode(self, data: bytes) -> DecodedTuple: ...
    def decode_batch(self, messages: list[bytes]) -> list[DecodedTuple | BaseException]: ...

def _debug_from_openlineage(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The compiled port of ``producers.openlineage.from_openlineage`` (for parity tests):
    ValueError(text of the OpenLineageError), RuntimeError(type name) where Python fails unexpectedly."""

def _debug_convert(raw: bytes, schemas: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The compiled ``Decoder._from_openlineage`` (for parity tests) with the latest writer schema
    (JSON) of each event class; ValueError(f"{reason}: {detail}") for a refused message."""
