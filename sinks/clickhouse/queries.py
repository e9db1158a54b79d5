"""The analyst queries (``sinks/queries/*.sql``) by name, with typed, defaulted parameters.

The same files run as-is in clickhouse-client (``--param_x=``); here they are loaded, their
parameters checked and converted, and run read-only against a :class:`Store`.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

from sinks.exceptions import QueryError

FAR_PAST = "1970-01-01 00:00:00.000000"
FAR_FUTURE = "2299-12-31 23:59:59.000000"
READONLY_SETTINGS = {"readonly": 1}


def parse_time(value: str) -> str:
    """ISO date/datetime (UTC unless an offset is given) -> 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"bad time {value!r}: use ISO 8601, e.g. 2024-06-15 or 2024-06-15T12:00:00Z") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


_AGO = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> str:
    """``30m``, ``2h``, ``7d`` (that long ago) or an ISO date/datetime -> UTC, like :func:`parse_time`."""
    m = _AGO.match(value.strip())
    if m is None:
        try:
            return parse_time(value)
        except QueryError:
            raise QueryError(f"bad time {value!r}: use a duration like 30m, 2h, 7d or ISO 8601, e.g. 2024-06-15T12:00:00Z") from None
    when = (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _int_in(low: int, high: int, what: str, name: str = "") -> Callable[[str], int]:
    """A parameter parser: an integer in ``low..high``, else a one-line QueryError."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise QueryError(f"not {what}: {value!r}") from None
        if n < low or n > high:
            raise QueryError(f"{name + ' ' if name else ''}out of range {low}..{high}: {n}")
        return n

    return parse


_limit = _int_in(1, 100_000, "a positive integer", "limit")
_uint = _int_in(0, 1000, "a non-negative integer")


MAX_RANGES = 200
_OFFSET_MAX = (1 << 63) - 1


def parse_ranges(value: str) -> str:
    """``[[topic, partition, first_offset, last_offset], ...]`` (JSON, at most MAX_RANGES) -> canonical JSON."""
    try:
        data = json.loads(value)
        if not isinstance(data, list) or not 0 < len(data) <= MAX_RANGES:
            raise ValueError
        out = []
        for topic, partition, first, last in data:
            if not isinstance(topic, str) or not all(type(n) is int and 0 <= n <= _OFFSET_MAX for n in (partition, first, last)):
                raise ValueError
            out.append([topic, partition, first, last])
    except (ValueError, TypeError):
        raise QueryError(f"ranges must be a JSON array of 1..{MAX_RANGES} [topic, partition, first_offset, last_offset]") from None
    return json.dumps(out, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    convert: Callable[[str], Any] = str
    default: str | None = None  # None: required


@dataclass(frozen=True, slots=True)
class QuerySpec:
    name: str
    params: tuple[Param, ...]
    doc: str

    @property
    def sql(self) -> str:
        return resources.files("sinks.queries").joinpath(f"{self.name}.sql").read_text()

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise QueryError(f"query {self.name!r} has no parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(known))}")
        out: dict[str, Any] = {}
        for p in self.params:
            raw = given.get(p.name)
            if raw is None or raw == "" and p.default is not None:
                if p.default is None:
                    raise QueryError(f"query {self.name!r} needs parameter {p.name!r}")
                raw = p.default
            out[p.name] = p.convert(str(raw)) if p.convert is not str else str(raw)
        return out


def _direction(value: str) -> str:
    if value not in ("upstream", "downstream"):
        raise QueryError(f"direction must be upstream or downstream, not {value!r}")
    return value


_WINDOW = (
    Param("since", parse_time, FAR_PAST),
    Param("until", parse_time, FAR_FUTURE),
    Param("as_of", parse_time, FAR_FUTURE),
)
_NODE = (Param("namespace", str, ""), Param("name"), Param("node_type", str, ""), Param("max_depth", _uint, "10"))

QUERIES: dict[str, QuerySpec] = {
    q.name: q
    for q in (
        QuerySpec("prediction", (Param("prediction_id"), Param("max_depth", _uint, "12")), "backward provenance of one prediction"),
        QuerySpec("upstream", (*_NODE, *_WINDOW), "everything a node was derived from"),
        QuerySpec("downstream", (*_NODE, *_WINDOW), "everything derived from a node"),
        QuerySpec(
            "columns",
            (Param("namespace"), Param("name"), Param("column", str, ""), Param("direction", _direction, "upstream"),
             Param("max_depth", _uint, "10"), Param("as_of", parse_time, FAR_FUTURE)),
            "column-level lineage of a dataset or one column, with the transformation of every hop",
        ),
        QuerySpec("run", (Param("run_id"), Param("max_depth", _uint, "20")),
                  "a run's place in its run hierarchy, its events and its datasets"),
        QuerySpec("diff", (Param("model"), Param("from_version"), Param("to_version")), "what changed between two model versions"),
        QuerySpec("completeness", (Param("model"),), "share of predictions and versions with full lineage"),
        QuerySpec(
            "sources",
            (Param("model"), Param("since", parse_time, FAR_PAST), Param("until", parse_time, FAR_FUTURE), Param("max_depth", _uint, "12")),
            "source datasets behind a model's predictions in a time window",
        ),
        QuerySpec("verify", (), "hash-chain breaks in the raw log and the query audit log"),
        QuerySpec("verify_summary", (), "rows and partitions of each hash-chained log"),
        QuerySpec("verify_hashes", (Param("ranges", parse_ranges),), "stored row hashes of chain ranges, for the signed checkpoints"),
        QuerySpec(
            "audit_log",
            (Param("since", parse_since, FAR_PAST), Param("who", str, ""), Param("action", str, ""),
             Param("limit", _limit, "100")),
            "the query audit log, newest first",
        ),
    )
}


def get_query(name: str) -> QuerySpec:
    spec = QUERIES.get(name)
    if spec is None:
        raise QueryError(f"unknown query {name!r}; known: {', '.join(sorted(QUERIES))}")
    return spec
