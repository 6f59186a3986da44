"""Pages rendered from the Jinja2 templates, with what every page shows (the navigation, the login link)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from console.state import console_of

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))
TEMPLATES.env.filters["tojson_attr"] = lambda v: json.dumps(v)
TEMPLATES.env.globals["fmt_ms"] = lambda ms: (
    "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"
)


def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("error", None)
    login = console_of(request).token is not None
    return TEMPLATES.TemplateResponse(
        request, name, {"nav": name.split(".")[0], "login": login, **context}, status_code=status
    )


def filters_of(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The query's non-empty values of these filter names."""
    return {k: v.strip() for k in names if (v := request.query_params.get(k, "")).strip()}
