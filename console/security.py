"""Who may use the console: a session made by logging in with the API token, or the token as a bearer header.
The probes and the static files are open; a page without either is sent to the login form, anything else 401."""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from console import metrics

PUBLIC_PATHS = ("/login", "/static/", "/healthz", "/readyz", "/metrics")
SESSION_COOKIE = "visionstream_console"


class LoginRequired:
    """Pure ASGI (streams pass through untouched): a request without the session or the bearer token is refused:
    a page is sent to the login form, anything else gets 401."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"].startswith(PUBLIC_PATHS):
            return await self.app(scope, receive, send)
        request = Request(scope)
        if request.session.get("auth") or bearer_ok(request, self.token):
            return await self.app(scope, receive, send)
        metrics.REFUSED.labels("unauthorised").inc()
        page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if page:
            target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            response: Response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        else:
            response = JSONResponse({"error": "log in first, or send Authorization: Bearer <token>"}, status_code=401)
        await response(scope, receive, send)


def bearer_ok(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/cameras"
