"""Kafka errors classified once: fatal ones stop a role with one line, transient ones never leave the loop.

The loop is driven here by a scripted consumer (unit level); the real-broker faults are in
tests/integration/test_chaos.py.
"""

from __future__ import annotations

import ssl
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotCoordinatorError,
    RequestTimedOutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)
from kafka.structs import ConsumerGroupMetadata, MemberState, TopicPartition

from visionstream.faults import BrokerHealth, KafkaFatalError, is_fatal
from visionstream.loop import RetryableBatchError, run_batches
from visionstream.metrics import KAFKA_ERRORS, KAFKA_UP, LABEL_OVERFLOW, LabelCap


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConfigurationError("bad"),
        TopicAuthorizationFailedError(),
        GroupAuthorizationFailedError(),
        SaslAuthenticationFailedError("wrong password"),
        ssl.SSLCertVerificationError("certificate verify failed"),
    ],
)
def test_configuration_authentication_and_authorisation_are_fatal(exc: BaseException) -> None:
    assert is_fatal(exc)
    wrapped = KafkaConnectionError("connect failed")
    wrapped.__cause__ = exc
    assert is_fatal(wrapped), "the client wraps SSL errors: the cause decides"


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("refused"),
        ConnectionResetError(),
        NodeNotReadyError(),
        NotCoordinatorError(),
        RequestTimedOutError(),
        KafkaTimeoutError(),
        OSError("broken pipe"),
    ],
)
def test_network_and_restart_errors_are_transient(exc: BaseException) -> None:
    assert not is_fatal(exc)
    health = BrokerHealth("unit-transient")
    health.failed("poll", exc)  # returns: the caller retries
    assert not health.up and KAFKA_UP.labels(role="unit-transient")._value.get() == 0
    health.ok()
    assert health.up and KAFKA_UP.labels(role="unit-transient")._value.get() == 1


def test_every_client_retries_a_lost_broker_at_least_every_second_unless_told_otherwise() -> None:
    """kafka-python backs reconnects off up to 30 s: a worker then waited that long after a broker came back (the
    chaos cases took 33-38 s from the broker's return to the last stored frame). Every client the roles make gets
    its settings from connection_config."""
    from visionstream.kafka import connection_config
    from visionstream.settings import KafkaSettings

    assert connection_config(KafkaSettings(), "sink")["reconnect_backoff_max_ms"] == 1000
    assert connection_config(KafkaSettings(reconnect_backoff_max_ms=250), "sink")["reconnect_backoff_max_ms"] == 250


def test_a_fatal_error_is_one_line_naming_what_to_check() -> None:
    with pytest.raises(KafkaFatalError) as info:
        BrokerHealth("unit-fatal").failed("commit", TopicAuthorizationFailedError("denied\nby ACL"))
    message = str(info.value)
    assert "\n" not in message and "TopicAuthorizationFailedError" in message and "ACL" in message


def rec(offset: int) -> Any:
    return SimpleNamespace(topic="t", partition=0, offset=offset, key=b"k", value=b"v", headers=[])


class ScriptedConsumer:
    """A consumer whose poll and commit follow a script: a record batch, an exception, or nothing."""

    def __init__(self, polls: list[Any], commits: list[Any], stop: threading.Event) -> None:
        self.polls, self.commits, self.stop = polls, commits, stop
        self.committed: list[int] = []
        self.closed = False
        self._coordinator = SimpleNamespace(coordinator_id=1)
        self._client = SimpleNamespace(connected=lambda node: True)

    def group_metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata("g", 1, "m", None, MemberState.STABLE)

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if not self.polls:
            self.stop.set()
            return {}
        step = self.polls.pop(0)
        if isinstance(step, BaseException):
            raise step
        return {TopicPartition("t", 0): step} if step else {}

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int) -> None:
        step = self.commits.pop(0) if self.commits else None
        if isinstance(step, BaseException):
            raise step
        self.committed.append(offsets[TopicPartition("t", 0)].offset)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}

    def highwater(self, tp: TopicPartition) -> int:
        return 100

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    def close(self, autocommit: bool) -> None:
        self.closed = True
        raise KafkaConnectionError("broker gone")  # closing during an outage must not raise either


class Handler:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.handled: list[int] = []

    def handle(self, records: list[Any]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.handled += [r.offset for r in records]


def run(polls: list[Any], commits: list[Any], failures: list[BaseException], role: str) -> tuple[Any, Handler]:
    stop = threading.Event()
    consumer = ScriptedConsumer(polls, commits, stop)
    handler = Handler(failures)
    run_batches(consumer, handler, stop, role=role, retry_backoff_s=0.01, retry_backoff_max_s=0.02)  # type: ignore[arg-type]
    return consumer, handler


def test_the_loop_rides_out_broker_errors_in_poll_commit_send_and_close() -> None:
    role = "unit-loop"
    before = KAFKA_ERRORS.labels(role=role, operation="commit", error="KafkaConnectionError")._value.get()
    consumer, handler = run(
        # the batch whose send failed is read again (the loop rewinds it)
        polls=[
            KafkaConnectionError("refused"),
            [rec(0), rec(1)],
            RequestTimedOutError(),
            [rec(0), rec(1)],
            [rec(2)],
            [rec(3)],
        ],
        commits=[KafkaConnectionError("reset by peer"), CommitFailedError("rebalanced")],
        failures=[KafkaTimeoutError("metadata not available")],
        role=role,
    )
    assert consumer.closed
    assert handler.handled == [0, 1, 2, 3]
    assert consumer.committed == [4], "the failed commits are covered by the next one"
    assert KAFKA_ERRORS.labels(role=role, operation="commit", error="KafkaConnectionError")._value.get() == before + 1
    assert KAFKA_ERRORS.labels(role=role, operation="poll", error="RequestTimedOutError")._value.get() >= 1
    assert KAFKA_ERRORS.labels(role=role, operation="send", error="KafkaTimeoutError")._value.get() >= 1


@pytest.mark.parametrize("where", ["poll", "commit", "send"])
def test_a_denied_acl_stops_the_loop_with_a_fatal_error(where: str) -> None:
    denied = TopicAuthorizationFailedError()
    polls: list[Any] = [denied] if where == "poll" else [[rec(0)], []]
    commits = [denied] if where == "commit" else []
    failures: list[BaseException] = [RetryableBatchError("x")] if where == "send" else []
    if where == "send":
        failures[0].__cause__ = denied
    with pytest.raises(KafkaFatalError, match="TopicAuthorizationFailedError"):
        run(polls, commits, failures, role=f"unit-acl-{where}")


def test_label_cap_reports_overflow_beyond_the_cap() -> None:
    cap = LabelCap("unit-camera", cap=3)
    before = LABEL_OVERFLOW.labels(label="unit-camera")._value.get()
    assert [cap(f"c{i}") for i in range(5)] == ["c0", "c1", "c2", "_other", "_other"]
    assert cap("c1") == "c1"
    assert LABEL_OVERFLOW.labels(label="unit-camera")._value.get() == before + 2


class TakingHandler(Handler):
    """Takes at most two records per batch (as inference's newest-first choice does for files)."""

    def __init__(self) -> None:
        super().__init__([])
        self.batches: list[list[int]] = []

    def take(self, records: list[Any]) -> list[Any]:
        return records[:2]

    def handle(self, records: list[Any]) -> None:
        self.batches.append([r.offset for r in records])


def test_records_a_handler_leaves_are_handed_over_first_next_time_without_a_seek() -> None:
    stop = threading.Event()
    consumer = ScriptedConsumer([[rec(0), rec(1), rec(2), rec(3), rec(4)], [rec(5)], [], []], [], stop)
    seeks: list[int] = []
    consumer.seek = lambda tp, offset: seeks.append(offset)  # type: ignore[method-assign]
    handler = TakingHandler()
    run_batches(consumer, handler, stop, role="unit-take", max_records=8)  # type: ignore[arg-type]
    assert handler.batches == [[0, 1], [2, 3], [4, 5]], "left records first, in order, then what came next"
    assert consumer.committed == [2, 4, 6] and seeks == [], "commits never pass an unhandled record"


class PendingHandler(Handler):
    """Returns a Pending per batch, as the inference worker does; logs when each batch finishes and each poll."""

    def __init__(self, fresh: bool, log: list[str]) -> None:
        super().__init__([])
        self.fresh, self.log = fresh, log

    def wants_fresh(self) -> bool:
        return self.fresh

    def handle(self, records: list[Any]) -> Any:
        batch = [r.offset for r in records]
        self.log.append(f"handle {batch}")
        return SimpleNamespace(wait=lambda: self.log.append(f"done {batch}"))


@pytest.mark.parametrize("fresh", [True, False])
def test_live_batches_are_chosen_after_the_previous_one_finished(fresh: bool) -> None:
    """wants_fresh: the in-flight batch is finished before the next fetch, so newest first sees the newest
    frames; otherwise the next batch is fetched and handed over while the previous one runs (throughput)."""
    stop = threading.Event()
    log: list[str] = []
    consumer = ScriptedConsumer([[rec(0)], [rec(1)], []], [], stop)
    poll = consumer.poll
    consumer.poll = lambda timeout_ms, max_records: log.append("poll") or poll(timeout_ms, max_records)  # type: ignore[method-assign]
    run_batches(consumer, PendingHandler(fresh, log), stop, role="unit-fresh")  # type: ignore[arg-type]
    if fresh:
        assert log[:6] == ["poll", "handle [0]", "done [0]", "poll", "handle [1]", "done [1]"], log
    else:
        assert log[:5] == ["poll", "handle [0]", "poll", "handle [1]", "done [0]"], log
    assert consumer.committed == [1, 2]


class TransactionalConsumer(ScriptedConsumer):
    """Its committed offsets cannot be fetched at first (the broker is away), then say 2."""

    def __init__(self, polls: list[Any], stop: threading.Event, log: list[str]) -> None:
        super().__init__(polls, [], stop)
        del self.committed  # the method below, not the list: the loop never commits here (commit() would raise)
        self.log = log
        self.fetches: list[Any] = [KafkaTimeoutError("offset fetch"), 2]

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.log.append("poll")
        return super().poll(timeout_ms, max_records)

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        step = self.fetches.pop(0)
        self.log.append(f"committed {step!r}")
        if isinstance(step, BaseException):
            raise step
        return int(step)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.log.append(f"seek {offset}")


def test_a_failed_transactional_batch_is_read_again_from_the_committed_offsets_fetched_after_it() -> None:
    """The batch's transaction failed with an unknown outcome (it may have committed, offsets and all): nothing
    is polled until the committed offsets can be fetched, and the partition resumes from them (2), not from the
    batch's first record (0)."""
    log: list[str] = []
    stop = threading.Event()
    consumer = TransactionalConsumer([[rec(0), rec(1)], [rec(2)]], stop, log)
    handler = Handler([KafkaTimeoutError("committing the transaction took longer than 10 s")])
    as_kafka: Any = consumer
    run_batches(as_kafka, handler, stop, role="unit-eos", retry_backoff_s=0.01, commit_offsets=False)
    assert log[:6] == ["poll", "seek 0", "committed KafkaTimeoutError('offset fetch')", "committed 2", "seek 2", "poll"]
    assert handler.handled == [2]


def test_frames_read_before_a_registry_outage_mid_batch_are_counted_once_when_the_batch_is_read_again() -> None:
    """The registry stops answering at the third frame: the batch is retried whole, so the two frames read before
    it are counted when the retry reads them, not also before (visionstream_inference_frames_consumed_total)."""
    import cv2
    import numpy as np
    from kafka.consumer.fetcher import ConsumerRecord

    from inference import metrics as inference_metrics
    from inference.settings import InferenceSettings
    from inference.worker import InferenceHandler
    from schemas import Frame, FrameCodec, Preprocessing
    from schemas.codec import RegistryUnavailableError
    from visionstream.settings import TopicSettings

    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    codec = FrameCodec()
    records = [
        ConsumerRecord("frames", 0, None, i, 0, 0, None,
                       codec.encode(Frame("outage-cam", i, 1000 + i, 64, 48, jpeg, "file:///x", Preprocessing(64, 48, 85))),
                       [], None, 0, 0, 0)
        for i in range(4)
    ]  # fmt: skip
    handler = InferenceHandler(object(), None, TopicSettings(), InferenceSettings())  # type: ignore[arg-type]
    registry_down = True
    decode = handler.frames.decode

    def decode_or_outage(message: bytes) -> Frame:
        if registry_down and message == records[2].value:
            raise RegistryUnavailableError("the registry did not answer")
        return decode(message)

    handler.frames.decode = decode_or_outage  # type: ignore[method-assign]
    consumed = inference_metrics.FRAMES_CONSUMED.labels("outage-cam")
    before = consumed._value.get()
    try:
        with pytest.raises(RetryableBatchError):
            handler.handle(records)
        assert consumed._value.get() == before, "nothing counted for a batch that is to be read again"
        registry_down = False
        handler._runner.submit = lambda *args: None  # type: ignore[method-assign,assignment]  # the model is not the point
        handler.handle(records)
        assert consumed._value.get() == before + 4
    finally:
        handler.close()
