"""The private key CloudFront links are signed with: read, checked, never shown.

A key comes from a file (``{file: path}``) or an environment variable holding the PEM
(``{env: NAME}``). Whoever holds it can sign links to anything the distribution serves, for
as long as they like, so a file that group or others may read is refused, as ssh refuses
such an identity file. Only what CloudFront verifies is accepted: RSA of at least 2048 bits
and ECDSA on P-256; anything else is named in the refusal, so the operator knows what was
found instead.

No message, ``repr`` or chained exception carries key material: every failure of the PEM
parser is replaced by a ``KeyProblem`` of our own wording, raised ``from None``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from sharebatch.models import KeySource
from sharebatch.visible import visible

__all__ = ["KeyProblem", "PrivateKey", "key_algorithm", "load_private_key"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyAlgorithm = Literal["rsa", "ecdsa-p256"]

MIN_RSA_BITS = 2048
# A PEM private key is a few KiB (RSA 8192 is about 6.5 KiB); anything far larger is not one,
# and is not read whole into memory.
MAX_KEY_BYTES = 64 * 1024
_WANTED = "CloudFront signs with RSA (2048 bits or more) or ECDSA P-256 keys"


class KeyProblem(ValueError):
    """A private key that cannot be used; the message names the source, never the key."""


def load_private_key(source: KeySource, environ: Mapping[str, str] | None = None) -> PrivateKey:
    """The key ``source`` names, checked; ``KeyProblem`` saying what is wrong otherwise.

    ``environ`` (default ``os.environ``) is where an ``{env: NAME}`` source is looked up.
    """
    if (source.file is None) == (source.env is None):
        raise KeyProblem("private_key needs exactly one of file and env")
    if source.file is not None:
        where = f"private key file {_shown(source.file)}"
        data = _read_file(source.file, where)
    else:
        name = source.env or ""
        where = f"environment variable {_shown(name)}"
        value = (os.environ if environ is None else environ).get(name)
        if not value or not value.strip():
            raise KeyProblem(f"{where} is not set; it must hold the PEM private key")
        if "\n" not in value and "\\n" in value:
            # Many secret stores and .env files keep a PEM on one line with its newlines
            # written as \n; PEM is base64 and header lines, so no real backslash occurs in it.
            value = value.replace("\\n", "\n")
        data = value.encode("utf-8", "replace")
    return _parse(data, where)


def key_algorithm(key: PrivateKey) -> KeyAlgorithm:
    """How a checked key signs: ``rsa`` (PKCS#1 v1.5) or ``ecdsa-p256``."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise KeyProblem(f"{_kind(key)} cannot sign CloudFront links; {_WANTED}")


def _shown(text: str) -> str:
    return repr(visible(text))


def _read_file(path: str, where: str) -> bytes:
    # One descriptor for the checks and the read: the mode checked is that of the very file
    # read, not of whatever a rename put at the path in between. A symbolic link is followed
    # (secret mounts are made of them) and the target's own mode is what must be private.
    # O_NONBLOCK: opening a FIFO must not hang the run; it is refused below as not a file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyProblem(f"{where} does not exist") from None
    except PermissionError:
        raise KeyProblem(f"{where} cannot be read: permission denied") from None
    except OSError as exc:
        raise KeyProblem(f"{where} cannot be opened: {exc.strerror or 'error'}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise KeyProblem(f"{where} is a directory, not a key file")
        if not stat.S_ISREG(info.st_mode):
            raise KeyProblem(f"{where} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyProblem(
                f"{where} is readable by group or others (mode {mode:04o}); a signing key must"
                f" be private to its owner: chmod 600 {visible(path)}"
            )
        if info.st_size > MAX_KEY_BYTES:
            raise KeyProblem(f"{where} is {info.st_size} bytes, too large to be a private key")
        try:
            data = os.read(fd, MAX_KEY_BYTES + 1)
        except OSError as exc:
            raise KeyProblem(f"{where} cannot be read: {exc.strerror or 'error'}") from None
    finally:
        os.close(fd)
    return data


def _parse(data: bytes, where: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # The only TypeError here is a password-protected key without a password.
        raise KeyProblem(
            f"{where} holds an encrypted private key; sharebatch reads unencrypted PEM only"
            " (protect it with the file mode, or an env variable from a secret store)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyProblem(f"{where} {_not_a_key(data)}") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise KeyProblem(f"{where} holds {_kind(key)}; {_WANTED}")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyProblem(f"{where} holds {_kind(key)}; {_WANTED}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem(f"{where} holds {_kind(key)}; {_WANTED}")
    return key


def _not_a_key(data: bytes) -> str:
    """Why PEM parsing failed, told from the armour lines only (never the base64 body)."""
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        return (
            "holds an OpenSSH-format key; convert a copy to PEM:"
            " ssh-keygen -p -m PEM -f COPY (or openssl pkey)"
        )
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data:
        return "holds an encrypted private key; sharebatch reads unencrypted PEM only"
    for label in (b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE"):
        if b"-----BEGIN " + label + b"-----" in data:
            what = "a certificate" if label == b"CERTIFICATE" else "a public key"
            return (
                f"holds {what}, not a private key; CloudFront keeps the public key,"
                " sharebatch needs its private half"
            )
    if b"-----BEGIN" not in data:
        return "is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)"
    return "is not a readable PEM private key (damaged or of an unknown kind)"


def _kind(key: object) -> str:
    """What a key is, in words for the refusal."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"a {key.key_size}-bit RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, dsa.DSAPrivateKey):
        return "a DSA key"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "an Ed448 key"
    if isinstance(key, x25519.X25519PrivateKey | x448.X448PrivateKey):
        return "a key-agreement (X25519/X448) key, which cannot sign"
    return f"a key of another kind ({type(key).__name__})"
