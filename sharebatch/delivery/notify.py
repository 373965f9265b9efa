"""``sharebatch notify OUT/<run-id>``: each recipient gets their bundle by mail, once.

The run's ``delivery.json`` says who gets what (``run/delivery_plan.py``); each entry's bundle
gives the link to mail: the recipient page's (``page_url`` in its header) or the files' own.
Every message is built before any is sent, so a template or header that cannot be used stops
everything (exit 2) with nothing sent; so does a recipient without an address, or a login
whose password variable is unset.

Sending goes through ``deliver``, which ``remind`` reuses with ``kind="reminder"``: at most
``concurrency`` connections, each outcome appended to the ledger (``ledger.py``) and to the
run's ``audit.jsonl`` (``mail_sent``, ``mail_failed``), never with a URL. A message the ledger
records as sent is not sent again unless its recipient is named in ``resend``. ``dry_run``
writes each message to ``OUT/<run-id>/outbox/`` instead, byte for byte what would be sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sharebatch.audit import audit_file, flush, get_logger
from sharebatch.blocking import blocking
from sharebatch.delivery.approvals import matching, unapproved
from sharebatch.delivery.ledger import Delivery, Ledger, MessageKey, read_ledger
from sharebatch.delivery.message import (
    Content,
    Letter,
    MailKind,
    MailLink,
    build_message,
    envelope_sender,
)
from sharebatch.delivery.smtp import (
    CAFILE_ENV,
    DEFAULT_RETRY,
    Credentials,
    Handover,
    Retry,
    hand_over,
    tls_context,
)
from sharebatch.delivery.webhook import NotifyOutcome, announce, notify_summary
from sharebatch.errors import LinkError, UsageError
from sharebatch.files import atomic_writer, private_dir
from sharebatch.lifecycle.inspect import read_bundle
from sharebatch.run.delivery_plan import PLAN_FILE, DeliveryEntry, DeliveryPlan, read_plan
from sharebatch.times import iso, parse_iso
from sharebatch.visible import visible

log = get_logger()

OUTBOX = "outbox"
DEFAULT_CONCURRENCY = 4
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One message: ``sent``, ``failed``, ``already sent`` (the ledger says so) or
    ``written`` (a dry run's ``.eml``, at ``path``)."""

    job: str
    recipient: str
    addresses: tuple[str, ...]
    message_id: str
    status: str
    reply: str = ""
    attempts: int = 0
    path: str | None = None


@dataclass(frozen=True, slots=True)
class NotifyReport:
    """What a ``notify`` (or a ``remind``'s mailing) did, recipient by recipient.

    ``left_out``: ``job/recipient`` of entries ``notify: false`` left out on purpose;
    ``unconfigured``: entries no ``notify:`` settings reached (nothing to send them with);
    ``held``: (``job/recipient``, why) of entries the review gate kept back
    (``require_approval``: "not approved" or "changed since approval"). A dry run names them
    too, though it writes their messages.
    """

    run_id: str
    outcomes: tuple[Outcome, ...]
    left_out: tuple[str, ...] = ()
    unconfigured: tuple[str, ...] = ()
    outbox: str | None = None
    held: tuple[tuple[str, str], ...] = ()
    webhook_errors: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")

    @property
    def exit_code(self) -> int:
        """0 when every message went out (or had gone before); 1 when any failed or was
        held for approval (a dry run sends nothing, so holds nothing back)."""
        return 1 if self.failed or (self.held and self.outbox is None) else 0

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.status for o in self.outcomes))


@dataclass(frozen=True, slots=True)
class _Unit:
    """One message to hand over: an entry, to all its addresses or (per_address) to one."""

    entry: DeliveryEntry
    to: tuple[str, ...]
    renewal: str | None
    letter: Letter
    message_id: str
    data: bytes = field(repr=False)  # the message holds the links
    # Who gets it this time, when not all of ``to``: those an earlier send did not reach.
    envelope: tuple[str, ...] = ()


async def notify_async(
    run_dir: Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    dry_run: bool = False,
    only: Sequence[str] = (),
    resend: Sequence[str] = (),
    now: datetime | None = None,
    retry: Retry = DEFAULT_RETRY,
    cafile: str | None = None,
) -> NotifyReport:
    """Mail each recipient of the run at ``run_dir`` their bundle; idempotent.

    ``only`` and ``resend`` take a recipient id (all its jobs) or ``job/recipient``; a name
    that matches no entry is an error (exit 2). ``now`` fixes the messages' Date (a dry run's
    .eml is then byte for byte what a send at that ``now`` hands over); ``retry``: how
    temporary failures are tried again; ``cafile``: a private CA the SMTP servers'
    certificates are checked against (else ``SHAREBATCH_SMTP_CAFILE``).

    With ``notify.require_approval``, only bundles approved and unchanged since are sent; the
    others are ``held`` (named with why). Unless a dry run, the summary is then posted to
    the plan's webhooks; their failures are in ``webhook_errors`` (the exit code is the
    caller's to decide: ``--strict-webhook``).
    """
    if concurrency < 1:
        raise UsageError(f"concurrency {concurrency}: at least one connection is needed")
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    if plan is None:
        raise LinkError(
            f"{run_dir}: no {PLAN_FILE}: the run had no notify: settings (or is not a run folder)"
        )
    chosen = matching(plan, only, "--only")
    resent = {entry.key for entry in matching(plan, resend, "--resend")} if resend else set()
    # By key: `entry in chosen` compared whole entries, N^2/2 of them (0.5 s at 1,000).
    wanted = {entry.key for entry in chosen} | resent
    sendable = [e for e in plan.entries if e.key in wanted and e.notify and e.settings is not None]
    for entry in sendable:  # held or not: bad input is said before anything else
        if not entry.addresses:
            raise UsageError(
                f"{run_dir / PLAN_FILE}: {visible(_name(entry))}: no email address to send to;"
                " give the recipient email:, or notify: false to leave it out"
            )
    held = _held(run_dir, plan, sendable, resent)
    if not dry_run:  # a dry run writes them all: ops review the messages before approving
        sendable = [e for e in sendable if e.key not in held]
    contents = {entry.key: bundle_content(run_dir, entry) for entry in sendable}
    report = await deliver(
        run_dir,
        plan,
        sendable,
        contents,
        concurrency=concurrency,
        dry_run=dry_run,
        resend=resent,
        now=now,
        retry=retry,
        cafile=cafile,
    )
    report = replace(
        report,
        left_out=tuple(_name(e) for e in chosen if not e.notify),
        unconfigured=tuple(_name(e) for e in chosen if e.notify and e.settings is None),
        held=tuple((_name(e), held[e.key]) for e in plan.entries if e.key in held),
    )
    webhooks = plan.webhooks()
    if dry_run or not webhooks:
        return report
    errors = await announce(webhooks, notify_summary(_as_outcome(report, run_dir)))
    return replace(report, webhook_errors=errors)


def _as_outcome(report: NotifyReport, run_dir: Path) -> NotifyOutcome:
    failed = tuple(dict.fromkeys(f"{o.job}/{o.recipient}" for o in report.failed))
    return NotifyOutcome(
        run_id=report.run_id,
        run_dir=run_dir,
        sent=report.counts().get("sent", 0),
        failed=len(report.failed),
        left_out=len(report.left_out),
        failed_recipients=failed,
        held=tuple(name for name, _ in report.held),
    )


def _held(
    run_dir: Path,
    plan: DeliveryPlan,
    sendable: Sequence[DeliveryEntry],
    resent: Collection[tuple[str, str]],
) -> dict[tuple[str, str], str]:
    """The review gate: each of ``sendable`` not to be sent for want of an approval, and why.

    A bundle already mailed to every address (and not resent) is not held: nothing would go
    out, so a later notify (cron) is not failed by a bundle renewed after it was mailed.
    """
    gate = unapproved(run_dir, plan)
    if not gate:
        return {}
    mailed: dict[tuple[str, str], set[str]] = {}
    for line in read_ledger(run_dir):
        if line.status == "sent" and line.kind == "notify":
            mailed.setdefault((line.job, line.recipient), set()).update(line.addresses)
    return {
        e.key: gate[e.key]
        for e in sendable
        if e.key in gate and (e.key in resent or not set(e.addresses) <= mailed.get(e.key, set()))
    }


notify = blocking(notify_async)


async def deliver(
    run_dir: Path,
    plan: DeliveryPlan,
    entries: Sequence[DeliveryEntry],
    contents: Mapping[tuple[str, str], Content],
    *,
    kind: MailKind = "notify",
    renewal: str | None = None,
    renewals: Mapping[tuple[str, str], str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    dry_run: bool = False,
    resend: Collection[tuple[str, str]] = (),
    now: datetime | None = None,
    retry: Retry = DEFAULT_RETRY,
    cafile: str | None = None,
) -> NotifyReport:
    """Send each of ``entries`` (with settings and addresses) its message, with
    ``contents[entry.key]`` as what it points at; the reusable half of ``notify``.

    ``kind``/``renewal`` make a reminder (its own Message-ID per renewal, its own ledger
    lines); ``renewals`` gives an entry's own renewal by key (before ``renewal``), so one
    call mails reminders of many renewals with ``concurrency`` across them all. A message
    already sent (for its renewal) is skipped unless its entry's key is in ``resend``.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    with ExitStack() as stack:
        # The lock before the ledger is read: a notify that ran meanwhile is seen whole.
        ledger = None if dry_run else stack.enter_context(Ledger(run_dir))
        chosen = {e.key: renewal for e in entries} | dict(renewals or {})
        units, skipped = _plan_units(run_dir, plan, entries, contents, kind, chosen, resend, now)
        if ledger is None:
            return _dry_run(run_dir, plan, units, skipped, kind)
        # Read now, and only for what is to be sent: a run already mailed needs no password.
        logins = _logins([u.entry for u in units])
        context = _context(cafile) if any(_secure(u.entry) for u in units) else None
        stack.enter_context(audit_file(run_dir / "audit.jsonl"))
        slots = asyncio.Semaphore(concurrency)

        async def one(unit: _Unit) -> Outcome:
            settings = unit.entry.settings
            assert settings is not None  # _units made none for an entry without
            async with slots:
                handover = await hand_over(
                    settings.smtp,
                    envelope_sender(unit.letter),
                    unit.envelope or unit.to,
                    unit.data,
                    login=logins.get(unit.entry.key),
                    context=context,
                    retry=retry,
                )
            return await _record(ledger, unit, kind, handover, plan.run_id)

        # Each message's own renewal is in its mail_sent/mail_failed event; here, how many.
        named = len({unit.renewal for unit in units} - {None})
        log.info("notify_started", kind=kind, renewals=named, messages=len(units))
        finished = await asyncio.gather(*(one(unit) for unit in units))
        report = NotifyReport(plan.run_id, tuple(skipped) + tuple(finished))
        log.info("notify_finished", kind=kind, renewals=named, **report.counts())
        return report
    raise AssertionError("unreachable")  # for mypy: an ExitStack could swallow exceptions


def _context(cafile: str | None) -> ssl.SSLContext:
    try:
        return tls_context(cafile)
    except (OSError, ssl.SSLError) as exc:
        named = cafile or os.environ.get(CAFILE_ENV)
        raise UsageError(f"{CAFILE_ENV} {named}: cannot load the CA file: {exc}") from None


def _plan_units(
    run_dir: Path,
    plan: DeliveryPlan,
    entries: Sequence[DeliveryEntry],
    contents: Mapping[tuple[str, str], Content],
    kind: MailKind,
    renewals: Mapping[tuple[str, str], str | None],
    resend: Collection[tuple[str, str]],
    now: datetime,
) -> tuple[list[_Unit], list[Outcome]]:
    """Every message built (so a bad one stops all before any is sent); those the ledger
    records as sent set apart, unless resent."""
    # A message counts as sent once each of its addresses got it; until then the same
    # message (same Message-ID) goes again, to those a refusal kept it from.
    got: dict[tuple[MessageKey, int], set[str]] = {}
    for d in read_ledger(run_dir):
        if d.status == "sent":
            got.setdefault((d.key, d.resend), set()).update(set(d.addresses) - set(d.undelivered))
    sent = Counter(key for (key, _), taken in got.items() if taken >= set(key[4]))
    units: list[_Unit] = []
    skipped: list[Outcome] = []
    for entry in entries:
        renewal = renewals[entry.key]
        for unit in _units(plan.run_id, entry, contents[entry.key], kind, renewal, now, sent):
            key = (entry.job, entry.recipient, kind, renewal, unit.to)
            if sent[key] and entry.key not in resend:
                skipped.append(_outcome(unit, "already sent"))
                continue
            taken = got.get((key, sent[key]), set())
            if taken:
                unit = replace(unit, envelope=tuple(a for a in unit.to if a not in taken))
            units.append(unit)
    return units, skipped


def _dry_run(
    run_dir: Path, plan: DeliveryPlan, units: list[_Unit], skipped: list[Outcome], kind: MailKind
) -> NotifyReport:
    ambiguous = {r for r, n in Counter(e.recipient for e in plan.entries).items() if n > 1}
    # Every path checked before the outbox is emptied and the first message written.
    paths = [_eml_path(run_dir / OUTBOX, u, kind, u.entry.recipient in ambiguous) for u in units]
    outbox = _outbox(run_dir)
    written = [_write_eml(path, u) for path, u in zip(paths, units, strict=True)]
    return NotifyReport(plan.run_id, tuple(skipped + written), outbox=str(outbox))


def bundle_content(run_dir: Path, entry: DeliveryEntry, bundle: Path | None = None) -> Content:
    """What ``entry``'s mail points at, read from its bundle (``bundle``: another one of
    its bundles, such as a renewal, instead of the run's). ``LinkError`` (exit 2) when the
    bundle cannot be read, or has no page for a ``delivery: page`` entry."""
    path = bundle or _inside(run_dir, entry.bundle)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LinkError(f"{path}: cannot read the bundle: {type(exc).__name__}") from None
    read = read_bundle(path, data)
    if read.header is None:
        # Its times and page link are what the mail promises: a header sharebatch did not
        # write this way (a malformed page_expires_at, say) is not guessed at.
        why = read.header_problem or "missing"
        raise LinkError(f"{path}: header: {visible(why)}; the bundle cannot be mailed")
    header = read.header
    page_url = header.page_url
    settings = entry.settings
    has_page = page_url is not None and page_url.startswith(("https://", "http://"))
    if settings is not None and settings.delivery == "page" and not has_page:
        raise LinkError(
            f"{path}: header: page_url: missing; delivery: page mails the recipient page,"
            " which this run did not store (run the manifest again)"
        )
    ends = [row.expires_at for row in read.rows] + [
        parse_iso(str(u["expires_at"])) for u in read.uploads
    ]
    # A page of CloudFront links may end before them (its S3 link is capped): the mail
    # promises only what the page keeps.
    if has_page and header.page_expires_at is not None:
        ends.append(parse_iso(header.page_expires_at))
    cloudfront = header.policy.cloudfront if header.policy is not None else None
    return Content(
        page_url=page_url,
        links=tuple(MailLink(row.key, row.size, row.url) for row in read.rows),
        files=len(read.rows),
        expires_at=min(ends) if ends else None,
        # Links that start later are refused until then: the mail says from when.
        starts_at=cloudfront.not_before if cloudfront is not None and read.rows else None,
    )


def _inside(run_dir: Path, relative: str) -> Path:
    path = (run_dir / relative).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise LinkError(f"{run_dir / PLAN_FILE}: bundle {visible(relative)} lies outside the run")
    return path


def _name(entry: DeliveryEntry) -> str:
    return f"{entry.job}/{entry.recipient}"


def _logins(entries: Sequence[DeliveryEntry]) -> dict[tuple[str, str], Credentials]:
    """Each entry's SMTP login, its password read from the environment now; an unset
    variable is an error naming it, before anything is sent."""
    found = {}
    for entry in entries:
        smtp = entry.settings.smtp if entry.settings is not None else None
        if smtp is None or smtp.username is None:
            continue
        password = os.environ.get(smtp.password_env)
        if not password:
            raise UsageError(
                f"{_name(entry)}: smtp username {visible(smtp.username)} needs a password in"
                f" the environment variable {smtp.password_env}, which is not set; nothing sent"
            )
        found[entry.key] = Credentials(smtp.username, password)
    return found


def _secure(entry: DeliveryEntry) -> bool:
    return entry.settings is not None and entry.settings.smtp.security != "none"


def _units(
    run_id: str,
    entry: DeliveryEntry,
    content: Content,
    kind: MailKind,
    renewal: str | None,
    now: datetime,
    sent: Counter[MessageKey],
) -> list[_Unit]:
    settings = entry.settings
    if settings is None or not entry.addresses:
        return []
    groups = [(a,) for a in entry.addresses] if settings.per_address else [entry.addresses]
    units = []
    for to in groups:
        letter = Letter(
            run_id=run_id,
            job=entry.job,
            recipient=entry.recipient,
            name=entry.name,
            addresses=entry.addresses,
            sender=settings.sender,
            reply_to=settings.reply_to,
            subject=settings.subject,
            delivery=settings.delivery,
            kind=kind,
            renewal=renewal,
            # A resend is a new message (a new Message-ID): mail clients hide a repeated one.
            resend=sent[(entry.job, entry.recipient, kind, renewal, to)],
            template_text=entry.template_text,
            template_html=entry.template_html,
            where=f"{PLAN_FILE}: {_name(entry)}",
        )
        message = build_message(letter, content, to, now)
        message_id = str(message["Message-ID"])
        units.append(_Unit(entry, to, renewal, letter, message_id, message.as_bytes()))
    return units


def _outcome(unit: _Unit, status: str, **fields: object) -> Outcome:
    return Outcome(
        unit.entry.job,
        unit.entry.recipient,
        unit.to,
        unit.message_id,
        status,
        **fields,  # type: ignore[arg-type]
    )


async def _record(
    ledger: Ledger,
    unit: _Unit,
    kind: MailKind,
    handover: Handover,
    run_id: str,
) -> Outcome:
    delivery = Delivery(
        time=iso(datetime.now(UTC)),
        run_id=run_id,
        job=unit.entry.job,
        recipient=unit.entry.recipient,
        addresses=list(unit.to),
        message_id=unit.message_id,
        kind=kind,
        renewal=unit.renewal,
        status="sent" if handover.status == "sent" else "failed",
        reply=handover.reply,
        attempts=handover.attempts,
        resend=unit.letter.resend,
        undelivered=list(handover.refused),
    )
    event = asdict(delivery)
    del event["time"]  # the event's own timestamp says it
    if delivery.status == "sent":
        log.info("mail_sent", **event)
    else:
        log.warning("mail_failed", **event)
    # The event on disk first: a kill -9 before the ledger's line leaves an event for a
    # message that goes again (it did go), never a ledger line whose event was lost. The
    # line is written even if the audit log's disk refuses: it is what stops a resend.
    try:
        flush()
    finally:
        await ledger.append(delivery)
    status = "failed" if handover.refused else delivery.status
    return _outcome(unit, status, reply=handover.reply, attempts=handover.attempts)


def _outbox(run_dir: Path) -> Path:
    outbox = run_dir / OUTBOX
    if outbox.is_dir() and not outbox.is_symlink():
        # Ops review exactly what would go out now: no message of an earlier dry run stays.
        shutil.rmtree(outbox)
    return private_dir(outbox)


def _eml_path(outbox: Path, unit: _Unit, kind: MailKind, ambiguous: bool) -> Path:
    """Where the unit's message is written; a ``LinkError`` when that lies outside the outbox
    (read_plan refuses such ids already: this holds should a check there ever miss)."""
    folder = outbox / unit.entry.job if ambiguous else outbox
    stem = unit.entry.recipient
    if len(unit.to) == 1 and len(unit.entry.addresses) > 1:
        stem += "." + _UNSAFE_IN_NAME.sub("_", unit.to[0])
    if kind == "reminder":
        stem += ".reminder"
    path = folder / f"{stem}.eml"
    if path.parent != folder or not path.resolve().is_relative_to(outbox.resolve()):
        raise LinkError(
            f"{visible(_name(unit.entry))}: the message file would lie outside"
            f" {visible(str(outbox))}"
        )
    return path


def _write_eml(path: Path, unit: _Unit) -> Outcome:
    private_dir(path.parent)
    # The message is 7-bit (quoted-printable bodies, encoded-word headers): ASCII round-trips.
    with atomic_writer(path) as out:
        out.write(unit.data.decode("ascii"))
    return _outcome(unit, "written", path=str(path))
