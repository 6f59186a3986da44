"""Which fetched frames a batch takes: newest first for live cameras, lossless for files, fair, prefix per partition."""

from __future__ import annotations

from kafka.consumer.fetcher import ConsumerRecord

from inference.selection import Candidate, choose


def rec(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord("frames", partition, None, offset, 0, 0, None, b"", [], None, 0, 0, 0)


def frames(partition: int, spec: list[tuple[str, bool]], start: int = 0) -> list[Candidate]:
    return [Candidate(rec(partition, start + i), cam, live) for i, (cam, live) in enumerate(spec)]


def offsets(records) -> list[tuple[int, int]]:
    return sorted((r.partition, r.offset) for r in records)


def test_under_capacity_nothing_is_skipped():
    c = frames(0, [("a", True), ("b", True), ("a", True), ("f", False)])
    ch = choose(c, capacity=8)
    assert offsets(ch.infer) == [(0, 0), (0, 1), (0, 2), (0, 3)] and ch.superseded == [] and ch.left == []


def test_an_overloaded_live_camera_keeps_its_newest_frames_and_skips_the_rest():
    c = frames(0, [("a", True)] * 20)
    ch = choose(c, capacity=4)
    assert offsets(ch.infer) == [(0, 16), (0, 17), (0, 18), (0, 19)]
    assert offsets(ch.superseded) == [(0, i) for i in range(16)] and ch.left == []
    assert offsets(ch.taken) == [(0, i) for i in range(20)], "the whole partition is committed"


def test_a_batch_is_shared_across_live_cameras():
    c = frames(0, [("a", True)] * 12) + frames(1, [("b", True)] * 2)
    ch = choose(c, capacity=4)
    assert offsets(ch.infer) == [(0, 10), (0, 11), (1, 0), (1, 1)], "b gets its share, a its two newest"


def test_file_frames_are_never_skipped_and_what_does_not_fit_is_read_again():
    c = frames(0, [("file", False)] * 10)
    ch = choose(c, capacity=4)
    assert offsets(ch.infer) == [(0, 0), (0, 1), (0, 2), (0, 3)] and ch.superseded == []
    assert offsets(ch.left) == [(0, i) for i in range(4, 10)]


def test_live_frames_after_an_unprocessed_file_frame_wait_with_it():
    spec = [("cam", True), ("file", False), ("file", False), ("cam", True), ("file", False), ("cam", True)]
    ch = choose(frames(0, spec), capacity=2)  # one file frame and the newest live frame fit
    # offsets: 0 cam, 1 file, 2 file, 3 cam, 4 file, 5 cam -> infer 1 (file) and 5 (cam); 0 is superseded by 5;
    # 2 (file) does not fit: it and everything after it are read again
    assert offsets(ch.infer) == [(0, 1)] and offsets(ch.superseded) == [(0, 0)]
    assert offsets(ch.left) == [(0, 2), (0, 3), (0, 4), (0, 5)]


def test_undecodable_records_are_taken_in_order_to_be_dead_lettered():
    c = [Candidate(rec(0, 0), None, False), *frames(0, [("a", True)], start=1)]
    ch = choose(c, capacity=1)
    assert offsets(ch.taken) == [(0, 0), (0, 1)] and offsets(ch.infer) == [(0, 1)]


def test_a_batch_always_moves_on():
    # capacity 1 goes to camera "a" (sorted first), whose frame sits behind a file frame of "z": without the
    # guard, nothing would be taken and the same records would be fetched forever
    ch = choose(frames(0, [("z", False), ("a", True)]), capacity=1)
    assert offsets(ch.taken) == [(0, 0)] and offsets(ch.infer) == [(0, 0)] and offsets(ch.left) == [(0, 1)]
