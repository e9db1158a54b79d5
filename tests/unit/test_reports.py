"""Reports, pure parts: parameter checks, the HTML page (self-contained, escaped, stating the
question, parameters, time, author and the chain check) and the integrity statement."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from sinks.access.roles import Actor, Role
from sinks.exceptions import QueryError
from sinks.reports.integrity import statement
from sinks.reports.model import new_report, section
from sinks.reports.params import check_format, check_kind, check_params
from sinks.reports.pdf import PdfUnavailable, html_to_pdf
from sinks.reports.render import render_html, render_json

WHEN = datetime(2026, 6, 20, 9, 30, tzinfo=timezone.utc)


def _report() -> dict:
    r = new_report("provenance", "Provenance of prediction p-1", "Which data produced p-1?",
                   {"prediction": "p-1"}, Actor("alice", Role.AUDITOR, "api"), now=WHEN)
    r["summary"] = ["Source tables: postgres://db:5432/lending.public.customers version v3."]
    r["sections"] = [section("Source tables", ["namespace", "name", "version"],
                             [["postgres://db:5432", "<script>alert(1)</script>", "v3"]]),
                     section("Training run", ["field", "value"], [], "no training run recorded")]
    r["integrity"] = {"verified": True, "statement": "Checked: ... Result: VERIFIED.",
                      "partitions": [{"log": "raw_events", "topic": "t.graph", "partition": 0, "rows_used": 4,
                                      "first_offset": 1, "last_offset": 9, "problems": 0}], "problems": []}
    return r


def test_the_page_states_question_parameters_time_author_answer_and_chain_check() -> None:
    page = render_html(_report())
    assert "<title>Provenance of prediction p-1</title>" in page
    assert "Which data produced p-1?" in page
    assert "parameter: prediction" in page and ">p-1<" in page
    assert "2026-06-20T09:30:00Z" in page
    assert "alice (role auditor, via api)" in page
    assert "lending.public.customers version v3" in page
    assert "Result: VERIFIED." in page and 'class="verdict ok"' in page
    assert "no training run recorded" in page


def test_the_page_is_self_contained_and_escapes_every_value() -> None:
    page = render_html(_report())
    assert "<script" not in page  # the hostile dataset name is text, and the page has no script of its own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in page
    assert "default-src 'none'" in page


def test_an_unverified_chain_is_shown_as_such() -> None:
    r = _report()
    r["integrity"] = {"verified": False, "statement": "Result: NOT VERIFIED.", "partitions": [],
                      "problems": [{"topic": "t.graph", "kafka_partition": 0, "kafka_offset": 5, "problem": "altered",
                                    "detail": "stored abc"}]}
    page = render_html(r)
    assert 'class="verdict bad"' in page and "altered" in page


def test_json_is_the_data_the_page_is_built_from() -> None:
    r = _report()
    data = json.loads(render_json(r))
    assert data == json.loads(json.dumps(r))
    assert data["generated_by"] == {"name": "alice", "role": "auditor", "via": "api"}


def test_parameters_are_checked_with_one_line_messages() -> None:
    assert check_params("impact", {"namespace": "pg://h", "name": "t", "since": "2024-06-15",
                                   "until": "2024-06-20T23:59:59Z"}) == {
        "name": "t", "namespace": "pg://h", "since": "2024-06-15 00:00:00.000000",
        "until": "2024-06-20 23:59:59.000000"}
    assert check_params("erasure", {"subject_ref": "0" * 32}) == {"subject_ref": "0" * 32}
    bad = [
        ("provenance", {}, "needs parameter 'prediction'"),
        ("provenance", {"prediction": "p", "model": "m"}, "takes no parameter(s) model"),
        ("impact", {"name": "t", "since": "yesterday"}, "bad time 'yesterday'"),
        ("impact", {"name": "t", "since": "2024-06-20", "until": "2024-06-15"}, "since is after until"),
        ("erasure", {"subject_ref": "cust-000123"}, "32 lower-case hex"),
        ("erasure", {"subject": "cust-000123"}, "takes no parameter(s) subject"),
        ("completeness", {"model": "m\nx"}, "control characters"),
    ]
    for kind, given, message in bad:
        with pytest.raises(QueryError) as err:
            check_params(kind, given)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(QueryError, match="unknown report 'nope'"):
        check_kind("nope")
    with pytest.raises(QueryError, match="unknown format 'docx'"):
        check_format("docx")


def test_the_integrity_statement_says_what_was_checked() -> None:
    parts = [{"topic": "t.graph", "partition": 1, "log": "raw_events"}]
    ok = statement(True, 5, 5, 0, parts, [], {"status": "valid", "message": "2 checkpoint(s) signed by key k"})
    assert "1 partition(s) holding the 5 row(s)" in ok and "t.graph[1]" in ok and ok.endswith("Result: VERIFIED.")
    missing = statement(False, 5, 3, 2, parts, [{"problem": "altered"}], {"status": "valid", "message": ""})
    assert "2 of the 5 row(s) used are not in the hash-chained logs" in missing
    assert "1 problem(s) found in those partitions (altered)" in missing and missing.endswith("NOT VERIFIED.")
    assert "nothing to verify" in statement(False, 0, 0, 0, [], [], {})


def test_pdf_without_chromium_fails_with_a_one_line_install_hint(tmp_path) -> None:
    with pytest.raises(PdfUnavailable) as err:
        html_to_pdf("<p>x</p>", chromium=str(tmp_path / "no-chromium"))
    assert "install" in str(err.value) and "deploy/install-browser.sh" in str(err.value) and "\n" not in str(err.value)


def test_pdf_is_refused_when_no_chromium_is_found(monkeypatch, tmp_path) -> None:
    import sinks.reports.pdf as pdf

    monkeypatch.setattr(pdf, "CHROMIUM_CANDIDATES", (str(tmp_path / "missing"), "no-such-chromium-binary"))
    with pytest.raises(PdfUnavailable, match="needs Chromium, which is not installed"):
        html_to_pdf("<p>x</p>")


def test_the_attachment_name_cannot_break_its_header() -> None:
    from sinks.reports.service import Made

    r = _report()
    r["parameters"] = {"prediction": 'p"; filename="evil.exe'}
    name = Made("provenance", "pdf", b"", "0" * 64, r, {}).filename
    assert name == "lineage-provenance-p___filename__evil.exe.pdf"
    assert '"' not in name and ";" not in name and " " not in name
