"""Source registry: a camera's `type`, or else its URL, picks the class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# FFmpeg writes its own decoder complaints to stderr (a corrupt file gives several lines per attempt); the
# source's SourceError already says what is wrong in one line. OPENCV_FFMPEG_LOGLEVEL=32 brings them back.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from ingest.sources.base import FrameDecodeError, RawFrame, Source, SourceError
from ingest.sources.device import DeviceSource
from ingest.sources.directory import DirectorySource
from ingest.sources.file import FileSource
from ingest.sources.http import HttpSource
from ingest.sources.rtsp import RtspSource

SOURCES: dict[str, type[Source]] = {
    "file": FileSource,
    "rtsp": RtspSource,
    "http": HttpSource,
    "device": DeviceSource,
    "directory": DirectorySource,
}
_SCHEMES = {
    "file": "file",
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "http": "http",
    "https": "http",
    "device": "device",
    "dir": "directory",
}

__all__ = ["FrameDecodeError", "RawFrame", "Source", "SourceError", "SOURCES", "source_type_of", "make_source"]


def source_type_of(uri: str, explicit: str | None = None) -> str:
    """`explicit` (a camera's `type`) wins; otherwise the scheme, /dev/videoN, a directory, or a file path."""
    if explicit is not None:
        if explicit not in SOURCES:
            raise ValueError(f"unknown source type {explicit!r}; known: {', '.join(sorted(SOURCES))}")
        return explicit
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"unknown source scheme {scheme!r} in {uri!r}; known: {', '.join(sorted(_SCHEMES))}")
        return _SCHEMES[scheme]
    if uri.startswith("/dev/video"):
        return "device"
    return "directory" if Path(uri).is_dir() else "file"


def make_source(uri: str, explicit_type: str | None = None, options: Any = None) -> Source:
    """The source object, not yet opened (opening may block up to its open timeout)."""
    if not uri:
        raise SourceError("no source given (set the camera's url, ingest.source, or pass --source)")
    return SOURCES[source_type_of(uri, explicit_type)](uri, options)
