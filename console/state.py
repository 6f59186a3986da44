"""What every page of the console reads: the live feed, the probes, the gallery, frames and the sink's API."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from console.health import RoleProbes, consumer_lag
from console.live import DeadLetterCounts, LiveFeed
from console.people import People
from console.settings import ConsoleSettings
from visionstream.frames import FramePool
from visionstream.settings import KafkaSettings, TopicSettings


class Console:
    """Everything the pages read: the live feed, the probes, the gallery, frames, and the sink's API."""

    def __init__(self, settings: ConsoleSettings, kafka: KafkaSettings, topics: TopicSettings, token: str | None):
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.token = token
        self.live = LiveFeed(kafka, topics.detections)
        self.dead_letters = DeadLetterCounts(kafka, [topics.frames_dlq, topics.detections_dlq])
        self.probes = RoleProbes(settings.roles, settings.request_timeout_s)
        self.people = People(kafka, topics)
        self.frames = FramePool(kafka, "console-frames", settings.max_frame_fetches, settings.frame_timeout_s)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.sink = httpx.AsyncClient(base_url=settings.sink_url, headers=headers, timeout=settings.request_timeout_s)
        self.viewers = 0
        self._lag: tuple[float, list[dict[str, Any]]] = (0.0, [])

    def start(self) -> None:
        self.live.start()
        self.dead_letters.start()
        self.probes.start()
        self.people.start()

    async def stop(self) -> None:
        self.live.stop()
        self.dead_letters.stop()
        self.probes.stop()
        await run_in_threadpool(self.people.close)
        await run_in_threadpool(self.frames.close)
        await self.sink.aclose()

    async def sink_json(self, path: str, params: dict[str, str] | None = None) -> tuple[Any, str | None]:
        """The sink API's answer, or (None, why not) when it refuses or cannot be reached."""
        try:
            resp = await self.sink.get(path, params=params)
        except httpx.HTTPError as exc:
            return None, f"the sink's API at {self.settings.sink_url} did not answer: {type(exc).__name__}"
        if resp.status_code != 200:
            try:
                return None, str(resp.json().get("error"))
            except ValueError:
                return None, f"the sink's API answered {resp.status_code}"
        return resp.json(), None

    async def lag(self) -> list[dict[str, Any]]:
        at, rows = self._lag
        if time.monotonic() - at > 5.0:
            rows = await run_in_threadpool(consumer_lag, self.kafka, self.settings.groups)
            self._lag = (time.monotonic(), rows)
        return rows

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera the detections or the ingest role know of: latest event, state and rates."""
        states = self.probes.cameras()
        views = {v["camera_id"]: v for v in self.live.views()}
        out = []
        for camera in sorted(set(views) | set(states)):
            view = views.get(camera) or {"camera_id": camera, "detections": [], "frame": None}
            out.append({**view, **states.get(camera, {"state": None, "capture_fps": None, "error": None})})
        return out


def console_of(request: Request) -> Console:
    """The app's one Console (create_app puts it in the app's state)."""
    console: Console = request.app.state.console
    return console
