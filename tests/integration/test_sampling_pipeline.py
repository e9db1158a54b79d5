"""Tiered sampling on the real stack: 100,000 routine predictions at 2% are captured at 2% +/- 0.3%,
identically across two runs and across 1 vs 2 workers; every consequential prediction is captured;
a flagged prediction's held snapshot is promoted, decryptable, and its subject is captured in full."""
from __future__ import annotations

import json
import subprocess
import time

import orjson
import pytest

from factories import inference_event, training_event
from integration.sink_support import env_for
from integration.worker_support import (
    LINEAGE_BIN,
    encode_many,
    produce_all,
    read_topic,
    read_to_end,
    running_workers,
    worker_logs,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROUTINE = 100_000
CONSEQUENTIAL = 1_000


def _events() -> tuple[list[dict], list[dict]]:
    routine = [
        inference_event(f"r-{i:06d}", subject_id=f"subj-{i % 500}", snapshot={"f": str(i % 7)}, risk=0.1 + (i % 50) / 100)
        for i in range(ROUTINE)
    ]
    conseq = []
    for i in range(CONSEQUENTIAL):
        kind = i % 3
        conseq.append(
            inference_event(
                f"c-{i:05d}",
                subject_id=f"subj-{i % 500}",
                snapshot={"f": "c"},
                risk=0.95 if kind == 0 else 0.2,
                decision="deny" if kind == 1 else "approve",
                regulatory_class="credit" if kind == 2 else None,
            )
        )
    return routine, conseq


def _run(settings, train: bytes, raw: list[tuple[bytes, bytes]], workers: int) -> dict[str, dict]:
    t = settings.topics
    with running_workers(settings, workers):
        if workers > 1:
            time.sleep(8)  # both members join before traffic, so the split is real
        # topics are not ordered against each other: let the training lineage land first
        produce_all(settings, [(t.training, None, train, None)])
        assert len(read_topic(settings, t.graph, 1, timeout=60)) == 1, worker_logs(settings)[-2000:]
        time.sleep(1)  # the changelog reaches every worker's global table
        produce_all(settings, ((t.inference, k, v, None) for k, v in raw))
        out = read_topic(settings, t.graph, len(raw) + 1, timeout=180)
        assert len(out) >= len(raw) + 1, worker_logs(settings)[-2000:]
    rows = {}
    for m in out:
        inf = orjson.loads(m.value())["inference"]
        if inf is not None:
            rows[inf["prediction_id"]] = inf
    return rows


def test_tiered_sampling_100k_identical_across_runs_and_workers(settings_factory, make_topics):
    routine, conseq = _events()
    train = training_event("credit", "7")
    records = routine + conseq
    results = []
    for workers in (1, 2):
        s = settings_factory(topics={"partitions": 6})
        make_topics(s)
        encoded = encode_many(s, "inference", records)  # sealed for this deployment's key
        raw = [(r["prediction_id"].encode(), b) for r, b in zip(records, encoded)]
        results.append((s, _run(s, encode_many(s, "training", [train])[0], raw, workers)))
    (s1, one), (s2, two) = results
    assert len(one) == len(two) == ROUTINE + CONSEQUENTIAL
    sampled = {p for p, inf in one.items() if inf["tier"] == "sampled"}
    share = len(sampled) / ROUTINE
    assert abs(share - 0.02) <= 0.003, share
    assert sampled == {p for p, inf in two.items() if inf["tier"] == "sampled"}  # 1 vs 2 workers, 2 runs
    assert {p: i["tier"] for p, i in one.items()} == {p: i["tier"] for p, i in two.items()}
    for rows in (one, two):
        for p in sampled:
            assert rows[p]["snapshot_pointer"] and rows[p]["snapshot_sha256"]
        for c in conseq:
            inf = rows[c["prediction_id"]]
            assert inf["tier"] == "consequential" and inf["snapshot_status"] == "stored", inf
            assert inf["tier_reason"]
        routine_rows = [rows[r["prediction_id"]] for r in routine[:2000]]
        assert all(r["model_version"] == "7" and r["tier_reason"] for r in routine_rows)
    # the training run was joined to the predictions (processed before them on this topic set)
    for rows in (one, two):
        assert all(inf["training_run_id"] == train["run"]["runId"] and not inf["unknown_model_version"]
                   for inf in rows.values())

    # flag a routine (not sampled) prediction later: its held snapshot is promoted and decryptable
    target = next(r for r in routine if one[r["prediction_id"]]["tier"] == "routine")
    env = env_for(s1)
    flagged = subprocess.run([LINEAGE_BIN, "flag", "--prediction", target["prediction_id"], "--reason", "appeal", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert flagged.returncode == 0, flagged.stderr
    info = json.loads(flagged.stdout)
    got = subprocess.run([LINEAGE_BIN, "snapshot", "get", info["snapshot_pointer"], "--reason", "appeal review",
                          "--sha256", info["snapshot_sha256"], "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    snap = json.loads(got.stdout)
    assert snap["snapshot"]["values"] == target["feature_snapshot"]["values"]
    assert snap["audit"]["who"].startswith("local:") and snap["audit"]["reason"] == "appeal review"
    assert snap["audit"]["outcome"] == "ok" and snap["audit"]["what"] == info["snapshot_pointer"]
    promoted = [orjson.loads(m.value()) for m in read_to_end(s1, s1.topics.graph) if m.key() == info["event_id"].encode()]
    assert promoted and promoted[0]["inference"]["tier"] == "flagged"
    assert promoted[0]["payload"]["supersedes_event_id"] == target["event_id"]
    # later predictions of the flagged subject are captured in full
    later = inference_event("later-1", subject_id=target["subject_id"], snapshot={"f": "9"}, risk=0.1)
    with running_workers(s1):
        produce_all(s1, [(s1.topics.inference, b"later-1", encode_many(s1, "inference", [later])[0], None)])
        deadline = time.monotonic() + 60
        row = None
        while row is None and time.monotonic() < deadline:
            for m in read_to_end(s1, s1.topics.graph):
                if m.key() == later["event_id"].encode():
                    row = orjson.loads(m.value())["inference"]
            time.sleep(0.5)
    assert row is not None and row["tier"] == "flagged" and row["snapshot_status"] == "stored"
