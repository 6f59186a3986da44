"""The console's settings: its port, how it reaches the sink's API and the other roles' probes, and its bounds."""

from __future__ import annotations

from pydantic import Field

from visionstream.settings import Section

DEFAULT_ROLES: dict[str, str | list[str]] = {
    "ingest": "http://127.0.0.1:9106",
    "inference": "http://127.0.0.1:9107",
    "analytics": "http://127.0.0.1:9109",
    "sink": "http://127.0.0.1:9108",
}


class ConsoleSettings(Section):
    addr: str = Field("0.0.0.0", description="Address the console's web server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the console's web server.")
    sink_url: str = Field("http://127.0.0.1:9108", description="Base URL of the sink's HTTP port (its /api/...).")
    api_token_file: str | None = Field(
        None,
        description="File holding the API token: the console's login, and its bearer token to the sink's API. Null: open.",
    )
    roles: dict[str, str | list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_ROLES),
        description="Each role's HTTP port (name: base URL, or a list of them), whose /readyz the health page shows "
        "for every replica (a host name resolving to several addresses is polled at each); ingest's also gives the "
        "cameras' states.",
    )
    groups: list[str] = Field(
        default_factory=lambda: ["visionstream-inference", "visionstream-analytics", "visionstream-sink"],
        description="Consumer groups whose lag the health page shows.",
    )
    live_fps: float = Field(2.0, gt=0, le=10, description="Live updates per second sent to each viewer at most.")
    max_viewers: int = Field(16, ge=1, description="Live views open at once at most; one more is refused (503).")
    max_frame_fetches: int = Field(4, ge=1, description="Frames read from the frames topic at once at most.")
    frame_timeout_s: float = Field(3.0, gt=0, description="Longest wait for one frame from the frames topic.")
    max_upload_bytes: int = Field(8 << 20, ge=1024, description="Largest enrolment photo accepted.")
    request_timeout_s: float = Field(5.0, gt=0, description="Timeout of the console's calls to the sink and the roles.")
