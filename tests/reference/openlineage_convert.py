"""The worker's handling of an ``openlineage.events`` message, built from the SDK's converter
(``producers.openlineage.from_openlineage``), the codec's encoder and the fastavro-based
reference decoder: the oracle the compiled conversion (``native/src/openlineage.rs``) is held to
in tests. Refusals are :class:`~stream_apps.exceptions.Rejected` with their dead-letter reason."""
from __future__ import annotations

from typing import Any

import orjson

from lineage.codec import Codec
from lineage.exceptions import DecodeError, EncodeError, LineageError
from producers.openlineage import from_openlineage
from stream_apps.exceptions import Rejected
from tests.reference.avro_decode import ReferenceDecoder


class ReferenceConverter:
    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self.decoder = ReferenceDecoder(self.codec)

    def convert(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Rejected("bad_json" if raw else "empty", f"not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise Rejected("bad_json", f"expected a JSON object, got {type(obj).__name__}")
        try:
            kind, record = from_openlineage(obj)
            decoded = self.decoder.decode(self.codec.encode(kind, record))
        except (EncodeError, DecodeError) as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        except LineageError as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        return decoded.kind, decoded.record
