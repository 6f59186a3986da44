"""The console's web app (Starlette): server-rendered pages (console/pages/), a little JavaScript for the live
views and forms.

Security: with an API token configured, every page but /login (and the probes) needs a session made by logging
in with the token, or the token as a bearer header. Forms that change something (enrol, remove, log out) are
posted by the page's script with the CSRF cookie's value in a header (starlette-csrf's double submit); a form
posted from elsewhere lacks it and is refused with 403.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette_csrf import CSRFMiddleware

from console.pages import auth, cameras, health, people, stored
from console.security import SESSION_COOKIE, LoginRequired
from console.settings import ConsoleSettings
from console.state import Console
from visionstream.settings import KafkaSettings, TopicSettings

HERE = Path(__file__).parent


def create_app(settings: ConsoleSettings, kafka: KafkaSettings, topics: TopicSettings, token: str | None) -> Starlette:
    console = Console(settings, kafka, topics, token)
    secret = hmac.new((token or "").encode() or hashlib.sha256(str(time.time_ns()).encode()).digest(),
                      b"visionstream-console-session", hashlib.sha256).hexdigest()  # fmt: skip
    routes = [
        *cameras.ROUTES,
        *auth.ROUTES,
        *stored.ROUTES,
        *people.ROUTES,
        *health.ROUTES,
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
