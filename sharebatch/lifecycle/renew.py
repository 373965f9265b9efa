"""Renewing bundles: re-signing the links that are expired or expire soon.

A renewal reads a bundle back, re-signs each link whose end falls within the window with the
expiry policy the bundle header records (``expiry``, ``on_short_credentials``, ``target``),
keeps every other link as it was, and writes a complete new bundle next to the old one
(``links.renewed-<UTC time to the ms>-<hex>.json`` and ``.csv``), never overwriting anything.
Upload slots due within the window are issued again with the slot policy the header records
(``upload``); the others are kept. The old bundle is left untouched. Audit events
(``link_renewed``, ``link_not_renewed``, ``upload_slot_issued``, ``bundle_renewed``) link each
old URL's digest to the new one; they go to the run's ``audit.jsonl`` when the bundle still
sits in its run folder, else to ``<new bundle>.audit.jsonl`` beside it.

Nothing a bundle file says is signed unless its run vouches for it: the file's sha256 must be
recorded in its run's audit log (``bundle_written``, or ``bundle_renewed`` for a renewal), or
the file must be a renewal of such a bundle (found through ``renewed_from``) holding nothing
its source did not. Every row must lie in the header's bucket, under its prefixes. Before a
link is re-signed its object is checked (HEAD): a deleted or changed object keeps its old row
and is reported, as ``verify`` would.

A CloudFront bundle (``link: cloudfront`` in its header) is re-signed by the run's own
signer, ``run/cfsign.CloudFrontRouteSigner``, made from the header: its distribution, key
pair, hash, IP range, start, expiry, download name and content type, and the key read again
from its ``private_key`` source (a key rotated on disk signs the renewal; one grown readable
by others is refused as at the run), all vouched for by the same sha256. A renewed link is
so byte for byte what a run would sign for the same object, window and key. Its objects are
HEADed in the origin bucket as any others. No credential lifetime applies to those links
(the S3 credentials still sign re-issued upload slots, and are checked for them).

Before anything is asked, every CloudFront row is held to its header's whole origin
(``inspect.cloudfront_row_problems``), and the header's and rows' windows to what a run
could have written (``_cloudfront_windows``): an end beyond ``max_expires_in`` from when the
bundle was written, a start not before the end, a bundle written in the future. Any of them
is bad input (exit 2) naming the file and row: a renewal never signs a longer or wider link
than the run did.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sharebatch.audit import audit_file, get_logger, url_digest
from sharebatch.blocking import blocking
from sharebatch.cloudfront.keys import KeyProblem, PrivateKey, load_private_key
from sharebatch.cloudfront.sign import CloudFrontSigner, domain_origin
from sharebatch.errors import LinkError, SigningError
from sharebatch.files import private_dir
from sharebatch.lifecycle.inspect import (
    Bundle,
    BundleRow,
    CloudFrontUrl,
    bundle_file,
    cloudfront_row_problems,
    read_bundle,
    read_link,
    row_end,
    row_link,
)
from sharebatch.lifecycle.verify import judge
from sharebatch.models import (
    BucketTarget,
    CloudFrontLinks,
    Connection,
    Credentials,
    Expiry,
    KeySource,
    Link,
    ObjectRef,
    PostSigner,
    Presigner,
    ShortCredentials,
    UploadSlot,
)
from sharebatch.run.bundles import BundleHeader, PartFile, RenewedFrom, write_bundle
from sharebatch.run.cfsign import CloudFrontRouteSigner
from sharebatch.run.sign import Signer, check_lifetimes, credential_limit
from sharebatch.run.slots import issue_slot, slot_key, upload_row
from sharebatch.run.write import signed_by
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import iso, parse_iso
from sharebatch.visible import visible

log = get_logger()

# Header fields a renewal rewrites; every other field of a renewal is its source's.
_RENEWAL_FIELDS = frozenset(
    {
        "generated_at",
        "signer_access_key_id",
        "expires_at",
        "links",
        "credentials",
        "clamped_to",
        "renewed_from",
        "renewed",
        "page_url",  # dropped by a renewal; a refreshed page (remind) gets a new one
        "page_link_id",
        "page_expires_at",  # the dropped page's own end
    }
)
# A bundle written later than this after the clock's now was not written on this machine.
_SKEW = timedelta(minutes=5)
# A renewal chain longer than this is not one sharebatch made in any sensible time.
_MAX_CHAIN = 256
_HEADS_IN_FLIGHT = 16


@dataclass(frozen=True)
class NotRenewed:
    """A due link left as it was: its object is gone or changed (or could not be checked)."""

    line: int
    recipient: str
    bucket: str
    key: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class Renewal:
    """What renewing one bundle did; ``written`` is empty when nothing was renewed."""

    source: str
    written: tuple[str, ...]
    renewed: int
    kept: int
    expires_at: str | None
    error: str | None = None
    not_renewed: tuple[NotRenewed, ...] = ()
    uploads_renewed: int = 0


@dataclass(frozen=True)
class RenewReport:
    renewals: list[Renewal]

    @property
    def exit_code(self) -> int:
        """0 when every due link was renewed (or none was due); 1 when any could not be."""
        return 1 if any(r.error or r.not_renewed for r in self.renewals) else 0


@dataclass(frozen=True)
class _Source:
    """A bundle to renew with everything its header says about how it was signed."""

    bundle: Bundle
    digest: str
    header: BundleHeader
    formats: tuple[str, ...]
    expiry: Expiry
    policy: ShortCredentials
    target: BucketTarget
    slot: UploadSlot | None

    @property
    def cloudfront(self) -> bool:
        """Whether its links are CloudFront signed URLs (the header's ``link``)."""
        policy = self.header.policy
        return policy is not None and policy.link == "cloudfront"

    @property
    def link_ids(self) -> bool:
        """Whether the run signed ids into its links (the manifest's ``link_ids``): its
        renewal does the same, so a store that refuses them never gets one."""
        policy = self.header.policy
        return policy is None or policy.link_ids


@dataclass
class _Records:
    """What the run audit logs read so far record: run ids and bundle digests, by log."""

    given: dict[str, Path] = field(default_factory=dict)  # run id -> --audit-log
    logs: dict[Path, tuple[set[str], set[str]]] = field(default_factory=dict)

    def read(self, path: Path) -> tuple[set[str], set[str]]:
        """(run ids, sha256 of bundles written or renewed) that ``path`` records."""
        if path not in self.logs:
            runs: set[str] = set()
            digests: set[str] = set()
            try:
                # O_NONBLOCK: a FIFO would otherwise hold the open until a writer came.
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise LinkError(f"{path}: cannot read the audit log: not a regular file")
                os.set_blocking(fd, True)
                with open(fd, encoding="utf-8") as lines:
                    for event in _events(lines):
                        name, sha = event.get("event"), event.get("sha256")
                        if name == "run_started" and isinstance(event.get("run_id"), str):
                            runs.add(event["run_id"])
                        elif name == "bundle_written" and isinstance(sha, str):
                            digests.add(sha)
                        elif name == "bundle_renewed" and isinstance(sha, list):
                            digests.update(s for s in sha if isinstance(s, str))
            except (OSError, UnicodeDecodeError) as exc:
                problem = type(exc).__name__
                raise LinkError(f"{path}: cannot read the audit log: {problem}") from None
            self.logs[path] = (runs, digests)
        return self.logs[path]

    def add_given(self, path: Path) -> None:
        runs, _ = self.read(path)
        if not runs:
            raise LinkError(f"--audit-log {path}: not a run's audit log (no run_started event)")
        for run_id in runs:
            self.given[run_id] = path


_WANTED = ('"run_started"', '"bundle_written"', '"bundle_renewed"')


def _events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The run and bundle events of an audit log; a log holds a line per link, read past."""
    for line in lines:
        if not any(name in line for name in _WANTED):
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line cut by a crash (or not JSON Python reads) says nothing either way
        if isinstance(event, dict):
            yield event


def _run_log(path: Path, header: BundleHeader, records: _Records) -> Path:
    """The audit log of the bundle's run: given with --audit-log, or in its run folder."""
    run_id = header.run_id
    if run_id in records.given:
        return records.given[run_id]
    run_dir = path.parent.parent.parent
    found = run_dir / "audit.jsonl"
    if run_dir.name == run_id and _regular(found) and run_id in records.read(found)[0]:
        return found
    raise LinkError(
        f"{path}: no audit log of run {visible(run_id)} at {found}; renew signs only bundles"
        " their run recorded: pass --audit-log with that run's audit.jsonl"
    )


def _regular(path: Path) -> bool:
    """A regular file, not a symbolic link: audit logs are appended to with O_NOFOLLOW."""
    return path.is_file() and not path.is_symlink()


def _read(path: Path) -> tuple[Bundle, str]:
    # Absolute: the run folder above a bundle is found from its path, and a relative one
    # ("links.json", run from inside the folder) has none to compare job and recipient with.
    path = Path(os.path.abspath(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LinkError(f"{path}: cannot read the bundle: {type(exc).__name__}") from None
    return read_bundle(path, data), hashlib.sha256(data).hexdigest()


def _vouch(bundle: Bundle, digest: str, records: _Records, depth: int = 0) -> BundleHeader:
    """``bundle``'s header, once its run recorded it, or it is a faithful renewal of one that
    its run recorded; else ``LinkError`` (exit 2) naming the file and why."""
    path, header = bundle.path, bundle.header
    if header is None:
        raise LinkError(f"{path}: header: {bundle.header_problem or 'missing'}")
    run_log = _run_log(path, header, records)
    if path.parent.parent.parent.name == header.run_id and (
        path.parent.name != header.recipient or path.parent.parent.name != header.job
    ):
        # Another recipient's bundle of the same run (or a renewal of one), copied in: this
        # folder's newest renewal would then hand its links to the wrong recipient.
        raise LinkError(
            f"{path}: a bundle of job {visible(header.job)}, recipient"
            f" {visible(header.recipient)}, in another bundle's folder"
        )
    if digest in records.read(run_log)[1]:
        return header
    origin = header.renewed_from
    unknown = (
        f"{path}: sha256 {digest[:16]}... is not a bundle its run wrote: {run_log} records"
        " no bundle_written or bundle_renewed with it (was the file edited?)"
    )
    if origin is None or depth >= _MAX_CHAIN:
        raise LinkError(unknown)
    recorded = Path(origin.path)
    beside = path.with_name(recorded.name) if recorded.name else None  # "/" names no file
    source_path = recorded if recorded.is_file() else beside
    if source_path is None or not source_path.is_file():
        raise LinkError(f"{unknown}; nor is its source {recorded} there to check it against")
    source, source_digest = _read(source_path)
    if source_digest != origin.sha256:
        raise LinkError(f"{unknown}; and {source_path} is not the source it names")
    _holds_only_its_source(
        bundle, header, source, _vouch(source, source_digest, records, depth + 1)
    )
    return header


def _holds_only_its_source(
    renewal: Bundle, header: BundleHeader, source: Bundle, source_header: BundleHeader
) -> None:
    """A renewal keeps its source's header policy, rows (URLs aside) and upload slots."""
    path, mine, theirs = renewal.path, header.to_json(), source_header.to_json()
    for name in sorted((mine.keys() | theirs.keys()) - _RENEWAL_FIELDS):
        if mine.get(name) != theirs.get(name):
            raise LinkError(f"{path}: header: {name} differs from its source {source.path}")
    rows = {_identity(row): row for row in source.rows}
    for row in renewal.rows:
        was = rows.get(_identity(row))
        if was is None or _params(was.url) != _params(row.url):
            raise LinkError(
                f"{path}: links[{row.line - 1}]: {visible(row.key)} is not a link of its"
                f" source {source.path}"
            )
        if row.url == was.url and row.link_id != was.link_id:
            # The usage report joins S3's logs on the ids: a kept link renamed would credit
            # its downloads to another.
            raise LinkError(
                f"{path}: links[{row.line - 1}]: {visible(row.key)}: its link_id is not its"
                f" source's"
            )
        if row.url != was.url and not _renewed_alike(renewal, header, row, was):
            # A re-signed link must lead where its row says, signed as the header says: else
            # another recipient's link could ride on this row and be recorded by the renewal.
            raise LinkError(
                f"{path}: links[{row.line - 1}]: {visible(row.key)}: its URL is not that key's"
                f" link re-signed by {visible(header.signer_access_key_id or '?')}"
            )
    if [_slot_identity(u) for u in renewal.uploads] != [_slot_identity(u) for u in source.uploads]:
        raise LinkError(f"{path}: uploads differ from its source {source.path}'s")


def _renewed_alike(renewal: Bundle, header: BundleHeader, row: BundleRow, was: BundleRow) -> bool:
    """A row's new URL is its old one re-signed: same host, bucket and key, by the signer
    the renewal's header names (for CloudFront: its key pair, hash and IP range)."""
    new, old = row_link(renewal, row), read_link(was.url)
    if isinstance(new, CloudFrontUrl) or isinstance(old, CloudFrontUrl):
        policy = header.policy
        if not (
            isinstance(new, CloudFrontUrl)
            and isinstance(old, CloudFrontUrl)
            and policy is not None
            and policy.cloudfront is not None
        ):
            return False
        return (
            new.fault is None
            and not cloudfront_row_problems(renewal, row, new)
            and (new.origin, new.key) == (old.origin, old.key)
            and new.link_id == row.link_id
        )
    return (
        (new.host, new.bucket, new.key)
        == (old.host, old.bucket, old.key)
        == (new.host, row.bucket, row.key)
        and new.access_key_id == header.signer_access_key_id
        and new.link_id == row.link_id
    )


def _identity(row: BundleRow) -> tuple[object, ...]:
    return (row.recipient, row.bucket, row.key, row.size, row.etag, row.last_modified, row.method)


def _slot_identity(upload: Mapping[str, Any]) -> tuple[object, ...]:
    return tuple(upload.get(name) for name in ("recipient", "bucket", "method", "key"))


def _within_grant(source: _Source) -> None:
    """Never wider than the grant: the header's recipient, bucket, prefixes and slot."""
    path, header, bucket = source.bundle.path, source.header, source.target.bucket
    prefixes = header.prefixes
    for row in source.bundle.rows:
        where = f"{path}: links[{row.line - 1}]: {visible(row.key)}"
        if row.recipient != header.recipient or row.bucket != bucket:
            raise LinkError(f"{where}: not for recipient and bucket the header names")
        if prefixes is not None and not row.key.startswith(prefixes):
            raise LinkError(f"{where}: outside the prefixes the bundle was built from")
    if source.cloudfront:
        _cloudfront_rows(source)
    for n, upload in enumerate(source.bundle.uploads):
        key = str(upload["key"])
        slot = source.slot
        if upload["bucket"] != bucket or (slot is not None and not key.startswith(slot.prefix)):
            raise LinkError(f"{path}: uploads[{n}]: {visible(key)}: outside the upload slot")


def _cloudfront_rows(source: _Source) -> None:
    """Every CloudFront row signed as its header says, for its own object only, and every
    window one a run could have written (``_cloudfront_windows``)."""
    _cloudfront_windows(source)
    path, bundle = source.bundle.path, source.bundle
    for row in bundle.rows:
        facts = row_link(bundle, row)
        assert isinstance(facts, CloudFrontUrl)  # a CloudFront header reads rows as such
        # An unreadable URL (its fault) is renewed as before; one whose start is not before
        # its end was never signed by a run.
        never = None if facts.fault else facts.problem(row.expires_at)
        problems = ([never] if never else []) + cloudfront_row_problems(bundle, row, facts)
        if problems:
            raise LinkError(
                f"{path}: links[{row.line - 1}]: {visible(row.key)}: refused, not the link its"
                f" header signs: {'; '.join(problems)}"
            )


def _cloudfront_windows(source: _Source) -> None:
    """A CloudFront header's windows, and its rows' ends, as a run could have written them:
    no end further than ``max_expires_in`` after the bundle was written (every link was
    signed by then, within that limit), a start before the end, a bundle not written in the
    future. Else ``LinkError``: a forged window must not become a longer or wider link."""
    path, header = source.bundle.path, source.header
    policy = header.policy
    settings = policy.cloudfront if policy else None
    assert policy is not None  # source.cloudfront
    assert settings is not None
    where = f"{path}: header"
    try:
        domain_origin(settings.domain)
    except ValueError as exc:  # the signer's own refusal: it names the setting
        raise LinkError(f"{where}: cloudfront: {exc}") from None
    try:
        written = parse_iso(header.generated_at)
    except ValueError:
        raise LinkError(f"{where}: generated_at is not a UTC time") from None
    if written > datetime.now(UTC) + _SKEW:
        raise LinkError(f"{where}: generated_at {iso(written)} is in the future")
    limit = settings.max_expires_in
    latest = written + timedelta(seconds=limit)
    expiry = policy.expiry
    if expiry.seconds is not None and not 0 < expiry.seconds <= limit:
        raise LinkError(
            f"{where}: expires_in {expiry.seconds}s is outside 1..{limit}s"
            " (cloudfront.max_expires_in)"
        )
    if expiry.at is not None and not written < expiry.at <= latest:
        raise LinkError(
            f"{where}: expires_at {iso(expiry.at)} is not within cloudfront.max_expires_in"
            f" ({limit}s) after the bundle was written ({iso(written)})"
        )
    end = expiry.at or written + timedelta(seconds=expiry.seconds or 0)
    start = settings.not_before
    if start is not None and start >= end:
        raise LinkError(
            f"{where}: cloudfront.not_before {iso(start)} is not before the links' end {iso(end)}"
        )
    for name in ("expires_at", "page_expires_at"):
        text = getattr(header, name)
        try:
            moment = parse_iso(text) if text else None
        except ValueError:
            raise LinkError(f"{where}: {name} is not a UTC time") from None
        if moment is not None and moment > latest:
            raise LinkError(
                f"{where}: {name} {iso(moment)} is further than cloudfront.max_expires_in"
                f" ({limit}s) after the bundle was written ({iso(written)})"
            )
    for row in source.bundle.rows:
        found = row_link(source.bundle, row).expires_at
        if max(row.expires_at, found or row.expires_at) > latest:
            raise LinkError(
                f"{path}: links[{row.line - 1}]: {visible(row.key)}: its end is further than"
                f" cloudfront.max_expires_in ({limit}s) after the bundle was written"
            )


def _load(path: str | Path, records: _Records) -> _Source:
    found = bundle_file(Path(path))
    json_path = found.with_suffix(".json")
    if not json_path.is_file():
        raise LinkError(
            f"{found}: renewing needs the expiry policy in the JSON bundle's header,"
            f" and {json_path.name} is not beside it"
        )
    # The JSON rows, not the CSV's: CSV cells are neutralised for spreadsheets ('=key).
    bundle, digest = _read(json_path)
    # Before anything in the file is believed: its run must vouch for these exact bytes.
    header = _vouch(bundle, digest, records)
    formats = tuple(f for f in ("csv", "json") if json_path.with_suffix(f".{f}").is_file())
    policy = header.policy
    if policy is None:
        raise LinkError(
            f"{json_path}: header: no expiry policy or target (a bundle from an older"
            " sharebatch); run its manifest again instead"
        )
    source = _Source(
        bundle,
        digest,
        header,
        formats,
        policy.expiry,
        policy.on_short_credentials,
        policy.target,
        header.upload,
    )
    _within_grant(source)
    return source


def _end(source: _Source, row: BundleRow) -> datetime:
    return row_end(source.bundle, row)


def _upload_end(upload: Mapping[str, Any]) -> datetime:
    return parse_iso(str(upload["expires_at"]))


def _params(url: str) -> dict[str, str]:
    """The signed response-* parameters of an old link, as presigner parameters."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    return {
        "Response" + "".join(part.title() for part in name[9:].split("-")): value
        for name, value in query
        if name.startswith("response-")
    }


async def renew_bundles_async(
    paths: Iterable[str | Path],
    *,
    within: timedelta = timedelta(0),
    connection: Connection = Connection(),
    audit_logs: Sequence[str | Path] = (),
) -> RenewReport:
    """Renew each bundle's links that are expired or expire within ``within``.

    Every bundle is read and checked against its run's audit log (``audit_logs``: the logs of
    runs whose bundles were moved out of their run folder), and the credentials checked
    against every due one, before any file is written: bad input is exit 2 and short
    credentials (policy ``fail``) exit 3, with nothing renewed.
    """
    records = _Records()
    for given in audit_logs:
        records.add_given(Path(given))
    sources = [_load(path, records) for path in paths]
    # Every CloudFront key is read before anything is asked or written: a missing one is bad
    # input (exit 2), like a bundle its run did not record.
    keys = _load_keys(
        {
            settings.private_key: str(s.bundle.path)
            for s in sources
            if s.cloudfront and (settings := _settings(s)) is not None
        }
    )
    resigners = [_resigner(s, keys) for s in sources]
    async with S3Gateway(connection) as gateway:
        credentials = await gateway.credentials()
        now = datetime.now(UTC)
        due = [[r for r in s.bundle.rows if _end(s, r) <= now + within] for s in sources]
        for source, resigner, rows in zip(sources, resigners, due, strict=True):
            expiry_at = source.expiry.at
            if resigner is not None and rows and not (expiry_at and expiry_at <= now):
                try:
                    # The run's own window check, as at this moment: before anything is written.
                    resigner.window(now)
                except SigningError as exc:
                    why = str(exc).removeprefix(f"job {source.header.job}: ")
                    raise LinkError(f"{source.bundle.path}: header: {why}") from None
        slots_due = [
            s.slot is not None and any(_upload_end(u) <= now + within for u in s.bundle.uploads)
            for s in sources
        ]
        fixed_end_passed = [
            bool(rows) and s.expiry.at is not None and s.expiry.at <= now
            for s, rows in zip(sources, due, strict=True)
        ]
        check_lifetimes(
            credentials,
            [
                (s.header.job, s.header.recipient, s.expiry, s.policy)
                for s, rows, passed in zip(sources, due, fixed_end_passed, strict=True)
                # A CloudFront link is signed with the key pair: S3's credentials' end is not its.
                if rows and not passed and not s.cloudfront
            ],
            now,
            # Re-issued upload slots are held to the same policy as at the run.
            slots=[
                (
                    s.header.job,
                    s.header.recipient,
                    Expiry(seconds=s.slot.expires_in),
                    s.policy,
                )
                for s, slot_due, passed in zip(sources, slots_due, fixed_end_passed, strict=True)
                if slot_due and not passed and s.slot is not None
            ],
        )
        renewals = []
        for source, resigner, rows, slot_due, passed in zip(
            sources, resigners, due, slots_due, fixed_end_passed, strict=True
        ):
            if not (rows or slot_due) or passed:
                renewals.append(_nothing(source, passed))
                continue
            target = gateway.effective(source.target)
            presign = await gateway.signers.presigner(target, credentials)
            signer: Signer | CloudFrontRouteSigner
            if resigner is None:
                signer = Signer(
                    presign,
                    job=source.header.job,
                    expiry=source.expiry,
                    limit=credential_limit(credentials, source.policy),
                    link_ids=source.link_ids,
                )
            else:
                signer = resigner
            gone = await _check_objects(gateway, target, rows)
            slots = None
            if slot_due and source.slot is not None:
                sign_post = await gateway.signers.post_signer(target, credentials)
                slots = (source.slot, presign, sign_post)
            renewals.append(_renew(source, target, rows, gone, signer, slots, credentials, now))
    return RenewReport(renewals)


renew_bundles = blocking(renew_bundles_async)


def _settings(source: _Source) -> CloudFrontLinks | None:
    """A CloudFront bundle's ``cloudfront`` header settings; None for an S3 bundle."""
    policy = source.header.policy
    return policy.cloudfront if policy is not None and policy.link == "cloudfront" else None


def _load_keys(
    wanted: Mapping[KeySource, str], environ: Mapping[str, str] | None = None
) -> dict[KeySource, PrivateKey]:
    """Each distinct key source loaded once; ``wanted`` names, for each, the bundle whose
    header asks for it. A missing, unreadable, world-readable or wrong key is ``LinkError``
    (exit 2) naming that bundle and the source (a path or a variable: never the key)."""
    keys: dict[KeySource, PrivateKey] = {}
    for source, where in wanted.items():
        try:
            keys[source] = load_private_key(source, environ)
        except KeyProblem as exc:
            named = f"file {source.file}" if source.file is not None else f"env {source.env}"
            raise LinkError(
                f"{where}: header: cloudfront.private_key ({named}): {exc}; renew signs with"
                " the key the run used"
            ) from None
    return keys


def _resigner(
    source: _Source, keys: Mapping[KeySource, PrivateKey]
) -> CloudFrontRouteSigner | None:
    """A CloudFront bundle's signer: the run's, made from the vouched header, before
    anything is asked; a domain, key pair id or key the signer cannot use (a header no
    sharebatch run writes) is ``LinkError``."""
    settings = _settings(source)
    policy = source.header.policy
    if settings is None or policy is None:
        return None
    try:
        return CloudFrontRouteSigner(
            CloudFrontSigner(
                domain=settings.domain,
                key_pair_id=settings.key_pair_id,
                key=keys[settings.private_key],
                hash=settings.hash,
            ),
            job=source.header.job,
            expiry=source.expiry,
            settings=settings,
            allow_ips=policy.allow_ips,
            download_name=policy.download_name or "{basename}",
            content_type=policy.content_type,
            link_ids=source.link_ids,
        )
    except (ValueError, TypeError, SigningError) as exc:
        # The signer's messages name the setting, never the key.
        why = str(exc).removeprefix(f"job {source.header.job}: ")
        raise LinkError(f"{source.bundle.path}: header: cloudfront: {why}") from None


async def _check_objects(
    gateway: S3Gateway, target: BucketTarget, rows: list[BundleRow]
) -> dict[int, tuple[str, str]]:
    """HEAD each due row's object: (outcome, detail) by row line for each that is not as
    the bundle says (deleted, changed, or not answered)."""
    slots = asyncio.Semaphore(_HEADS_IN_FLIGHT)

    async def one(row: BundleRow) -> tuple[str, str]:
        async with slots:
            return judge(row, await gateway.head_object(target, row.key))

    found = await asyncio.gather(*(one(row) for row in rows))
    return {
        row.line: verdict for row, verdict in zip(rows, found, strict=True) if verdict[0] != "ok"
    }


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
    if run_dir.name == source.header.run_id and _regular(run_dir / "audit.jsonl"):
        return run_dir / "audit.jsonl"
    return folder / f"{stem}.audit.jsonl"


def _renew(
    source: _Source,
    target: BucketTarget,
    due_rows: list[BundleRow],
    gone: Mapping[int, tuple[str, str]],
    signer: Signer | CloudFrontRouteSigner,
    slots: tuple[UploadSlot, Presigner, PostSigner] | None,
    credentials: Credentials,
    now: datetime,
) -> Renewal:
    old = source.bundle
    folder = old.path.parent
    base = old.path.stem.split(".renewed-")[0]  # a renewal of a renewal is not nested
    # Milliseconds keep successive renewals in name order (the newest sorts last).
    stamp = f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z"
    stem = f"{base}.renewed-{stamp}-{secrets.token_hex(2)}"
    due = {r.line for r in due_rows} - gone.keys()
    job, recipient = source.header.job, source.header.recipient
    not_renewed = tuple(
        NotRenewed(r.line, r.recipient, r.bucket, r.key, *gone[r.line])
        for r in due_rows
        if r.line in gone
    )
    uploads = [dict(u) for u in old.uploads]
    staging = private_dir(folder / f".{stem}.staging")
    part = PartFile(staging / "rows.jsonl", csv="csv" in source.formats)
    written = []
    expires_at = None
    try:
        with audit_file(_audit_path(source, stem)):
            log.info("renew_started", source=str(old.path), sha256=source.digest, due=len(due))
            for item in not_renewed:
                log.warning(
                    "link_not_renewed",
                    job=job,
                    source=str(old.path),
                    **{k: v for k, v in asdict(item).items() if k != "line"},
                )
            if slots is not None:
                slot, presign, sign_post = slots
                issued = issue_slot(
                    job,
                    recipient,
                    target.bucket,
                    slot,
                    presign,
                    sign_post,
                    limit=credential_limit(credentials, source.policy),
                    ids=source.link_ids,
                    replaces={
                        slot_key(u["method"], u["key"], u["content_type"]): u.get("link_id")
                        for u in old.uploads
                    },
                )
                uploads = [upload_row(u) for u in issued]
            if due or slots is not None:
                for row in old.rows:
                    part.write([_renewed(row, job, signer) if row.line in due else _link(row, job)])
                part.close()
                header = _header(source, part, signer, credentials, len(due), len(uploads), now)
                expires_at = header.expires_at
                written = write_bundle(
                    folder,
                    header,
                    [part],
                    source.formats,
                    stem,
                    replace=False,
                    uploads=uploads,
                    uploads_name=f"uploads.{stem.partition('.')[2] or stem}.csv",
                )
                log.info(
                    "bundle_renewed",
                    job=job,
                    recipient=recipient,
                    source=str(old.path),
                    source_sha256=source.digest,
                    written=[str(w.path) for w in written],
                    sha256=[w.sha256 for w in written],
                    renewed=len(due),
                    kept=len(old.rows) - len(due),
                    not_renewed=len(not_renewed),
                    uploads_renewed=len(uploads) if slots else 0,
                    # Not the header's when --endpoint-url or --region said otherwise.
                    endpoint_url=target.endpoint_url,
                    region=target.region,
                )
    finally:
        part.close()
        shutil.rmtree(staging, ignore_errors=True)
    return Renewal(
        str(old.path),
        tuple(str(w.path) for w in written),
        len(due),
        len(old.rows) - len(due),
        expires_at,
        not_renewed=not_renewed,
        uploads_renewed=len(uploads) if slots else 0,
    )


def _renewed(row: BundleRow, job: str, signer: Signer | CloudFrontRouteSigner) -> Link:
    old = _link(row, job)
    if isinstance(signer, CloudFrontRouteSigner):
        try:
            # What the run signs for the object now: its download name, content type, id.
            (renewed,) = signer.sign_get(row.recipient, [old.obj])
        except ValueError as exc:  # an IP range or key CloudFront's policy cannot hold
            raise SigningError(f"job {job}: cannot re-sign {visible(row.key)}: {exc}") from None
        kind = {"kind": "cloudfront"}
    else:
        renewed = signer.sign_one(row.recipient, old.obj, _params(row.url))
        kind = {}  # absent: an S3 link, as every event before CloudFront links
    log.info(
        "link_renewed",
        job=job,
        recipient=row.recipient,
        bucket=row.bucket,
        key=row.key,
        old_url_sha256=url_digest(row.url),
        old_link_id=row.link_id,
        old_expires_at=iso(row.expires_at),
        url_sha256=url_digest(renewed.url),
        link_id=renewed.link_id,
        expires_at=iso(renewed.expires_at),
        **kind,
    )
    return renewed


def _link(row: BundleRow, job: str) -> Link:
    return Link(
        job=job,
        recipient=row.recipient,
        obj=ObjectRef(row.bucket, row.key, row.size, row.etag, row.last_modified),
        method=row.method,
        signed_at=row.expires_at,  # not written to a bundle row; the URL holds the real one
        expires_at=row.expires_at,
        url=row.url,
        link_id=row.link_id,
    )


def _header(
    source: _Source,
    part: PartFile,
    signer: Signer | CloudFrontRouteSigner,
    credentials: Credentials,
    renewed: int,
    uploads: int,
    now: datetime,
) -> BundleHeader:
    """The source's header with what this renewal changed (``_RENEWAL_FIELDS``)."""
    old = source.header
    policy = old.policy
    assert policy is not None  # _load refuses a source without one
    return replace(
        old,
        generated_at=iso(now),
        signer_access_key_id=credentials.access_key_id,
        expires_at=iso(part.earliest_expiry) if part.earliest_expiry else None,
        links=part.rows,
        policy=replace(
            policy,
            credentials=signed_by(credentials),
            clamped_to=iso(signer.clamped_to) if signer.clamped_to else policy.clamped_to,
        ),
        # The count stays true: a renewal carries the slots it re-issued or kept.
        uploads=uploads if old.uploads is not None else None,
        renewed_from=RenewedFrom(
            path=str(source.bundle.path),
            sha256=source.digest,
            run_id=old.run_id,
            generated_at=old.generated_at,
        ),
        renewed=renewed,
        # The page lists the old links and dies with them; a refreshed page gets its own.
        page_url=None,
        page_link_id=None,
        page_expires_at=None,
    )
