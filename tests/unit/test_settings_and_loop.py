from types import SimpleNamespace

import pytest

from cli.config import ConfigError, load_settings
from visionstream.deadletter import dead_letter_headers
from visionstream.loop import next_offsets


def test_env_overrides_file_and_flags_override_env(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: file:9092\n  client_id: fromfile\ningest:\n  fps: 3\n")
    monkeypatch.setenv("VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    s = load_settings(cfg)
    assert (s.kafka.bootstrap_servers, s.kafka.client_id, s.ingest.fps) == ("env:9092", "fromfile", 3.0)
    s = load_settings(cfg, {"kafka": {"bootstrap_servers": "flag:9092"}})
    assert s.kafka.bootstrap_servers == "flag:9092" and s.kafka.client_id == "fromfile"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kafka:\n  bootstrap_server: x\n", "bootstrap_server"),
        ("ingest:\n  fps: -1\n", "fps"),
        ("- a list\n", "mapping"),
        ("kafka: [unclosed\n", "not valid YAML"),
        ("sink:\n  store:\n    typo: 1\n", "typo"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, match):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/visionstream.yaml")


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValueError):
        s.kafka.client_id = "x"  # type: ignore[misc]


def rec(topic, partition, offset, headers=None):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=b"k", value=b"v", headers=headers or [])


def test_next_offsets_are_one_past_the_highest_per_partition():
    offsets = next_offsets([rec("a", 0, 5), rec("a", 0, 9), rec("a", 1, 2), rec("b", 0, 0)])
    assert {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()} == {
        ("a", 0): 10,
        ("a", 1): 3,
        ("b", 0): 1,
    }


def test_dead_letter_headers_say_where_and_why():
    headers = dict(dead_letter_headers(rec("frames", 3, 42, [("trace", b"t1")]), ValueError("x" * 5000), "inference"))
    assert headers["dlq.source.topic"] == b"frames"
    assert headers["dlq.source.partition"] == b"3"
    assert headers["dlq.source.offset"] == b"42"
    assert headers["dlq.error.class"] == b"ValueError"
    assert len(headers["dlq.error.message"]) == 1024
    assert headers["trace"] == b"t1"


class FakeCoordinator:
    def __init__(self, state, need_rejoin, join_done):
        from kafka.future import Future

        self.state = state
        self._need = need_rejoin
        self._join_task = Future()
        if join_done:
            self._join_task.success(b"")
        self.rejoin_requested = False

    def need_rejoin(self):
        return self._need

    def request_rejoin(self):
        self.rejoin_requested = True


@pytest.mark.parametrize(
    ("state", "need_rejoin", "join_done", "expected"),
    [
        ("REBALANCING", False, True, True),  # the stuck state: finished join never applied
        ("REBALANCING", True, True, False),  # a rejoin is already requested
        ("REBALANCING", False, False, False),  # JoinGroup still in flight
        ("STABLE", False, True, False),
    ],
)
def test_unstick_rebalance_only_acts_on_the_stuck_state(state, need_rejoin, join_done, expected):
    from kafka.coordinator.base import MemberState

    from visionstream.kafka import unstick_rebalance

    coordinator = FakeCoordinator(getattr(MemberState, state), need_rejoin, join_done)
    assert unstick_rebalance(SimpleNamespace(_coordinator=coordinator)) is expected
    assert coordinator.rejoin_requested is expected


def test_lag_is_not_recorded_for_partitions_revoked_since_the_poll():
    from kafka.errors import IllegalStateError
    from kafka.structs import TopicPartition

    from visionstream.loop import _record_lag
    from visionstream.metrics import CONSUMER_LAG

    class Consumer:
        def assignment(self):
            return {TopicPartition("t-lag", 0)}

        def highwater(self, tp):
            if tp.partition != 0:
                raise IllegalStateError("Partition is not assigned")
            return 50

    _record_lag(Consumer(), [rec("t-lag", 0, 9), rec("t-lag", 1, 3)], "test")  # must not raise
    assert CONSUMER_LAG.labels(role="test", topic="t-lag", partition="0")._value.get() == 40


def test_a_batch_counts_only_if_fetched_within_one_stable_generation():
    from kafka.structs import ConsumerGroupMetadata, MemberState

    from visionstream.loop import same_stable_generation

    g1 = ConsumerGroupMetadata("g", 1, "m", None, MemberState.STABLE)
    assert same_stable_generation(g1, g1)
    assert not same_stable_generation(g1, g1._replace(generation_id=2)), "a rebalance finished in between"
    assert not same_stable_generation(g1, g1._replace(state=MemberState.REBALANCING)), "a join is under way"
    assert not same_stable_generation(g1._replace(generation_id=-1, state=MemberState.UNJOINED), g1), "joined now"
