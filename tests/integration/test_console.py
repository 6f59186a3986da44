"""The operator console in a real browser (Debian's chromium, driven by Selenium through its chromedriver) over
the whole pipeline on the real broker: the sample clip looping as a live camera, MTCNN with face identity,
analytics with a line and a zone, the sink with its API token, and `visionstream console` itself.

Screenshots go to the test's folder; with SCREENSHOTS_DIR=DIR they are also copied there (the README's
come from docs/console, made with SCREENSHOTS_DIR=docs/console).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from cli.config import AppSettings, load_settings
from cli.demo import DEMO_LINE, DEMO_ZONE
from devkit.ports import free_port
from devkit.topics import wait_until
from evaluation.sample_video import SampleClip, iou, make_sample_clip
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BOX_RGB = (0, 255, 102)  # console.css --box: the boxes' border colour (their labels are a darker green)
PERSON = "Console Person"


class Stack:
    def __init__(self, settings: AppSettings, url: str, token: str, clip: SampleClip, folder: Path) -> None:
        self.settings = settings
        self.url = url
        self.token = token
        self.clip = clip
        self.folder = folder
        self.camera = settings.ingest.camera_id

    def sink_api(self, path: str, **params: str) -> Any:
        resp = httpx.get(
            f"http://127.0.0.1:{self.settings.sink.metrics_port}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, mtcnn_detector: Any) -> Iterator[Stack]:
    from analytics.worker import AnalyticsWorker
    from cli.console import BackgroundConsole
    from inference.worker import InferenceWorker
    from ingest.worker import IngestWorker
    from sink.http import SinkHttpServer
    from sink.worker import SinkWorker
    from visionstream.http import serve_worker
    from visionstream.topics import ensure_topics

    folder = tmp_path_factory.mktemp("console")
    run = uuid.uuid4().hex[:10]
    token = f"console-token-{run}"
    (folder / "token").write_text(token + "\n")
    clip = make_sample_clip(folder / "clip.mp4", frames=30)
    camera = f"lobby-{run}"
    ports = {role: free_port() for role in ("ingest", "analytics", "sink")}
    base = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
    settings = load_settings(
        overrides={
            "kafka": {"bootstrap_servers": kafka_bootstrap, "bootstrap_timeout_s": 10},
            "topics": {name: f"c-{run}.{name}" for name in
                       ("frames", "detections", "frames_dlq", "detections_dlq", "tracks", "analytics_state", "faces")},
            "ingest": {"camera_id": camera, "source": str(clip.path), "loop": True, "realtime": True,
                       "state_dir": None, "fps": clip.fps},
            "inference": {"group_id": f"c-{run}-inference", "poll_timeout_ms": 200,
                          "chain": [{"type": "face-identity"}]},
            "analytics": {"group_id": f"c-{run}-analytics", "poll_timeout_ms": 200, "stream_idle_s": 3,
                          "cameras": [{"id": camera, "lines": [DEMO_LINE], "zones": [DEMO_ZONE]}]},
            "sink": {"group_id": f"c-{run}-sink", "store": {"type": "sqlite", "path": str(folder / "events.db")},
                     "metrics_port": ports["sink"], "metrics_addr": "127.0.0.1", "poll_timeout_ms": 200,
                     "api_token_file": str(folder / "token")},
            "console": {"addr": "127.0.0.1", "sink_url": base["sink"], "roles": base,
                        "api_token_file": str(folder / "token"),
                        "groups": [f"c-{run}-inference", f"c-{run}-analytics", f"c-{run}-sink"]},
        }
    )  # fmt: skip
    ensure_topics(settings.kafka, settings.topics)
    sink = SinkWorker(settings.sink, settings.kafka, settings.topics)
    infer = InferenceWorker(settings.inference, settings.kafka, settings.topics, detector=mtcnn_detector)
    analytics = AnalyticsWorker(settings.analytics, settings.kafka, settings.topics)
    ingest = IngestWorker(settings.ingest, settings.kafka, settings.topics)
    servers = [
        SinkHttpServer(settings.sink.store, "127.0.0.1", ports["sink"], sink.is_ready, token=token).start(),
        serve_worker("analytics", "127.0.0.1", ports["analytics"], analytics.is_ready, routes=analytics.routes),
        serve_worker("ingest", "127.0.0.1", ports["ingest"], ingest.is_ready, status=ingest.status),
    ]
    threads = [WorkerThread(w) for w in (sink, infer, analytics)]
    for t in threads:
        t.start()
    wait_until(lambda: sink.is_ready() and infer.is_ready() and analytics.is_ready(), 120, "workers ready")
    camera_thread = WorkerThread(ingest)
    camera_thread.start()
    console = BackgroundConsole(settings, port=0)
    url = console.start()
    try:
        yield Stack(settings, url, token, clip, folder)
    finally:
        console.stop()
        camera_thread.stop()
        for t in threads:
            t.stop()
        for server in servers:
            if server is not None:
                server.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "Debian's chromium and chromium-driver packages are needed (scripts/test.sh installs them)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--force-device-scale-factor=1", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        driver.get(stack.url + "/cameras")
        assert "/login" in driver.current_url  # no session: the login form first
        driver.find_element("name", "token").send_keys(stack.token)
        driver.find_element("css selector", "form.login button").click()
        wait_until(lambda: driver.current_url.endswith("/cameras"), 15, "the cameras page after logging in")
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, stack: Stack, name: str) -> Path:
    path = stack.folder / f"{name}.png"
    driver.save_screenshot(str(path))
    wanted = os.environ.get("SCREENSHOTS_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / path.name)
    return path


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def box_on_screen(png: bytes) -> tuple[float, float, float, float] | None:
    """The bounding box, normalised to the screenshot, of the pixels in the boxes' border colour."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    r, g, b = BOX_RGB
    mask = np.all(np.abs(image.astype(int) - np.array([b, g, r])) <= 12, axis=2)
    ys, xs = np.nonzero(mask)
    if len(xs) < 20:
        return None
    h, w = mask.shape
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def test_the_camera_appears_with_its_box_drawn_where_the_face_is(stack: Stack, browser: Any) -> None:
    browser.get(stack.url + "/cameras")
    card = f'[data-camera="{stack.camera}"]'
    wait_until(lambda: js(browser, f"return document.querySelectorAll('{card} .box').length") > 0
               and js(browser, f"return document.querySelector('{card} img.frame').naturalWidth") > 0,
               60, "the camera's card with a frame and a box")  # fmt: skip
    assert js(browser, f"return document.querySelector('{card} [data-field=state]').textContent") == "streaming"
    # The face's five keypoints are drawn over it, with the bones of COCO's skeleton that they share. The overlay
    # is redrawn with every frame, so it is read in one script: elements found by one call and read by the next
    # can be gone by then (a StaleElementReferenceException in one CI run).
    read = (
        f"const s = document.querySelector('{card} svg.skeletons'); return s && [s.querySelectorAll('line.joint')"
        ".length, Array.from(s.querySelectorAll('line[data-bone]'), b => b.getAttribute('data-bone')).sort()]"
    )
    drawn: list[Any] = []
    wait_until(lambda: drawn.append(js(browser, read)) or drawn[-1], 30, "a skeleton over the face")
    assert drawn[-1] == [5, ["nose-left_eye", "nose-right_eye"]]
    ious = []
    for _ in range(3):  # the view moves on; read a frame's number, its pixels, and its number again
        view = browser.find_element("css selector", f"{card} .view")
        pts = view.get_attribute("data-pts")
        png = view.screenshot_as_png
        if view.get_attribute("data-pts") != pts or not pts:
            continue
        seen = box_on_screen(png)
        assert seen is not None, "no box drawn on the screenshot"
        index = round(int(pts) * stack.clip.fps / 1000) % len(stack.clip.faces_xyxy_norm)
        ious.append(iou(seen, stack.clip.faces_xyxy_norm[index]))
    assert ious and max(ious) >= 0.5, ious
    screenshot(browser, stack, "cameras")


def test_the_live_view_advances_and_shows_zones_and_lines(stack: Stack, browser: Any) -> None:
    browser.get(f"{stack.url}/cameras/{stack.camera}")
    view = "[data-view] "
    wait_until(lambda: js(browser, f"return document.querySelector('{view}img.frame').naturalWidth") > 0, 30,
               "the camera page's frame")  # fmt: skip
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 3 and time.monotonic() < deadline:
        seen.add(browser.find_element("css selector", "[data-view]").get_attribute("data-sequence"))
        time.sleep(0.3)
    assert len(seen) >= 3, f"the live view stayed at frames {seen}"
    assert len(browser.find_elements("css selector", "svg.zones polygon")) == 1  # the zone
    assert len(browser.find_elements("css selector", "svg.zones line")) == 1  # the line
    screenshot(browser, stack, "camera")


def test_filters_narrow_the_tracks_and_events(stack: Stack, browser: Any) -> None:
    wait_until(lambda: stack.sink_api("/api/tracks", limit="5")["tracks"], 60, "a stored track")

    def rows(path: str) -> int:
        browser.get(stack.url + path)
        return len(browser.find_elements("css selector", "table.list tr[data-track], table.list tr[data-event]"))

    assert rows("/tracks") >= 1
    assert rows("/tracks?label=face") >= 1
    assert rows("/tracks?label=car") == 0
    assert "No tracks match" in browser.page_source
    assert rows(f"/events?camera={stack.camera}") >= 1
    assert rows("/events?camera=another-camera") == 0
    assert rows("/events?min_score=1.01") == 0  # refused by the sink's API, and the page says why
    assert "min_score: expected a number in [0, 1]" in browser.page_source
    rows(f"/events?camera={stack.camera}")
    wait_until(lambda: js(browser, "return [...document.querySelectorAll('img.thumb')].some(i => i.naturalWidth > 0)"),
               20, "an event's thumbnail from the frames topic")  # fmt: skip
    screenshot(browser, stack, "events")


def test_a_tracks_snapshot_loads(stack: Stack, browser: Any, mtcnn_detector: Any) -> None:
    # the clip loops: at each restart its clock goes back and the face's track ends; the sink stores its snapshot
    def ended() -> list[dict[str, Any]]:
        return [t for t in stack.sink_api("/api/tracks", limit="20")["tracks"] if t["state"] == "ended"]

    wait_until(lambda: any(_has_snapshot(stack, t["track_id"]) for t in ended()), 90, "an ended track's snapshot")
    track = next(t for t in ended() if _has_snapshot(stack, t["track_id"]))
    browser.get(stack.url + "/tracks")
    browser.find_element("css selector", f'tr[data-track="{track["track_id"]}"] a').click()
    wait_until(lambda: js(browser, "const i = document.querySelector('img.snapshot'); return i && i.naturalWidth") > 0,
               15, "the snapshot on the track's page")  # fmt: skip
    width, height = js(
        browser, "const i = document.querySelector('img.snapshot'); return [i.naturalWidth, i.naturalHeight]"
    )
    box = track["best"]["box"] if track.get("best") else track["box"]
    # the face's box (about 240 px of the 640 px clip) with a quarter of its size kept on each side
    expected_w = (box["x_max"] - box["x_min"]) * 1.5 * stack.clip.width
    assert 0.7 * expected_w <= width <= 1.3 * expected_w and height > 0, (width, height, box)
    assert len(browser.find_elements("css selector", "svg.path polyline")) == 1
    screenshot(browser, stack, "track")
    # and it is the face: the model finds one in it
    jpeg = httpx.get(f"{stack.url}/tracks/{track['track_id']}/snapshot.jpg",
                     headers={"Authorization": f"Bearer {stack.token}"}, timeout=10).content  # fmt: skip
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    (found,) = mtcnn_detector.detect([rgb])
    assert [d for d in found if d.label == "face" and d.score > 0.9], found


def _has_snapshot(stack: Stack, track_id: str) -> bool:
    resp = httpx.get(f"http://127.0.0.1:{stack.settings.sink.metrics_port}/api/tracks/{track_id}/snapshot",
                     headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)  # fmt: skip
    return resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"


def test_an_enrolment_made_in_the_page_reaches_the_running_worker(stack: Stack, browser: Any) -> None:
    from skimage import data

    photo = stack.folder / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    browser.get(stack.url + "/people")
    assert "Nobody is enrolled" in browser.page_source
    browser.find_element("css selector", "#enrol input[name=name]").send_keys(PERSON)
    browser.find_element("css selector", "#enrol input[type=file]").send_keys(str(photo))
    browser.find_element("css selector", "#enrol button").click()
    wait_until(lambda: browser.find_elements("css selector", f'tr[data-person="{PERSON}"]'), 60,
               lambda: f"the person listed; the form says {browser.find_element('css selector', '#enrol .result').text!r}")  # fmt: skip
    screenshot(browser, stack, "people")
    # the running inference worker follows the gallery: the live view names her within seconds
    browser.get(stack.url + "/cameras")
    wait_until(lambda: PERSON in js(browser, "return document.querySelector('.boxes').textContent"), 30,
               "the live view's box named after the enrolment")  # fmt: skip
    assert stack.sink_api("/api/events", identity=PERSON, limit="1")["events"]
    # and removed from the page, she is unknown again
    browser.get(stack.url + "/people")
    browser.find_element("css selector", f'tr[data-person="{PERSON}"] button').click()
    browser.switch_to.alert.accept()
    wait_until(lambda: "Nobody is enrolled" in browser.page_source, 20, "the person removed")


def test_counts_and_health_pages(stack: Stack, browser: Any) -> None:
    wait_until(lambda: stack.sink_api("/api/zones/counts", bucket="1h")["counts"], 60, "zone or line counts")
    browser.get(stack.url + "/counts?bucket=5m&hours=1")
    assert browser.find_elements("css selector", ".chart svg rect")
    screenshot(browser, stack, "counts")
    browser.get(stack.url + "/health")
    ready = {r.get_attribute("data-role"): r.find_elements("css selector", "td")[1].text
             for r in browser.find_elements("css selector", "table.roles tr[data-role]")}  # fmt: skip
    assert ready == {"ingest": "ready", "analytics": "ready", "sink": "ready", "console": "reading"}, ready
    lag_groups = {r.find_elements("css selector", "td")[0].text for r in
                  browser.find_elements("css selector", "table.lag tr") if r.find_elements("css selector", "td")}  # fmt: skip
    assert set(stack.settings.console.groups) <= lag_groups, browser.find_element("css selector", "table.lag").text
    screenshot(browser, stack, "health")


def test_requests_without_the_token_or_csrf_header_are_refused(stack: Stack) -> None:
    url = stack.url
    with httpx.Client(base_url=url, timeout=10) as anonymous:
        page = anonymous.get("/cameras", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        for path in ("/live", "/frame/0/0?camera=x&sequence=0&ts=0", "/tracks/x/snapshot.jpg"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.post("/people/remove", data={"name": "x"}).status_code == 401
        wrong = anonymous.post("/login", data={"token": "not-the-token-at-all", "next": "/cameras"})
        assert wrong.status_code == 401 and "not the API token" in wrong.text
        assert anonymous.get("/healthz").status_code == 200  # probes stay open
    with httpx.Client(base_url=url, timeout=10) as operator:
        assert operator.post("/login", data={"token": stack.token, "next": "/people"}).status_code == 303
        assert operator.get("/people").status_code == 200
        csrf = operator.cookies.get("csrftoken")
        assert csrf
        # a form posted from another page (the session cookie, but no CSRF header) is refused
        forged = operator.post("/people/remove", data={"name": PERSON})
        assert forged.status_code == 403
        allowed = operator.post("/people/remove", data={"name": "nobody"}, headers={"x-csrftoken": csrf})
        assert allowed.status_code == 404 and "no person" in allowed.json()["error"]
        not_image = operator.post(
            "/people", data={"name": "Someone"}, files={"photo": ("face.jpg", b"MZ\x90\x00 not a picture")},
            headers={"x-csrftoken": csrf},
        )  # fmt: skip
        assert not_image.status_code == 400 and "not an image" in not_image.json()["error"]
    # bearer clients (scripts) need the token, not a session; they carry no cookie, so no CSRF header either
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {stack.token}"}) as script:
        assert script.get("/people").status_code == 200
        assert script.post("/people/remove", data={"name": "nobody"}).status_code == 404


def test_live_viewers_and_frame_reads_are_bounded(stack: Stack) -> None:
    """One live view more than console.max_viewers is refused with 503 (and counted), a bad frame request gets
    400, and a frame the topic no longer has (or never had) 404: nothing waits without bound."""
    from cli.console import BackgroundConsole

    small = stack.settings.model_copy(
        update={"console": stack.settings.console.model_copy(update={"max_viewers": 1, "frame_timeout_s": 1.0})}
    )
    console = BackgroundConsole(small, port=0)
    url = console.start()
    auth = {"Authorization": f"Bearer {stack.token}"}
    try:
        with httpx.Client(base_url=url, timeout=10, headers=auth) as client:
            with client.stream("GET", "/live") as first:
                assert first.status_code == 200
                lines = first.iter_lines()  # kept: an iterator dropped early would close the stream
                next(line for line in lines if line.startswith("data: "))
                second = httpx.get(f"{url}/live", headers=auth, timeout=10)  # another browser
                assert second.status_code == 503 and "live views are open already" in second.json()["error"]
                # the open view keeps streaming: its camera's updates still come
                assert sum(1 for line in itertools.islice(lines, 40) if line.startswith("data: ")) >= 2
            wait_until(lambda: console.server.config.app.state.console.viewers == 0, 10, "the closed view counted out")
            assert client.get("/frame/0/0").status_code == 400  # no camera, sequence, time
            missing = client.get("/frame/0/999999999", params={"camera": stack.camera, "sequence": 1, "ts": 1})
            assert missing.status_code == 404 and "gone" in missing.json()["error"]
            metrics = client.get("/metrics").text
            assert 'visionstream_console_refused_total{reason="viewers_full"}' in metrics
    finally:
        console.stop()


def test_a_pose_event_is_drawn_as_skeletons(stack: Stack, browser: Any) -> None:
    """The `pose` detector (MoveNet, the real model) on the astronaut photo, published as a camera's event: the
    camera's page draws the person's keypoints and the bones of COCO's skeleton between them."""
    from kafka import KafkaProducer
    from skimage import data

    from inference.detectors import build_detector
    from inference.settings import DetectorSettings
    from schemas import DetectionEvent, EventCodec, event_id_for

    pose = build_detector(DetectorSettings(type="pose"))
    (people,) = pose.detect([data.astronaut()])
    assert len(people) == 1
    camera, now = f"pose-{uuid.uuid4().hex[:6]}", int(time.time() * 1000)
    event = DetectionEvent(event_id_for(camera, 0, now, pose.name, pose.version), camera, 0, now, now + 20,
                           pose.name, pose.version, 20.0, 512, 512, tuple(people))  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
    try:
        producer.send(stack.settings.topics.detections, key=camera.encode(), value=EventCodec().encode(event))
        producer.flush(30)
    finally:
        producer.close()
    joints = len(people[0].keypoints)
    names = {k.name for k in people[0].keypoints}
    expected = {"nose-left_eye", "nose-right_eye", "left_shoulder-right_shoulder"}
    assert expected <= {f"{a}-{b}" for a, b in SKELETON if a in names and b in names}

    def drawn() -> int:
        browser.get(f"{stack.url}/cameras/{camera}")
        return int(js(browser, "return document.querySelectorAll('svg.skeletons line.joint').length"))

    wait_until(lambda: drawn() == joints, 30, f"the {joints} keypoints drawn on the camera's page")
    bones = {b.get_attribute("data-bone") for b in browser.find_elements("css selector", "svg.skeletons [data-bone]")}
    assert expected <= bones and len(bones) == sum(a in names and b in names for a, b in SKELETON)
    screenshot(browser, stack, "pose")


# COCO's skeleton as console.js draws it (by keypoint name)
SKELETON = [
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("nose", "left_eye"), ("nose", "right_eye"),
    ("left_eye", "left_ear"), ("right_eye", "right_ear"),
]  # fmt: skip
