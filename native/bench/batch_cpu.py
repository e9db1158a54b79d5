"""CPU time per event of the batch processor alone (the compiled steps and the Python between them),
on the events `lineage bench pipeline` sends, with no broker and no Redis.

The golden vectors' collaborators stand in for Redis (data keys, run states, flags), the snapshot
store is a real one in a temporary directory; the cycle collector is tuned as in the worker. The
figure is process CPU time (not wall time), per event, over ``--repeat`` passes in batches of
``--batch``; the lowest and the median pass are printed. To compare two builds of the module, run
it with each on ``PYTHONPATH`` in turn, several times, interleaved (the machine's noise is large).

    PYTHONPATH=. .venv/bin/python native/bench/batch_cpu.py --events 20000 --repeat 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events per pass (default 20000)")
    ap.add_argument("--repeat", type=int, default=5, help="passes (default 5)")
    ap.add_argument("--batch", type=int, default=5_000, help="events per batch (default 5000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.events < 1 or args.repeat < 1 or args.batch < 1:
        ap.error("--events, --repeat and --batch must be positive")

    from lineage.codec import Codec
    from lineage.pii.sealing import KeyRing, Sealer, seal_record
    from lineage.pii.store import SnapshotStore
    from lineage.settings import Settings
    from shell.bench.pipeline import _records
    from stream_apps.event_path.batch import InMessage
    from stream_apps.event_path.processor import BatchProcessor
    from stream_apps.event_path.serving import tune_gc
    from tests.golden.event_path import GoldenFlags, GoldenKeys, GoldenRuns

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        codec = Codec.from_settings(settings)
        ring = KeyRing.under(settings.keys_dir)
        sealer = Sealer(ring.ensure())
        msgs = [
            InMessage(settings.topics.event_topics[kind], 0, i, key,
                      codec.encode(kind, seal_record(sealer, rec) if kind == "inference" else rec), [])
            for i, (kind, key, rec) in enumerate(_records(args.events))
        ]
        processor = BatchProcessor(settings, codec, GoldenKeys(), SnapshotStore(Path(tmp) / "segments", "bench"),
                                   GoldenRuns({}), GoldenFlags([]), lambda key: None, seal_keys=ring)
        tune_gc()
        passes = []
        for _ in range(args.repeat):
            start = time.process_time()
            for i in range(0, len(msgs), args.batch):
                processor.process(msgs[i : i + args.batch])
            passes.append((time.process_time() - start) / len(msgs) * 1e6)
    figures = {
        "events_per_pass": len(msgs),
        "cpu_us_per_event_min": round(min(passes), 2),
        "cpu_us_per_event_median": round(statistics.median(passes), 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"batch processor: {figures['cpu_us_per_event_min']} us CPU per event (lowest of {args.repeat} passes), "
              f"median {figures['cpu_us_per_event_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
