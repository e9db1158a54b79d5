"""The reports, their parameters and how they are checked (shared by the HTTP route and the CLI).

A bad parameter raises :class:`~sinks.exceptions.QueryError` with a one-line message.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sinks.clickhouse.queries import parse_since, parse_time
from sinks.exceptions import QueryError

KINDS = ("provenance", "impact", "completeness", "erasure")
FORMATS = ("html", "pdf", "json")
MEDIA_TYPES = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "json": "application/json"}

_REF = re.compile(r"^[0-9a-f]{32}$")
_MAX = 512

#: kind -> (required parameters, optional parameters)
PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "provenance": (("prediction",), ()),
    "impact": (("name",), ("namespace", "since", "until")),
    "completeness": (("model",), ("since",)),
    "erasure": (("subject_ref",), ()),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise QueryError(f"unknown report {kind!r}; known: {', '.join(KINDS)}")
    return kind


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def check_params(kind: str, given: Mapping[str, Any]) -> dict[str, str]:
    """The report's parameters, checked and normalised (times to UTC); unknown or missing ones refused."""
    required, optional = PARAMS[check_kind(kind)]
    given = {k: v for k, v in given.items() if v is not None and v != ""}
    unknown = sorted(set(given) - set(required) - set(optional))
    if unknown:
        raise QueryError(f"the {kind} report takes no parameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(required + optional)}")
    out: dict[str, str] = {}
    for name in required + optional:
        if name not in given:
            if name in required:
                raise QueryError(f"the {kind} report needs parameter {name!r}")
            continue
        value = str(given[name])
        if len(value) > _MAX or any(ord(c) < 32 for c in value):
            raise QueryError(f"parameter {name!r} is too long or holds control characters")
        out[name] = value
    if kind == "erasure" and not _REF.match(out["subject_ref"]):
        raise QueryError("subject_ref must be a subject reference: 32 lower-case hex characters")
    if "since" in out:
        out["since"] = (parse_since if kind == "completeness" else parse_time)(out["since"])
    if "until" in out:
        out["until"] = parse_time(out["until"])
    if "since" in out and "until" in out and out["since"] > out["until"]:
        raise QueryError("since is after until")
    return out
