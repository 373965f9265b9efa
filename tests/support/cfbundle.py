"""CloudFront bundles for the lifecycle tests, written as a run would write them.

The run's own CloudFront signing (helper C's side of issue 16) is not what these tests are
about, so a bundle is made here from its parts: the objects' facts from moto, links signed by
``cloudfront/sign.CloudFrontSigner``, the header the contract fixes, joined by
``run/bundles.write_bundle``, and its sha256 recorded in a run folder's ``audit.jsonl``
(``run_started`` and ``bundle_written``), which is what ``renew`` asks its run to vouch for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch.cloudfront.sign import CloudFrontSigner
from sharebatch.models import (
    LINK_ID_PARAM,
    BucketTarget,
    CloudFrontHash,
    CloudFrontLinks,
    Expiry,
    KeySource,
    Link,
    ObjectRef,
)
from sharebatch.run.bundles import BundleHeader, LinkPolicy, PartFile, SignedBy, write_bundle
from sharebatch.run.link_ids import new_link_id
from sharebatch.run.sign import content_disposition
from sharebatch.times import iso
from tests.support.cfkeys import KeyPair
from tests.support.s3 import ACCESS_KEY, REGION, S3

RUN_ID = "20261001T060000Z-cf01"
JOB, RECIPIENT = "q3", "globex"
BUCKET = "cf-origin"
FILES = {"q3/a.pdf": b"%PDF a", "q3/b.csv": b"x,y\n1,2\n", "q3/c d+e.txt": "caf\u00e9".encode()}


@dataclass(frozen=True)
class CfBundle:
    """A CloudFront bundle in its run folder: ``folder`` holds links.json and links.csv."""

    run_dir: Path
    folder: Path
    key_file: Path

    @property
    def json_path(self) -> Path:
        return self.folder / "links.json"

    def data(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.json_path.read_text(encoding="utf-8"))
        return found


def write_cf_bundle(
    tmp_path: Path,
    s3: S3,
    origin: str,
    pair: KeyPair,
    *,
    expires_in: int = 2 * 86400,
    links_end: datetime | None = None,
    max_expires_in: int = 90 * 86400,
    hash: CloudFrontHash = "sha256",
    not_before: datetime | None = None,
    allow_ips: Sequence[str] = (),
    link_ids: bool = True,
    keys: Sequence[str] = tuple(FILES),
    page_expires_at: datetime | None = None,
) -> CfBundle:
    """A run folder under ``tmp_path/out`` with one CloudFront bundle of ``keys`` (objects of
    ``BUCKET`` already in moto), signed for ``origin`` with ``pair``'s key (written 0600).

    ``links_end`` is when the signed links end (default: now + ``expires_in``): earlier than
    the policy's lifetime, it stands for a bundle issued that long ago.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    end = (links_end or now + timedelta(seconds=expires_in)).replace(microsecond=0)
    keyring = tmp_path / "keys"
    keyring.mkdir(parents=True, exist_ok=True)
    key_file, _ = pair.write(keyring)
    run_dir = tmp_path / "out" / RUN_ID
    folder = run_dir / JOB / RECIPIENT
    folder.mkdir(parents=True)
    settings = CloudFrontLinks(
        domain=origin,
        key_pair_id=pair.key_pair_id,
        private_key=KeySource(file=str(key_file)),
        max_expires_in=max_expires_in,
        hash=hash,
        not_before=not_before,
    )
    signer = CloudFrontSigner(
        domain=origin, key_pair_id=pair.key_pair_id, key=pair.private, hash=hash
    )
    staging = tmp_path / "staging"
    staging.mkdir(parents=True)
    part = PartFile(staging / "rows.jsonl")
    links = []
    for key in keys:
        head = s3.client.head_object(Bucket=BUCKET, Key=key)
        obj = ObjectRef(
            BUCKET,
            key,
            int(head["ContentLength"]),
            str(head["ETag"]).strip('"'),
            head["LastModified"].astimezone(UTC),
        )
        query = [("response-content-disposition", content_disposition(f"Q3-{key.split('/')[-1]}"))]
        link_id = new_link_id() if link_ids else None
        if link_id is not None:
            query.append((LINK_ID_PARAM, link_id))
        url = signer.sign(
            key,
            end,
            query=query,
            not_before=not_before,
            source_ip=allow_ips[0] if allow_ips else None,
        )
        links.append(Link(JOB, RECIPIENT, obj, "GET", now, end, url, link_id, "cloudfront"))
    part.write(links)
    part.close()
    header = BundleHeader(
        run_id=RUN_ID,
        job=JOB,
        recipient=RECIPIENT,
        recipient_name=None,
        recipient_email=None,
        generated_at=iso(now),
        signer_access_key_id=ACCESS_KEY,
        expires_at=iso(end),
        links=len(links),
        prefixes=("q3/",),
        policy=LinkPolicy(
            expiry=Expiry(seconds=expires_in),
            on_short_credentials="fail",
            credentials=SignedBy(source="env", kind="long-term", expires_at=None),
            clamped_to=None,
            target=BucketTarget(BUCKET, REGION, s3.endpoint, "path"),
            download_name="Q3-{basename}",
            content_type=None,
            link_ids=link_ids,
            link="cloudfront",
            cloudfront=settings,
            allow_ips=tuple(allow_ips),
        ),
        page_expires_at=iso(page_expires_at) if page_expires_at else None,
    )
    written = write_bundle(folder, header, [part])
    shutil.rmtree(staging)
    events = [{"event": "run_started", "run_id": RUN_ID}] + [
        {"event": "bundle_written", "path": str(w.path), "sha256": w.sha256} for w in written
    ]
    (run_dir / "audit.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events), encoding="utf-8"
    )
    return CfBundle(run_dir, folder, key_file)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit_events(run_dir: Path, name: str) -> list[dict[str, Any]]:
    lines = (run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == name]
