"""Keep secrets out of what is shown: status reports, ``--json``, ``/health``, logs, error messages.

Redis and ClickHouse URLs can carry ``user:password@``; librdkafka options can carry
``sasl.password``, ``ssl.key.password`` and the like. Everything printed goes through these.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
#: librdkafka option names whose values are secrets.
_SECRET_OPTION = re.compile(r"(password|secret|token|credential|\.key\.pem|keystore\.key)", re.IGNORECASE)
#: Query parameters of a URL that are secrets (clickhouse-connect accepts ``?password=``).
_SECRET_PARAM = re.compile(r"(password|passwd|pwd|secret|token|key)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s@:'\"]*)(?P<password>:[^/\s@'\"]*)?@")


def redact_url(url: str) -> str:
    """``url`` without its password: ``redis://user:pw@host/0`` -> ``redis://user:***@host/0``.

    Secret query parameters (``?password=``) are masked too. Anything that does not parse as a
    URL comes back with every ``scheme://...@`` userinfo masked.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed netloc
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        # user:password keeps the user; a lone userinfo is a password for some schemes (redis://pw@host)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret (and chdb:///path keeps its three slashes)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka options with secret values masked (for showing a configuration)."""
    return {k: MASK if _SECRET_OPTION.search(str(k)) else v for k, v in options.items()}


def _mask_userinfo(m: re.Match[str]) -> str:
    """``user:password@`` keeps the user; a lone ``token@`` is masked whole."""
    if m.group("password") is not None:
        return f"{m.group('scheme')}{m.group('user')}:{MASK}@"
    return f"{m.group('scheme')}{MASK}@"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL userinfo masked and each of ``secrets`` (non-empty) replaced by ``***``."""
    out = _USERINFO.sub(_mask_userinfo, text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, MASK)
    return out


__all__ = ["MASK", "redact_config", "redact_text", "redact_url"]
