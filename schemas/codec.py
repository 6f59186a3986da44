"""Avro single-object encoding (spec: marker C3 01, 8-byte CRC-64-AVRO fingerprint, binary body).

A reader knows its own schema plus any older writer schemas; the fingerprint in each message says which
one wrote it, so a consumer can always tell what it is looking at.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any, cast

import avro.io
import avro.schema
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import parse_schema as _fastavro_parse
from fastavro.schema import to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8


class DecodeError(ValueError):
    """A message could not be decoded; the base of every codec error."""


class NotSingleObjectError(DecodeError):
    """The message does not start with the single-object marker."""


class UnknownSchemaError(DecodeError):
    """The message was written with a schema whose fingerprint this reader does not know."""

    def __init__(self, fingerprint: bytes, known: Iterable[bytes]) -> None:
        names = ", ".join(k.hex() for k in known)
        super().__init__(f"unknown schema fingerprint {fingerprint.hex()} (known: {names})")
        self.fingerprint = fingerprint


class MalformedBodyError(DecodeError):
    """The body does not decode with the schema its fingerprint names."""


def load_schema(name: str) -> avro.schema.Schema:
    """Parse schemas/<name>.avsc as shipped in the package."""
    text = resources.files(__package__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")
    return avro.schema.parse(text)


def canonical_form(schema: avro.schema.Schema) -> str:
    """The spec's Parsing Canonical Form.

    Taken from fastavro: apache `avro` 1.12 keeps a logical type's primitive as {"type":"long"} where the
    spec ([PRIMITIVES], [STRIP]) and Java give "long", so its fingerprints would not match other languages'.
    """
    return str(to_parsing_canonical_form(_fastavro_parse(json.loads(str(schema)), _write_hint=False)))


def fingerprint(schema: avro.schema.Schema) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, in the little-endian byte order of the single-object header."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


class SingleObjectCodec:
    """Encodes with one schema; decodes anything written with it or with one of `writer_schemas`."""

    def __init__(self, schema: avro.schema.Schema, writer_schemas: Iterable[avro.schema.Schema] = ()) -> None:
        self.schema = schema
        self.name = getattr(schema, "fullname", schema.type)
        self.fingerprint = fingerprint(schema)
        self._header = MAGIC + self.fingerprint
        self._writer = avro.io.DatumWriter(schema)
        self._readers: dict[bytes, avro.io.DatumReader] = {self.fingerprint: avro.io.DatumReader(schema)}
        for old in writer_schemas:
            self._readers.setdefault(fingerprint(old), avro.io.DatumReader(old, schema))

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        self._writer.write(record, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def decode(self, message: bytes) -> dict[str, Any]:
        if message is None or len(message) < HEADER_LEN or message[:2] != MAGIC:
            head = b"" if message is None else bytes(message[:4])
            raise NotSingleObjectError(f"not an Avro single-object message (starts with {head.hex() or 'nothing'})")
        fp = bytes(message[2:HEADER_LEN])
        reader = self._readers.get(fp)
        if reader is None:
            raise UnknownSchemaError(fp, self._readers)
        buf = io.BytesIO(message)
        buf.seek(HEADER_LEN)
        try:
            record = reader.read(avro.io.BinaryDecoder(buf))
        except Exception as exc:  # the avro library raises many unrelated types on bad input
            raise MalformedBodyError(f"body does not match schema {self.name}: {exc!r}") from exc
        if buf.tell() != len(message):
            raise MalformedBodyError(f"{len(message) - buf.tell()} trailing bytes after a {self.name} record")
        return cast(dict[str, Any], record)


def schema_json(name: str) -> dict[str, Any]:
    """The raw .avsc document, for tools and docs."""
    return json.loads(resources.files(__package__).joinpath(f"{name}.avsc").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
