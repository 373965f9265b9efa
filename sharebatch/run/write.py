"""The write stage: each complete route's staged parts joined into its bundle.

Given everything by the runner (the plan, what staging found, the run folder, the credentials,
the target each route's links were signed for, and upload slot signers and the page publisher
prepared before the first bundle): per route it builds the bundle header, issues the route's
upload slots (``slots.py``), stores its recipient page with ``delivery: page`` (``pages.py``,
the one request to S3 it makes, before the bundle names the page) and writes the bundle files
(``bundles.py``). A route whose listing failed, or whose job matched more than ``max_links``,
gets no bundle; nor does one whose page could not be stored (a failure of that route alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sharebatch.audit import get_logger
from sharebatch.errors import DeliveryError, SigningError
from sharebatch.manifest.load import Grant
from sharebatch.models import BucketTarget, Credentials, PageFailureReport, SlotSummary
from sharebatch.run.bundles import BundleHeader, LinkPolicy, SignedBy, write_bundle
from sharebatch.run.delivery_plan import StoredPage
from sharebatch.run.folder import RunFolder
from sharebatch.run.link_ids import link_id_of
from sharebatch.run.pages import Pages, page_settings
from sharebatch.run.pipeline import Staged
from sharebatch.run.plan import Plan, Route
from sharebatch.run.sign import credential_kind
from sharebatch.run.slots import Uploads, slot_summary, upload_row
from sharebatch.times import iso

log = get_logger()


@dataclass(frozen=True)
class WrittenBundle:
    """A bundle the write stage wrote: its header, and its upload slots as the summary and
    the review page list them (never their URLs or forms, which are bearer secrets)."""

    header: BundleHeader
    upload_slots: list[SlotSummary]
    page: StoredPage | None = None  # its recipient page (``delivery: page``)


@dataclass
class Written:
    """What the write stage did: the bundles written, by route index, and the routes whose
    page could not be stored (so no bundle was written for them)."""

    bundles: dict[int, WrittenBundle] = field(default_factory=dict)
    failures: list[PageFailureReport] = field(default_factory=list)


async def write_bundles(
    plan: Plan,
    staged: Staged,
    folder: RunFolder,
    *,
    run_id: str,
    credentials: Credentials,
    targets: Mapping[int, BucketTarget],
    uploads: Uploads,
    pages: Pages | None = None,
) -> Written:
    """Join each complete route's parts into its bundle; skip routes that cannot be trusted.

    ``targets``: by route index, the target its links were signed for (the manifest's, with
    the command line's overrides). Upload slots are signed here, only for bundles being
    written, so each starts its (short) life as its bundle appears. ``pages`` publishes the
    page of each ``delivery: page`` route (none without it).
    """
    failed = staged.failed_routes(plan)
    over_limit = staged.over_limit_jobs(plan)
    written = Written()
    generated_at = iso(datetime.now(UTC))
    for route, tally in zip(plan.routes, staged.routes, strict=True):
        await asyncio.sleep(0)  # a signal's cancellation lands between two bundles
        if route.index in failed or route.job in over_limit:
            reason = "prefix_failed" if route.index in failed else "max_links_exceeded"
            log.warning("bundle_skipped", job=route.job, recipient=route.recipient, reason=reason)
            continue
        found = [p.earliest_expiry for p in tally.parts if p.earliest_expiry is not None]
        recipient = route.grant.recipient
        clamped = tally.signer.clamped_to if tally.signer else None
        if clamped is not None:
            log.warning(
                "links_clamped",
                job=route.job,
                recipient=recipient.id,
                clamped_to=iso(clamped),
                credentials_source=credentials.method,
            )
        issued = [upload_row(u) for u in uploads.issue(route)]
        slot = route.grant.upload
        header = BundleHeader(
            run_id=run_id,
            job=route.job,
            recipient=recipient.id,
            recipient_name=recipient.name,
            recipient_email=recipient.email,
            generated_at=generated_at,
            signer_access_key_id=staged.signer_key_id,
            expires_at=iso(min(found)) if found else None,
            links=sum(p.rows for p in tally.parts),
            prefixes=route.prefixes,
            # What renewal needs to re-sign these links as they were first signed.
            policy=link_policy(route.grant, targets[route.index], credentials, clamped),
            uploads=len(issued) if slot is not None else None,
            upload=slot,  # the slot's policy, for renewal
            inventory=_inventory(staged, route, targets[route.index]),
        )
        page = None
        if pages is not None and page_settings(route) is not None:
            rows = [row for part in tally.parts for row in part.rows_in_order()]
            try:
                published = await pages.publish(route, header, rows, issued)
            except (DeliveryError, SigningError) as exc:
                # This recipient alone goes without: a bundle must not name a page that
                # does not exist, and a mail without its page is no delivery.
                log.warning(
                    "bundle_skipped",
                    job=route.job,
                    recipient=recipient.id,
                    reason="page_failed",
                    message=str(exc),
                )
                written.failures.append(
                    {
                        "kind": "page",
                        "job": route.job,
                        "recipient": recipient.id,
                        "error": type(exc).__name__,
                        "message": str(exc),
                    }
                )
                continue
            if published is not None:
                page, url = published
                header = replace(header, page_url=url, page_link_id=link_id_of(url))
                ends = header.expires_at
                if route.grant.link == "cloudfront" and ends and page.expires_at < ends:
                    # Its S3 link ends before the CloudFront links on it (capped by SigV4
                    # or the credentials, ``page_capped``, or ending with an upload slot):
                    # the header says when.
                    header = replace(header, page_expires_at=page.expires_at)
        dest = folder.bundle_dir(route.job, recipient.id)
        for item in write_bundle(dest, header, tally.parts, route.grant.formats, uploads=issued):
            log.info("bundle_written", path=str(item.path), rows=item.rows, sha256=item.sha256)
        written.bundles[route.index] = WrittenBundle(
            header, [slot_summary(r) for r in issued], page
        )
    return written


def link_policy(
    grant: Grant, target: BucketTarget, credentials: Credentials, clamped: datetime | None
) -> LinkPolicy:
    """The header's record of the links' lifetime: the expiry policy, signer and target."""
    return LinkPolicy(
        expiry=grant.expiry,
        on_short_credentials=grant.on_short_credentials,
        credentials=signed_by(credentials),
        clamped_to=iso(clamped) if clamped else None,
        target=target,
        download_name=grant.download_name,
        content_type=grant.content_type,
        link_ids=grant.link_ids,
        link=grant.link,
        cloudfront=grant.cloudfront,
        allow_ips=grant.allow_ips,
    )


def signed_by(credentials: Credentials) -> SignedBy:
    """What a header says of the credentials that signed its links (never a secret)."""
    return SignedBy(
        source=credentials.method,
        kind=credential_kind(credentials),
        expires_at=iso(credentials.expiry) if credentials.expiry else None,
    )


def _inventory(staged: Staged, route: Route, target: BucketTarget) -> dict[str, str] | None:
    """The report a route's links come from, for its header (None: listed)."""
    source = route.grant.source
    if source is None or staged.inventories is None:
        return None
    return staged.inventories.header(source, target)
