"""Key pairs for the CloudFront tests, made with ``cryptography`` once per session.

RSA 2048 generation costs tens of milliseconds each, so a small pool is made on first use and
reused (hypothesis draws from the pool). ``KeyPair`` holds the key objects and their PEM; the
private PEMs are test secrets, registered with the secrets guard so no output shows them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import secretsguard

Kind = Literal["rsa", "ecdsa"]
POOL = 3


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
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    secretsguard.KNOWN_SECRETS.add(private_pem.decode("ascii").splitlines()[1])
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_pair_id = f"K{'RSA' if kind == 'rsa' else 'EC'}TEST{index}"
    return KeyPair(kind, key_pair_id, key, private_pem, public_pem)


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
