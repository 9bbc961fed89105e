"""Certificates for TLS tests, made with openssl: self-signed ones (each its own authority, so a test trusts
exactly the certificates it names), and an authority with the certificates it signs for servers and clients.
Every key is on P-256: small and quick to make, and what grpcio and Python's ssl both take."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class Pair(NamedTuple):
    """A certificate and its key, as files: `pair.cert`, or `cert, key = pair`."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(directory: Path, name: str, subject: str = "", names: Sequence[str] | None = None) -> Pair:
    """A certificate for `name` that is its own authority, and its key, as `name`.pem and `name`.key.
    `subject` is /CN=`name` unless given; `names` are its subjectAltName entries, DNS:`name` unless given
    (none when empty)."""
    pair = Pair(directory / f"{name}.pem", directory / f"{name}.key")
    alternatives = [f"DNS:{name}"] if names is None else list(names)
    extension = ["-addext", "subjectAltName=" + ",".join(alternatives)] if alternatives else []
    _openssl(
        "req", "-x509", *NEW_KEY, "-days", "1", "-subj", subject or f"/CN={name}", *extension,
        "-keyout", str(pair.key), "-out", str(pair.cert),
    )  # fmt: skip
    return pair


def authority(where: Path, name: str = "ca") -> Pair:
    """A certificate authority: it signs the certificates `signed` makes."""
    pair = Pair(where / f"{name}.pem", where / f"{name}.key")
    _openssl(
        "req", "-x509", *NEW_KEY, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-subj", f"/CN=flowscope test {name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def signed(where: Path, ca: Pair, name: str, dns: Sequence[str], ips: Sequence[str] = ()) -> Pair:
    """A certificate `ca` signs, for servers and clients alike, naming `dns` and `ips`."""
    pair = Pair(where / f"{name}.pem", where / f"{name}.key")
    csr, ext = where / f"{name}.csr", where / f"{name}.ext"
    names = ",".join([*(f"DNS:{d}" for d in dns), *(f"IP:{ip}" for ip in ips)])
    ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", *NEW_KEY, "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-out", str(pair.cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return pair
