"""The review gate: ops approve bundles before they are mailed (``sharebatch approve``).

An approval binds a person and a time to the exact bytes approved: the sha256 of the bundle's
``links.json``, of its recipient page (``delivery.json`` records the page's) and of its entry in
``delivery.json`` (who is mailed and how: addresses, settings, templates). It is one JSON
line in ``OUT/<run-id>/approvals.jsonl`` (0600, whole lines appended and synced, never
rewritten), and an ``approved`` event in the run's audit log. ``unapproved`` holds back every
bundle whose settings require approval and whose latest approval is missing or no longer
matches its bytes: a ``links.json`` rewritten after review is reviewed again. (A renewal is
a new file beside it; ``remind`` mails renewals without a new review, since a renewal
re-signs only the files its bundle held; docs/operations.md says so.) Once the run
has any approval, every bundle is gated whatever its settings say: ``delivery.json`` can be
edited after review, and ``require_approval: false`` written there must not open the gate.

The review page shows each bundle's state; ``approve`` refreshes that part of ``index.html``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sharebatch.audit import audit_file, get_logger
from sharebatch.errors import LinkError, UsageError
from sharebatch.run.delivery_plan import DeliveryEntry, DeliveryPlan, entry_digest, read_plan
from sharebatch.run.review import ApprovalRow, refresh_approvals
from sharebatch.times import iso
from sharebatch.visible import visible

log = get_logger()

APPROVALS_FILE = "approvals.jsonl"
NOT_APPROVED = "not approved"
CHANGED = "changed since approval"

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Approval:
    """One line of ``approvals.jsonl``: who approved which bytes of one bundle, and when.

    ``entry_sha256``: the bundle's ``delivery.json`` entry (``entry_digest``); None on a line
    written before it was recorded, which no longer approves anything.
    """

    time: str
    by: str
    job: str
    recipient: str
    bundle_sha256: str
    page_sha256: str | None
    entry_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalReport:
    """What ``approve`` recorded.

    ``left_out``: bundles matched that are not mailed (``notify: false``, or no
    ``notify:`` settings reached them), so not approved. ``review_sha256``: the review
    page's digest after its approvals part was refreshed, None when there is no such page.
    """

    run_id: str
    path: Path
    approved: tuple[Approval, ...]
    left_out: tuple[Key, ...]
    review_sha256: str | None


def matching(
    plan: DeliveryPlan, names: Sequence[str], option: str = "--only"
) -> tuple[DeliveryEntry, ...]:
    """The entries ``names`` pick (a recipient id: all its jobs; or ``job/recipient``).

    No names: every entry. A name that picks nothing raises ``UsageError`` naming ``option``
    and each such name (exit 2), before anything is done.
    """
    if not names:
        return plan.entries
    unknown = [
        name
        for name in names
        if not any(name in (e.recipient, f"{e.job}/{e.recipient}") for e in plan.entries)
    ]
    if unknown:
        shown = ", ".join(visible(name) for name in unknown)
        raise UsageError(f"{option}: no such recipient in run {visible(plan.run_id)}: {shown}")
    return tuple(
        e for e in plan.entries if any(n in (e.recipient, f"{e.job}/{e.recipient}") for n in names)
    )


def _plan(run_dir: Path) -> DeliveryPlan:
    if not run_dir.is_dir():
        raise UsageError(f"{visible(str(run_dir))}: not a run folder")
    plan = read_plan(run_dir)
    if plan is None:
        raise UsageError(
            f"{visible(str(run_dir))}: the run has nothing to deliver (no delivery.json: its"
            " manifest has no notify: settings)"
        )
    return plan


def bundle_digest(run_dir: Path, entry: DeliveryEntry) -> str | None:
    """sha256 of the entry's ``links.json`` bytes; None when it cannot be read."""
    path = run_dir / entry.bundle
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_approvals(run_dir: Path) -> dict[Key, Approval]:
    """The latest approval of each bundle in ``approvals.jsonl`` (none when there is no file).

    A line that is not a whole approval (a torn write) approves nothing and is logged.
    """
    latest: dict[Key, Approval] = {}
    path = run_dir / APPROVALS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return latest
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            approval = Approval(
                time=str(data["time"]),
                by=str(data["by"]),
                job=str(data["job"]),
                recipient=str(data["recipient"]),
                bundle_sha256=str(data["bundle_sha256"]),
                page_sha256=None if data["page_sha256"] is None else str(data["page_sha256"]),
                entry_sha256=_optional(data.get("entry_sha256")),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("approval_unreadable", path=str(path), line=number)
            continue
        latest[(approval.job, approval.recipient)] = approval
    return latest


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


def _state(run_dir: Path, entry: DeliveryEntry, approval: Approval | None) -> str:
    if approval is None:
        return NOT_APPROVED
    page = None if entry.page is None else entry.page.sha256
    if (
        approval.page_sha256 != page
        or approval.entry_sha256 is None
        or approval.entry_sha256 != entry_digest(entry)
        or approval.bundle_sha256 != bundle_digest(run_dir, entry)
    ):
        return CHANGED
    return "approved"


def _mailed(entry: DeliveryEntry) -> bool:
    """Whether ``notify`` would mail this bundle at all (so whether it can be approved)."""
    return entry.notify and entry.settings is not None


def _required(entry: DeliveryEntry, latest: dict[Key, Approval]) -> bool:
    """Whether the gate applies: the entry's settings ask for approval, or the run has any
    approval at all (so an edit writing ``require_approval: false`` cannot switch it off)."""
    return _mailed(entry) and (
        bool(latest) or (entry.settings is not None and entry.settings.require_approval)
    )


def unapproved(run_dir: Path, plan: DeliveryPlan) -> dict[Key, str]:
    """Each entry ``notify`` must not send, and why: "not approved" or "changed since approval".

    Entries whose settings require approval (``notify.require_approval``) are held, and once
    the run has any approval, every entry; the others are not this gate's to stop. Changed:
    the bundle's bytes, its page's digest or its ``delivery.json`` entry differ from the latest
    approval of that bundle (a missing bundle has changed too).
    """
    latest = read_approvals(run_dir)
    held: dict[Key, str] = {}
    for entry in plan.entries:
        if _required(entry, latest):
            state = _state(run_dir, entry, latest.get(entry.key))
            if state != "approved":
                held[entry.key] = state
    return held


def pending(run_dir: Path) -> bool:
    """Whether a bundle of the run at ``run_dir`` waits for an approval before it is mailed
    (False when the run has nothing to deliver)."""
    plan = read_plan(run_dir)
    return plan is not None and bool(unapproved(run_dir, plan))


def approval_rows(run_dir: Path, plan: DeliveryPlan) -> list[ApprovalRow]:
    """Every bundle to be mailed with its approval state, for the review page."""
    latest = read_approvals(run_dir)
    rows = []
    for entry in plan.entries:
        if not _mailed(entry):
            continue
        approval = latest.get(entry.key)
        rows.append(
            ApprovalRow(
                entry.job,
                entry.recipient,
                _state(run_dir, entry, approval),
                _required(entry, latest),
                None if approval is None else approval.by,
                None if approval is None else approval.time,
            )
        )
    return rows


def _append(path: Path, lines: Sequence[str]) -> int:
    """Append whole lines in one write and sync; the open descriptor, locked, for the caller.

    A file left ending mid-line (a crash during an earlier write) gets a newline first, so a
    torn line never swallows a new one.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        # Held until the page is refreshed: two approvals at once each see the other's lines.
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = "".join(lines).encode("utf-8")
        size = os.fstat(fd).st_size
        if data and size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def approve(
    run_dir: Path, *, by: str, only: Sequence[str] = (), now: datetime | None = None
) -> ApprovalReport:
    """Record ``by``'s approval of the run's bundles (or those ``only`` names) as they are now.

    Each approved bundle gets one line in ``approvals.jsonl`` with the sha256 of its
    ``links.json``, of its page and of its ``delivery.json`` entry, and an ``approved`` audit
    event; then the review page's approvals part is refreshed. Bundles that are not mailed
    (``notify: false``, or no ``notify:`` settings) are not approved (``left_out``). Bad
    input (no delivery plan, an unknown name, an empty ``by``, a bundle that cannot be read)
    raises before anything is written.
    """
    if not by.strip() or not by.isprintable():
        raise UsageError(f"--by: {visible(by)!r} is not a name (empty, or a control character)")
    plan = _plan(run_dir)
    entries = matching(plan, only)
    time = iso(now or datetime.now(UTC))
    approved: list[Approval] = []
    for entry in entries:
        if not _mailed(entry):
            continue
        digest = bundle_digest(run_dir, entry)
        if digest is None:
            raise LinkError(f"{visible(str(run_dir / entry.bundle))}: cannot read the bundle")
        page = None if entry.page is None else entry.page.sha256
        approved.append(
            Approval(time, by, entry.job, entry.recipient, digest, page, entry_digest(entry))
        )
    left_out = tuple(e.key for e in entries if not _mailed(e))
    path = run_dir / APPROVALS_FILE
    review = None
    with audit_file(run_dir / "audit.jsonl"):
        fd = _append(path, [json.dumps(asdict(a), ensure_ascii=False) + "\n" for a in approved])
        try:
            for a in approved:
                log.info("approved", run_id=plan.run_id, **asdict(a))
            if (run_dir / "index.html").is_file():
                review = refresh_approvals(run_dir / "index.html", approval_rows(run_dir, plan))
                if review is not None:
                    log.info("review_refreshed", path=str(run_dir / "index.html"), sha256=review)
        finally:
            os.close(fd)
    return ApprovalReport(plan.run_id, path, tuple(approved), left_out, review)


def report_json(report: ApprovalReport) -> dict[str, Any]:
    """The report as JSON-ready data (what ``approve --json`` prints)."""
    return {
        "run_id": report.run_id,
        "approvals": str(report.path),
        "approved": [asdict(a) for a in report.approved],
        "left_out": [f"{job}/{recipient}" for job, recipient in report.left_out],
        "review_sha256": report.review_sha256,
    }
