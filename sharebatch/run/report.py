"""The run's summary: what ``summary.json`` holds and ``--dry-run`` prints.

Counts per job, recipient and prefix, every failure with its reason, and a status that maps to
the exit code (``RunSummary.exit_code``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sharebatch.manifest.load import Grant
from sharebatch.models import (
    FailureReport,
    JobReport,
    PageFailureReport,
    PrefixFailure,
    RecipientReport,
    RunReport,
    RunStatus,
)
from sharebatch.run.bundles import cloudfront_policy
from sharebatch.run.pipeline import Staged
from sharebatch.run.plan import Plan, merged_prefixes
from sharebatch.run.write import WrittenBundle
from sharebatch.times import iso

# When S3 denied every prefix the credentials lack access (exit 3), rather than some prefixes
# being broken (exit 1).
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled"})


def build_report(
    plan: Plan,
    staged: Staged,
    written: Mapping[int, WrittenBundle],
    run_id: str,
    started_at: datetime,
    dry_run: bool,
    page_failures: Sequence[PageFailureReport] = (),
) -> RunReport:
    """The run's summary; ``page_failures``: routes whose recipient page was not stored."""
    failed_routes = staged.failed_routes(plan)
    over_limit = staged.over_limit_jobs(plan)
    prefix_failures = [t.failure for t in staged.prefixes if t.failure is not None]
    recipients: dict[str, list[RecipientReport]] = {}
    for route, tally in zip(plan.routes, staged.routes, strict=True):
        bundle = written.get(route.index)
        shared = bundle is not None or (
            dry_run and route.index not in failed_routes and route.job not in over_limit
        )
        entry: RecipientReport = {
            "id": route.recipient,
            "links": tally.links if shared else 0,
            "bytes": tally.bytes if shared else 0,
            "matched": tally.links,
            "bundle": f"{route.job}/{route.recipient}" if bundle else None,
            "expires_at": bundle.header.expires_at if bundle else None,
            "prefixes": list(route.prefixes),
            "merged_prefixes": merged_prefixes(route),
            # Upload slots that went out with the bundle: where, how, how big, until when.
            "uploads": list(bundle.upload_slots) if bundle else [],
            # Keys in UTF-8 byte order: S3's order, also for what split listings found.
            "unlinkable": sorted(tally.unlinkable, key=str.encode),
            "unlinkable_count": tally.unlinkable_count,
        }
        recipients.setdefault(route.job, []).append(_link_keys(entry, route.grant, bundle))
    failures: list[FailureReport] = [
        {
            "kind": "prefix",
            "bucket": f.bucket,
            "prefix": f.prefix,
            "error": f.error,
            "message": f.message,
        }
        for f in prefix_failures
    ]
    for job_name, routes in over_limit.items():
        for route in routes:
            tally = staged.routes[route.index]
            failures.append(
                {
                    "kind": "max_links",
                    "job": job_name,
                    "recipient": route.recipient,
                    "error": "MaxLinksExceeded",
                    "message": (
                        f"matched {tally.links} objects, more than max_links "
                        f"{tally.selector.max_links}; no bundle of job {job_name} was written"
                    ),
                }
            )
    failures += page_failures
    jobs = _jobs(plan, staged, recipients, over_limit, page_failures)
    everyone = [r for j in jobs for r in j["recipients"]]
    expiries = [r["expires_at"] for r in everyone if r["expires_at"]]
    report: RunReport = {
        "run_id": run_id,
        "status": _status(prefix_failures, failures, len(staged.prefixes)),
        "dry_run": dry_run,
        "manifest": {
            "path": plan.manifest.path,
            "sha256": plan.manifest.sha256,
            "as_of": plan.manifest.as_of.isoformat(),
        },
        "started_at": iso(started_at),
        "totals": {
            "jobs": len(jobs),
            "recipients": len(plan.routes),
            "prefixes": len(staged.prefixes),
            "objects_listed": sum(t.objects for t in staged.prefixes),
            "links": sum(r["links"] for r in everyone),
            "bundles": len(written),
            "failures": len(failures),
            "bytes": sum(r["bytes"] for r in everyone),
            "earliest_expiry": min(expiries, default=None),
            "upload_slots": sum(len(r["uploads"]) for r in everyone),
            "unlinkable": sum(r["unlinkable_count"] for r in everyone),
        },
        "jobs": jobs,
        "prefixes": [
            {
                "bucket": t.bucket,
                "prefix": t.prefix,
                "objects": t.objects,
                "bytes": t.bytes,
                "seconds": t.seconds,
                "status": "failed" if t.failure else "listed",
            }
            for t in staged.prefixes
        ],
        "failures": failures,
    }
    if staged.inventories is not None:
        # Only when a report was read: a listed run's summary stays as it always was.
        report["inventories"] = staged.inventories.reports()
    return report


def _link_keys(
    entry: RecipientReport, grant: Grant, bundle: WrittenBundle | None
) -> RecipientReport:
    """``entry`` with the keys of its links' kind: none for S3 links without ``allow_ips``
    (their summary stays as it was)."""
    settings = grant.cloudfront
    if grant.link != "s3":
        entry["link"] = grant.link
    if settings is not None:
        entry["cloudfront"] = {
            "domain": settings.domain,
            "key_pair_id": settings.key_pair_id,
            "hash": settings.hash,
            "policy": cloudfront_policy(settings, grant.allow_ips),
            "not_before": iso(settings.not_before) if settings.not_before else None,
            "max_expires_in": settings.max_expires_in,
        }
    if grant.allow_ips:
        entry["allow_ips"] = list(grant.allow_ips)
    if bundle is not None and bundle.header.page_expires_at is not None:
        entry["page_expires_at"] = bundle.header.page_expires_at
    return entry


def _jobs(
    plan: Plan,
    staged: Staged,
    recipients: dict[str, list[RecipientReport]],
    over_limit: dict[str, Any],
    page_failures: Sequence[PageFailureReport],
) -> list[JobReport]:
    """Per job, in manifest order: its recipients, links, bytes shared, earliest expiry, and
    the failures that touched it."""
    failures = {name: len(routes) for name, routes in over_limit.items()}
    for page in page_failures:
        failures[page["job"]] = failures.get(page["job"], 0) + 1
    for tally, task in zip(staged.prefixes, plan.tasks, strict=True):
        if tally.failure is not None:
            for name in {plan.routes[slot.route].job for slot in task.slots}:
                failures[name] = failures.get(name, 0) + 1
    jobs: list[JobReport] = []
    for name, group in recipients.items():
        expiries = [r["expires_at"] for r in group if r["expires_at"]]
        jobs.append(
            {
                "name": name,
                "recipients": group,
                "links": sum(r["links"] for r in group),
                "bytes": sum(r["bytes"] for r in group),
                "earliest_expiry": min(expiries, default=None),
                "upload_slots": sum(len(r["uploads"]) for r in group),
                "unlinkable": sum(r["unlinkable_count"] for r in group),
                "failures": failures.get(name, 0),
            }
        )
    return jobs


def _status(
    prefix_failures: list[PrefixFailure],
    failures: list[FailureReport],
    prefixes: int,
) -> RunStatus:
    if not failures:
        return "ok"
    if prefix_failures and len(prefix_failures) == prefixes:
        return "denied" if all(f.error in _DENIED for f in prefix_failures) else "failed"
    return "partial"
