"""The ordering and draining logic of batches in flight, with a stand-in batch processor (pure
logic: no broker, no Redis). The processing side is the real one (:class:`ProcessingThread`,
:class:`BatchServer`, the table copy); only what a batch does is faked."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stream_apps.event_path import inflight
from stream_apps.event_path.batch import BatchResult, InMessage
from stream_apps.event_path.inflight import InFlight, Stopped
from stream_apps.event_path.serving import BatchServer, Job, ProcessingThread, TableCopy, TableFeed


class FakeResources:
    """A batch of ``train:K`` / ``predict:K`` values: training writes K, a prediction records what it
    saw for K. ``fail`` holds first offsets whose delivery raises (once each); ``gate`` holds a
    batch until it is set."""

    def __init__(self, lookup: Callable[[str], Any], log: dict[str, Any]) -> None:
        self.lookup = lookup
        self.log = log
        self.processor = self

    def process(self, msgs: list[InMessage]) -> BatchResult:
        result = BatchResult()
        first = msgs[0].offset
        gate = self.log["gates"].get(first)
        if gate is not None:
            gate.wait(10)
        written: dict[str, Any] = {}
        for m in msgs:
            verb, key = (m.value or b"").decode().split(":")
            if verb == "train":
                written[key] = {"run": m.offset}
                result.table_updates.append((key, written[key]))
            else:
                self.log["seen"].append((m.offset, written.get(key) or self.lookup(key)))
        result.counters["first"] = first
        return result

    def deliver(self, result: BatchResult) -> None:
        first = result.counters["first"]
        if first in self.log["fail"]:
            self.log["fail"].discard(first)
            raise redis.exceptions.ConnectionError("redis went away")
        self.log["delivered"].append(first)

    def close(self) -> None:
        self.log["closed"] = True


def _records(first: int, values: list[str]) -> tuple[list[Any], list[Any]]:
    fields = [("lineage.t", 0, first + i, None, v.encode(), []) for i, v in enumerate(values)]
    return [f"r{first + i}" for i in range(len(values))], fields


class Harness:
    """An :class:`InFlight` on a real :class:`ProcessingThread` with :class:`FakeResources`."""

    def __init__(self, limit: int, fail: set[int] | None = None) -> None:
        self.log: dict[str, Any] = {"seen": [], "delivered": [], "fail": set(fail or ()), "gates": {}}
        self.table: dict[str, Any] = {}
        self.commits: list[list[Any]] = []
        self.stopping = threading.Event()

        def build(settings: Any, changelog: str, lookup: Callable[[str], Any]) -> Any:
            return FakeResources(lookup, self.log)

        self.processing = ProcessingThread(None, "changelog", build)  # type: ignore[arg-type]
        self.flight = InFlight(self.processing, limit, lambda: dict(self.table), self._apply, self.commits.append,
                               self.stopping)

    def _apply(self, updates: list[tuple[str, Any]]) -> None:
        self.table.update(updates)

    def add(self, first: int, values: list[str]) -> None:
        self.flight.add(*_records(first, values))

    def committed(self) -> list[str]:
        return [r for batch in self.commits for r in batch]


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflight, "RETRY_FIRST_S", 0.01)


def test_one_in_flight_commits_before_the_next_batch_is_consumed():
    h = Harness(limit=1)
    h.add(0, ["train:m"])
    assert len(h.flight) == 0 and h.committed() == ["r0"]
    h.add(1, ["predict:m"])
    assert h.committed() == ["r0", "r1"]
    h.processing.close()


def test_batches_overlap_up_to_the_limit_and_commit_in_order():
    h = Harness(limit=3)
    gate = threading.Event()
    h.log["gates"][0] = gate  # the first batch is held in processing
    h.add(0, ["train:a"])
    h.add(1, ["train:b"])
    assert len(h.flight) == 2 and h.commits == []  # a third batch may still be consumed
    h.flight.reap()
    assert h.commits == []  # nothing finished: nothing committed, nothing waited for
    threading.Timer(0.05, gate.set).start()
    h.add(2, ["predict:a"])  # the third: waits until the oldest is committed
    assert len(h.flight) == 2 and h.committed() == ["r0"]
    h.flight.drain()
    assert h.committed() == ["r0", "r1", "r2"] and len(h.commits) == 3
    assert h.log["delivered"] == [0, 1, 2]
    h.processing.close()


def test_a_batch_sees_the_table_updates_of_the_batch_before_it_still_in_flight():
    h = Harness(limit=2)
    gate = threading.Event()
    h.log["gates"][0] = gate
    h.add(0, ["train:credit@7"])
    assert h.table == {}  # batch 0 in flight: the table has not got its update yet
    gate.set()
    h.add(1, ["predict:credit@7"])
    h.flight.drain()
    assert h.log["seen"] == [(1, {"run": 0})]
    assert h.table == {"credit@7": {"run": 0}}
    h.processing.close()


def test_an_unprocessed_batch_is_retried_in_order_and_nothing_overtakes_it(quick_retries):
    h = Harness(limit=3, fail={1})
    gate = threading.Event()
    h.log["gates"][0] = gate
    h.add(0, ["train:m"])
    h.add(1, ["train:m", "predict:m"])
    gate.set()
    h.add(3, ["predict:m"])
    h.flight.drain()
    assert h.committed() == ["r0", "r1", "r2", "r3"]
    assert [len(b) for b in h.commits] == [1, 2, 1]
    assert h.log["delivered"] == [0, 1, 3]  # batch 2 (first offset 3) only after batch 1's retry
    # the prediction of the last batch joined the retried batch's training, not the first one's
    assert h.log["seen"][-1] == (3, {"run": 1})
    h.processing.close()


def test_a_failure_while_settling_for_a_rebalance_leaves_it_and_the_rest_uncommitted():
    h = Harness(limit=3, fail={1})
    gate = threading.Event()
    h.log["gates"][0] = gate
    h.add(0, ["train:m"])
    h.add(1, ["train:x"])
    gate.set()
    h.add(2, ["predict:m"])
    dropped = h.flight.settle()
    assert h.committed() == ["r0"]
    assert [b.records for b in dropped] == [["r1"], ["r2"]]
    assert len(h.flight) == 0
    # processing goes on with a new chain: the next batch is not held back by the dropped ones
    h.add(10, ["predict:x"])
    h.flight.drain()
    assert h.committed() == ["r0", "r10"]
    assert h.log["seen"][-1] == (10, None)  # the dropped batch's table update was never applied
    h.processing.close()


def test_stop_during_a_retry_leaves_the_batches_uncommitted(quick_retries):
    h = Harness(limit=2, fail={0})
    h.stopping.set()
    with pytest.raises(Stopped):
        h.add(0, ["train:m"])
        h.add(1, ["predict:m"])
        h.flight.drain()
    assert h.commits == []
    assert [b.records for b in h.flight.drop()]  # still there, never committed
    h.processing.close()


def test_stop_drains_every_batch_in_flight_and_commits_it():
    h = Harness(limit=3)
    gate = threading.Event()
    h.log["gates"][0] = gate
    h.add(0, ["train:m"])
    h.add(1, ["predict:m"])
    threading.Timer(0.05, gate.set).start()
    h.flight.drain()
    assert h.committed() == ["r0", "r1"]
    h.processing.close()
    assert h.log.get("closed") is True


class _Res:
    def __init__(self, fail: bool = False) -> None:
        self.processor = self
        self.fail = fail
        self.done: list[int] = []

    def process(self, msgs: list[InMessage]) -> BatchResult:
        result = BatchResult()
        result.table_updates = [("k", {"by": msgs[0].offset})]
        return result

    def deliver(self, result: BatchResult) -> None:
        if self.fail:
            raise redis.exceptions.TimeoutError("slow")
        self.done.append(result.table_updates[0][1]["by"])


def _job(seq: int, after: int | None, acked: int = -1, delta: Any = (False, {}, [])) -> Job:
    return Job(seq, after, acked, [("t", 0, seq, None, b"", [])], delta)


def test_the_server_skips_every_job_chained_on_a_failed_one():
    res = _Res(fail=True)
    server = BatchServer(res, TableCopy())
    assert server.handle(_job(0, None))[0] == "retry"
    assert server.handle(_job(1, 0)) == ("skipped", "batch 0 before it was not processed")
    res.fail = False
    assert server.handle(_job(0, None))[0] == "ok"  # re-submitted: starts a new chain
    assert server.handle(_job(1, 0))[0] == "ok"
    assert server.handle(_job(2, 0))[0] == "skipped"  # chained on a batch that is not the last one done
    assert res.done == [0, 1]


def test_processing_and_delivery_halves_keep_both_chains():
    """As the processing child runs them: a batch is processed while the one before it is being
    delivered, and reads that one's table updates. A delivery that fails takes every staged update
    with it: the batches processed on them are answered ``skipped`` (never delivered), and a job
    chained on them is not even processed, until the consumer side starts a new chain."""
    res = _Res(fail=True)
    processed: list[int] = []
    real = res.process
    res.process = lambda msgs: (processed.append(msgs[0].offset), real(msgs))[1]  # type: ignore[method-assign]
    table = TableCopy()
    server = BatchServer(res, table)
    first, second = server.prepare(_job(0, None)), server.prepare(_job(1, 0))
    assert table.get("k") == {"by": 1} and table.data == {}  # staged: read, not yet recorded
    assert server.complete(first)[0] == "retry"
    assert table.get("k") is None  # the failed batch's update (and the one read on it) went
    assert server.prepare(_job(2, 1)) == ("skipped", "batch 1 before it was not processed")
    assert processed == [0, 1]  # the job chained on the failure was not processed
    assert server.complete(second) == ("skipped", "batch 0 before it was not processed")
    res.fail = False
    again = [server.prepare(_job(0, None)), server.prepare(_job(1, 0))]  # the consumer side re-sends
    assert [server.complete(p)[0] for p in again] == ["ok", "ok"]
    assert res.done == [0, 1] and table.data == {"k": {"by": 1}} and table.get("k") == {"by": 1}


def test_a_job_chained_on_one_that_failed_to_process_is_not_processed():
    res = _Res()
    calls: list[int] = []

    def process(msgs: list[InMessage]) -> BatchResult:
        calls.append(msgs[0].offset)
        if msgs[0].offset == 5:
            raise redis.exceptions.ConnectionError("down")
        return _Res.process(res, msgs)

    res.process = process  # type: ignore[method-assign]
    server = BatchServer(res, TableCopy())
    answers = [server.prepare(_job(4, None)), server.prepare(_job(5, 4)), server.prepare(_job(6, 5))]
    assert calls == [4, 5] and answers[2] == ("skipped", "batch 5 before it was not processed")
    assert [server.complete(a)[0] for a in answers] == ["ok", "retry", "skipped"]
    assert res.done == [4]


def test_table_copy_keeps_own_updates_the_sender_had_not_seen():
    copy = TableCopy()
    copy.receive((True, {"a": 1, "b": 1}, []), acked=-1)
    copy.record(4, [("a", "mine")])
    copy.receive((False, {"a": "other worker", "b": 2}, []), acked=3)  # sent before batch 4 was applied
    assert copy.data == {"a": "mine", "b": 2}
    copy.receive((False, {"a": "other worker"}, []), acked=4)  # batch 4 applied: the sender knows
    assert copy.data == {"a": "other worker", "b": 2}
    copy.record(5, [("c", 1)])
    copy.receive((False, {}, ["c", "b"]), acked=4)
    assert copy.data == {"a": "other worker", "c": 1}
    copy.receive((True, {"z": 0}, []), acked=5)  # a whole table replaces the copy
    assert copy.data == {"z": 0}


def test_table_feed_sends_only_changes_and_mirrors_applied_updates():
    feed = TableFeed()
    assert feed.delta({"a": 1}) == (True, {"a": 1}, [])
    feed.applied([("b", 2)])  # the processing side wrote b itself
    assert feed.delta({"a": 1, "b": 2}) == (False, {}, [])
    assert feed.delta({"b": 3}) == (False, {"b": 3}, ["a"])
    feed.reset()
    assert feed.delta({"b": 3})[0] is True


def test_worker_settings_defaults_and_limits():
    from lineage.settings import WorkerSettings

    assert (WorkerSettings().max_in_flight, WorkerSettings().processing) == (2, "process")
    assert WorkerSettings(max_in_flight=1, processing="thread").processing == "thread"
    for bad in ({"max_in_flight": 0}, {"max_in_flight": 17}, {"processing": "fork"}):
        with pytest.raises(ValueError):
            WorkerSettings(**bad)


def test_worker_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    from lineage.exceptions import ConfigError
    from lineage.settings import load_settings

    monkeypatch.setenv("LINEAGE_WORKER__MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("LINEAGE_WORKER__PROCESSING", "thread")
    s = load_settings()
    assert (s.worker.max_in_flight, s.worker.processing) == (3, "thread")
    monkeypatch.setenv("LINEAGE_WORKER__PROCESSING", "fork")
    with pytest.raises(ConfigError, match="worker.processing"):
        load_settings()



class _Rec:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_a_revoke_that_drops_batches_rewinds_the_partitions_kept():
    """Incremental rebalancing revokes some partitions: the dropped batches' records of the others
    must be consumed again, so those partitions go back to their first dropped record."""
    from confluent_kafka import TopicPartition

    from stream_apps.event_path.consumer import ConsumerLoop
    from stream_apps.event_path.inflight import Batch

    dropped = [Batch(0, [_Rec("a", 0, 5), _Rec("a", 1, 7)], []), Batch(1, [_Rec("a", 1, 9), _Rec("b", 0, 3)], [])]
    loop = ConsumerLoop.__new__(ConsumerLoop)  # only the callback is under test
    loop._inflight = type("F", (), {"settle": lambda self: dropped, "__len__": lambda self: 2})()
    seeks: list[tuple[str, int, int]] = []
    consumer = type("C", (), {"seek": lambda self, tp: seeks.append((tp.topic, tp.partition, tp.offset))})()
    loop._revoked(consumer, [TopicPartition("a", 0)])  # type: ignore[arg-type]
    assert sorted(seeks) == [("a", 1, 7), ("b", 0, 3)]
    seeks.clear()
    loop._inflight = type("F", (), {"settle": lambda self: [], "__len__": lambda self: 0})()
    loop._revoked(consumer, [TopicPartition("a", 0)])  # type: ignore[arg-type]
    assert seeks == []
