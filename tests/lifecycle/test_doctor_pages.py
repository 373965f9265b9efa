"""doctor's pages check: may the credentials write recipient pages under ``pages_prefix``?

Against moto (which grants everything) it passes; behind the tests' fault proxy, S3 refusing
PutObject under the prefix is a FAIL that names the permission the role needs.
"""

from __future__ import annotations

from pathlib import Path

from sharebatch.lifecycle.doctor import PROBE_NAME, Check, diagnose
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection
from tests.support.faultproxy import fault_proxy
from tests.support.pages import BUCKET, MANIFEST, PAGES, settings, with_notify
from tests.support.s3 import S3, write_manifest


def page_checks(s3: S3, tmp_path: Path, endpoint: str) -> list[Check]:
    s3.bucket(BUCKET, {"reports/q3/a.pdf": b"a"})
    chosen = {"globex": settings(), "initech": settings(delivery="links")}
    manifest = load_manifest(write_manifest(tmp_path / "m.yml", with_notify(MANIFEST, chosen)))
    diagnosis = diagnose(manifest, connection=Connection(endpoint_url=endpoint))
    return [c for c in diagnosis.checks if c.name == "pages"]


def test_writing_pages_is_allowed_on_moto(s3: S3, tmp_path: Path) -> None:
    """One pages check per bucket and prefix that pages go to (delivery: links needs none)."""
    (check,) = page_checks(s3, tmp_path, s3.endpoint)
    assert (check.status, check.subject) == ("OK", f"{BUCKET}/{PAGES}")
    assert "s3:PutObject" in check.message
    # moto ignores Content-MD5, so it kept the empty probe, as the message says.
    assert PROBE_NAME in check.message
    assert s3.client.get_object(Bucket=BUCKET, Key=PAGES + PROBE_NAME)["Body"].read() == b""


def test_refused_page_writing_fails_and_names_the_permission(
    s3: S3, tmp_path: Path, moto_endpoint: str
) -> None:
    """S3 denying PutObject under pages_prefix: FAIL, naming s3:PutObject on bucket/prefix*."""
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("denied", path=f"/{BUCKET}/{PAGES}", times=None)
        (check,) = page_checks(s3, tmp_path, proxy.url)
    assert check.status == "FAIL"
    assert check.message == (
        "writing recipient pages refused (AccessDenied: Access Denied); the role needs "
        f"s3:PutObject on {BUCKET}/{PAGES}*"
    )


def test_a_probe_refused_for_its_digest_means_allowed_and_nothing_stored(
    s3: S3, tmp_path: Path, moto_endpoint: str
) -> None:
    """S3 judging permission first, then refusing the wrong Content-MD5 (BadDigest, as AWS
    does): writing is allowed, and no probe object is left behind."""
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("bad_digest", path=f"/{BUCKET}/{PAGES}", times=None)
        (check,) = page_checks(s3, tmp_path, proxy.url)
    assert (check.status, check.message) == (
        "OK",
        "writing recipient pages allowed (s3:PutObject)",
    )
    assert s3.client.list_objects_v2(Bucket=BUCKET, Prefix=PAGES).get("KeyCount") == 0
