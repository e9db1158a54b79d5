"""The embedded engine's fast path for a batch's graph records: one file, read twice.

The records are written once, as RowBinary ``(n UInt32, record String)``, before any Python
work on the batch: ClickHouse parses nodes and edges out of them (``derive.derive_from_file``)
while Python decodes and hashes, and the raw log is then inserted from the same file joined
on ``n`` with the Python-built columns (hash chain, ids), so the bulky records are copied into
a file only once.
"""
from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sinks.clickhouse.client import settings_sql, sql_string
from sinks.clickhouse.rows import RAW_COLUMNS

if TYPE_CHECKING:
    from sinks.clickhouse.client import StagedInsert, Store

_INDEX = struct.Struct("<I").pack


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _row_binary(records: Sequence[bytes]) -> Iterator[bytes]:
    for n, record in enumerate(records):
        yield _INDEX(n) + _varint(len(record))
        yield record


class RecordFile:
    """A temporary RowBinary file of records, numbered from 0 in the given order."""

    STRUCTURE = "n UInt32, record String"

    def __init__(self, records: Sequence[bytes]) -> None:
        fd, self.path = tempfile.mkstemp(prefix="lineage-records-", suffix=".bin")
        self.count = len(records)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
                fh.writelines(_row_binary(records))
        except BaseException:
            self.remove()
            raise

    @property
    def source(self) -> str:
        """The file as a ClickHouse table function."""
        return f"file({sql_string(self.path)}, 'RowBinary', {sql_string(self.STRUCTURE)})"

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def insert_raw_log(store: Store, meta: StagedInsert, records: RecordFile, token: str | None) -> None:
    """Insert the raw log: the staged columns (``n`` and every raw column but ``record``) joined
    with the records. Both come from the same batch, so every ``n`` is on both sides."""
    if meta.path is None or meta.rows != records.count:
        raise ValueError("the raw-log columns must be staged to a file, one row per record")
    columns = ", ".join(RAW_COLUMNS)
    select = ", ".join("r.record" if c == "record" else f"m.{c}" for c in RAW_COLUMNS)
    # the staged file's own schema, not the target table's (which has no `n`)
    settings: dict[str, Any] = {"use_structure_from_insertion_table_in_table_functions": 0}
    if token:
        settings["insert_deduplication_token"] = token
    store.command(
        f"INSERT INTO raw_events ({columns}) SELECT {select} FROM {records.source} AS r "
        f"INNER JOIN file({sql_string(meta.path)}, 'ArrowStream') AS m ON m.n = r.n{settings_sql(settings)}"
    )
