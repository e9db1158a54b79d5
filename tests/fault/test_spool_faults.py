"""The spool survives its writer: a process SIGKILLed after 5,000 appends (no fsync, no clean
close) leaves every event for the next one to recover, in order. Needs no stack."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from producers.spool import Spool

pytestmark = [pytest.mark.fault]

REPO = Path(__file__).resolve().parents[2]


def test_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    d = tmp_path / "s"
    code = textwrap.dedent(f"""
        import os, signal
        from producers.spool import Spool
        sp = Spool({str(d)!r}, max_bytes=1 << 24, fsync="never", segment_bytes=1 << 16)
        for i in range(5000):
            sp.append(b"e%d" % i)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    sp = Spool(d, max_bytes=1 << 24, segment_bytes=1 << 16)
    assert sp.recovered == 5000
    bodies: list[bytes] = []
    while frames := sp.read(100):  # drain, acknowledging as a sender would
        for fr in frames:
            bodies.append(fr.body)
            sp.ack(fr.segment, fr.idx)
    assert bodies == [b"e%d" % i for i in range(5000)]
    sp.close()
