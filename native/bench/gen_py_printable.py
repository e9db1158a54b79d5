"""Writes native/src/py_printable.rs: the non-ASCII code points Python's str.isprintable rejects,
so the compiled `repr` escapes exactly what this Python escapes (run with the project's Python)."""
from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "py_printable.rs"


def main() -> None:
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for cp in range(0x80, 0x110000):
        rejected = not chr(cp).isprintable()
        if rejected and start is None:
            start = cp
        if not rejected and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    lines = [
        "//! Non-ASCII code points that Python's `str.isprintable` rejects (Unicode %s, Python %d.%d),"
        % (unicodedata.unidata_version, sys.version_info[0], sys.version_info[1]),
        "//! as inclusive ranges. Generated from `unicodedata` by `native/bench/gen_py_printable.py`.",
        "pub const NOT_PRINTABLE: &[(u32, u32)] = &[",
    ]
    row: list[str] = []
    for a, b in ranges:
        row.append(f"(0x{a:X}, 0x{b:X})")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("];")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(ranges)} ranges -> {OUT}")


if __name__ == "__main__":
    main()
