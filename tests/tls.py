"""Test-time keys: a CA, a broker certificate for `localhost` signed by it, and a second CA nobody trusts (openssl)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA clients should trust
    other_ca: Path  # a CA that did not sign the broker's certificate
    keystore_pem: Path  # the broker's key and certificate (SAN DNS:localhost only)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=visionstream test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=root,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key", "-out", "broker.csr",
        cwd=root,
    )  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "broker.pem", cwd=root,
    )  # fmt: skip
    keystore = root / "keystore.pem"
    keystore.write_text((root / "broker.key").read_text() + (root / "broker.pem").read_text())
    return Pki(root / "ca.pem", root / "other-ca.pem", keystore)
