"""The report of `lineage verify`: the chains checked against themselves (``verify.sql``) and
against the signed checkpoints (``checkpoints.py``).

The chains alone catch a row changed, removed or duplicated without recomputing the hashes
after it. A forger who recomputes them (and ``chain_heads``) is caught here: every checkpoint
signed by the trusted key pins row hashes at given offsets, and the stored rows must still carry
them. Per partition the report names the first rewritten row (precisely when every row was
pinned, else the span since the last matching pin), a signed head the store no longer matches,
and a signed partition that is gone.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sinks.clickhouse.checkpoints import Checkpoint, key_id, open_checkpoint, read_records, trusted_key
from sinks.clickhouse.client import QueryResult
from sinks.clickhouse.queries import MAX_RANGES

if TYPE_CHECKING:
    from lineage.settings import Settings

Named = Callable[[str, dict[str, Any]], QueryResult]
PROBLEM_KEYS = ("topic", "kafka_partition", "kafka_offset", "event_id", "problem", "gap_from_offset", "detail")
#: Ranges per `verify_hashes` call: the API takes them in a URL.
RANGES_PER_CALL = 60
#: Signed heads per partition checked one by one; past this, a sample first (see ``_first_probe``).
ALL_HEADS = 10 * RANGES_PER_CALL


def build_report(named: Named, settings: Settings) -> dict[str, Any]:
    """The verify report: ``ok``, ``rows``, ``partitions``, ``chains``, ``problems``, ``checkpoint``."""
    res = named("verify", {})
    summary = named("verify_summary", {})
    chains = {str(name): {"rows": int(rows), "partitions": int(parts)} for name, rows, parts in summary.rows}
    problems = res.dicts()
    checkpoint, signed_problems = check_checkpoints(named, settings)
    problems.extend(signed_problems)
    ok = not problems and checkpoint["status"] in ("valid", "none", "no_public_key")
    return {"ok": ok, "rows": sum(c["rows"] for c in chains.values()),
            "partitions": sum(c["partitions"] for c in chains.values()), "chains": chains,
            "problems": problems, "checkpoint": checkpoint}


def check_checkpoints(named: Named, settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(what was found on the checkpoints topic, problems of the stored rows against it)."""
    topic = settings.topics.checkpoints
    info: dict[str, Any] = {"topic": topic, "status": "none", "key_id": None, "checkpoints": 0, "refused": []}
    trusted = trusted_key(settings)
    records = read_records(settings) or []
    if trusted is None:
        # checkpoints nobody can check are a failure: removing the public key must not turn them off
        info["status"] = "unverifiable" if records else "no_public_key"
        found = f"{len(records)} checkpoint(s) on {topic} but " if records else ""
        info["message"] = (f"{found}no checkpoint public key: set LINEAGE_CHECKPOINTS__PUBLIC_KEY (the sink writes "
                           f"it to {settings.checkpoint_public_key_path}); rows are checked only against the store's "
                           "own chain")
        return info, []
    info["key_id"] = key_id(trusted)
    opened = [open_checkpoint(value, position, trusted) for position, value in records]
    valid = [c for c in opened if c.valid]
    refused = [c for c in opened if not c.valid]
    info["checkpoints"] = len(valid)
    info["refused"] = [{"position": c.position, "reason": c.reason} for c in refused[-10:]]
    if not opened:
        info["message"] = (f"no signed checkpoint on {topic}: rows are checked only against the store's own chain, "
                           "which whoever can write the store can recompute")
        return info, []
    if valid:
        last = valid[-1]
        info["latest"] = {"position": last.position, "seq": last.seq, "time": _iso(last.ts_ms), "signer": last.key_id}
    if refused:
        info["status"] = "refused"
        info["message"] = (f"{len(refused)} checkpoint(s) on {topic} refused, the latest at position "
                           f"{refused[-1].position}: {refused[-1].reason}")
    else:
        info["status"] = "valid"
        info["message"] = f"{len(valid)} checkpoint(s) signed by key {info['key_id']}"
    return info, _compare(named, valid)


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class _Signed:
    """What the checkpoints say about one partition of one chain."""

    chain: str
    topic: str
    partition: int
    heads: dict[int, tuple[str, Checkpoint]] = field(default_factory=dict)  # offset -> (full hash, where)
    pins: dict[int, tuple[str, Checkpoint]] = field(default_factory=dict)  # offset -> (hash prefix, where)
    stride: int = 1


@dataclass
class _Stored:
    rows: dict[tuple[str, int, int], tuple[str, str]] = field(default_factory=dict)  # -> (event_id, row_hash)
    extent: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # -> (last offset, rows)
    start: dict[tuple[str, int], int] = field(default_factory=dict)


def _fetch(named: Named, ranges: list[list[Any]], into: _Stored) -> None:
    for i in range(0, len(ranges), min(RANGES_PER_CALL, MAX_RANGES)):
        chunk = ranges[i:i + RANGES_PER_CALL]
        res = named("verify_hashes", {"ranges": json.dumps(chunk, separators=(",", ":"))})
        for kind, topic, partition, offset, event_id, row_hash, rows in res.rows:
            tp = (str(topic), int(partition))
            if kind == "row":
                into.rows[(*tp, int(offset))] = (str(event_id), str(row_hash))
            elif kind == "extent":
                into.extent[tp] = (int(offset), int(rows))
            elif kind == "start":
                into.start[tp] = int(offset)


def _signed(valid: list[Checkpoint]) -> list[_Signed]:
    out: dict[tuple[str, str, int], _Signed] = {}
    for cp in valid:
        for h in cp.heads:
            key = (h["chain"], h["topic"], h["partition"])
            s = out.get(key)
            if s is None:
                s = out[key] = _Signed(*key)
            s.heads[h["last_offset"]] = (h["head"], cp)
            for offset, prefix in h["pins"]:
                s.pins.setdefault(offset, (prefix, cp))
            s.stride = max(s.stride, h["stride"])
    return [out[k] for k in sorted(out)]


def _where(cp: Checkpoint) -> str:
    return f"checkpoint {cp.seq} (position {cp.position}, {_iso(cp.ts_ms)})"


def _problem(s: _Signed, offset: int, event_id: str, problem: str, gap_from: int, detail: str) -> dict[str, Any]:
    return dict(zip(PROBLEM_KEYS, (s.topic, s.partition, offset, event_id, problem, gap_from, detail)))


def _run_ends(valid: list[Checkpoint]) -> set[int]:
    """Positions of the last checkpoint of each signer run (the next one does not continue its
    sequence), and the newest: a rewrite while no sink ran must change the heads they signed."""
    ends = {a.position for a, b in zip(valid, valid[1:]) if b.seq != a.seq + 1}
    return ends | ({valid[-1].position} if valid else set())


def _first_probe(s: _Signed, ends: set[int]) -> list[int]:
    """The heads checked first: all of them while at most ``ALL_HEADS``, else the ends of signer
    runs, the newest and evenly spaced others."""
    heads = sorted(s.heads)
    if len(heads) <= ALL_HEADS:
        return heads
    spaced = {heads[i * len(heads) // RANGES_PER_CALL] for i in range(RANGES_PER_CALL)}
    return sorted({o for o, (_, cp) in s.heads.items() if cp.position in ends} | spaced | {heads[-1]})


def _narrow(named: Named, s: _Signed, stored: _Stored, probed: list[int], start: int) -> tuple[int, int] | None:
    """(last signed head still as signed, first one that is not), or None when all probed match.

    A consistent rewrite changes every hash from the rewritten row on, so between a matching and a
    mismatching head the boundary is found by probing evenly spaced heads, a call per round."""
    tp = (s.topic, s.partition)

    def matches(offset: int) -> bool:
        return stored.rows.get((*tp, offset), ("", ""))[1] == s.heads[offset][0]

    checked = [o for o in probed if o >= start]
    bad = next((o for o in checked if not matches(o)), None)
    if bad is None:
        return None
    good = max((o for o in checked if o < bad), default=start - 1)
    heads = sorted(o for o in s.heads if o >= start)
    while True:
        between = [o for o in heads if good < o < bad]
        if not between:
            return good, bad
        step = len(between) / RANGES_PER_CALL
        probe = between if step <= 1 else sorted({between[int(i * step)] for i in range(RANGES_PER_CALL)})
        _fetch(named, [[s.topic, s.partition, o, o] for o in probe], stored)
        for o in probe:
            if not matches(o):
                bad = o
                break
            good = o


def _compare(named: Named, valid: list[Checkpoint]) -> list[dict[str, Any]]:
    signed = _signed(valid)
    ends = _run_ends(valid)
    probes = [_first_probe(s, ends) for s in signed]
    stored = _Stored()
    _fetch(named, [[s.topic, s.partition, o, o] for s, probe in zip(signed, probes) for o in probe], stored)
    problems: list[dict[str, Any]] = []
    for s, probe in zip(signed, probes):
        tp = (s.topic, s.partition)
        # pruned audit rows are gone legitimately; the raw log is never pruned (a recorded start there
        # is not trusted)
        start = stored.start.get(tp, 0) if s.chain == "query_audit" else 0
        if max(s.heads) < start:
            continue
        newest = max(s.heads)
        newest_hash, newest_cp = s.heads[newest]
        if tp not in stored.extent:
            problems.append(_problem(s, newest, "", "partition_missing", -1,
                                     f"{s.chain} partition signed up to offset {newest} in {_where(newest_cp)} "
                                     "has no rows in the store"))
            continue
        span = _narrow(named, s, stored, probe, start)
        if span is None:
            continue
        good, bad = span
        _fetch(named, [[s.topic, s.partition, good + 1, bad]], stored)
        problems.append(_first_bad(s, stored, good + 1, bad))
        at = stored.rows.get((*tp, newest))
        if at is None:
            problems.append(_problem(s, newest, "", "head_not_as_signed", stored.extent[tp][0],
                                     f"head signed at offset {newest} in {_where(newest_cp)} is not in the store "
                                     f"(it ends at {stored.extent[tp][0]}): rows were deleted"))
        elif at[1] != newest_hash:
            problems.append(_problem(s, newest, at[0], "head_not_as_signed", -1,
                                     f"stored {at[1][:12]}..., signed {newest_hash[:12]}... in {_where(newest_cp)}"))
    return problems


def _first_bad(s: _Signed, stored: _Stored, low: int, high: int) -> dict[str, Any]:
    """The first row in ``low..high`` that is not as signed, from the pins (every row while dense)."""
    tp = (s.topic, s.partition)
    pins = {o: p for o, p in s.pins.items() if low <= o <= high}
    for o, (h, cp) in s.heads.items():
        if low <= o <= high:
            pins[o] = (h[:16], cp)
    last_good = low - 1
    for offset in sorted(pins):
        prefix, cp = pins[offset]
        row = stored.rows.get((*tp, offset))
        if row is None:
            return _problem(s, offset, "", "signed_row_missing", last_good,
                            f"row signed in {_where(cp)} is not in the store: rows after offset {last_good} were deleted")
        if not row[1].startswith(prefix):
            first = min(o for (t, p, o) in stored.rows if (t, p) == tp and last_good < o <= offset)
            event_id = stored.rows[(*tp, first)][0]
            where = (f"row hash differs from the one signed in {_where(cp)}" if first == offset else
                     f"a row in offsets {first}..{offset} differs from what {_where(cp)} signed (pinned every "
                     f"{s.stride} rows)")
            return _problem(s, first, event_id, "not_as_signed", last_good,
                            f"{where}: the row was rewritten and the hashes after it recomputed")
        last_good = offset
    return _problem(s, high, stored.rows.get((*tp, high), ("", ""))[0], "not_as_signed", last_good,
                    f"rows after offset {last_good} differ from what was signed")
