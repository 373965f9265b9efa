"""``sharebatch remind OUT/<run-id> --within 48h``: renew what is about to end, mail it, once.

For each entry of the run's ``delivery.json`` that was notified (its ``notify`` mail is
``sent`` in the ledger): its current bundle is its newest renewal, else ``links.json``. When any
link or upload slot on it ends within ``within``, the existing renewal
(``lifecycle/renew.py``) re-signs what is due and writes a new bundle beside it. Then every
entry whose newest renewal has no ``sent`` reminder for that renewal's file name gets one: also
when the renewal came from a manual ``renew``, or from an earlier ``remind`` that could not mail.
So a second ``remind`` right after the first renews nothing and sends nothing.

With ``delivery: page`` a fresh recipient page is published first (``run.pages.publish_page``:
a new key, its link ending with the renewal's earliest link; audit ``page_stored``), since a
renewal drops the old page, which lists the old links. ``delivery.json`` is never rewritten:
approvals compare against it, and a reminder needs no new approval, since a renewal holds no
file its source did not. The reminder uses our own reminder template (not a manifest's
``template:``, written for the first mail) and goes out through ``notify.deliver`` with
``kind="reminder"``: same SMTP settings, retries, ledger and ``mail_sent``/``mail_failed``. All
reminders go in one ``deliver`` (each entry's renewal by key), so ``concurrency`` spans them.

With ``only_unused`` (``--only-unused``) the receipts decide who is reminded at all: an entry
whose row in the run's ``usage.json`` (``sharebatch usage``) says ``complete: true`` (every
file of theirs downloaded at least once) is left alone, neither renewed nor mailed; entries
with ``complete: false`` or without a row go on as above. A run without usage.json is refused
(exit 2). How old usage.json may be: ``complete`` only ever turns from false to true as more
logs are read (a download does not un-happen, a renewal re-signs the same files, and a
download through any renewal of a link counts), so an old usage.json can only make remind
mail someone who has finished since, never skip someone who has not. So no age is refused,
not even one older than the newest renewal; the report says when the receipts were made
(``receipts_at``) so ops can see how stale they are. What is refused is a usage.json of
another run (its ``run_id``) or one that does not read as the contract's shape.

A renewal is mailed only when the run's audit log records it (``bundle_renewed`` with its
sha256): a file dropped into the folder is not a renewal to hand a recipient.
Entries never notified are left alone (their first mail, and any approval, comes first).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch.audit import audit_file, get_logger
from sharebatch.blocking import blocking
from sharebatch.delivery.approvals import matching
from sharebatch.delivery.ledger import read_ledger
from sharebatch.delivery.message import Content
from sharebatch.delivery.notify import (
    DEFAULT_CONCURRENCY,
    NotifyReport,
    Outcome,
    bundle_content,
    deliver,
)
from sharebatch.delivery.smtp import DEFAULT_RETRY, Retry
from sharebatch.errors import DeliveryError, LinkError, RunLocked, SigningError, UsageError
from sharebatch.lifecycle.inspect import Bundle, bundle_file, read_bundle, row_end
from sharebatch.lifecycle.renew import Renewal, renew_bundles_async
from sharebatch.models import Connection, Credentials
from sharebatch.run.delivery_plan import PLAN_FILE, DeliveryEntry, DeliveryPlan, read_plan
from sharebatch.run.pages import publish_page
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import parse_iso
from sharebatch.visible import visible

log = get_logger()

RENEWED_MARK = ".renewed-"
LOCK_FILE = ".remind.lock"
USAGE_FILE = "usage.json"  # written by ``sharebatch usage`` (receipts/usage.py)


@dataclass(frozen=True, slots=True)
class Step:
    """What ``remind`` made of one entry.

    ``action``: ``not notified`` (never mailed: left alone), ``complete`` (``only_unused``:
    usage.json says they downloaded every file; left alone), ``not due``, ``would renew`` (a
    dry run), ``renewed`` (renewed now, reminder due), ``to remind`` (a renewal made earlier
    still lacks its reminder), ``already reminded``, or ``failed`` (``detail`` says why).
    ``renewal``: the file name of the newest renewal the step is about.
    """

    job: str
    recipient: str
    action: str
    renewal: str | None = None
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.job}/{self.recipient}"


@dataclass(frozen=True, slots=True)
class RemindReport:
    """Every chosen entry's step and, when any reminder was handed over, the mailing's
    outcomes (``mail``); ``problems``: links a renewal could not re-sign, by entry;
    ``receipts_at``: when the usage.json that ``only_unused`` read was made."""

    run_id: str
    steps: tuple[Step, ...]
    mail: NotifyReport | None = None
    problems: tuple[str, ...] = ()
    receipts_at: str | None = None  # only_unused: usage.json's generated_at

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return self.mail.failed if self.mail is not None else ()

    @property
    def exit_code(self) -> int:
        """1 when a renewal, a page or a message failed (named in the report); else 0."""
        broken = any(s.action == "failed" for s in self.steps) or self.problems
        return 1 if broken or self.failed else 0


async def remind_async(
    run_dir: Path,
    *,
    within: timedelta,
    connection: Connection = Connection(),
    dry_run: bool = False,
    only: Sequence[str] = (),
    now: datetime | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    retry: Retry = DEFAULT_RETRY,
    cafile: str | None = None,
    only_unused: bool = False,
) -> RemindReport:
    """Renew the run's links that end within ``within`` of ``now`` and mail each renewal's
    reminder once.

    ``only_unused``: only entries whose usage.json row is not ``complete`` (or missing); no
    usage.json, or one of another run or shape: ``UsageError`` (exit 2), nothing done.

    ``only``: recipient ids or ``job/recipient`` (an unknown one is exit 2). ``dry_run``: say
    what is due and what awaits a reminder; renew, store and send nothing. ``now`` (default:
    the clock) is when the window starts and the messages' Date; the renewal signs with the
    clock, due by the same end (``now + within``). ``retry``/``cafile`` as for ``notify``.
    """
    if concurrency < 1:
        raise UsageError(f"concurrency {concurrency}: at least one connection is needed")
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    if plan is None:
        raise LinkError(
            f"{run_dir}: no {PLAN_FILE}: the run had no notify: settings (or is not a run folder)"
        )
    now = (now or datetime.now(UTC)).astimezone(UTC)
    receipts = read_receipts(run_dir, plan.run_id) if only_unused else None
    with ExitStack() as stack:
        if not dry_run:
            stack.enter_context(remind_lock(run_dir))
        report = await _remind(
            run_dir,
            plan,
            within,
            connection,
            dry_run,
            only,
            now,
            concurrency,
            retry,
            cafile,
            receipts.complete if receipts else None,
        )
        return replace(report, receipts_at=receipts.generated_at if receipts else None)
    raise AssertionError("unreachable")  # for mypy: an ExitStack could swallow exceptions


remind = blocking(remind_async)


@dataclass(frozen=True, slots=True)
class Receipts:
    """What ``only_unused`` reads of usage.json: when it was made, and each listed entry's
    ``complete``."""

    generated_at: str
    complete: Mapping[tuple[str, str], bool]


def read_receipts(run_dir: Path, run_id: str) -> Receipts:
    """``OUT/<run-id>/usage.json`` as ``only_unused`` needs it; ``UsageError`` (exit 2) when
    it is missing, unreadable, of another run, or not of the contract's shape (named)."""
    path = run_dir / USAGE_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no usage.json: --only-unused needs the run's receipts; run"
            f" `sharebatch usage {run_dir} --access-logs SOURCE` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the receipts: {visible(str(exc))}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a usage.json (no JSON object)")
    if data.get("run_id") != run_id:
        raise UsageError(
            f"{path}: run_id {visible(str(data.get('run_id')))} is not this run's ({run_id});"
            " run sharebatch usage on this run folder"
        )
    generated_at = data.get("generated_at")
    if not isinstance(generated_at, str):
        raise UsageError(f"{path}: generated_at: expected a time")
    rows = data.get("recipients")
    if not isinstance(rows, list):
        raise UsageError(f"{path}: recipients: expected a list")
    complete: dict[tuple[str, str], bool] = {}
    for n, row in enumerate(rows):
        where = f"{path}: recipients[{n}]"
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected an object")
        job, recipient, done = row.get("job"), row.get("recipient"), row.get("complete")
        if not isinstance(job, str) or not isinstance(recipient, str):
            raise UsageError(f"{where}: job and recipient: expected text")
        if not isinstance(done, bool):
            raise UsageError(f"{where}.complete: expected true or false")
        complete[(job, recipient)] = done
    return Receipts(generated_at, complete)


@contextmanager
def remind_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``OUT/<run-id>/.remind.lock`` for a whole remind: two at once could each renew a
    bundle and each mail its own renewal. Held elsewhere: ``RunLocked`` (exit 75)."""
    path = run_dir / LOCK_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunLocked(
                    f"{path}: another remind of this run is running; nothing renewed or sent"
                ) from None
            raise
        yield
    finally:
        os.close(fd)  # closing the only descriptor drops the flock


async def _remind(
    run_dir: Path,
    plan: DeliveryPlan,
    within: timedelta,
    connection: Connection,
    dry_run: bool,
    only: Sequence[str],
    now: datetime,
    concurrency: int,
    retry: Retry,
    cafile: str | None,
    complete: Mapping[tuple[str, str], bool] | None,
) -> RemindReport:
    horizon = now + within
    chosen = [e for e in matching(plan, only) if e.notify and e.settings is not None]
    for entry in chosen:
        if not entry.addresses:
            raise UsageError(
                f"{run_dir / PLAN_FILE}: {visible(_name(entry))}: no email address to send to;"
                " give the recipient email:, or notify: false to leave it out"
            )
    ledger = read_ledger(run_dir)
    notified = {(d.job, d.recipient) for d in ledger if d.kind == "notify" and d.status == "sent"}
    steps: dict[tuple[str, str], Step] = {}
    due: dict[tuple[str, str], Path] = {}
    for entry in chosen:
        if entry.key not in notified:
            steps[entry.key] = Step(entry.job, entry.recipient, "not notified")
            continue
        if complete is not None and complete.get(entry.key, False):
            steps[entry.key] = Step(entry.job, entry.recipient, "complete")
            continue
        current = _current(run_dir, entry)
        if _ends_by(read_bundle(current), horizon):
            due[entry.key] = current
    problems: list[str] = []
    if dry_run:
        for key, path in due.items():
            steps[key] = Step(*key, "would renew", _renewal_name(path))
    elif due:
        # Due by the same end as judged here, on the clock the renewal signs with.
        report = await renew_bundles_async(
            list(due.values()), within=horizon - datetime.now(UTC), connection=connection
        )
        for key, renewal in zip(due, report.renewals, strict=True):
            failed = _renew_failure(key, renewal, problems)
            if failed is not None:
                steps[key] = failed
    recorded = _recorded_renewals(run_dir)
    pending: list[tuple[DeliveryEntry, Path]] = []
    for entry in chosen:
        if entry.key in steps:
            continue
        current = _current(run_dir, entry)
        name = _renewal_name(current)
        if name is None:
            steps[entry.key] = Step(entry.job, entry.recipient, "not due")
        elif _reminded(entry, name, ledger):
            steps[entry.key] = Step(entry.job, entry.recipient, "already reminded", name)
        elif not _vouched(current, entry, recorded):
            steps[entry.key] = Step(
                entry.job,
                entry.recipient,
                "failed",
                name,
                f"{current}: not a renewal the run's audit log records (bundle_renewed);"
                " not mailed",
            )
        else:
            action = "renewed" if entry.key in due else "to remind"
            steps[entry.key] = Step(entry.job, entry.recipient, action, name)
            pending.append((entry, current))
    mail = None
    if pending and not dry_run:
        mail = await _mail(
            run_dir, plan, pending, steps, connection, now, concurrency, retry, cafile
        )
    ordered = tuple(steps[e.key] for e in plan.entries if e.key in steps)
    return RemindReport(plan.run_id, ordered, mail, tuple(problems))


def _name(entry: DeliveryEntry) -> str:
    return f"{entry.job}/{entry.recipient}"


def _current(run_dir: Path, entry: DeliveryEntry) -> Path:
    """The entry's newest bundle (JSON): its latest renewal, else the run's own."""
    original = (run_dir / entry.bundle).resolve()
    if not original.is_relative_to(run_dir.resolve()):
        raise LinkError(f"{run_dir / PLAN_FILE}: bundle {visible(entry.bundle)} lies outside")
    found = bundle_file(original.parent)
    return found if found.suffix == ".json" else original


def _renewal_name(path: Path) -> str | None:
    return path.name if RENEWED_MARK in path.name else None


def _ends_by(bundle: Bundle, horizon: datetime) -> bool:
    """Any link or upload slot of ``bundle`` ends by ``horizon`` (as ``renew`` judges it:
    the row's end or its URL's, whichever is first)."""
    for row in bundle.rows:
        if row_end(bundle, row) <= horizon:
            return True
    return any(parse_iso(str(u["expires_at"])) <= horizon for u in bundle.uploads)


def _renew_failure(key: tuple[str, str], renewal: Renewal, problems: list[str]) -> Step | None:
    """A failed step for a renewal that wrote nothing because it could not; links it could
    not re-sign (deleted or changed objects) go to ``problems``, its reminder still goes."""
    name = "/".join(key)
    for item in renewal.not_renewed:
        problems.append(
            f"{visible(name)}: {visible(item.key)}: not renewed ({item.outcome}:"
            f" {visible(item.detail)})"
        )
    if renewal.error:
        return Step(*key, "failed", None, renewal.error)
    return None


def _reminded(entry: DeliveryEntry, renewal: str, ledger: Sequence[Any]) -> bool:
    """Every message of the entry's reminder for ``renewal`` is recorded as sent."""
    settings = entry.settings
    assert settings is not None  # chosen entries have settings
    groups = [(a,) for a in entry.addresses] if settings.per_address else [entry.addresses]
    sent = {d.key for d in ledger if d.status == "sent"}
    return all((entry.job, entry.recipient, "reminder", renewal, to) in sent for to in groups)


def _recorded_renewals(run_dir: Path) -> set[str]:
    """The sha256 of every bundle the run's audit log records as renewed."""
    found: set[str] = set()
    try:
        lines = (run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return found
    for line in lines:
        if '"bundle_renewed"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash vouches for nothing
        digests = event.get("sha256") if isinstance(event, dict) else None
        if event.get("event") == "bundle_renewed" and isinstance(digests, list):
            found.update(d for d in digests if isinstance(d, str))
    return found


def _vouched(path: Path, entry: DeliveryEntry, recorded: set[str]) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if hashlib.sha256(data).hexdigest() not in recorded:
        return False
    header = read_bundle(path, data).header
    return header is not None and (header.job, header.recipient) == entry.key


async def _mail(
    run_dir: Path,
    plan: DeliveryPlan,
    pending: Sequence[tuple[DeliveryEntry, Path]],
    steps: dict[tuple[str, str], Step],
    connection: Connection,
    now: datetime,
    concurrency: int,
    retry: Retry,
    cafile: str | None,
) -> NotifyReport:
    """Publish a page where one is needed, then mail each reminder; a page that cannot be
    published fails its entry only."""
    contents: dict[tuple[str, str], Content] = {}
    for entry, path in pending:
        # Content of the renewal itself; with a page, the link is the fresh page's below.
        contents[entry.key] = bundle_content(run_dir, replace(entry, settings=None), path)
    pages = [(e, p) for e, p in pending if e.settings is not None and e.settings.delivery == "page"]
    if pages:
        urls = await _publish(run_dir, pages, steps, connection)
        for key, url in urls.items():
            contents[key] = replace(contents[key], page_url=url)
        pending = [(e, p) for e, p in pending if e.key in urls or (e, p) not in pages]
    if not pending:  # every page failed: nothing to mail, no ledger lock to take
        return NotifyReport(plan.run_id, ())
    # One deliver for all: --concurrency spans the recipients, while each reminder's
    # Message-ID and ledger lines still name its own renewal (``renewals``, by entry).
    report = await deliver(
        run_dir,
        plan,
        [replace(entry, template_text=None, template_html=None) for entry, _ in pending],
        {entry.key: contents[entry.key] for entry, _ in pending},
        kind="reminder",
        renewals={entry.key: path.name for entry, path in pending},
        concurrency=concurrency,
        now=now,
        retry=retry,
        cafile=cafile,
    )
    return NotifyReport(plan.run_id, report.outcomes)


async def _publish(
    run_dir: Path,
    pages: Sequence[tuple[DeliveryEntry, Path]],
    steps: dict[tuple[str, str], Step],
    connection: Connection,
) -> dict[tuple[str, str], str]:
    """A fresh page for each renewal: its URL by entry; failures become failed steps."""
    urls: dict[tuple[str, str], str] = {}
    with audit_file(run_dir / "audit.jsonl"):
        async with S3Gateway(connection) as gateway:
            credentials: Credentials = await gateway.credentials()
            for entry, path in pages:
                try:
                    urls[entry.key] = await _page(gateway, credentials, entry, path)
                except (DeliveryError, SigningError, LinkError) as exc:
                    steps[entry.key] = replace(steps[entry.key], action="failed", detail=str(exc))
    return urls


def _page_input(path: Path) -> tuple[Bundle, list[Mapping[str, Any]]]:
    """The renewal read back, and its rows as written (what a page lists)."""
    data = path.read_bytes()
    rows: list[Mapping[str, Any]] = json.loads(data)["links"]
    return read_bundle(path, data), rows


async def _page(
    gateway: S3Gateway, credentials: Credentials, entry: DeliveryEntry, path: Path
) -> str:
    bundle, rows = _page_input(path)
    header, settings = bundle.header, entry.settings
    if header is None or header.policy is None or settings is None:
        raise LinkError(f"{path}: header: {bundle.header_problem or 'no target'}")
    # Stored and signed where the renewal's links lead (after --endpoint-url/--region).
    target = gateway.effective(header.policy.target)
    header = replace(header, policy=replace(header.policy, target=target))
    presign = await gateway.signers.presigner(target, credentials)
    _, url = await publish_page(
        gateway, presign, header, rows, bundle.uploads, settings, credentials=credentials
    )
    return url
