"""Renewing bundles: re-signing the links that are expired or expire soon.

A renewal reads a bundle back, re-signs each link whose end falls within the window with the
expiry policy the bundle header records (``expiry``, ``on_short_credentials``, ``target``),
keeps every other link as it was, and writes a complete new bundle next to the old one
(``links.renewed-<UTC time to the ms>-<hex>.json`` and ``.csv``), never overwriting anything.
The old bundle is left untouched. Audit events (``link_renewed``, ``bundle_renewed``) link
each old URL's digest to the new one; they go to the run's ``audit.jsonl`` when the bundle
still sits in its run folder, else to ``<new bundle>.audit.jsonl`` beside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qsl, urlsplit

from .audit import audit_file, get_logger, url_digest
from .bundles import PartFile, iso, private_dir, write_bundle
from .links import Bundle, BundleRow, LinkError, read_bundle, row_facts
from .models import BucketTarget, Credentials, Expiry, Link, ObjectRef, ShortCredentials
from .s3 import S3Gateway
from .signing import Signer, check_lifetimes, credential_kind, credential_limit

log = get_logger()


@dataclass(frozen=True)
class Renewal:
    """What renewing one bundle did; ``written`` is empty when nothing was due."""

    source: str
    written: tuple[str, ...]
    renewed: int
    kept: int
    expires_at: str | None
    error: str | None = None


@dataclass(frozen=True)
class RenewReport:
    renewals: list[Renewal]

    @property
    def exit_code(self) -> int:
        """0 when every bundle was renewed or needed nothing; 1 when any could not be."""
        return 1 if any(r.error for r in self.renewals) else 0


@dataclass(frozen=True)
class _Source:
    """A bundle to renew with everything its header says about how it was signed."""

    bundle: Bundle
    header: dict[str, Any]
    formats: tuple[str, ...]
    expiry: Expiry
    policy: ShortCredentials
    target: BucketTarget


def _load(path: str | Path) -> _Source:
    bundle = read_bundle(path)
    json_path = bundle.path.with_suffix(".json")
    if bundle.format == "csv":
        if not json_path.is_file():
            raise LinkError(
                f"{bundle.path}: renewing needs the expiry policy in the JSON bundle's header,"
                f" and {json_path.name} is not beside it"
            )
        # The JSON rows, not the CSV's: CSV cells are neutralised for spreadsheets ('=key).
        bundle = read_bundle(json_path)
    header = dict(bundle.header or {})
    formats = tuple(f for f in ("csv", "json") if bundle.path.with_suffix(f".{f}").is_file())
    where = f"{json_path}: header"
    expiry, target = header.get("expiry"), header.get("target")
    if not isinstance(expiry, dict) or not isinstance(target, dict):
        raise LinkError(
            f"{where}: no expiry policy or target (a bundle from an older sharebatch);"
            " run its manifest again instead"
        )
    policy = header.get("on_short_credentials", "fail")
    if policy not in get_args(ShortCredentials):
        raise LinkError(f"{where}: on_short_credentials: {policy!r} is not fail, clamp or warn")
    try:
        if "expires_at" in expiry:
            at = datetime.fromisoformat(str(expiry["expires_at"]).replace("Z", "+00:00"))
            parsed = Expiry(at=at.astimezone(UTC))
        else:
            parsed = Expiry(seconds=int(expiry["expires_in"]))
        bucket = BucketTarget(
            bucket=str(target["bucket"]),
            region=target.get("region"),
            endpoint_url=target.get("endpoint_url"),
            addressing_style=target.get("addressing_style") or "auto",
        )
    except (KeyError, TypeError, ValueError):
        raise LinkError(f"{where}: expiry or target is malformed") from None
    return _Source(bundle, header, formats, parsed, policy, bucket)


def _end(source: _Source, row: BundleRow) -> datetime:
    return min(row.expires_at, row_facts(source.bundle, row).expires_at)


def _params(url: str) -> dict[str, str]:
    """The signed response-* parameters of an old link, as presigner parameters."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    return {
        "Response" + "".join(part.title() for part in name[9:].split("-")): value
        for name, value in query
        if name.startswith("response-")
    }


def renew_bundles(
    paths: Iterable[str | Path],
    *,
    within: timedelta = timedelta(0),
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> RenewReport:
    """Renew each bundle's links that are expired or expire within ``within``."""
    return asyncio.run(
        renew_bundles_async(
            paths, within=within, profile=profile, region=region, endpoint_url=endpoint_url
        )
    )


async def renew_bundles_async(
    paths: Iterable[str | Path],
    *,
    within: timedelta = timedelta(0),
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> RenewReport:
    """The coroutine behind ``renew_bundles``.

    Every bundle is read, and the credentials checked against every due one, before any file
    is written: bad input is exit 2 and short credentials (policy ``fail``) exit 3, with
    nothing renewed.
    """
    sources = [_load(path) for path in paths]
    async with S3Gateway(profile=profile, region=region, endpoint_url=endpoint_url) as gateway:
        credentials = await gateway.credentials()
        now = datetime.now(UTC)
        due = [[r for r in s.bundle.rows if _end(s, r) <= now + within] for s in sources]
        fixed_end_passed = [
            bool(rows) and s.expiry.at is not None and s.expiry.at <= now
            for s, rows in zip(sources, due, strict=True)
        ]
        check_lifetimes(
            credentials,
            [
                (str(s.header.get("job")), str(s.header.get("recipient")), s.expiry, s.policy)
                for s, rows, passed in zip(sources, due, fixed_end_passed, strict=True)
                if rows and not passed
            ],
            now,
        )
        renewals = []
        for source, rows, passed in zip(sources, due, fixed_end_passed, strict=True):
            if not rows or passed:
                renewals.append(_nothing(source, passed))
                continue
            target = gateway.effective(source.target)
            presign = await gateway.presigner(target, credentials)
            signer = Signer(
                presign,
                job=str(source.header.get("job")),
                expiry=source.expiry,
                limit=credential_limit(credentials, source.policy),
            )
            renewals.append(_renew(source, {r.line for r in rows}, signer, credentials, now))
    return RenewReport(renewals)


def _nothing(source: _Source, passed: bool) -> Renewal:
    error = None
    if passed:
        error = (
            f"its links were to end at {iso(source.expiry.at or datetime.now(UTC))}, which has"
            " passed; a renewal keeps that fixed end, so run the manifest again instead"
        )
    rows = len(source.bundle.rows)
    return Renewal(str(source.bundle.path), (), 0, rows, None, error)


def _audit_path(source: _Source, stem: str) -> Path:
    folder = source.bundle.path.parent
    run_dir = folder.parent.parent
    if run_dir.name == source.header.get("run_id") and (run_dir / "audit.jsonl").is_file():
        return run_dir / "audit.jsonl"
    return folder / f"{stem}.audit.jsonl"


def _renew(
    source: _Source, due: set[int], signer: Signer, credentials: Credentials, now: datetime
) -> Renewal:
    old = source.bundle
    folder = old.path.parent
    base = old.path.stem.split(".renewed-")[0]  # a renewal of a renewal is not nested
    # Milliseconds keep successive renewals in name order (the newest sorts last).
    stamp = f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z"
    stem = f"{base}.renewed-{stamp}-{secrets.token_hex(2)}"
    staging = private_dir(folder / f".{stem}.staging")
    part = PartFile(staging / "rows.jsonl", csv="csv" in source.formats)
    job, recipient = str(source.header.get("job")), str(source.header.get("recipient"))
    digest = hashlib.sha256(old.path.read_bytes()).hexdigest()
    try:
        with audit_file(_audit_path(source, stem)):
            log.info("renew_started", source=str(old.path), sha256=digest, due=len(due))
            for row in old.rows:
                link = _link(source, row, job)
                if row.line in due:
                    obj = link.obj
                    renewed = signer.sign_one(row.recipient, obj, _params(row.url))
                    log.info(
                        "link_renewed",
                        job=job,
                        recipient=row.recipient,
                        bucket=obj.bucket,
                        key=obj.key,
                        old_url_sha256=url_digest(row.url),
                        old_expires_at=iso(row.expires_at),
                        url_sha256=url_digest(renewed.url),
                        expires_at=iso(renewed.expires_at),
                    )
                    link = renewed
                part.write([link])
            part.close()
            header = _header(source, part, signer, credentials, digest, len(due), now)
            written = write_bundle(folder, header, [part], source.formats, stem, replace=False)
            log.info(
                "bundle_renewed",
                job=job,
                recipient=recipient,
                source=str(old.path),
                source_sha256=digest,
                written=[str(w.path) for w in written],
                sha256=[w.sha256 for w in written],
                renewed=len(due),
                kept=len(old.rows) - len(due),
            )
    finally:
        part.close()
        shutil.rmtree(staging, ignore_errors=True)
    return Renewal(
        str(old.path),
        tuple(str(w.path) for w in written),
        len(due),
        len(old.rows) - len(due),
        header["expires_at"],
    )


def _link(source: _Source, row: BundleRow, job: str) -> Link:
    facts = row_facts(source.bundle, row)
    return Link(
        job=job,
        recipient=row.recipient,
        obj=ObjectRef(row.bucket, row.key, row.size, row.etag, row.last_modified),
        method=row.method,
        signed_at=facts.signed_at or row.expires_at,
        expires_at=row.expires_at,
        url=row.url,
    )


def _header(
    source: _Source,
    part: PartFile,
    signer: Signer,
    credentials: Credentials,
    digest: str,
    renewed: int,
    now: datetime,
) -> dict[str, Any]:
    header = dict(source.header)
    old_clamp = header.get("clamped_to")
    header.update(
        generated_at=iso(now),
        signer_access_key_id=credentials.access_key_id,
        expires_at=iso(part.earliest_expiry) if part.earliest_expiry else None,
        links=part.rows,
        credentials={
            "source": credentials.method,
            "kind": credential_kind(credentials),
            "expires_at": iso(credentials.expiry) if credentials.expiry else None,
        },
        clamped_to=iso(signer.clamped_to) if signer.clamped_to else old_clamp,
        renewed_from={
            "path": str(source.bundle.path),
            "sha256": digest,
            "run_id": source.header.get("run_id"),
            "generated_at": source.header.get("generated_at"),
        },
        renewed=renewed,
    )
    return header
