"""FaceEnrolment: a person of the face gallery, on the compacted faces.gallery topic (schemas/face_enrolment.avsc)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas.codec import TypedCodec
from schemas.types import UNKNOWN_IDENTITY
from schemas.validate import InvalidRecordError

EMBEDDING_SIZE = 128
MAX_PERSON_NAME_CHARS = 128
MAX_EMBEDDINGS = 64
RESERVED_NAMES = (UNKNOWN_IDENTITY,)  # what a detection's identity says when nobody matched


def check_person_name(name: str) -> str:
    """A gallery name: 1-128 printable characters, not blank, not the reserved `unknown`."""
    if not name.strip():
        raise InvalidRecordError("the name is empty")
    if len(name) > MAX_PERSON_NAME_CHARS:
        raise InvalidRecordError(f"the name is {len(name)} characters (at most {MAX_PERSON_NAME_CHARS})")
    if not name.isprintable():
        raise InvalidRecordError(f"the name {name[:40]!r} has control characters")
    if name.strip().lower() in RESERVED_NAMES:
        raise InvalidRecordError(f"{name!r} is reserved: it is what an unrecognised face is called")
    return name


@dataclass(frozen=True, slots=True)
class FaceEnrolment:
    name: str
    model: str
    embeddings: tuple[tuple[float, ...], ...]
    enrolled_ts_ms: int
    photos: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "embeddings": [list(e) for e in self.embeddings],
            "enrolled_ts_ms": self.enrolled_ts_ms,
            "photos": list(self.photos),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> FaceEnrolment:
        return cls(
            name=rec["name"],
            model=rec["model"],
            embeddings=tuple(tuple(e) for e in rec["embeddings"]),
            enrolled_ts_ms=rec["enrolled_ts_ms"],
            photos=tuple(rec.get("photos", ())),
        )


def check_enrolment(e: FaceEnrolment) -> FaceEnrolment:
    check_person_name(e.name)
    if not 1 <= len(e.embeddings) <= MAX_EMBEDDINGS:
        raise InvalidRecordError(f"{len(e.embeddings)} embeddings (1 to {MAX_EMBEDDINGS})")
    for row in e.embeddings:
        if len(row) != EMBEDDING_SIZE or not all(math.isfinite(v) for v in row):
            raise InvalidRecordError(f"an embedding is not {EMBEDDING_SIZE} finite numbers")
    return e


class FaceEnrolmentCodec(TypedCodec[FaceEnrolment]):
    def __init__(self) -> None:
        super().__init__("face_enrolment", FaceEnrolment.from_record, check_enrolment)
