"""HTML to PDF with headless Chromium (Debian's ``chromium``, installed by
``deploy/install-browser.sh``): a fresh profile per call, no network, no sync, the page read from
a private temporary directory. No JavaScript is needed by the page."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sinks.exceptions import QueryError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
INSTALL_HINT = "install it with: bash deploy/install-browser.sh (Debian package chromium)"


class PdfUnavailable(QueryError):
    """No Chromium to print with (a one-line message saying how to install it)."""


def find_chromium(candidates: tuple[str, ...] = CHROMIUM_CANDIDATES) -> str | None:
    for candidate in candidates:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    return None


def html_to_pdf(page: str, timeout_s: float = 120.0, chromium: str | None = None) -> bytes:
    """The PDF of ``page``; :class:`PdfUnavailable` without Chromium, QueryError if printing fails."""
    binary = chromium or find_chromium(CHROMIUM_CANDIDATES)
    if binary is None:
        raise PdfUnavailable(f"--format pdf needs Chromium, which is not installed; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="lineage-report-") as tmp:
        root = Path(tmp)
        source, target, profile = root / "report.html", root / "report.pdf", root / "profile"
        source.write_text(page, encoding="utf-8")
        argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer",
                f"--user-data-dir={profile}", f"--print-to-pdf={target}", source.as_uri()]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise QueryError(f"Chromium did not print the report within {timeout_s:.0f}s") from None
        except OSError as exc:
            raise PdfUnavailable(f"cannot run Chromium at {binary} ({exc.strerror}); {INSTALL_HINT}") from None
        if done.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            raise QueryError(f"Chromium failed to print the report (exit status {done.returncode})")
        return target.read_bytes()
