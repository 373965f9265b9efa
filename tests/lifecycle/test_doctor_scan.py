"""doctor's scanner checks: clamd's PING and VERSION, and the slots' tag permissions.

A real clamd answers PONG; its VERSION here has no official database (our one local
signature), which doctor calls out, since production needs freshclam. The fake clamd stands
for one that hangs; the fault proxy for S3 refusing the tagging requests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sharebatch.lifecycle.doctor import Check, _clamd, diagnose
from sharebatch.manifest.load import load_manifest
from sharebatch.models import Connection
from tests.support.clamd import ClamdServer
from tests.support.fake_clamd import fake_clamd
from tests.support.faultproxy import fault_proxy
from tests.support.s3 import S3
from tests.support.scan_inbox import BUCKET, manifest


def scan_checks(s3: S3, tmp_path: Path, clamd: str, endpoint: str) -> list[Check]:
    s3.bucket(BUCKET, {"q3/a.pdf": b"a"})
    loaded = load_manifest(manifest(tmp_path, clamd))
    diagnosis = diagnose(loaded, connection=Connection(endpoint_url=endpoint))
    return [c for c in diagnosis.checks if c.name in ("clamd", "scan-tags", "quarantine")]


def test_a_running_clamd_and_taggable_slots_pass(
    s3: S3, tmp_path: Path, clamd: ClamdServer
) -> None:
    """clamd answers PONG and its version (WARN: only our local signature, no freshclam
    database); globex's slot (clamd) may read and write tags, initech's (GuardDuty) read
    them; the quarantine may be written. Nothing is left tagged or stored but the probe."""
    checks = scan_checks(s3, tmp_path, clamd.unix_url, s3.endpoint)
    by_subject = {(c.name, c.subject): c for c in checks}
    pinged = by_subject[("clamd", clamd.unix_url)]
    assert pinged.status == "WARN" and "ClamAV" in pinged.message and "freshclam" in pinged.message
    globex = by_subject[("scan-tags", f"{BUCKET}/inbox/globex/")]
    assert globex.status == "OK"
    assert "s3:GetObjectTagging and s3:PutObjectTagging" in globex.message
    initech = by_subject[("scan-tags", f"{BUCKET}/inbox/initech/")]
    assert (initech.status, initech.message) == ("OK", "object tags allowed (s3:GetObjectTagging)")
    assert by_subject[("quarantine", f"{BUCKET}/quarantine/")].status == "OK"


def test_a_clamd_that_is_not_running_fails(s3: S3, tmp_path: Path) -> None:
    """No clamd at the address: FAIL, saying it cannot be reached."""
    checks = scan_checks(s3, tmp_path, f"unix://{tmp_path}/none.ctl", s3.endpoint)
    (check,) = [c for c in checks if c.name == "clamd"]
    assert check.status == "FAIL" and "cannot reach clamd" in check.message


@pytest.mark.asyncio
async def test_a_clamd_that_never_answers_fails_within_the_timeout() -> None:
    """A clamd that accepts and says nothing: FAIL, not a doctor that hangs."""
    from sharebatch.lifecycle import doctor

    async with fake_clamd("stall_commands") as fake:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(doctor, "_CLAMD_CHECK_TIMEOUT", 0.3)
            (check,) = await _clamd(fake.url, datetime.now(UTC))
    assert check.status == "FAIL" and "did not answer" in check.message


@pytest.mark.asyncio
async def test_clamd_signatures_are_judged_by_their_date() -> None:
    """VERSION's database date: within days is OK, older is WARN (freshclam stopped)."""
    async with fake_clamd("ok") as fake:
        dated = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        (fresh,) = await _clamd(fake.url, dated)
        (stale,) = await _clamd(fake.url, dated.replace(month=3))
    assert fresh.status == "OK" and fresh.message.startswith("PONG; ClamAV")
    assert stale.status == "WARN" and "freshclam" in stale.message


def test_refused_tagging_fails_and_names_the_permission(
    s3: S3, tmp_path: Path, moto_endpoint: str, clamd: ClamdServer
) -> None:
    """S3 denying the tagging requests on globex's slot: FAIL naming each permission."""
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("denied", path=f"/{BUCKET}/inbox/globex/", query="tagging", times=None)
        checks = scan_checks(s3, tmp_path, clamd.unix_url, proxy.url)
    (check,) = [c for c in checks if c.subject == f"{BUCKET}/inbox/globex/"]
    assert check.status == "FAIL"
    assert "s3:GetObjectTagging refused (AccessDenied" in check.message
    assert "s3:PutObjectTagging refused (AccessDenied" in check.message
