"""The cameras grid, one camera's page, their live updates (server-sent events) and the frames they show."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from console import metrics
from console.charts import totals
from console.pages.render import page
from console.state import Console, console_of
from visionstream.frames import FrameBusyError

log = logging.getLogger(__name__)
NO_ZONES: dict[str, Any] = {"zones": [], "lines": []}


async def home(request: Request) -> Response:
    return RedirectResponse("/cameras", status_code=303)


async def cameras(request: Request) -> Response:
    console = console_of(request)
    return page(request, "cameras.html", cameras=console.cameras(), live_fps=console.settings.live_fps)


async def camera(request: Request) -> Response:
    console = console_of(request)
    camera_id = request.path_params["camera_id"]
    view = next((c for c in console.cameras() if c["camera_id"] == camera_id), None)
    since = str(int(time.time() * 1000) - 3_600_000)
    counts, counts_error = await console.sink_json(
        "/api/zones/counts", {"camera": camera_id, "since": since, "bucket": "1h"}
    )
    tracks, tracks_error = await console.sink_json("/api/tracks", {"camera": camera_id, "limit": "12"})
    zones = await zones_of(console, camera_id)
    return page(
        request, "camera.html", camera_id=camera_id, cam=view, zones=zones, totals=totals(counts),
        tracks=(tracks or {}).get("tracks", []), error=counts_error or tracks_error,
    )  # fmt: skip


async def zones_of(console: Console, camera_id: str) -> dict[str, Any]:
    """The zones and lines in force for a camera, from the analytics role's /api/zones (none if it is not known)."""
    urls = console.settings.roles.get("analytics")
    url = urls if isinstance(urls, str) else (urls[0] if urls else None)  # every replica serves the same zones
    if not url:
        return dict(NO_ZONES)
    try:
        async with httpx.AsyncClient(timeout=console.settings.request_timeout_s) as client:
            resp = await client.get(url.rstrip("/") + "/api/zones")
        return dict(resp.json().get("cameras", {}).get(camera_id) or NO_ZONES)
    except (httpx.HTTPError, ValueError, AttributeError):
        return dict(NO_ZONES)


async def live(request: Request) -> Response:
    console = console_of(request)
    settings = console.settings
    if console.viewers >= settings.max_viewers:
        metrics.REFUSED.labels("viewers_full").inc()
        return JSONResponse(
            {"error": f"{settings.max_viewers} live views are open already; try again later"}, status_code=503
        )
    console.viewers += 1
    metrics.VIEWERS.set(console.viewers)
    return StreamingResponse(
        _updates(console, request.query_params.get("camera")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _updates(console: Console, wanted: str | None) -> AsyncIterator[str]:
    """The cameras' views whenever one changes, and at least every 5 s (so a closed browser is noticed)."""
    period = 1.0 / console.settings.live_fps
    last = None
    quiet = 0.0
    try:
        yield "retry: 3000\n\n"
        while True:  # a disconnect cancels the stream (Starlette): the finally below counts the viewer out
            views = [c for c in console.cameras() if wanted is None or c["camera_id"] == wanted]
            body = json.dumps({"cameras": views}, separators=(",", ":"))
            key = [(v["camera_id"], v.get("sequence"), v.get("state")) for v in views]
            if key != last or quiet >= 5.0:
                yield f"data: {body}\n\n"
                last, quiet = key, 0.0
            await asyncio.sleep(period)
            quiet += period
    finally:
        console.viewers -= 1
        metrics.VIEWERS.set(console.viewers)


async def frame(request: Request) -> Response:
    console = console_of(request)
    q = request.query_params
    try:
        partition, offset = int(request.path_params["partition"]), int(request.path_params["offset"])
        camera_id, sequence, ts = q["camera"], int(q["sequence"]), int(q["ts"])
    except (KeyError, ValueError):
        return JSONResponse({"error": "give /frame/PARTITION/OFFSET?camera=&sequence=&ts="}, status_code=400)
    started = time.perf_counter()
    try:
        found = await asyncio.wait_for(
            run_in_threadpool(console.frames.get, console.topics.frames, partition, offset, camera_id, sequence, ts),
            timeout=console.settings.frame_timeout_s + 2.5,
        )
    except (TimeoutError, FrameBusyError):
        metrics.REFUSED.labels("frames_busy").inc()
        return JSONResponse({"error": "frame reads are busy; try again"}, status_code=503)
    except Exception as exc:  # noqa: BLE001 (Kafka down: the page shows a gap, the console carries on)
        log.warning("frame read failed: %s", exc)
        return JSONResponse({"error": "the frames topic cannot be read now"}, status_code=503)
    finally:
        metrics.FRAME_SECONDS.observe(time.perf_counter() - started)
    if found is None:
        return JSONResponse({"error": "that frame is gone (past the frames topic's retention)"}, status_code=404)
    return Response(found.image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


ROUTES = [
    Route("/", home),
    Route("/cameras", cameras),
    Route("/cameras/{camera_id:path}", camera),
    Route("/live", live),
    Route("/frame/{partition:int}/{offset:int}", frame),
]
