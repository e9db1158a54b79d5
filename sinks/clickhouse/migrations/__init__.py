"""Versioned DDL: ``NNNN_name.sql`` files applied in order by :mod:`sinks.clickhouse.migrations.runner`."""
from __future__ import annotations

from sinks.clickhouse.migrations.runner import Migration, apply_migrations, load_migrations, split_statements

__all__ = ["Migration", "apply_migrations", "load_migrations", "split_statements"]
