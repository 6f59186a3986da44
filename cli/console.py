"""`visionstream console`: the operator's web console (console/), served by uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import threading
from typing import Any

import uvicorn

from cli.config import AppSettings
from console.app import create_app
from visionstream.settings import read_token_file

log = logging.getLogger(__name__)


def console_server(settings: AppSettings, port: int | None = None) -> uvicorn.Server:
    """A uvicorn server of the console app (not started); `port` overrides console.port (0: any free port)."""
    c = settings.console
    token = read_token_file(c.api_token_file, "console.api_token_file") if c.api_token_file else None
    app = create_app(c, settings.kafka, settings.topics, token)
    config = uvicorn.Config(
        app,
        host=c.addr,
        port=c.port if port is None else port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        limit_concurrency=c.max_viewers + 64,  # past it uvicorn answers 503: live streams plus page loads
    )
    return uvicorn.Server(config)


def serve_console(settings: AppSettings) -> int:
    server = console_server(settings)
    log.info("console listening on http://%s:%d", settings.console.addr, settings.console.port)
    server.run()
    return 0


class BackgroundConsole:
    """The console on a thread (the demo's): start() returns once it serves, with its URL. (uvicorn leaves signal
    handling alone off the main thread.)"""

    def __init__(self, settings: AppSettings, port: int = 0) -> None:
        self.server = console_server(settings, port)
        self._thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def start(self, timeout_s: float = 30.0) -> str:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s * 20)):
            if self.server.started:
                break
            deadline.wait(0.05)
        if not self.server.started:
            raise RuntimeError("the console did not start")
        sock: Any = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(10)
