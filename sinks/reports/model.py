"""The report as data: what the JSON format holds and the HTML is built from.

A report is a plain dict (JSON-ready): ``kind``, ``title``, ``question``, ``parameters``,
``generated_at``, ``generated_by`` (``name``, ``role``, ``via``), ``summary`` (sentences),
``sections`` (titled tables), ``integrity`` (the hash-chain check of the rows used) and ``data``
(the answer, structured per kind).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from sinks.access.roles import Actor


def plain(value: Any) -> Any:
    """A query value as JSON-ready data (times as ISO 8601 UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def section(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> dict[str, Any]:
    return {"title": title, "note": note, "columns": list(columns), "rows": [plain(list(r)) for r in rows]}


def new_report(kind: str, title: str, question: str, parameters: Mapping[str, Any], actor: Actor,
               now: datetime | None = None) -> dict[str, Any]:
    when = now or datetime.now(timezone.utc)
    return {
        "kind": kind,
        "title": title,
        "question": question,
        "parameters": dict(parameters),
        "generated_at": plain(when),
        "generated_by": {"name": actor.name, "role": actor.role.value, "via": actor.via},
        "summary": [],
        "sections": [],
        "integrity": {},
        "data": {},
    }
