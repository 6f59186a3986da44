"""Logging in with the API token, and out."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from console import metrics
from console.pages.render import page
from console.security import safe_next
from console.state import console_of


async def login_form(request: Request) -> Response:
    return page(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    token = console_of(request).token
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


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
