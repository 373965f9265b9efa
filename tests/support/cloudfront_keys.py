"""Private keys for CloudFront tests: generated once per session, written with a chosen mode.

RSA generation costs tens of milliseconds per key, so each kind is made once and shared.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

CF_KEY_ENV = "SHAREBATCH_TEST_CF_KEY"
"""The variable the bad-manifest corpus names in ``private_key: {env: ...}``."""


@cache
def make_key(kind: str) -> PrivateKeyTypes:
    """A key of ``kind``: rsa2048, rsa1024, p256, p384, dsa, ed25519."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "dsa":
        return dsa.generate_private_key(key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no such test key kind: {kind}")


def pem(
    key: PrivateKeyTypes,
    *,
    pkcs1: bool = False,
    password: bytes | None = None,
) -> bytes:
    """``key`` as PEM: PKCS#8 (default) or the traditional (PKCS#1 / SEC1) form."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8,
        encryption,
    )


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """``data`` written at ``path`` with exactly ``mode`` (the umask would loosen nothing but
    could tighten it, so the mode is set after writing)."""
    path.write_bytes(data)
    os.chmod(path, mode)
    return path
