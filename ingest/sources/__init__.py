"""Source registry: the URI (or an explicit type) picks the class."""

from __future__ import annotations

from ingest.sources.base import RawFrame, Source, SourceError
from ingest.sources.file import FileSource

SOURCES: dict[str, type[Source]] = {"file": FileSource}

__all__ = ["RawFrame", "Source", "SourceError", "FileSource", "SOURCES", "source_type_of", "open_source"]


def source_type_of(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme not in SOURCES:
        raise ValueError(f"unknown source type {scheme!r} in {uri!r}; known: {', '.join(sorted(SOURCES))}")
    return scheme


def open_source(uri: str) -> Source:
    if not uri:
        raise SourceError("no source given (set ingest.source or pass --source)")
    source = SOURCES[source_type_of(uri)](uri)
    source.open()
    return source
