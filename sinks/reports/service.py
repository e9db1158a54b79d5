"""Make a report: gather, render (html, pdf or json), then record it in the query audit log with
the SHA-256 of the exact bytes handed out (action ``report``; what = the kind; params = its
parameters; details = format, sha256, size, verified). The record is acknowledged before the bytes
are released; a failed report is recorded too, with its outcome.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sinks.access.audit import REPORT, AuditTrail
from sinks.access.roles import Actor
from sinks.exceptions import QueryError
from sinks.reports.gather import BUILDERS, Source
from sinks.reports.params import check_format, check_kind, check_params
from sinks.reports.pdf import html_to_pdf
from sinks.reports.render import render_html, render_json


@dataclass(frozen=True)
class Made:
    kind: str
    fmt: str
    body: bytes
    sha256: str
    report: dict[str, Any]
    audit: dict[str, Any]

    @property
    def filename(self) -> str:
        key = next(iter(self.report["parameters"].values()), "")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key))[:60]
        return f"lineage-{self.kind}-{safe}.{self.fmt}"


def render(report: dict[str, Any], fmt: str) -> bytes:
    if fmt == "json":
        return render_json(report)
    page = render_html(report)
    return page.encode("utf-8") if fmt == "html" else html_to_pdf(page)


def make_report(source: Source, kind: str, raw_params: dict[str, Any], fmt: str, actor: Actor,
                trail: AuditTrail, reason: str = "") -> Made:
    """Check, gather, render and audit one report (QueryError for a bad parameter or nothing found)."""
    with trail.attempt(actor, REPORT, kind, params={k: v for k, v in raw_params.items() if v not in (None, "")},
                       reason=reason, refusals=(QueryError,)) as attempt:
        check_kind(kind)
        check_format(fmt)
        params = check_params(kind, raw_params)
        report = BUILDERS[kind](source, params, actor)
        body = render(report, fmt)
        digest = hashlib.sha256(body).hexdigest()
        attempt.details.update({"format": fmt, "sha256": digest, "bytes": len(body),
                                "verified": bool(report["integrity"].get("verified"))})
        attempt.rows = 1
    return Made(kind, fmt, body, digest, report, attempt.entry)
