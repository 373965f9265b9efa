"""Resolved ``Grant``s and ``Manifest``s built directly, for the guardrails' unit tests.

The manifest syntax for ``link: cloudfront``, ``cloudfront:`` and ``allow_ips`` arrives on its
own; until then (and for any combination the YAML makes tedious) the guardrails are tested on
the resolved values the loader would produce, which is all they read.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sharebatch.guardrails.document import bucket_policy
from sharebatch.manifest.load import Grant, Job, Manifest, Recipient, load_manifest
from sharebatch.models import (
    CloudFrontLinks,
    Expiry,
    KeySource,
    NotifySettings,
    SmtpServer,
    UploadSlot,
)

BUCKET = "acme-reports"
DISTRIBUTION = "arn:aws:cloudfront::111122223333:distribution/EDFDVBD6EXAMPLE"


def grant(
    recipient: str,
    prefixes: tuple[str, ...] = ("reports/q3/",),
    *,
    job: str = "q3",
    bucket: str = BUCKET,
    region: str | None = "eu-west-1",
    seconds: int | None = 3 * 86400,
    at: datetime | None = None,
    allow_ips: tuple[str, ...] = (),
    upload: UploadSlot | None = None,
    pages: bool = False,
    cloudfront: str | None = None,
    distribution_arn: str | None = DISTRIBUTION,
) -> Grant:
    """One resolved grant; ``cloudfront`` (a domain) makes it ``link: cloudfront``."""
    links = (
        CloudFrontLinks(
            domain=cloudfront,
            key_pair_id="K2JCJMDEHXQW5F",
            private_key=KeySource(file="/etc/sharebatch/cf.pem"),
            max_expires_in=90 * 86400,
            distribution_arn=distribution_arn,
        )
        if cloudfront
        else None
    )
    notify = (
        NotifySettings(
            smtp=SmtpServer(host="127.0.0.1", port=2525, security="none"),
            sender="reports@acme.example",
            subject="Q3",
        )
        if pages
        else None
    )
    expiry = Expiry(seconds=None, at=at) if at else Expiry(seconds=seconds)
    made = Grant(
        job=job,
        recipient=Recipient(id=recipient),
        bucket=bucket,
        region=region,
        expiry=expiry if links is None else Expiry(seconds=3600),
        prefixes=prefixes,
        link="cloudfront" if links else "s3",
        cloudfront=links,
        allow_ips=allow_ips,
        upload=upload,
        notify=notify,
    )
    # CloudFront links may outlive SigV4's 7 days: the Grant on main still holds every expiry
    # to them, so a CloudFront grant's expiry is put in place unvalidated, as the loader will.
    return made if links is None else made.model_copy(update={"expiry": expiry})


def manifest(*grants: Grant) -> Manifest:
    """A manifest of these grants, one job per job name, in order."""
    jobs: dict[str, list[Grant]] = {}
    for one in grants:
        jobs.setdefault(one.job, []).append(one)
    return Manifest(
        path="/srv/manifests/q3.yml",
        sha256="0" * 64,
        version=1,
        as_of=date(2026, 12, 2),
        jobs=tuple(Job(name=name, grants=tuple(found)) for name, found in jobs.items()),
    )


def policy_of(text: str, now: datetime, bucket: str | None = None) -> dict[str, Any]:
    """The policy ``sharebatch policy`` prints for the manifest ``text``, as of ``now``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yml"
        path.write_text(text, encoding="utf-8")
        loaded = load_manifest(path, as_of=now.date(), now=now)
    return bucket_policy(loaded, bucket, now=now).document
