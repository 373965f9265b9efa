"""sharebatch doctor on link: cloudfront grants: one check per distinct cloudfront setting
(the key loads, fits the hash, its file is private; SHA-1 a WARN), never any key material,
and CloudFront lifetimes held to max_expires_in instead of SigV4's 7 days."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.lifecycle.doctor import cloudfront_checks
from sharebatch.manifest.load import load_manifest
from tests.support.cfkeys import KeyPair, ec_pair, rsa_pair
from tests.support.s3 import S3, write_manifest

BUCKET = "cf-origin"


def manifest(tmp_path: Path, pair: KeyPair, *, hash: str = "sha256", extra: str = "") -> Path:
    """A manifest of one CloudFront job whose links live 30 days, signed with ``pair``."""
    key_file, _ = pair.write(tmp_path)
    return write_manifest(
        tmp_path / "cf.yml",
        f"""\
version: 1
defaults:
  bucket: {BUCKET}
  region: eu-west-1
  expires_in: 30d
  link: cloudfront
  cloudfront:
    domain: d111111abcdef8.cloudfront.net
    key_pair_id: {pair.key_pair_id}
    private_key: {{file: {key_file}}}
    hash: {hash}
    max_expires_in: 90d
jobs:
  - name: q3
    prefixes: [q3/]
    recipients:
      - id: globex
{extra}""",
    )


def doctor(path: Path, endpoint: str) -> Any:
    return CliRunner().invoke(
        app, ["doctor", str(path), "--endpoint-url", endpoint, "--json"], catch_exceptions=False
    )


def checks(result: Any, name: str) -> list[dict[str, str]]:
    return [c for c in json.loads(result.stdout)["checks"] if c["name"] == name]


def test_a_good_key_is_ok_and_thirty_days_is_no_sigv4_failure(s3: S3, tmp_path: Path) -> None:
    """An RSA key with SHA-256, mode 0600: OK, naming its size, file and mode; 30-day links
    are not held to SigV4's 7 days (no expiry FAIL); exit 0; the PEM is never printed."""
    s3.bucket(BUCKET, {"q3/a.pdf": b"a"})
    pair = rsa_pair()
    result = doctor(manifest(tmp_path, pair), s3.endpoint)
    assert result.exit_code == 0, result.output
    (found,) = checks(result, "cloudfront")
    assert found["status"] == "OK"
    assert found["subject"] == f"d111111abcdef8.cloudfront.net {pair.key_pair_id}"
    assert "RSA 2048-bit key" in found["message"] and "(mode 0600)" in found["message"]
    assert "links live up to 30d, within max_expires_in 90d" in found["message"]
    assert not [c for c in checks(result, "expiry") if c["status"] == "FAIL"]
    assert pair.private_pem.decode().splitlines()[1] not in result.output


def test_sha1_is_a_warning(s3: S3, tmp_path: Path) -> None:
    """hash: sha1 with an RSA key works, but doctor says AWS recommends SHA-256 (exit 0)."""
    s3.bucket(BUCKET, {"q3/a.pdf": b"a"})
    result = doctor(manifest(tmp_path, rsa_pair(), hash="sha1"), s3.endpoint)
    assert result.exit_code == 0, result.output
    (found,) = checks(result, "cloudfront")
    assert found["status"] == "WARN"
    assert "AWS recommends SHA-256" in found["message"]


def test_an_ecdsa_key_with_sha1_fails(s3: S3, tmp_path: Path) -> None:
    """ECDSA keys sign CloudFront links with SHA-256 only: the manifest refuses hash sha1
    with one (exit 2 at its line), and a Manifest built past the loader gets a FAIL."""
    s3.bucket(BUCKET, {"q3/a.pdf": b"a"})
    path = manifest(tmp_path, ec_pair(), hash="sha1")
    result = doctor(path, s3.endpoint)
    assert result.exit_code == 2
    assert "cf.yml:11:11: defaults.cloudfront.hash" in result.stderr
    now = datetime.now(UTC)
    (tmp_path / "ok").mkdir()
    loaded = load_manifest(manifest(tmp_path / "ok", ec_pair()), now=now)
    job = loaded.jobs[0]
    grant = job.grants[0]
    assert grant.cloudfront is not None
    sha1 = grant.model_copy(update={"cloudfront": replace(grant.cloudfront, hash="sha1")})
    built = loaded.model_copy(update={"jobs": (job.model_copy(update={"grants": (sha1,)}),)})
    (found,) = cloudfront_checks(built, now)
    assert found.status == "FAIL"
    assert "ECDSA P-256 key" in found.message and "set hash: sha256" in found.message


def test_one_check_per_distinct_setting(tmp_path: Path) -> None:
    """Two recipients on the same setting share one check; one overriding the hash gets its
    own (here ECDSA with SHA-256, OK)."""
    pair = ec_pair()
    path = manifest(
        tmp_path,
        pair,
        extra="      - id: initech\n      - {id: hooli, link: s3, expires_in: 1d}\n",
    )
    now = datetime.now(UTC)
    loaded = load_manifest(path, now=now)
    found = cloudfront_checks(loaded, now)
    assert [c.status for c in found] == ["OK"]
    assert "ECDSA P-256 key" in found[0].message and "signs with SHA-256" in found[0].message


def test_a_key_gone_bad_after_loading_fails(tmp_path: Path) -> None:
    """diagnose may be given a loaded manifest: a key file opened to others since then is a
    FAIL naming the mode and the chmod, and no key bytes."""
    pair = rsa_pair()
    path = manifest(tmp_path, pair)
    now = datetime.now(UTC)
    loaded = load_manifest(path, now=now)
    (tmp_path / f"{pair.key_pair_id}.pem").chmod(0o644)
    (found,) = cloudfront_checks(loaded, now)
    assert found.status == "FAIL"
    assert "readable by group or others (mode 0644)" in found.message
    assert "chmod 600" in found.message
    assert pair.private_pem.decode().splitlines()[1] not in found.message


def test_text_output_shows_the_cloudfront_line(s3: S3, tmp_path: Path) -> None:
    """The rendered doctor has its cloudfront line like every other check."""
    s3.bucket(BUCKET, {"q3/a.pdf": b"a"})
    path = manifest(tmp_path, rsa_pair(), hash="sha1")
    result = CliRunner().invoke(
        app, ["doctor", str(path), "--endpoint-url", s3.endpoint], catch_exceptions=False
    )
    assert any(
        line.startswith("WARN  cloudfront") and "AWS recommends SHA-256" in line
        for line in result.stdout.splitlines()
    )
