"""Sinks: where processed lineage lands (ClickHouse graph, metrics, alerts) and the query layer."""
from __future__ import annotations
