"""What the sink stored: tracks (with a track's page and snapshot), events, and zone and line counts."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console.charts import charts as charts_of
from console.pages.render import filters_of, page
from console.state import console_of

TRACK_FILTERS = ("camera", "label", "identity", "text", "zone", "since", "until")
EVENT_FILTERS = ("camera", "label", "identity", "text", "min_score", "since", "until")


async def browse(request: Request, kind: str, filters: tuple[str, ...]) -> Response:
    """A page of the sink's tracks or events (`kind`), filtered as the request asks, 24 at a time."""
    params = filters_of(request, filters)
    query = {**params, "limit": "24", **({"cursor": c} if (c := request.query_params.get("cursor")) else {})}
    data, error = await console_of(request).sink_json(f"/api/{kind}", query)
    return page(request, f"{kind}.html", filters=params, rows=(data or {}).get(kind, []),
                next_cursor=(data or {}).get("next_cursor"), error=error)  # fmt: skip


async def tracks(request: Request) -> Response:
    return await browse(request, "tracks", TRACK_FILTERS)


async def events(request: Request) -> Response:
    return await browse(request, "events", EVENT_FILTERS)


async def track(request: Request) -> Response:
    track_id = request.path_params["track_id"]
    data, error = await console_of(request).sink_json(f"/api/tracks/{quote(track_id, safe='')}")
    if data is None:
        return page(request, "track.html", 404, track=None, error=error)
    path = [(e["x"], e["y"]) for e in data.get("events", []) if e.get("x") is not None]
    return page(request, "track.html", track=data, path=path)


async def snapshot(request: Request) -> Response:
    track_id = request.path_params["track_id"]
    try:
        resp = await console_of(request).sink.get(f"/api/tracks/{quote(track_id, safe='')}/snapshot")
    except httpx.HTTPError:
        return JSONResponse({"error": "the sink's API did not answer"}, status_code=502)
    if resp.status_code != 200 or resp.headers.get("content-type") != "image/jpeg":
        return JSONResponse({"error": "no snapshot of this track (yet)"}, status_code=404)
    return Response(resp.content, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


async def counts(request: Request) -> Response:
    params = filters_of(request, ("camera", "zone", "label"))
    since_h = request.query_params.get("hours", "24")
    hours = float(since_h) if since_h.replace(".", "", 1).isdigit() else 24.0
    bucket = request.query_params.get("bucket", "1h")
    query = {**params, "bucket": bucket, "since": str(int((time.time() - hours * 3600) * 1000))}
    data, error = await console_of(request).sink_json("/api/zones/counts", query)
    return page(request, "counts.html", filters=params, hours=hours, bucket=bucket,
                charts=charts_of((data or {}).get("counts", [])), error=error)  # fmt: skip


ROUTES = [
    Route("/tracks", tracks),
    Route("/tracks/{track_id}/snapshot.jpg", snapshot),
    Route("/tracks/{track_id}", track),
    Route("/events", events),
    Route("/counts", counts),
]
