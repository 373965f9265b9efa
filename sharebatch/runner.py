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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .audit import audit_file, get_logger
from .bundles import RunFolder, iso, write_bundle, write_json
from .errors import CredentialsError, Interrupted, UsageError
from .manifest import load_manifest
from .models import RunSummary
from .pipeline import Staged, earliest, stage
from .plan import Plan, build_plan
from .s3 import S3Gateway

log = get_logger()

DEFAULT_CONCURRENCY = 16
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled"})
MAX_CONCURRENCY = 256


def new_run_id(now: datetime) -> str:
    """Sortable and unique enough for one output folder: ``20261128T201500Z-3f9a``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_manifest(
    manifest_path: str | Path,
    *,
    out: str | Path = "bundles",
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Run a manifest to completion; raises ``SharebatchError`` subclasses on failure."""
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
        )
    )


async def run_manifest_async(
    manifest_path: str | Path,
    *,
    out: str | Path = "bundles",
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """The coroutine behind ``run_manifest``, for callers that already run an event loop."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"--run-id {run_id!r} must be letters, digits, '.', '_' or '-' (it names a folder)"
        )
    manifest = load_manifest(manifest_path)
    plan = build_plan(manifest)
    started_at = datetime.now(UTC)
    run_id = run_id or new_run_id(started_at)
    async with S3Gateway(
        profile=profile, region=region, endpoint_url=endpoint_url, max_connections=concurrency
    ) as gateway:
        credentials = await gateway.credentials()
        folder = None if dry_run else RunFolder.create(Path(out), run_id)
        sink: AbstractContextManager[None] = (
            audit_file(folder.audit_path) if folder else nullcontext()
        )
        with sink:
            log.info("run_started", run_id=run_id, version=__version__, dry_run=dry_run)
            log.info("manifest_loaded", path=manifest.path, sha256=manifest.sha256)
            clock = time.monotonic()
            try:
                staged = await stage(
                    plan,
                    gateway=gateway,
                    credentials=credentials,
                    folder=folder,
                    concurrency=concurrency,
                )
                bundles = _write_bundles(plan, staged, folder, run_id) if folder else {}
            except CredentialsError as exc:
                _finish(folder, run_id, "failed", {"error": str(exc)})
                raise
            except (asyncio.CancelledError, KeyboardInterrupt):
                _finish(folder, run_id, "interrupted", {})
                raise Interrupted("SIGINT") from None
            finally:
                if folder:
                    folder.discard_staging()
            report = _report(plan, staged, bundles, run_id, started_at, dry_run)
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
    """Join each complete route's parts into its bundle; skip routes with a failed prefix."""
    failed = staged.failed_routes(plan)
    written: dict[int, dict[str, Any]] = {}
    generated_at = iso(datetime.now(UTC))
    for route in plan.routes:
        if route.index in failed:
            log.warning("bundle_skipped", job=route.job.name, recipient=route.recipient.id)
            continue
        parts = staged.parts[route.index]
        expiry = earliest(parts)
        header = {
            "run_id": run_id,
            "job": route.job.name,
            "recipient": route.recipient.id,
            "recipient_name": route.recipient.name,
            "recipient_email": route.recipient.email,
            "generated_at": generated_at,
            "signer_access_key_id": staged.signer_key_id,
            "expires_at": iso(expiry) if expiry else None,
            "links": sum(p.rows for p in parts),
        }
        dest = folder.bundle_dir(route.job.name, route.recipient.id)
        for item in write_bundle(dest, header, parts):
            log.info("bundle_written", path=str(item.path), rows=item.rows, sha256=item.sha256)
        written[route.index] = header
    return written


def _report(
    plan: Plan,
    staged: Staged,
    bundles: dict[int, dict[str, Any]],
    run_id: str,
    started_at: datetime,
    dry_run: bool,
) -> dict[str, Any]:
    failures = [t.failure for t in staged.prefixes if t.failure is not None]
    listed = {
        (t.target, t.prefix): tally for t, tally in zip(plan.tasks, staged.prefixes, strict=True)
    }
    jobs: dict[str, dict[str, Any]] = {}
    links = 0
    for route in plan.routes:
        job = jobs.setdefault(route.job.name, {"name": route.job.name, "recipients": []})
        tallies = [listed[(route.target, p)] for p in route.prefixes]
        count = sum(t.objects for t in tallies)
        header = bundles.get(route.index)
        shared = header is not None or (dry_run and all(t.failure is None for t in tallies))
        links += count if shared else 0
        job["recipients"].append(
            {
                "id": route.recipient.id,
                "links": count if shared else 0,
                "bytes": sum(t.bytes for t in tallies) if shared else 0,
                "bundle": f"{route.job.name}/{route.recipient.id}" if header else None,
                "expires_at": header["expires_at"] if header else None,
                "prefixes": list(route.prefixes),
            }
        )
    status = "ok" if not failures else "partial"
    if failures and len(failures) == len(staged.prefixes):
        # Nothing could be listed at all: when S3 denied every prefix, the credentials lack
        # access (exit 3) rather than some prefixes being broken (exit 1).
        denied = all(f.error in _DENIED for f in failures)
        status = "denied" if denied else "failed"
    return {
        "run_id": run_id,
        "status": status,
        "dry_run": dry_run,
        "manifest": {"path": plan.manifest.path, "sha256": plan.manifest.sha256},
        "started_at": iso(started_at),
        "totals": {
            "jobs": len(jobs),
            "recipients": len(plan.routes),
            "prefixes": len(staged.prefixes),
            "objects_listed": sum(t.objects for t in staged.prefixes),
            "links": links,
            "bundles": len(bundles),
            "failed_prefixes": len(failures),
        },
        "jobs": list(jobs.values()),
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
        "failures": [
            {"bucket": f.bucket, "prefix": f.prefix, "error": f.error, "message": f.message}
            for f in failures
        ],
    }
