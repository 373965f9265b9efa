"""Tests for sharebatch.cloudfront.keys: which keys are taken, which refused, and that no
refusal ever carries key material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sharebatch.cloudfront.keys import KeyProblem, key_algorithm, load_private_key
from sharebatch.models import KeySource
from tests.support.cloudfront_keys import make_key, pem, write_key


def _problem(source: KeySource, environ: dict[str, str] | None = None) -> KeyProblem:
    with pytest.raises(KeyProblem) as info:
        load_private_key(source, environ)
    return info.value


def _assert_no_key_material(problem: KeyProblem, data: bytes) -> None:
    """Neither the message, the repr nor any chained exception holds a line of the PEM body."""
    body = [line for line in data.decode("ascii", "replace").splitlines() if "-----" not in line]
    shown = str(problem) + repr(problem)
    assert body, "the test key has a body to look for"
    assert not [line for line in body if line and line in shown]
    assert problem.__cause__ is None
    assert problem.__suppress_context__ or problem.__context__ is None


@pytest.mark.parametrize("mode", [0o600, 0o400])
@pytest.mark.parametrize(
    ("kind", "pkcs1"), [("rsa2048", False), ("rsa2048", True), ("p256", False), ("p256", True)]
)
def test_private_files_of_supported_keys_load(
    tmp_path: Path, mode: int, kind: str, pkcs1: bool
) -> None:
    """RSA 2048 and P-256 keys, PKCS#8 or traditional PEM, in a 0600 or 0400 file, load as the
    same key (same public numbers) and report their algorithm."""
    key = make_key(kind)
    path = write_key(tmp_path / "cf.pem", pem(key, pkcs1=pkcs1), mode)
    loaded = load_private_key(KeySource(file=str(path)))
    assert loaded.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    expected = "rsa" if kind.startswith("rsa") else "ecdsa-p256"
    assert key_algorithm(loaded) == expected
    assert isinstance(
        loaded, rsa.RSAPrivateKey if expected == "rsa" else ec.EllipticCurvePrivateKey
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610])
def test_a_key_file_group_or_others_can_reach_is_refused_like_ssh(
    tmp_path: Path, mode: int
) -> None:
    """Any group or other permission bit refuses the file, naming its mode and the fix."""
    path = write_key(tmp_path / "cf.pem", pem(make_key("p256")), mode)
    problem = _problem(KeySource(file=str(path)))
    assert str(problem) == (
        f"private key file {str(path)!r} is readable by group or others (mode {mode:04o});"
        f" a signing key must be private to its owner: chmod 600 {path}"
    )


def test_the_mode_checked_is_the_symlink_targets(tmp_path: Path) -> None:
    """A symbolic link (secret mounts are made of them) is followed, and it is the target's mode
    that must be private: a 0777 link to a 0644 key is refused, to a 0600 key accepted."""
    target = write_key(tmp_path / "real.pem", pem(make_key("p256")), 0o644)
    link = tmp_path / "cf.pem"
    link.symlink_to(target)
    assert "mode 0644" in str(_problem(KeySource(file=str(link))))
    os.chmod(target, 0o600)
    assert key_algorithm(load_private_key(KeySource(file=str(link)))) == "ecdsa-p256"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """A path with nothing there: said so, with the path."""
    path = tmp_path / "nope.pem"
    assert (
        str(_problem(KeySource(file=str(path)))) == f"private key file {str(path)!r} does not exist"
    )


def test_a_directory_is_not_a_key(tmp_path: Path) -> None:
    """A directory at the path is refused as such, not read."""
    assert "is a directory, not a key file" in str(_problem(KeySource(file=str(tmp_path))))


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    """A named pipe is refused as not a regular file (opening it does not wait for a writer)."""
    fifo = tmp_path / "cf.pem"
    os.mkfifo(fifo, 0o600)
    assert "is not a regular file" in str(_problem(KeySource(file=str(fifo))))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    """A key file its reader may not open: 'permission denied'. Root reads anything, so under
    root the load runs in a forked child that first becomes the unprivileged user 65534 (a
    fork, not a new interpreter: the interpreter itself may live where that user cannot go)."""
    path = write_key(tmp_path / "cf.pem", pem(make_key("p256")), 0o000)
    if os.geteuid() != 0:
        message = str(_problem(KeySource(file=str(path))))
    else:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    load_private_key(KeySource(file=str(path)))
                    os.write(write, b"loaded")
                except KeyProblem as exc:
                    os.write(write, str(exc).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            message = pipe.read().decode()
        os.waitpid(pid, 0)
    assert message == f"private key file {str(path)!r} cannot be read: permission denied"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)"),
        (b"hunter2 secret-ish garbage\n", "is not a PEM private key (no '-----BEGIN"),
        (
            b"-----BEGIN PRIVATE KEY-----\nTUlJQmFkIGJvZHkgb2YgYSBrZXk=\n"
            b"-----END PRIVATE KEY-----\n",
            "is not a readable PEM private key (damaged or of an unknown kind)",
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nTUlJQmFkIGJvZHkgb2YgYSBrZXk=\n-----END PUBLIC KEY-----\n",
            "holds a public key, not a private key",
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
            b"-----END OPENSSH PRIVATE KEY-----\n",
            "holds an OpenSSH-format key; convert a copy to PEM",
        ),
    ],
)
def test_garbage_is_refused_without_echoing_it(tmp_path: Path, data: bytes, why: str) -> None:
    """Bytes that are no PEM private key: a message of our own, never the bytes themselves."""
    path = write_key(tmp_path / "cf.pem", data)
    problem = _problem(KeySource(file=str(path)))
    assert why in str(problem)
    for secret in ("hunter2", "TUlJQmFk", "b3BlbnNzaC1rZXk"):
        assert secret not in str(problem) + repr(problem)
    assert problem.__cause__ is None and problem.__suppress_context__


def test_an_encrypted_key_is_refused(tmp_path: Path) -> None:
    """A password-protected PEM cannot be used unattended: refused, saying so."""
    data = pem(make_key("p256"), password=b"correct horse")
    path = write_key(tmp_path / "cf.pem", data)
    problem = _problem(KeySource(file=str(path)))
    assert "holds an encrypted private key; sharebatch reads unencrypted PEM only" in str(problem)
    _assert_no_key_material(problem, data)


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("dsa", "a DSA key"),
        ("ed25519", "an Ed25519 key"),
        ("p384", "an EC key on secp384r1"),
        ("rsa1024", "a 1024-bit RSA key"),
    ],
)
def test_keys_cloudfront_cannot_verify_are_refused_by_name(
    tmp_path: Path, kind: str, named: str
) -> None:
    """DSA, Ed25519, EC off P-256 and RSA under 2048 bits: refused, naming what was found and
    what is wanted; the message holds nothing of the key."""
    data = pem(make_key(kind))
    path = write_key(tmp_path / "cf.pem", data)
    problem = _problem(KeySource(file=str(path)))
    assert str(problem) == (
        f"private key file {str(path)!r} holds {named}; CloudFront signs with RSA (2048 bits or"
        " more) or ECDSA P-256 keys"
    )
    _assert_no_key_material(problem, data)


def test_a_key_from_the_environment_loads() -> None:
    """{env: NAME}: the PEM is read from the given mapping, as written or on one line with
    its newlines escaped as backslash-n (how secret stores often keep it)."""
    key = make_key("rsa2048")
    text = pem(key).decode("ascii")
    for value in (text, text.replace("\n", "\\n")):
        loaded = load_private_key(KeySource(env="CF_KEY"), {"CF_KEY": value})
        assert loaded.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_the_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an explicit mapping, os.environ is where the variable is looked up."""
    monkeypatch.setenv("SHAREBATCH_CF_KEY_TEST", pem(make_key("p256")).decode("ascii"))
    assert key_algorithm(load_private_key(KeySource(env="SHAREBATCH_CF_KEY_TEST"))) == "ecdsa-p256"


@pytest.mark.parametrize("value", [None, "", "  \n"])
def test_a_missing_environment_variable_is_named(value: str | None) -> None:
    """An unset or blank variable: said so, with its name."""
    environ = {} if value is None else {"CF_KEY": value}
    problem = _problem(KeySource(env="CF_KEY"), environ)
    assert (
        str(problem) == "environment variable 'CF_KEY' is not set; it must hold the PEM private key"
    )


def test_a_bad_pem_in_the_environment_is_refused_without_echoing_it() -> None:
    """A variable holding something else: refused, and its value never appears."""
    problem = _problem(KeySource(env="CF_KEY"), {"CF_KEY": "s3cr3t-not-a-key"})
    assert str(problem).startswith("environment variable 'CF_KEY' is not a PEM private key")
    assert "s3cr3t" not in str(problem) + repr(problem)


def test_a_wrong_key_type_in_the_environment_is_named() -> None:
    """The type check applies to an environment key as to a file."""
    data = pem(make_key("ed25519"))
    problem = _problem(KeySource(env="CF_KEY"), {"CF_KEY": data.decode("ascii")})
    assert "environment variable 'CF_KEY' holds an Ed25519 key" in str(problem)
    _assert_no_key_material(problem, data)


@pytest.mark.parametrize("source", [KeySource(), KeySource(file="a.pem", env="CF_KEY")])
def test_a_source_needs_exactly_one_place(source: KeySource) -> None:
    """Neither or both of file and env is refused before anything is read."""
    assert str(_problem(source)) == "private_key needs exactly one of file and env"


def test_a_hidden_character_in_the_path_is_shown_escaped(tmp_path: Path) -> None:
    """The path is the operator's text: a control character in it is shown escaped, so the
    message cannot rewrite the terminal."""
    path = tmp_path / "cf\x1b[2J.pem"
    message = str(_problem(KeySource(file=str(path))))
    assert "\x1b" not in message
    assert "\\x1b" in message or "\\u001b" in message.lower()
