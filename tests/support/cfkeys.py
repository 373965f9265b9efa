"""Private keys for the CloudFront tests, made with ``cryptography`` once per session: the one
helper module for them (the key pool for signing and the edge, and single keys of any kind,
good or bad, for the loader's refusals).

RSA generation costs tens of milliseconds per key, so keys are made on first use and reused:
``pool`` holds a few key pairs of each kind CloudFront takes (hypothesis draws from it);
``make_key`` one key of any kind by name. Every private PEM these helpers produce is a test
secret, registered with the secrets guard so that no output or log may show it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tests.support import secretsguard

Kind = Literal["rsa", "ecdsa"]
POOL = 3

CF_KEY_ENV = "SHAREBATCH_TEST_CF_KEY"
"""The variable the bad-manifest corpus names in ``private_key: {env: ...}``."""


def _guarded(private_pem: bytes) -> bytes:
    # The first base64 line is in every copy of the PEM and nowhere else: enough for the guard
    # to recognise the key, without holding the whole of it. Armour and the header lines of
    # an encrypted traditional PEM (``Proc-Type: 4,ENCRYPTED``) are common text, not secrets.
    lines = private_pem.decode("ascii").splitlines()
    body = next(line for line in lines if line and not line.startswith("-----") and ":" not in line)
    secretsguard.KNOWN_SECRETS.add(body)
    return private_pem


@dataclass(frozen=True)
class KeyPair:
    kind: Kind
    key_pair_id: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    private_pem: bytes = field(repr=False)
    public_pem: bytes

    @property
    def public(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self.private.public_key()

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The private (mode 0600) and public PEM files in ``folder``."""
        private, public = folder / f"{self.key_pair_id}.pem", folder / f"{self.key_pair_id}.pub"
        private.write_bytes(self.private_pem)
        private.chmod(0o600)
        public.write_bytes(self.public_pem)
        return private, public


def _pair(kind: Kind, index: int) -> KeyPair:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_pair_id = f"K{'RSA' if kind == 'rsa' else 'EC'}TEST{index}"
    return KeyPair(kind, key_pair_id, key, pem(key), public_pem)


@functools.cache
def pool(kind: Kind) -> tuple[KeyPair, ...]:
    """``POOL`` key pairs of ``kind``, made once per session."""
    return tuple(_pair(kind, i) for i in range(POOL))


def rsa_pair(index: int = 0) -> KeyPair:
    return pool("rsa")[index]


def ec_pair(index: int = 0) -> KeyPair:
    return pool("ecdsa")[index]


def public_keys(*pairs: KeyPair) -> dict[str, rsa.RSAPublicKey | ec.EllipticCurvePublicKey]:
    """The key group an edge trusts: key pair id -> public key."""
    return {pair.key_pair_id: pair.public for pair in pairs}


@functools.cache
def make_key(kind: str) -> PrivateKeyTypes:
    """One key of ``kind``, made once per session: ``rsa<bits>`` (rsa2048, rsa1024, rsa3072),
    p256, p384, dsa, ed25519."""
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
    """``key`` as PEM: PKCS#8 (default) or the traditional (PKCS#1 / SEC1) form; registered
    with the secrets guard."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return _guarded(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL
            if pkcs1
            else serialization.PrivateFormat.PKCS8,
            encryption,
        )
    )


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """``data`` written at ``path`` with exactly ``mode`` (the umask would loosen nothing but
    could tighten it, so the mode is set after writing)."""
    path.write_bytes(data)
    os.chmod(path, mode)
    return path
