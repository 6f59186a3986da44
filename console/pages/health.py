"""The health page (roles, consumer lag, dead letters), the console's own probes and its metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from console.pages.render import page
from console.state import console_of


async def health(request: Request) -> Response:
    console = console_of(request)
    return page(request, "health.html", roles=console.probes.roles_view(), lag=await console.lag(),
                dead_letters=console.dead_letters.rows(), feed_up=console.live.connected.is_set(),
                undecodable=console.live.undecodable)  # fmt: skip


async def healthz(request: Request) -> Response:
    return JSONResponse({"role": "console", "live": True})


async def readyz(request: Request) -> Response:
    ready = console_of(request).live.connected.is_set()
    return JSONResponse({"role": "console", "ready": ready}, status_code=200 if ready else 503)


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


ROUTES = [
    Route("/health", health),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", prometheus),
]
