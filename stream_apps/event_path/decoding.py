"""Decoding: a message's bytes -> (event class, record), for Avro and OpenLineage JSON.

Every failure is a :class:`~stream_apps.exceptions.Rejected` with its dead-letter reason: over
the size limit, undecodable, an event class on another class's topic, an OpenLineage event that
does not convert. OpenLineage events go through the Avro schema too, so both inputs get the same
checks and defaults.
"""
from __future__ import annotations

from typing import Any

import orjson

from lineage.codec import Codec
from lineage.exceptions import DecodeError, EncodeError, LineageError
from lineage.settings import TopicSettings
from producers.openlineage import from_openlineage
from stream_apps.event_path.batch import InMessage
from stream_apps.exceptions import Rejected
from stream_apps.validation import ValidationPolicy, check_size


class Decoder:
    """Decodes the messages of the event topics and the OpenLineage topic."""

    def __init__(self, codec: Codec, topics: TopicSettings, policy: ValidationPolicy) -> None:
        self.codec = codec
        self.policy = policy
        self.kind_of_topic = {name: kind for kind, name in topics.event_topics.items()}
        self.openlineage_topic = topics.openlineage

    def decode(self, msg: InMessage) -> tuple[str, dict[str, Any]]:
        raw = msg.value or b""
        check_size(raw, self.policy)
        if msg.topic == self.openlineage_topic:
            return self._from_openlineage(raw)
        try:
            decoded = self.codec.decode(raw)
        except DecodeError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        expected = self.kind_of_topic.get(msg.topic)
        if expected is not None and decoded.kind != expected:
            raise Rejected("wrong_topic", f"{decoded.kind} event on the {expected} topic")
        return decoded.kind, decoded.record

    def _from_openlineage(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Rejected("bad_json" if raw else "empty", f"not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise Rejected("bad_json", f"expected a JSON object, got {type(obj).__name__}")
        try:
            kind, record = from_openlineage(obj)
            # Round-trip through the schema: the same checks and defaults as Avro input.
            decoded = self.codec.decode(self.codec.encode(kind, record))
        except (EncodeError, DecodeError) as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        except LineageError as exc:
            raise Rejected("openlineage_invalid", str(exc)) from None
        return decoded.kind, decoded.record
