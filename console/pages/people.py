"""The face gallery: who is enrolled, enrolling from photos or a track's snapshot, removing."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console import metrics
from console.pages.render import page
from console.people import NotAnImageError, decode_photo
from console.state import Console, console_of

log = logging.getLogger(__name__)


async def people(request: Request) -> Response:
    return page(request, "people.html", people=console_of(request).people.listing())


async def enrol(request: Request) -> Response:
    console = console_of(request)
    limit = console.settings.max_upload_bytes
    async with request.form(max_files=8, max_part_size=limit) as form:
        name = str(form.get("name", "")).strip()
        uploads = [f for f in form.getlist("photo") if isinstance(f, UploadFile)]
        try:
            photos = [(f.filename or f"photo {i + 1}", decode_photo(await f.read(), limit))
                      for i, f in enumerate(uploads) if f.filename or f.size]  # fmt: skip
        except NotAnImageError as exc:
            metrics.REFUSED.labels("bad_upload").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
    if not photos:
        return JSONResponse({"error": "choose one or more photos, each showing one face"}, status_code=400)
    return await _enrol(console, name, photos)


async def enrol_from_track(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    name, track_id = str(form.get("name", "")).strip(), str(form.get("track_id", ""))
    resp = await console.sink.get(f"/api/tracks/{quote(track_id, safe='')}/snapshot")
    if resp.status_code != 200:
        return JSONResponse({"error": "this track has no snapshot to enrol from"}, status_code=400)
    photo = decode_photo(resp.content, console.settings.max_upload_bytes)
    return await _enrol(console, name, [(f"track {track_id}", photo)])


async def _enrol(console: Console, name: str, photos: list[Any]) -> Response:
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
        await run_in_threadpool(console_of(request).people.remove, name)
    except KeyError:
        return JSONResponse({"error": f"no person named {name!r} in the gallery"}, status_code=404)
    return JSONResponse({"removed": name})


ROUTES = [
    Route("/people", people, methods=["GET"]),
    Route("/people", enrol, methods=["POST"]),
    Route("/people/from-track", enrol_from_track, methods=["POST"]),
    Route("/people/remove", remove_person, methods=["POST"]),
]
