"""``read_inbox(scan=True)`` when S3 refuses the quarantine: the inbox's own report and exit.

The scan-level faults are in tests/scanning/test_scan_faults.py; here the same refusal is
seen where an operator sees it, in the inbox's rows and exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sharebatch.lifecycle.inbox import read_inbox_async
from sharebatch.models import Connection
from sharebatch.scanning.verdicts import TAG_VERDICT
from tests.support.fake_clamd import fake_clamd
from tests.support.faultproxy import fault_proxy
from tests.support.s3 import S3
from tests.support.scan_inbox import AS_OF, BUCKET, manifest

KEY = "inbox/globex/bad.com"


@pytest.mark.asyncio
async def test_a_refused_quarantine_copy_is_reported_infected_and_exits_1(
    s3: S3, tmp_path: Path
) -> None:
    """CopyObject answered 403 AccessDenied: the inbox row says infected with "not
    quarantined (AccessDenied)", the exit code is 1, and the upload is still in the slot,
    bytes whole and tagged infected; the quarantine stays empty."""
    s3.bucket(BUCKET, {KEY: b"infected upload"})
    async with fake_clamd("found") as fake:
        with fault_proxy(s3.endpoint) as proxy:
            proxy.add("denied", method="PUT", header="x-amz-copy-source", times=None)
            inbox = await read_inbox_async(
                manifest(tmp_path, fake.url),
                as_of=AS_OF,
                connection=Connection(endpoint_url=proxy.url),
                scan=True,
            )
            refused = [s for s in proxy.seen if s.fault == "denied"]
    [row] = [r for r in inbox.rows() if r["key"] == KEY]
    assert (row["scan"], row["signature"]) == ("infected", fake.signature)
    assert row["scan_detail"] == "not quarantined (AccessDenied)"
    assert row["quarantined_to"] is None
    assert inbox.exit_code == 1
    assert len(refused) >= 1
    assert s3.client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"infected upload"
    found = s3.client.get_object_tagging(Bucket=BUCKET, Key=KEY)["TagSet"]
    assert {t["Key"]: t["Value"] for t in found}[TAG_VERDICT] == "infected"
    assert s3.client.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")["KeyCount"] == 0
