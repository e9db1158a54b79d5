"""Streaming lineage for AI systems: the shared core.

Settings, errors, the Avro codec and schema repository, graph records, topic names, the Redis
key space, crypto primitives and Kafka client helpers. Imports no other project package.
"""
from __future__ import annotations

__version__ = "0.1.0"
