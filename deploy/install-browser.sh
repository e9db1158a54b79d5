#!/usr/bin/env bash
# Install headless Chromium + chromedriver (dashboard browser test, PDF reports) and poppler-utils
# (pdftoppm, pdftotext: the report tests read the PDFs back). Idempotent: installs only what is
# missing. Debian packages: `chromium`, `chromium-driver`, `poppler-utils`. Needs root (or sudo).
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
{ command -v pdftoppm && command -v pdftotext; } >/dev/null 2>&1 || missing+=(poppler-utils)

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown); poppler-utils present"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
/usr/bin/chromium --version
/usr/bin/chromedriver --version
pdftoppm -v 2>&1 | head -n 1
