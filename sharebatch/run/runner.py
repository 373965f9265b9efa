"""The library entry point: ``run_manifest`` runs one manifest from file to bundles.

manifest -> plan -> credentials -> run folder -> list/sign/stage -> bundles -> summary,
with the audit log open beside every stage once the run folder exists. Everything the CLI's
``run`` does is here; the CLI only parses options and maps errors to exit codes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharebatch.audit import audit_file, get_logger, scrubbed
from sharebatch.audit import flush as audit_flush
from sharebatch.blocking import blocking
from sharebatch.errors import Interrupted, RunCrashed, SharebatchError, UsageError
from sharebatch.files import write_json
from sharebatch.manifest.load import Manifest, load_manifest
from sharebatch.models import BucketTarget, Connection, Credentials, RunReport, RunSummary
from sharebatch.run import signals
from sharebatch.run.cfsign import CloudFrontKeys
from sharebatch.run.delivery_plan import DeliveryEntry, DeliveryPlan, write_plan
from sharebatch.run.folder import RunFolder
from sharebatch.run.pages import Pages, page_lifetimes, page_settings
from sharebatch.run.pipeline import Staged, first_error, stage
from sharebatch.run.plan import Plan, build_plan
from sharebatch.run.progress import Progress, ProgressCallback
from sharebatch.run.report import build_report
from sharebatch.run.review import write_review
from sharebatch.run.sign import Outliving, check_lifetimes, credential_kind
from sharebatch.run.slots import Uploads, slot_lifetimes
from sharebatch.run.write import Written, write_bundles
from sharebatch.times import iso
from sharebatch.version import __version__
from sharebatch.visible import visible

if TYPE_CHECKING:
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()

DEFAULT_CONCURRENCY = 16
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_CONCURRENCY = 256
MAX_WORKERS = 64


def new_run_id(now: datetime) -> str:
    """Sortable and unique enough for one output folder: ``20261128T201500Z-3f9a``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


async def run_manifest_async(
    manifest_path: str | Path,
    *,
    out: str | Path | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    connection: Connection = Connection(),
    run_id: str | None = None,
    as_of: date | None = None,
    split_folders: bool = True,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> RunSummary:
    """Run a manifest to completion; raises ``SharebatchError`` subclasses on failure.

    Anything unforeseen (a full disk, an I/O error, a bug) is ``RunCrashed``, its cause
    chained, once the run is recorded as ``failed``.

    ``out`` defaults to the manifest's ``output.dir`` (relative to the manifest's folder), then
    ``bundles``; ``as_of`` (the date that period templates are computed from) defaults to
    today in UTC. ``split_folders=False`` lists every prefix as a whole, never folder by
    folder. ``workers`` processes sign and stage the links (``run/pool``): 1 signs in this
    process; None (the default) starts one per core once the run has listed
    ``pool.AUTO_AFTER`` objects. The output is the same whatever their number. ``run_manifest``,
    its blocking twin, also stops the run cleanly on SIGINT and SIGTERM (in the main thread),
    raising ``Interrupted``.
    """
    return await _run(
        lambda now: load_manifest(manifest_path, as_of=as_of, now=now),
        out=out,
        dry_run=dry_run,
        concurrency=concurrency,
        connection=connection,
        run_id=run_id,
        split_folders=split_folders,
        on_progress=on_progress,
        workers=workers,
    )


run_manifest = blocking(run_manifest_async, run=signals.run_interruptible)


async def run_resolved_async(
    manifest: Manifest,
    *,
    out: str | Path | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    connection: Connection = Connection(),
    run_id: str | None = None,
    split_folders: bool = True,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> RunSummary:
    """``run_manifest_async`` for a manifest already loaded (its period already computed):
    for callers that build or adjust the ``Manifest`` value themselves, such as tests."""
    return await _run(
        lambda _: manifest,
        out=out,
        dry_run=dry_run,
        concurrency=concurrency,
        connection=connection,
        run_id=run_id,
        split_folders=split_folders,
        on_progress=on_progress,
        workers=workers,
    )


async def _run(
    load: Callable[[datetime], Manifest],
    *,
    out: str | Path | None,
    dry_run: bool,
    concurrency: int,
    connection: Connection,
    run_id: str | None,
    split_folders: bool,
    on_progress: ProgressCallback | None,
    workers: int | None,
) -> RunSummary:
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}")
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"--run-id {run_id!r} must start with a letter or digit, followed by letters,"
            " digits, '.', '_' or '-', at most 128 characters in all (it names a folder)"
        )
    started_at = datetime.now(UTC)
    run_id = run_id or new_run_id(started_at)
    try:
        manifest = load(started_at)
        plan = build_plan(manifest)
        # Read now: a template gone since the manifest was checked is bad input, exit 2,
        # before anything exists on disk.
        templates = read_templates(plan)
        # Each CloudFront key read once, now: a key file changed since the manifest was
        # checked is bad input too.
        cloudfront = CloudFrontKeys.load(route.grant for route in plan.routes)
        # --out and the default are the caller's, relative to where it runs.
        out_dir = Path(out if out is not None else manifest.output_folder() or "bundles")
        # Imported here: the AWS SDK costs ~0.6 s of CPU to import, which a merge (a user of
        # this module's write stage) without upload slots or pages need not pay.
        from sharebatch.s3.gateway import S3Gateway

        async with S3Gateway(connection, max_connections=concurrency) as gateway:
            credentials = await gateway.credentials()
            # Before anything exists on disk: a run refused for short credentials leaves nothing.
            now = datetime.now(UTC)
            outliving = check_lifetimes(
                credentials,
                # CloudFront links are signed by a key pair: the credentials do not bound them
                # (their recipient pages' S3 links they do).
                [
                    (r.job, r.recipient, r.grant.expiry, r.grant.on_short_credentials)
                    for r in plan.routes
                    if r.grant.link == "s3"
                ],
                now,
                slots=slot_lifetimes(plan),
                pages=page_lifetimes(plan, now),
            )
            # Takes OUT's run lock first: a second run on the same OUT is refused (exit 75).
            folder = None if dry_run else RunFolder.create_locked(out_dir, run_id)
            sink: AbstractContextManager[None] = (
                _run_files(folder, run_id) if folder else nullcontext()
            )
            with sink:
                log.info("run_started", run_id=run_id, version=__version__, dry_run=dry_run)
                log.info(
                    "manifest_loaded",
                    path=manifest.path,
                    sha256=manifest.sha256,
                    as_of=manifest.as_of.isoformat(),
                )
                _log_credentials(credentials, outliving)
                clock = time.monotonic()
                try:
                    staged = await stage(
                        plan,
                        gateway=gateway,
                        credentials=credentials,
                        folder=folder,
                        concurrency=concurrency,
                        split_folders=split_folders,
                        progress=_progress(plan, on_progress),
                        cloudfront=cloudfront.route_signer,
                        workers=workers,
                    )
                    report = await write_outputs(
                        plan,
                        staged,
                        folder,
                        gateway,
                        run_id=run_id,
                        started_at=started_at,
                        clock=clock,
                        credentials=credentials,
                        targets={r.index: gateway.effective(r.target) for r in plan.routes},
                        templates=templates,
                        dry_run=dry_run,
                    )
                    summary = RunSummary(
                        run_id=run_id,
                        status=report["status"],
                        run_dir=str(folder.path) if folder else None,
                        report=report,
                    )
                    # The audit log holds every event before summary.json says how it ended:
                    # a disk too full for either still ends the run as failed, below.
                    audit_flush()
                    _finish(folder, report)
                except SharebatchError as exc:
                    _abort(folder, run_id, "failed", {"error": str(exc)})
                    raise
                except (asyncio.CancelledError, KeyboardInterrupt):
                    name = signals.received() or "SIGINT"
                    _abort(folder, run_id, "interrupted", {"signal": name})
                    raise Interrupted(name) from None
                except Exception as exc:  # noqa: BLE001 - re-raised as RunCrashed
                    # A full disk, an I/O error or a bug: recorded all the same, no bundle kept.
                    cause = first_error(exc)
                    what = _what(cause)
                    _abort(
                        folder, run_id, "failed", {"error": type(cause).__name__, "message": what}
                    )
                    raise RunCrashed(f"run {run_id} failed: {what}; no bundle kept") from cause
                finally:
                    if folder:
                        folder.discard_staging()
    except SharebatchError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as RunCrashed
        # Before the run folder exists, or closing the audit log after the run was recorded.
        cause = first_error(exc)
        raise RunCrashed(f"run {run_id} failed: {_what(cause)}") from cause
    return summary


def _what(exc: BaseException) -> str:
    """One line for an operator: ``No space left on device (ENOSPC)``, ``KeyError: 'x'``."""
    code = exc.errno if isinstance(exc, OSError) else None
    if isinstance(exc, OSError) and code is not None and code in errno.errorcode:
        text = f"{exc.strerror or os.strerror(code)} ({errno.errorcode[code]})"
        if exc.filename is not None:
            text += f": {exc.filename}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # An exception's text can hold anything, a key or a whole URL: one visible, secret-free line.
    return scrubbed(visible(text))


@contextmanager
def _run_files(folder: RunFolder, run_id: str) -> Iterator[None]:
    """The audit log open for the run; OUT's run lock released after it is closed."""
    opened = False
    try:
        with audit_file(folder.audit_path):
            opened = True
            yield
    except OSError as exc:
        if not opened:
            # The audit log could not be created (a full disk): still no staging left, and
            # summary.json says failed as far as the disk allows.
            _abort(folder, run_id, "failed", {"error": type(exc).__name__, "message": _what(exc)})
        raise
    finally:
        folder.release()


def _abort(folder: RunFolder | None, run_id: str, status: str, totals: dict[str, Any]) -> None:
    """End a run that did not finish: no bundle of it may look complete.

    Also after a full disk or an I/O error: staging goes first (it frees the most space), and a
    record that cannot be written (logged to stderr all the same) does not stop the others.
    """
    record = {"run_id": run_id, "status": status, **totals}
    if folder is not None:
        folder.discard_staging()
        try:
            for path in folder.discard_outputs():
                with suppress(OSError):
                    log.warning("bundle_discarded", path=str(path), reason=status)
        except OSError as exc:
            _not_done("discard", folder.path, exc)
        try:
            write_json(folder.summary_path, record)
        except OSError as exc:
            _not_done("summary", folder.summary_path, exc)
    with suppress(OSError):
        log.info("run_finished", **record)


def _not_done(step: str, path: Path, exc: OSError) -> None:
    with suppress(OSError):  # on stderr at least, when the audit log's disk refuses it too
        log.error("abort_incomplete", step=step, path=str(path), message=_what(exc))


def _finish(folder: RunFolder | None, report: RunReport) -> None:
    if folder is not None:
        write_json(folder.summary_path, report)
    log.info("run_finished", run_id=report["run_id"], status=report["status"], **report["totals"])


def _log_credentials(credentials: Credentials, outliving: list[Outliving]) -> None:
    expiry = credentials.expiry
    log.info(
        "credentials_loaded",
        source=credentials.method,
        kind=credential_kind(credentials),
        expires_at=iso(expiry) if expiry else None,
    )
    if expiry is None and credentials.session_token:
        log.warning(
            "credentials_expiry_unknown",
            source=credentials.method,
            message="temporary credentials of unknown expiry: links may stop working before"
            " their expires_at",
        )
    for found in outliving:
        log.warning(
            found.event,
            job=found.job,
            recipient=found.recipient,
            policy=found.policy,
            links_end=iso(found.links_end),
            credentials_expire_at=iso(found.credentials_end),
            credentials_source=found.source,
        )


def _progress(plan: Plan, callback: ProgressCallback | None) -> Progress | None:
    """Counters for a watcher (the CLI's live display), announced before listing starts."""
    if callback is None:
        return None
    progress = Progress(plan, callback)
    progress.start()
    return progress


Templates = dict[str, tuple[str | None, str | None]]


def needs_s3(plan: Plan) -> bool:
    """Whether the write stage signs anything through S3: upload slots or recipient pages."""
    return any(r.grant.upload is not None or page_settings(r) is not None for r in plan.routes)


async def write_outputs(
    plan: Plan,
    staged: Staged,
    folder: RunFolder | None,
    gateway: S3Gateway | None,
    *,
    run_id: str,
    started_at: datetime,
    clock: float,
    credentials: Credentials,
    targets: Mapping[int, BucketTarget],
    templates: Templates,
    signed_by: Credentials | None = None,
    dry_run: bool = False,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> RunReport:
    """The write stage over what was staged, a run's or a merge's (one sequence for both):
    upload slots and recipient pages signed with ``credentials``, the bundles (their headers
    naming ``signed_by``, by default the same), the review page and ``delivery.json``; then
    ``before_commit`` (the caller's work that must end before the outcome is known: a merge's
    audit log, merged meanwhile by another process); then, past the point where a signal no
    longer breaks the run off, the report, its ``duration_seconds`` counted from ``clock``.
    Without ``folder`` (a dry run), the report alone. ``gateway`` may be None only when the
    plan ``needs_s3`` not."""
    written = Written()
    if folder:
        # Every signer the write stage needs, before its first bundle: it never reaches back
        # into S3 itself.
        if gateway is None:
            assert not needs_s3(plan), "upload slots and pages are signed through a gateway"
            uploads, pages = Uploads({}), None
        else:
            uploads = await Uploads.prepare(plan, gateway, credentials)
            pages = await Pages.prepare(plan, gateway, credentials)
        written = await write_bundles(
            plan,
            staged,
            folder,
            run_id=run_id,
            credentials=signed_by or credentials,
            targets=targets,
            uploads=uploads,
            pages=pages,
        )
        write_review(folder, plan, staged, written, run_id, started_at)
        write_delivery_plan(folder, plan, written, run_id, templates)
    if before_commit is not None:
        await before_commit()
    signals.commit()
    report = build_report(
        plan, staged, written.bundles, run_id, started_at, dry_run, page_failures=written.failures
    )
    report["duration_seconds"] = round(time.monotonic() - clock, 3)
    return report


"""By template path: its text, and its ``.html`` sibling's (None when there is none)."""


def read_templates(plan: Plan) -> Templates:
    """The text (and HTML) templates every grant's ``notify`` names, read once each.

    Copied into ``delivery.json``, so an edit after the run changes no message of it. A file
    that cannot be read as UTF-8 text is ``UsageError`` (exit 2) naming it.
    """
    found: Templates = {}
    for route in plan.routes:
        settings = route.grant.notify
        if settings is None or settings.template is None or settings.template in found:
            continue
        text = Path(settings.template)
        found[settings.template] = (_template(text), _template(text.with_suffix(".html"), True))
    return found


def _template(path: Path, optional: bool = False) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if optional:
            return None
        raise UsageError(f"{visible(str(path))}: notify template not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        what = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"{visible(str(path))}: cannot read notify template ({what})") from None


def write_delivery_plan(
    folder: RunFolder, plan: Plan, written: Written, run_id: str, templates: Templates
) -> None:
    """``delivery.json`` when any grant has ``notify:`` settings or was left out on purpose;
    one entry per bundle written, nothing otherwise (outputs stay as they were)."""
    grants = [route.grant for route in plan.routes]
    if not any(g.notify is not None or g.notify_off for g in grants):
        return
    entries = []
    for route in plan.routes:
        bundle = written.bundles.get(route.index)
        if bundle is None:
            continue
        grant, recipient = route.grant, route.grant.recipient
        settings = grant.notify
        template = settings.template if settings is not None else None
        text, html = templates[template] if template is not None else (None, None)
        bundle_file = "links.json" if "json" in grant.formats else "links.csv"
        entries.append(
            DeliveryEntry(
                job=route.job,
                recipient=recipient.id,
                name=recipient.name,
                addresses=tuple(recipient.addresses),
                notify=not grant.notify_off,
                settings=settings,
                bundle=f"{route.job}/{recipient.id}/{bundle_file}",
                page=bundle.page,
                template_text=text,
                template_html=html,
            )
        )
    digest = write_plan(folder.path, DeliveryPlan(run_id=run_id, entries=tuple(entries)))
    log.info("delivery_plan_written", entries=len(entries), sha256=digest)
