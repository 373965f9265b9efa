"""The library entry point: ``run_manifest`` runs one manifest from file to bundles.

manifest -> plan -> credentials -> run folder -> list/sign/stage -> bundles -> summary,
with the audit log open beside every stage once the run folder exists. Everything the CLI's
``run`` does is here; the CLI only parses options and maps errors to exit codes.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .audit import audit_file, get_logger
from .bundles import RunFolder, iso, write_bundle, write_json
from .errors import Interrupted, SharebatchError, UsageError
from .manifest import load_manifest
from .models import RunSummary
from .pipeline import Staged, stage
from .plan import Plan, build_plan
from .report import build_report
from .s3 import S3Gateway

log = get_logger()

DEFAULT_CONCURRENCY = 16
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_CONCURRENCY = 256


def new_run_id(now: datetime) -> str:
    """Sortable and unique enough for one output folder: ``20261128T201500Z-3f9a``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_manifest(
    manifest_path: str | Path,
    *,
    out: str | Path | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    run_id: str | None = None,
    as_of: date | None = None,
) -> RunSummary:
    """Run a manifest to completion; raises ``SharebatchError`` subclasses on failure.

    ``out`` defaults to the manifest's ``output.dir``, then ``bundles``; ``as_of`` (the date
    that period templates are computed from) defaults to today in UTC.
    """
    return asyncio.run(
        run_manifest_async(
            manifest_path,
            out=out,
            dry_run=dry_run,
            concurrency=concurrency,
            endpoint_url=endpoint_url,
            profile=profile,
            region=region,
            run_id=run_id,
            as_of=as_of,
        )
    )


async def run_manifest_async(
    manifest_path: str | Path,
    *,
    out: str | Path | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    run_id: str | None = None,
    as_of: date | None = None,
) -> RunSummary:
    """The coroutine behind ``run_manifest``, for callers that already run an event loop."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"--run-id {run_id!r} must be letters, digits, '.', '_' or '-' (it names a folder)"
        )
    started_at = datetime.now(UTC)
    manifest = load_manifest(manifest_path, as_of=as_of, now=started_at)
    plan = build_plan(manifest)
    run_id = run_id or new_run_id(started_at)
    out_dir = Path(out if out is not None else manifest.output_dir or "bundles")
    async with S3Gateway(
        profile=profile, region=region, endpoint_url=endpoint_url, max_connections=concurrency
    ) as gateway:
        credentials = await gateway.credentials()
        folder = None if dry_run else RunFolder.create(out_dir, run_id)
        sink: AbstractContextManager[None] = (
            audit_file(folder.audit_path) if folder else nullcontext()
        )
        with sink:
            log.info("run_started", run_id=run_id, version=__version__, dry_run=dry_run)
            log.info(
                "manifest_loaded",
                path=manifest.path,
                sha256=manifest.sha256,
                as_of=manifest.as_of.isoformat(),
            )
            clock = time.monotonic()
            try:
                staged = await stage(
                    plan,
                    gateway=gateway,
                    credentials=credentials,
                    folder=folder,
                    concurrency=concurrency,
                )
                written = _write_bundles(plan, staged, folder, run_id) if folder else {}
            except SharebatchError as exc:
                _finish(folder, run_id, "failed", {"error": str(exc)})
                raise
            except (asyncio.CancelledError, KeyboardInterrupt):
                _finish(folder, run_id, "interrupted", {})
                raise Interrupted("SIGINT") from None
            finally:
                if folder:
                    folder.discard_staging()
            report = build_report(plan, staged, written, run_id, started_at, dry_run)
            report["duration_seconds"] = round(time.monotonic() - clock, 3)
            summary = RunSummary(
                run_id=run_id,
                status=report["status"],
                run_dir=str(folder.path) if folder else None,
                report=report,
            )
            _finish(folder, run_id, summary.status, report["totals"], report)
    return summary


def _finish(
    folder: RunFolder | None,
    run_id: str,
    status: str,
    totals: dict[str, Any],
    report: dict[str, Any] | None = None,
) -> None:
    if folder is not None:
        write_json(folder.summary_path, report or {"run_id": run_id, "status": status, **totals})
    log.info("run_finished", run_id=run_id, status=status, **totals)


def _write_bundles(
    plan: Plan, staged: Staged, folder: RunFolder, run_id: str
) -> dict[int, dict[str, Any]]:
    """Join each complete route's parts into its bundle; skip routes that cannot be trusted."""
    failed = staged.failed_routes(plan)
    over_limit = staged.over_limit_jobs(plan)
    written: dict[int, dict[str, Any]] = {}
    generated_at = iso(datetime.now(UTC))
    for route, tally in zip(plan.routes, staged.routes, strict=True):
        if route.index in failed or route.job in over_limit:
            reason = "prefix_failed" if route.index in failed else "max_links_exceeded"
            log.warning("bundle_skipped", job=route.job, recipient=route.recipient, reason=reason)
            continue
        found = [p.earliest_expiry for p in tally.parts if p.earliest_expiry is not None]
        recipient = route.grant.recipient
        header = {
            "run_id": run_id,
            "job": route.job,
            "recipient": recipient.id,
            "recipient_name": recipient.name,
            "recipient_email": recipient.email,
            "generated_at": generated_at,
            "signer_access_key_id": staged.signer_key_id,
            "expires_at": iso(min(found)) if found else None,
            "links": sum(p.rows for p in tally.parts),
        }
        dest = folder.bundle_dir(route.job, recipient.id)
        for item in write_bundle(dest, header, tally.parts, route.grant.formats):
            log.info("bundle_written", path=str(item.path), rows=item.rows, sha256=item.sha256)
        written[route.index] = header
    return written
