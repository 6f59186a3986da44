"""The face gallery as a user keeps it: `visionstream faces enroll|list|remove` through the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from cli import faces
from visionstream.gallery import read_gallery

pytestmark = pytest.mark.integration


def photo(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FACES": settings.topics.faces,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "faces", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_enroll_list_and_remove_through_the_broker(settings, tmp_path):
    front = photo(tmp_path / "front.jpg", data.astronaut())
    mirror = photo(tmp_path / "mirror.jpg", np.ascontiguousarray(data.astronaut()[:, ::-1]))
    enrolled = cli(settings, "enroll", "Eileen Collins", str(front), str(mirror))
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout) == {"enrolled": "Eileen Collins", "photos": 2}
    listed = cli(settings, "list")
    assert listed.returncode == 0, listed.stderr
    (person,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert person["name"] == "Eileen Collins" and person["embeddings"] == 2
    assert person["photos"] == ["front.jpg", "mirror.jpg"] and str(tmp_path) not in listed.stdout
    assert "0." not in json.dumps(person), "embeddings are never printed"
    removed = cli(settings, "remove", "Eileen Collins")
    assert removed.returncode == 0 and json.loads(removed.stdout) == {"removed": "Eileen Collins"}
    assert cli(settings, "list").stdout == ""
    again = cli(settings, "remove", "Eileen Collins")
    assert again.returncode == 2 and "no person named 'Eileen Collins'" in again.stderr
    assert "Traceback" not in again.stderr


def test_bad_enrolments_get_one_clear_line_and_change_nothing(settings, tmp_path):
    astronaut = photo(tmp_path / "astronaut.jpg", data.astronaut())
    coffee = photo(tmp_path / "coffee.jpg", data.coffee())
    two = photo(tmp_path / "two.jpg", np.hstack([data.astronaut(), data.astronaut()]))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    cases = [
        ("", [astronaut], "the name is empty"),
        ("   ", [astronaut], "the name is empty"),
        ("Unknown", [astronaut], "reserved"),
        ("x" * 129, [astronaut], "129 characters"),
        ("ok", [astronaut, garbage], f"not a readable image: {garbage}"),
        ("ok", [tmp_path / "missing.jpg"], "not a readable image"),
        ("ok", [coffee], f"{coffee}: 0 faces found"),
        ("ok", [astronaut, two], f"{two}: 2 faces found"),
    ]
    for name, images, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            faces.enroll(settings, name, images)
    assert read_gallery(settings.kafka, settings.topics) == {}
    cli_run = cli(settings, "enroll", "ok", str(coffee))
    errors = [line for line in cli_run.stderr.splitlines() if line.startswith("visionstream")]
    assert cli_run.returncode == 2 and len(errors) == 1 and "0 faces found" in errors[0], cli_run.stderr
    assert "Traceback" not in cli_run.stderr


def test_a_running_worker_follows_enrolments_and_removals_within_seconds(settings, tmp_path):
    """A `visionstream infer` process with the face-identity stage: the astronaut is `unknown`, then (enrolled
    while it runs) herself, then (removed) `unknown` again; each change is seen within seconds."""
    import time

    from kafka import KafkaConsumer

    from devkit.topics import produce
    from schemas import EventCodec, Frame, FrameCodec, Preprocessing
    from tests.integration.processes import running_infer

    jpeg = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    frames, events = FrameCodec(), EventCodec()
    chain = '[{"type": "face-identity"}]'
    with running_infer(settings, tmp_path / "infer.log", VISIONSTREAM_INFERENCE__CHAIN=chain):
        consumer = KafkaConsumer(settings.topics.detections, bootstrap_servers=settings.kafka.bootstrap_servers,
                                 auto_offset_reset="earliest", consumer_timeout_ms=500)  # fmt: skip
        try:
            sequence = 0

            def identity_within(seconds: float, wanted: str) -> float:
                nonlocal sequence
                started = time.monotonic()
                while time.monotonic() - started < seconds:
                    f = Frame(
                        "cam",
                        sequence,
                        int(time.time() * 1000),
                        512,
                        512,
                        jpeg,
                        "/photos/a.jpg",
                        Preprocessing(512, 512, 95),
                    )
                    produce(settings.kafka.bootstrap_servers, settings.topics.frames, [(b"cam", frames.encode(f))])
                    sequence += 1
                    for record in consumer:
                        (face,) = events.decode(record.value).detections
                        if face.identity == wanted:
                            return time.monotonic() - started
                raise AssertionError(f"no face identified as {wanted!r} within {seconds} s")

            identity_within(60, "unknown")
            faces.enroll(settings, "Eileen", [photo(tmp_path / "eileen.jpg", data.astronaut())])
            took_enrol = identity_within(30, "Eileen")
            faces.remove(settings, "Eileen")
            took_remove = identity_within(30, "unknown")
            assert took_enrol < 15 and took_remove < 15, (took_enrol, took_remove)
        finally:
            consumer.close()
    assert "0." not in "".join(  # embeddings never reach the log (names and counts only)
        line for line in (tmp_path / "infer.log").read_text().splitlines() if "gallery" in line
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_removed_person_leaves_no_identity_in_the_store(settings, postgres_dsn, tmp_path, kind):
    """The sink follows the gallery: a removal purges the name from stored detections and tracks, and events
    still arriving with it (made before the workers knew) are stored without it. Others keep theirs."""
    import time

    from devkit.topics import produce, wait_until
    from schemas import Detection, DetectionEvent, EventCodec, event_id_for
    from schemas.tracks import TrackEvent, TrackEventCodec, track_id_for
    from sink.settings import StoreSettings
    from sink.stores import open_store
    from sink.worker import SinkWorker
    from tests.conftest import WorkerThread
    from visionstream.gallery import publish

    def event(seq: int, who: str) -> DetectionEvent:
        face = Detection("face", 0.99, (0.1, 0.1, 0.3, 0.3), identity=who, distance=0.25)
        return DetectionEvent(event_id_for("cam", seq, 1000 + seq, "m", "1"), "cam", seq, 1000 + seq, 1040 + seq,
                              "m", "1", 40.0, 640, 480, (face,))  # fmt: skip

    def track(who: str, seq: int) -> TrackEvent:
        tid = track_id_for("cam", seq, seq)
        return TrackEvent(f"t-{who}-{seq}", "cam", "start", "face", seq, 1000 + seq, track_id=tid, identity=who)

    store_settings = (
        StoreSettings(type="sqlite", path=str(tmp_path / "db.sqlite"))
        if kind == "sqlite"
        else StoreSettings(type="postgres", dsn=postgres_dsn)
    )
    sink_s = settings.sink.model_copy(update={"store": store_settings})
    codec, tcodec = EventCodec(), TrackEventCodec()
    produce(settings.kafka.bootstrap_servers, settings.topics.detections,
            [(b"cam", codec.encode(event(i, "Eileen" if i % 2 else "Bob"))) for i in range(10)])  # fmt: skip
    produce(settings.kafka.bootstrap_servers, settings.topics.tracks,
            [(b"cam", tcodec.encode(track("Eileen", 1))), (b"cam", tcodec.encode(track("Bob", 2)))])  # fmt: skip
    worker = WorkerThread(SinkWorker(sink_s, settings.kafka, settings.topics))
    worker.start()
    store = open_store(store_settings)

    def names() -> dict[str, int]:
        rows = store._query("SELECT identity, COUNT(*) FROM detections GROUP BY identity", [])
        tracks = store._query("SELECT identity, COUNT(*) FROM tracks GROUP BY identity", [])
        return {f"{r[0]}": int(r[1]) for r in rows} | {f"track:{r[0]}": int(r[1]) for r in tracks}

    try:
        wait_until(lambda: names().get("Eileen") == 5 and names().get("track:Eileen") == 1, 60, names)
        publish(settings.kafka, settings.topics, "Eileen", None)  # what `visionstream faces remove` writes
        started = time.monotonic()
        wait_until(lambda: "Eileen" not in names() and "track:Eileen" not in names(), 30, names)
        took = time.monotonic() - started
        late = [event(i, "Eileen") for i in range(10, 13)]  # made before the workers saw the removal
        produce(settings.kafka.bootstrap_servers, settings.topics.detections, [(b"cam", codec.encode(e)) for e in late])
        wait_until(lambda: names().get("None") == 8, 30, names)
    finally:
        worker.stop()
    assert names() == {"Bob": 5, "None": 8, "track:Bob": 1, "track:None": 1}, names()
    assert took < 10, took
    row = store._query("SELECT distance FROM detections WHERE identity IS NULL", [])
    store.close()
    assert {r[0] for r in row} == {None}, "the distance goes with the name"
