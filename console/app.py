"""The console's web app (Starlette): server-rendered pages, a little JavaScript for the live views and forms.

Security: with an API token configured, every page but /login (and the probes) needs a session made by logging
in with the token, or the token as a bearer header. Forms that change something (enrol, remove, log out) are
posted by the page's script with the CSRF cookie's value in a header (starlette-csrf's double submit); a form
posted from elsewhere lacks it and is refused with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette_csrf import CSRFMiddleware

from console import metrics
from console.charts import charts as charts_of
from console.charts import totals
from console.health import RoleProbes, consumer_lag
from console.live import DeadLetterCounts, LiveFeed
from console.people import NotAnImageError, People, decode_photo
from console.security import SESSION_COOKIE, LoginRequired, safe_next
from console.settings import ConsoleSettings
from visionstream.frames import FrameBusyError, FramePool
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TRACK_FILTERS = ("camera", "label", "identity", "text", "zone", "since", "until")
EVENT_FILTERS = ("camera", "label", "identity", "text", "min_score", "since", "until")


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


def _filters(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {k: v.strip() for k in names if (v := request.query_params.get(k, "")).strip()}


def create_app(settings: ConsoleSettings, kafka: KafkaSettings, topics: TopicSettings, token: str | None) -> Starlette:
    console = Console(settings, kafka, topics, token)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["tojson_attr"] = lambda v: json.dumps(v)
    templates.env.globals["fmt_ms"] = lambda ms: (
        "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"
    )

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("error", None)
        return templates.TemplateResponse(
            request, name, {"nav": name.split(".")[0], "login": token is not None, **context}, status_code=status
        )

    async def login_form(request: Request) -> Response:
        return page(request, "login.html", next=safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token", ""))
        target = safe_next(str(form.get("next", "")))
        if token is None or hmac.compare_digest(given.encode(), token.encode()):
            request.session["auth"] = True
            return RedirectResponse(target, status_code=303)
        metrics.REFUSED.labels("bad_token").inc()
        return page(request, "login.html", 401, next=target, error="That is not the API token.")

    async def logout(request: Request) -> Response:
        request.session.clear()
        return JSONResponse({"logged_out": True})

    async def home(request: Request) -> Response:
        return RedirectResponse("/cameras", status_code=303)

    async def cameras(request: Request) -> Response:
        return page(request, "cameras.html", cameras=console.cameras(), live_fps=settings.live_fps)

    async def camera(request: Request) -> Response:
        camera_id = request.path_params["camera_id"]
        view = next((c for c in console.cameras() if c["camera_id"] == camera_id), None)
        since = str(int(time.time() * 1000) - 3_600_000)
        counts, counts_error = await console.sink_json(
            "/api/zones/counts", {"camera": camera_id, "since": since, "bucket": "1h"}
        )
        tracks, tracks_error = await console.sink_json("/api/tracks", {"camera": camera_id, "limit": "12"})
        zones = await _zones_of(camera_id)
        return page(
            request, "camera.html", camera_id=camera_id, cam=view, zones=zones, totals=totals(counts),
            tracks=(tracks or {}).get("tracks", []), error=counts_error or tracks_error,
        )  # fmt: skip

    async def _zones_of(camera_id: str) -> dict[str, Any]:
        url = settings.roles.get("analytics")
        if not url:
            return {"zones": [], "lines": []}
        try:
            async with httpx.AsyncClient(timeout=settings.request_timeout_s) as client:
                resp = await client.get(url.rstrip("/") + "/api/zones")
            return dict(resp.json().get("cameras", {}).get(camera_id) or {"zones": [], "lines": []})
        except (httpx.HTTPError, ValueError, AttributeError):
            return {"zones": [], "lines": []}

    async def live(request: Request) -> Response:
        if console.viewers >= settings.max_viewers:
            metrics.REFUSED.labels("viewers_full").inc()
            return JSONResponse(
                {"error": f"{settings.max_viewers} live views are open already; try again later"}, status_code=503
            )
        wanted = request.query_params.get("camera")
        console.viewers += 1
        metrics.VIEWERS.set(console.viewers)

        async def stream() -> AsyncIterator[str]:
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
                    await asyncio.sleep(1.0 / settings.live_fps)
                    quiet += 1.0 / settings.live_fps
            finally:
                console.viewers -= 1
                metrics.VIEWERS.set(console.viewers)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    async def frame(request: Request) -> Response:
        q = request.query_params
        try:
            partition, offset = int(request.path_params["partition"]), int(request.path_params["offset"])
            camera, sequence, ts = q["camera"], int(q["sequence"]), int(q["ts"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "give /frame/PARTITION/OFFSET?camera=&sequence=&ts="}, status_code=400)
        started = time.perf_counter()
        try:
            found = await asyncio.wait_for(
                run_in_threadpool(console.frames.get, topics.frames, partition, offset, camera, sequence, ts),
                timeout=settings.frame_timeout_s + 2.5,
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

    async def browse(request: Request, kind: str, filters: tuple[str, ...]) -> Response:
        """A page of the sink's tracks or events (`kind`), filtered as the request asks, 24 at a time."""
        params = _filters(request, filters)
        query = {**params, "limit": "24", **({"cursor": c} if (c := request.query_params.get("cursor")) else {})}
        data, error = await console.sink_json(f"/api/{kind}", query)
        return page(request, f"{kind}.html", filters=params, rows=(data or {}).get(kind, []),
                    next_cursor=(data or {}).get("next_cursor"), error=error)  # fmt: skip

    async def tracks(request: Request) -> Response:
        return await browse(request, "tracks", TRACK_FILTERS)

    async def track(request: Request) -> Response:
        track_id = request.path_params["track_id"]
        data, error = await console.sink_json(f"/api/tracks/{quote(track_id, safe='')}")
        if data is None:
            return page(request, "track.html", 404, track=None, error=error)
        path = [(e["x"], e["y"]) for e in data.get("events", []) if e.get("x") is not None]
        return page(request, "track.html", track=data, path=path)

    async def snapshot(request: Request) -> Response:
        track_id = request.path_params["track_id"]
        try:
            resp = await console.sink.get(f"/api/tracks/{quote(track_id, safe='')}/snapshot")
        except httpx.HTTPError:
            return JSONResponse({"error": "the sink's API did not answer"}, status_code=502)
        if resp.status_code != 200 or resp.headers.get("content-type") != "image/jpeg":
            return JSONResponse({"error": "no snapshot of this track (yet)"}, status_code=404)
        return Response(resp.content, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def events(request: Request) -> Response:
        return await browse(request, "events", EVENT_FILTERS)

    async def counts(request: Request) -> Response:
        params = _filters(request, ("camera", "zone", "label"))
        since_h = request.query_params.get("hours", "24")
        hours = float(since_h) if since_h.replace(".", "", 1).isdigit() else 24.0
        bucket = request.query_params.get("bucket", "1h")
        query = {**params, "bucket": bucket, "since": str(int((time.time() - hours * 3600) * 1000))}
        data, error = await console.sink_json("/api/zones/counts", query)
        return page(request, "counts.html", filters=params, hours=hours, bucket=bucket,
                    charts=charts_of((data or {}).get("counts", [])), error=error)  # fmt: skip

    async def people(request: Request) -> Response:
        return page(request, "people.html", people=console.people.listing())

    async def enrol(request: Request) -> Response:
        async with request.form(max_files=8, max_part_size=settings.max_upload_bytes) as form:
            name = str(form.get("name", "")).strip()
            uploads = [f for f in form.getlist("photo") if isinstance(f, UploadFile)]
            try:
                photos = [(f.filename or f"photo {i + 1}", decode_photo(await f.read(), settings.max_upload_bytes))
                          for i, f in enumerate(uploads) if f.filename or f.size]  # fmt: skip
            except NotAnImageError as exc:
                metrics.REFUSED.labels("bad_upload").inc()
                return JSONResponse({"error": str(exc)}, status_code=400)
        if not photos:
            return JSONResponse({"error": "choose one or more photos, each showing one face"}, status_code=400)
        return await _enrol(name, photos)

    async def enrol_from_track(request: Request) -> Response:
        form = await request.form()
        name, track_id = str(form.get("name", "")).strip(), str(form.get("track_id", ""))
        resp = await console.sink.get(f"/api/tracks/{quote(track_id, safe='')}/snapshot")
        if resp.status_code != 200:
            return JSONResponse({"error": "this track has no snapshot to enrol from"}, status_code=400)
        return await _enrol(name, [(f"track {track_id}", decode_photo(resp.content, settings.max_upload_bytes))])

    async def _enrol(name: str, photos: list[Any]) -> Response:
        try:
            enrolment = await run_in_threadpool(console.people.enrol, name, photos)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # noqa: BLE001 (Kafka refused: say so, keep serving)
            log.warning("enrolment failed: %s", exc)
            return JSONResponse({"error": f"the gallery could not be written: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"enrolled": enrolment.name, "photos": len(enrolment.photos)})

    async def remove_person(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name", ""))
        try:
            await run_in_threadpool(console.people.remove, name)
        except KeyError:
            return JSONResponse({"error": f"no person named {name!r} in the gallery"}, status_code=404)
        return JSONResponse({"removed": name})

    async def health(request: Request) -> Response:
        return page(request, "health.html", roles=console.probes.roles_view(), lag=await console.lag(),
                    dead_letters=console.dead_letters.rows(), feed_up=console.live.connected.is_set(),
                    undecodable=console.live.undecodable)  # fmt: skip

    async def healthz(request: Request) -> Response:
        return JSONResponse({"role": "console", "live": True})

    async def readyz(request: Request) -> Response:
        ready = console.live.connected.is_set()
        return JSONResponse({"role": "console", "ready": ready}, status_code=200 if ready else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    secret = hmac.new((token or "").encode() or hashlib.sha256(str(time.time_ns()).encode()).digest(),
                      b"visionstream-console-session", hashlib.sha256).hexdigest()  # fmt: skip
    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/cameras", cameras),
        Route("/cameras/{camera_id:path}", camera),
        Route("/live", live),
        Route("/frame/{partition:int}/{offset:int}", frame),
        Route("/tracks", tracks),
        Route("/tracks/{track_id}/snapshot.jpg", snapshot),
        Route("/tracks/{track_id}", track),
        Route("/events", events),
        Route("/counts", counts),
        Route("/people", people, methods=["GET"]),
        Route("/people", enrol, methods=["POST"]),
        Route("/people/from-track", enrol_from_track, methods=["POST"]),
        Route("/people/remove", remove_person, methods=["POST"]),
        Route("/health", health),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, same_site="strict", max_age=12 * 3600
        ),  # fmt: skip
        # Only requests carrying the session cookie need the CSRF header: bearer-token clients are not browsers.
        Middleware(CSRFMiddleware, secret=secret, sensitive_cookies={SESSION_COOKIE}, cookie_samesite="strict"),
        Middleware(LoginRequired, token=token),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(console.start)
        yield
        await console.stop()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.console = console
    return app
