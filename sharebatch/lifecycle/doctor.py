"""Preflight checks before a scheduled run: ``sharebatch doctor``.

Each check answers one question an ops engineer asks before trusting cron with a manifest, as
one ``Check`` (OK, WARN or FAIL): whose credentials these are and when they die; whether the
local clock agrees with S3 (presigned URLs carry the signer's time); for each bucket its
region, Block Public Access, default encryption, server access logging (where the logs go:
``sharebatch usage`` reads receipts from them, so no job may share that place and no upload
slot may write there), which guardrails of ``sharebatch policy`` its live bucket policy holds
(judged by meaning: missing WARN, an age limit that would cut the manifest's links FAIL),
whether each prefix may be listed and, with
``delivery: page``, whether recipient pages may be written under ``pages_prefix``; and whether
the manifest's link lifetimes fit the SigV4 limit and the credentials' own lifetime (CloudFront
links: their ``max_expires_in``; they do not depend on the credentials); and, for slots with
``upload.scan``, whether clamd answers PING and VERSION (and how old its signatures are), and
whether the role may read and write the slots' object tags and write the quarantine.

For ``link: cloudfront`` grants (issue 16) each distinct ``cloudfront:`` setting gets one
``cloudfront`` check: the private key loads (``cloudfront/keys``: a file group or others may
read is refused, as at the run), it can sign with the setting's hash (an ECDSA key signs with
SHA-256 only: the AWS CLI's ``cloudfront sign`` always uses SHA-256 for ECDSA,
https://docs.aws.amazon.com/cli/latest/reference/cloudfront/sign.html), and SHA-1 is a WARN,
since AWS added SHA-256 signing and recommends it. The key's source is named (a path and its
mode, or a variable), never its material. Those links are held to ``max_expires_in`` instead
of SigV4's 7 days and the credentials' lifetime, which do not bind them.

Every request goes through ``s3.S3Gateway``, which answers instead of raising, so one refused
call never hides the others. Nothing is listed beyond one key per prefix, nothing is signed,
and nothing is written where S3 checks a request's Content-MD5 (the pages probe's is wrong).
An invalid manifest raises ``ManifestError`` (exit 2), as everywhere else.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from sharebatch.blocking import blocking
from sharebatch.cloudfront.keys import KeyProblem, key_algorithm, load_private_key
from sharebatch.errors import CredentialsError, UsageError
from sharebatch.guardrails.document import parse_policy
from sharebatch.guardrails.live import State, findings
from sharebatch.guardrails.policy import Intent, buckets, intent
from sharebatch.manifest.load import Grant, Manifest, load_manifest
from sharebatch.models import (
    MAX_EXPIRES_IN,
    Answer,
    BucketTarget,
    CloudFrontLinks,
    Connection,
    Credentials,
    UploadSlot,
)
from sharebatch.run.plan import build_plan
from sharebatch.s3.gateway import S3Gateway
from sharebatch.scanning.clamd import Clamd, ClamdError
from sharebatch.times import iso

Status = Literal["OK", "WARN", "FAIL"]
_RANK: dict[Status, int] = {"OK": 0, "WARN": 1, "FAIL": 2}

# Beyond one minute of skew, link lifetimes visibly shift; beyond 15 minutes S3 refuses the
# run's own signed requests (RequestTimeTooSkewed).
SKEW_WARN_SECONDS = 60
SKEW_FAIL_SECONDS = 900

_REJECTED = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "NoCredentialsError",
        "PartialCredentialsError",
    }
)
_ROLE_METHODS = frozenset(
    {"assume-role", "assume-role-with-web-identity", "container-role", "iam-role"}
)
_BPA = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_PROBES = 16  # one-key listings in flight at once


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the preflight: ``name`` is the kind of check, ``subject`` what it is about."""

    status: Status
    name: str
    subject: str
    message: str


@dataclass(frozen=True)
class Diagnosis:
    """Every check, in the order they ran; the run is safe to schedule when none FAILed."""

    manifest: str | None
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default="OK")

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "FAIL" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "manifest": self.manifest,
            "checks": [asdict(c) for c in self.checks],
        }


def credential_kind(credentials: Credentials, arn: str | None) -> str:
    """``long-term key``, ``session``, ``SSO`` or ``role``, from the provider and the ARN."""
    if credentials.method == "sso" or (arn and ":assumed-role/AWSReservedSSO_" in arn):
        return "SSO"
    if credentials.method in _ROLE_METHODS or (arn and ":assumed-role/" in arn):
        return "role"
    return "session" if credentials.session_token else "long-term key"


async def diagnose_async(
    manifest_path: str | Path | Manifest | None = None,
    *,
    as_of: date | None = None,
    connection: Connection = Connection(),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Diagnosis:
    """Run every preflight check; raises ``ManifestError`` for an invalid manifest.

    ``manifest_path`` may also be a ``Manifest`` already loaded (then ``as_of`` is its own).
    """
    now = clock()
    manifest: Manifest | None
    shown: str | None
    if isinstance(manifest_path, Manifest):
        manifest, shown = manifest_path, manifest_path.path
    else:
        manifest = load_manifest(manifest_path, as_of=as_of, now=now) if manifest_path else None
        shown = str(manifest_path) if manifest_path else None
    try:
        gateway = S3Gateway(connection)
    except CredentialsError as exc:  # an unknown profile: nothing else can be asked
        return Diagnosis(shown, (Check("FAIL", "credentials", "", str(exc)),))
    checks: list[Check] = []
    async with gateway:
        prefixes = _prefixes(gateway, manifest)
        ask_sts = _sts_may_see_credentials(gateway, list(prefixes) or [_blank(gateway)])
        credentials, check = await _credentials(gateway, now, ask_sts)
        checks.append(check)
        pages = _pages_prefixes(gateway, manifest)
        reach = _reach(gateway, manifest)
        intents = {b: intent(manifest, b, now=now) for b in buckets(manifest)} if manifest else {}
        checks += await _buckets(
            gateway, prefixes, pages, reach, intents, credentials is not None, clock
        )
        if manifest is not None:
            checks += _lifetimes(manifest, credentials, now)
            checks += cloudfront_checks(manifest, now)
            checks += await _scanning(gateway, manifest, credentials is not None, now)
    return Diagnosis(shown, tuple(checks))


diagnose = blocking(diagnose_async)


def _sts_may_see_credentials(gateway: S3Gateway, targets: list[BucketTarget]) -> bool:
    """Whether asking STS sends the credentials nowhere the run would not send them.

    An STS endpoint of the configuration's own may be asked. AWS's STS may be asked when some
    bucket is at AWS (the credentials are AWS's, and go there anyway); not for a store that
    only S3-compatible endpoints serve: its credentials are no business of AWS's.
    """
    if gateway.preflight.configured_endpoint("sts") is not None:
        return True
    at_aws = any(target.endpoint_url is None for target in targets)
    return at_aws and gateway.preflight.configured_endpoint("s3") is None


async def _credentials(
    gateway: S3Gateway, now: datetime, ask_sts: bool
) -> tuple[Credentials | None, Check]:
    try:
        credentials = await gateway.credentials()
    except CredentialsError as exc:
        return None, Check("FAIL", "credentials", "", str(exc))
    who = await gateway.preflight.caller_identity() if ask_sts else None
    arn = who.facts.get("arn") if who else None
    kind = credential_kind(credentials, str(arn) if arn else None)
    source = f"{kind} from {credentials.method}"
    if credentials.expiry is None:
        life = "expiry unknown" if credentials.session_token else "no expiry"
    else:
        left = _duration((credentials.expiry - now).total_seconds())
        life = f"expires {iso(credentials.expiry)} (in {left})"
    status: Status = "OK"
    if who is None:
        status, text = (
            "WARN",
            (
                "identity not asked: S3 is not AWS and no STS endpoint is configured"
                " (AWS_ENDPOINT_URL_STS, or sts endpoint_url in the profile's services), so AWS's"
                f" STS would receive this store's credentials; {source}"
            ),
        )
    elif who.error in _REJECTED:
        status, text = "FAIL", f"STS rejected the credentials ({who.error}); {source}"
    elif who.error:
        # S3-compatible stores have no STS; the credentials may still be good for S3.
        status, text = "WARN", f"cannot ask STS who they are ({who.error}: {who.message}); {source}"
    else:
        text = f"{arn}: {source}"
    if credentials.expiry is not None and credentials.expiry <= now:
        status, life = "FAIL", f"expired at {iso(credentials.expiry)}"
    elif credentials.session_token and credentials.expiry is None and status == "OK":
        status = "WARN"  # links die with the session, and nobody can say when
    return credentials, Check(status, "credentials", "", f"{text}, {life}")


def _prefixes(gateway: S3Gateway, manifest: Manifest | None) -> dict[BucketTarget, list[str]]:
    """The manifest's prefixes by effective target, in manifest order."""
    prefixes: dict[BucketTarget, list[str]] = {}
    if manifest is not None:
        for task in build_plan(manifest).tasks:
            prefixes.setdefault(gateway.effective(task.target), []).append(task.prefix)
    return prefixes


def _pages_prefixes(gateway: S3Gateway, manifest: Manifest | None) -> dict[BucketTarget, list[str]]:
    """Where recipient pages go (``delivery: page``), by effective target, in manifest order."""
    pages: dict[BucketTarget, list[str]] = {}
    if manifest is not None:
        for route in build_plan(manifest).routes:
            settings = route.grant.notify
            if settings is None or settings.delivery != "page":
                continue
            wanted = pages.setdefault(gateway.effective(route.target), [])
            if settings.pages_prefix not in wanted:
                wanted.append(settings.pages_prefix)
    return pages


def _blank(gateway: S3Gateway) -> BucketTarget:
    """The endpoint asked without a manifest: the command line's, else the AWS chain's."""
    return gateway.effective(BucketTarget("", gateway.default_region, None))


async def _buckets(
    gateway: S3Gateway,
    prefixes: dict[BucketTarget, list[str]],
    pages: dict[BucketTarget, list[str]],
    reach: dict[str | None, dict[str, _Reach]],
    intents: dict[str, Intent],
    signed: bool,
    clock: Callable[[], datetime],
) -> list[Check]:
    """Clock skew once per endpoint, then every bucket's own checks, in manifest order."""
    checks: list[Check] = []
    if not prefixes:
        blank = _blank(gateway)
        before = clock()
        answer = await gateway.preflight.endpoint_probe(blank)
        return [_skew(answer, before, clock(), _where(blank, gateway))]
    clocked: set[str] = set()
    for target, wanted in prefixes.items():
        before = clock()
        answer = await gateway.preflight.endpoint_probe(target)
        where = _where(target, gateway)
        if where not in clocked:
            clocked.add(where)
            checks.append(_skew(answer, before, clock(), where))
        region_check, actual = _region(target, answer, gateway.default_region)
        checks.append(region_check)
        if not signed or actual is None:
            continue  # without credentials or a bucket, every signed call would fail the same
        located = BucketTarget(target.bucket, actual, target.endpoint_url, target.addressing_style)
        checks.append(
            _public_access(target.bucket, await gateway.preflight.public_access_block(located))
        )
        checks.append(
            _encryption(target.bucket, await gateway.preflight.default_encryption(located))
        )
        logging = await gateway.preflight.bucket_logging(located)
        # S3 logs only into a bucket of the same account and region, so of the same endpoint.
        same_store = reach.get(target.endpoint_url, {})
        checks.append(_logging(target.bucket, logging, same_store))
        intended = intents.get(target.bucket)
        if intended is not None:
            checks += _guardrails(intended, await gateway.preflight.bucket_policy(located))
        checks += await _listing(gateway, located, wanted)
        for prefix in pages.get(target, []):
            checks.append(await _page_writing(gateway, located, prefix))
    return checks


def _where(target: BucketTarget, gateway: S3Gateway) -> str:
    region = target.region or gateway.default_region or "us-east-1"
    return target.endpoint_url or f"https://s3.{region}.amazonaws.com"


def _skew(answer: Answer, before: datetime, after: datetime, where: str) -> Check:
    if answer.date is None:
        problem = f"{answer.error}: {answer.message}" if answer.error else "no Date header"
        return Check("FAIL", "clock", where, f"cannot read S3's time ({problem})")
    # The Date header counts whole seconds: the server's clock is somewhere in [date, date+1).
    local = before + (after - before) / 2
    skew = (answer.date - local).total_seconds() + 0.5
    side = "behind" if skew > 0 else "ahead of"
    text = f"local clock is {_duration(abs(skew))} {side} S3" if round(skew) else "no skew"
    if abs(skew) > SKEW_FAIL_SECONDS:
        return Check("FAIL", "clock", where, f"{text}: S3 refuses requests signed 15 min off")
    if abs(skew) > SKEW_WARN_SECONDS:
        return Check("WARN", "clock", where, f"{text}: links live shorter or start late; use NTP")
    return Check("OK", "clock", where, f"{text} (within {SKEW_WARN_SECONDS}s of S3's Date)")


def _region(target: BucketTarget, answer: Answer, default: str | None) -> tuple[Check, str | None]:
    actual = answer.facts.get("region")
    configured = target.region or default
    if answer.error in ("404", "NoSuchBucket", "NotFound"):
        return Check("FAIL", "region", target.bucket, "the bucket does not exist"), None
    if not isinstance(actual, str):
        detail = f" ({answer.error}: {answer.message})" if answer.error else ""
        if configured:
            text = f"S3 did not tell the bucket's region{detail}; using {configured}"
            return Check("WARN", "region", target.bucket, text), configured
        text = f"S3 did not tell the bucket's region{detail}, and none is configured"
        return Check("FAIL", "region", target.bucket, text), None
    if configured is None:
        return Check("OK", "region", target.bucket, f"{actual} (asked of S3)"), actual
    if configured != actual:
        text = f"in {actual} but configured {configured}: links signed for {configured} fail"
        return Check("FAIL", "region", target.bucket, text), actual
    return Check("OK", "region", target.bucket, f"{actual}, as configured"), actual


def _public_access(bucket: str, answer: Answer) -> Check:
    if answer.error == "NoSuchPublicAccessBlockConfiguration":
        text = "Block Public Access is not configured on the bucket (account-wide not checked)"
        return Check("WARN", "public-access", bucket, text)
    if answer.error:
        text = f"cannot read Block Public Access ({answer.error})"
        return Check("WARN", "public-access", bucket, text)
    off = [name for name in _BPA if answer.facts.get(name) is not True]
    if off:
        text = f"Block Public Access is not fully on: {', '.join(off)} off"
        return Check("WARN", "public-access", bucket, text)
    return Check("OK", "public-access", bucket, "Block Public Access fully on (all 4 settings)")


def _encryption(bucket: str, answer: Answer) -> Check:
    if answer.error == "ServerSideEncryptionConfigurationNotFoundError":
        return Check("WARN", "encryption", bucket, "no default encryption configured")
    if answer.error:
        text = f"cannot read default encryption ({answer.error})"
        return Check("WARN", "encryption", bucket, text)
    algorithm = answer.facts.get("algorithm")
    if algorithm == "AES256":
        return Check("OK", "encryption", bucket, "default encryption SSE-S3 (AES256)")
    key = answer.facts.get("kms_key") or "the AWS managed key"
    # An SSE-KMS object downloads through a presigned URL only if the signer may decrypt it.
    text = f"default encryption {algorithm} with {key}: the signer needs kms:Decrypt on it"
    return Check("OK", "encryption", bucket, text)


@dataclass(frozen=True, slots=True)
class _Reach:
    """What recipients reach in one bucket: (prefix, job) shared for download, and each
    grant's upload slot, in manifest order."""

    shared: tuple[tuple[str, str], ...]
    slots: tuple[tuple[Grant, UploadSlot], ...]


def _reach(gateway: S3Gateway, manifest: Manifest | None) -> dict[str | None, dict[str, _Reach]]:
    """By endpoint, then bucket (names are unique within an endpoint, not across): every
    job's shared prefixes and upload slots."""
    shared: dict[str | None, dict[str, list[tuple[str, str]]]] = {}
    slots: dict[str | None, dict[str, list[tuple[Grant, UploadSlot]]]] = {}
    if manifest is not None:
        for route in build_plan(manifest).routes:
            target = gateway.effective(route.target)
            store = target.endpoint_url
            found = shared.setdefault(store, {}).setdefault(target.bucket, [])
            found += [(p, route.job) for p in route.prefixes if (p, route.job) not in found]
            if route.grant.upload is not None:
                slot = (route.grant, route.grant.upload)
                slots.setdefault(store, {}).setdefault(target.bucket, []).append(slot)
    return {
        store: {
            bucket: _Reach(tuple(pairs), tuple(slots.get(store, {}).get(bucket, [])))
            for bucket, pairs in buckets.items()
        }
        for store, buckets in shared.items()
    }


def _exposures(logs: str, reach: _Reach) -> list[str]:
    """Why logs under the prefix ``logs`` would reach recipients, or be forged by them.

    Log keys all start with ``logs``, and ``sharebatch usage`` reads every key under it: a
    prefix overlapping a shared one hands the logs (every recipient's addresses and link
    ids) to that job's recipients, or makes usage read shared files as logs; one overlapping
    an upload folder lets a recipient write what usage reads, or puts the logs among the
    recipient's uploads.
    """
    found: list[str] = []
    for prefix, job in reach.shared:
        if logs.startswith(prefix):
            found.append(
                f"inside the prefix {prefix} that job {job} shares: its runs would hand"
                " recipients the logs (every recipient's addresses and link ids)"
            )
        elif prefix.startswith(logs):
            found.append(
                f"over the prefix {prefix} that job {job} shares: sharebatch usage would"
                " read the shared files as logs, and receipts and shares would mix"
            )
    for grant, slot in reach.slots:
        if not (logs.startswith(slot.prefix) or slot.prefix.startswith(logs)):
            continue
        who = grant.recipient.id
        folder = f"the upload folder {slot.prefix} of recipient {who} (job {grant.job})"
        side = "inside" if logs.startswith(slot.prefix) else "over"
        if not slot.keys:
            found.append(
                f"{side} {folder}, whose upload form takes any file name: {who} could upload"
                " fake log files that sharebatch usage would count as receipts"
            )
            continue
        among = [slot.prefix + key for key in slot.keys if (slot.prefix + key).startswith(logs)]
        if among:
            found.append(
                f"{side} {folder}, whose upload URL writes {among[0]} among the logs:"
                f" sharebatch usage would read {who}'s file as log records (forged receipts)"
            )
        else:
            found.append(
                f"inside {folder}: sharebatch inbox would list the logs as {who}'s uploads,"
                " and whoever collects them would take every recipient's addresses and link"
                " ids along"
            )
    return found


def _logging(bucket: str, answer: Answer, reach: dict[str, _Reach]) -> Check:
    """Server access logging: receipts (``sharebatch usage``) read the logs it writes.

    ``reach`` is what recipients reach in each bucket of the logged bucket's store: logs
    meeting a shared prefix or an upload folder there FAIL, logs elsewhere in it WARN.
    """
    if answer.error == "AccessDenied":
        text = (
            "cannot read server access logging (AccessDenied): the role needs"
            " s3:GetBucketLogging for this check; receipts need logging on"
        )
        return Check("WARN", "logging", bucket, text)
    if answer.error:
        text = f"cannot read server access logging ({answer.error}: {answer.message})"
        return Check("WARN", "logging", bucket, text)
    if not answer.facts.get("enabled"):
        status = json.dumps(
            {"LoggingEnabled": {"TargetBucket": "LOGS-BUCKET", "TargetPrefix": f"{bucket}/"}},
            separators=(",", ":"),
        )
        text = (
            "server access logging is off: receipts (sharebatch usage) are impossible for"
            " this bucket's links; turn it on: aws s3api put-bucket-logging --bucket"
            f" {shlex.quote(bucket)} --bucket-logging-status {shlex.quote(status)}"
        )
        return Check("WARN", "logging", bucket, text)
    target = str(answer.facts.get("target_bucket") or "")
    prefix = str(answer.facts.get("target_prefix") or "")
    where = f"s3://{target}/{prefix}"
    there = reach.get(target)
    if there is not None:
        exposures = _exposures(prefix, there)
        if exposures:
            more = f" (and {len(exposures) - 1} more such)" if len(exposures) > 1 else ""
            text = f"server access logs go to {where}, {exposures[0]}{more}; log elsewhere"
            return Check("FAIL", "logging", bucket, text)
    if target == bucket:
        text = (
            f"server access logs go to {where}, into the bucket they log: each delivery"
            " of logs is logged again; AWS advises a separate bucket"
        )
        return Check("WARN", "logging", bucket, text)
    if there is not None:
        jobs = list(dict.fromkeys(job for _, job in there.shared))
        named = f"{'job' if len(jobs) == 1 else 'jobs'} {', '.join(jobs)}"
        text = (
            f"server access logs go to {where}, into a bucket the manifest shares ({named}),"
            " apart from its shared prefixes and upload folders: one prefix added there"
            " later would expose them; AWS advises a bucket of their own"
        )
        return Check("WARN", "logging", bucket, text)
    partitioned = ", partitioned by date" if answer.facts.get("key_format") == "partitioned" else ""
    text = (
        f"server access logs go to {where}{partitioned} (best effort, within hours);"
        f" receipts: sharebatch usage OUT/<run-id> --access-logs {where}"
    )
    return Check("OK", "logging", bucket, text)


_GUARD_STATUS: dict[State, Status] = {
    "present": "OK",
    "missing": "WARN",
    "weaker": "WARN",
    "unenforceable": "WARN",
    # A limit below the manifest's lifetimes refuses links before they end: the run's own
    # links would break, as with credentials that die first.
    "too-strict": "FAIL",
}


def _guardrails(wanted: Intent, answer: Answer) -> list[Check]:
    """Which guardrails of ``sharebatch policy`` the live bucket policy holds, by meaning."""
    bucket = wanted.bucket
    if answer.error:
        text = f"cannot read the bucket policy ({answer.error}: {answer.message}); not checked"
        return [Check("WARN", "guardrails", bucket, text)]
    found = answer.facts.get("policy")
    try:
        live = (
            parse_policy(found, f"the bucket policy of {bucket}")
            if isinstance(found, str)
            else None
        )
    except UsageError as exc:
        return [Check("WARN", "guardrails", bucket, str(exc))]
    checks = []
    hinted = False
    for finding in findings(live, wanted):
        status = _GUARD_STATUS[finding.state]
        message = finding.text
        if status != "OK" and not hinted:
            hinted = True
            message += (
                f"; sharebatch policy MANIFEST --bucket {shlex.quote(bucket)} prints the statements"
            )
        checks.append(Check(status, "guardrails", bucket, message))
    return checks


async def _listing(gateway: S3Gateway, target: BucketTarget, prefixes: list[str]) -> list[Check]:
    limit = asyncio.Semaphore(_PROBES)

    async def probe(prefix: str) -> Check:
        async with limit:
            answer = await gateway.preflight.first_key(target, prefix)
        subject = f"{target.bucket}/{prefix}"
        if answer.error:
            text = f"listing refused ({answer.error}: {answer.message})"
            return Check("FAIL", "listing", subject, text)
        if answer.facts.get("empty"):
            return Check("WARN", "listing", subject, "listing allowed, but nothing is there yet")
        return Check("OK", "listing", subject, "listing allowed")

    return list(await asyncio.gather(*(probe(p) for p in prefixes)))


PROBE_NAME = ".sharebatch-doctor-probe"
"""The key (under each ``pages_prefix``) that the pages probe asks to write."""


async def _page_writing(gateway: S3Gateway, target: BucketTarget, prefix: str) -> Check:
    """May the credentials write recipient pages under ``prefix`` (``s3:PutObject``)?"""
    answer = await gateway.preflight.put_probe(target, prefix + PROBE_NAME)
    subject = f"{target.bucket}/{prefix}"
    if answer.error in ("BadDigest", "InvalidDigest"):
        # S3 judged permission first, then refused the body: allowed, and nothing stored.
        return Check("OK", "pages", subject, "writing recipient pages allowed (s3:PutObject)")
    if answer.error is None:
        text = (
            "writing recipient pages allowed (s3:PutObject); this store does not check "
            f"Content-MD5, so the empty probe {PROBE_NAME} was stored there"
        )
        return Check("OK", "pages", subject, text)
    text = (
        f"writing recipient pages refused ({answer.error}: {answer.message}); the role needs "
        f"s3:PutObject on {target.bucket}/{prefix}*"
    )
    return Check("FAIL", "pages", subject, text)


def _lifetimes(manifest: Manifest, credentials: Credentials | None, now: datetime) -> list[Check]:
    """Per job: the longest link, then the longest upload slot, against the SigV4 limit and
    against the credentials' expiry.

    A ``link: cloudfront`` link is signed with the distribution's key, not the credentials:
    it is held to its own ``max_expires_in`` only. What such a grant still signs with the
    credentials, its recipient page (a SigV4 link the run caps at 7 days) and its upload
    slots, is checked like any presigned link.
    """

    def seconds_left(grant: Grant) -> int:
        at = grant.expiry.at
        return grant.expiry.seconds or int(((at or now) - now).total_seconds())

    def link_seconds(grant: Grant) -> int | None:
        return seconds_left(grant) if grant.link == "s3" else None

    def page_seconds(grant: Grant) -> int | None:
        paged = grant.notify is not None and grant.notify.delivery == "page"
        if grant.link != "cloudfront" or not paged:
            return None
        return min(seconds_left(grant), MAX_EXPIRES_IN)

    def slot_seconds(grant: Grant) -> int | None:
        return grant.upload.expires_in if grant.upload else None

    expiry = credentials.expiry if credentials else None
    return [
        *_lifetime_checks("expiry", "links", _longest(manifest, link_seconds), expiry, now),
        *_cloudfront_lifetimes(manifest, seconds_left),
        *_lifetime_checks(
            "expiry", "recipient pages", _longest(manifest, page_seconds), expiry, now
        ),
        *_lifetime_checks("uploads", "upload slots", _longest(manifest, slot_seconds), expiry, now),
    ]


def _cloudfront_lifetimes(manifest: Manifest, seconds_of: Callable[[Grant], int]) -> list[Check]:
    """Per job with CloudFront links: the longest against the ``max_expires_in`` of its grant.
    The loader refuses more as of its own clock; a manifest handed in already loaded may
    have been loaded for an earlier moment, so an ``expires_at`` is counted again here."""
    checks = []
    for job in manifest.jobs:
        found = [
            (seconds_of(g), g.cloudfront.max_expires_in)
            for g in job.grants
            if g.link == "cloudfront" and g.cloudfront is not None
        ]
        if not found:
            continue
        over = [(seconds, cap) for seconds, cap in found if seconds > cap]
        seconds, cap = max(over or found)
        text = f"CloudFront links live up to {_duration(seconds)}"
        if over:
            text += f", beyond their max_expires_in of {_duration(cap)}"
            checks.append(Check("FAIL", "expiry", job.name, text))
            continue
        text += (
            f", within their max_expires_in of {_duration(cap)}; signed with the"
            " distribution's key, so the credentials' expiry does not end them"
        )
        checks.append(Check("OK", "expiry", job.name, text))
    return checks


def _longest(
    manifest: Manifest, seconds_of: Callable[[Grant], int | None]
) -> dict[str, tuple[int, str]]:
    """Per job with any: the longest lifetime and the strictest on_short_credentials."""
    longest: dict[str, tuple[int, str]] = {}
    for job in manifest.jobs:
        for grant in job.grants:
            seconds = seconds_of(grant)
            if seconds is None:
                continue
            policy: str = grant.on_short_credentials
            found = longest.get(job.name, (0, "warn"))
            # The strictest policy among the recipients decides what the run will do.
            strictest = "fail" if "fail" in (policy, found[1]) else policy
            longest[job.name] = (max(found[0], seconds), strictest)
    return longest


def _lifetime_checks(
    name: str,
    what: str,
    longest: dict[str, tuple[int, str]],
    expiry: datetime | None,
    now: datetime,
) -> list[Check]:
    limit = _duration(MAX_EXPIRES_IN)
    checks = []
    for job, (seconds, policy) in longest.items():
        if seconds > MAX_EXPIRES_IN:
            text = f"{what} live up to {_duration(seconds)}, beyond the SigV4 limit of {limit}"
            checks.append(Check("FAIL", name, job, text))
            continue
        text = f"{what} live up to {_duration(seconds)}, within the SigV4 limit of {limit}"
        if expiry is None or (expiry - now).total_seconds() >= seconds:
            checks.append(Check("OK", name, job, text))
            continue
        text += f", but the credentials expire at {iso(expiry)}"
        if policy == "fail":
            text += ": the run will refuse (on_short_credentials: fail)"
        else:
            text += f": {what} end with them (on_short_credentials: {policy})"
        checks.append(Check("FAIL" if policy == "fail" else "WARN", name, job, text))
    return checks


def cloudfront_checks(
    manifest: Manifest, now: datetime, environ: dict[str, str] | None = None
) -> list[Check]:
    """One ``cloudfront`` check per distinct ``cloudfront:`` setting, in manifest order."""
    settings: dict[CloudFrontLinks, list[Grant]] = {}
    for job in manifest.jobs:
        for grant in job.grants:
            if grant.link == "cloudfront" and grant.cloudfront is not None:
                settings.setdefault(grant.cloudfront, []).append(grant)
    return [_cloudfront_key(found, grants, now, environ) for found, grants in settings.items()]


def _cloudfront_key(
    settings: CloudFrontLinks, grants: list[Grant], now: datetime, environ: dict[str, str] | None
) -> Check:
    subject = f"{settings.domain} {settings.key_pair_id}"
    source = settings.private_key
    try:
        key = load_private_key(source, environ)
        algorithm = key_algorithm(key)
    except KeyProblem as exc:
        return Check("FAIL", "cloudfront", subject, f"{exc}; no link can be signed with it")
    where = f"env {source.env}" if source.file is None else f"{source.file}{_mode(source.file)}"
    if algorithm == "rsa":
        kind = f"RSA {getattr(key, 'key_size', '?')}-bit key"
    else:
        kind = "ECDSA P-256 key"
    longest = max(_grant_seconds(g, now) for g in grants)
    lives = (
        f"links live up to {_duration(longest)}, within max_expires_in"
        f" {_duration(settings.max_expires_in)}"
    )
    if algorithm == "ecdsa-p256" and settings.hash == "sha1":
        text = (
            f"{kind} from {where} with hash: sha1: ECDSA keys sign CloudFront links with"
            " SHA-256 only; set hash: sha256"
        )
        return Check("FAIL", "cloudfront", subject, text)
    if settings.hash == "sha1":
        text = (
            f"{kind} from {where} signs with SHA-1: AWS recommends SHA-256 (hash: sha256,"
            f" the default); {lives}"
        )
        return Check("WARN", "cloudfront", subject, text)
    return Check("OK", "cloudfront", subject, f"{kind} from {where} signs with SHA-256; {lives}")


def _mode(path: str) -> str:
    """`` (mode 0600)``: load_private_key refused any group or other bit already."""
    try:
        return f" (mode {stat.S_IMODE(os.stat(path).st_mode):04o})"
    except OSError:  # gone since it was loaded: the load said all there is
        return ""


def _grant_seconds(grant: Grant, now: datetime) -> int:
    at = grant.expiry.at
    return grant.expiry.seconds or int(((at or now) - now).total_seconds())


def _duration(seconds: float) -> str:
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            rest = whole % size
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            tail = f"{rest // smaller[1]}{smaller[0]}" if rest >= smaller[1] else ""
            return f"{whole // size}{unit}{tail}"
    return f"{whole}s"


SIGNATURES_WARN_DAYS = 3
"""Official ClamAV databases change daily; older than this, freshclam is likely not running."""
_CLAMD_CHECK_TIMEOUT = 10.0


async def _scanning(
    gateway: S3Gateway, manifest: Manifest, signed: bool, now: datetime
) -> list[Check]:
    """The scanner of every slot with ``upload.scan``: each clamd once, each slot's tags."""
    checks: list[Check] = []
    scanned = [
        (grant, grant.upload, grant.scan)
        for job in manifest.jobs
        for grant in job.grants
        if grant.upload is not None and grant.scan is not None
    ]
    addresses = dict.fromkeys(scan.clamd for _, _, scan in scanned if scan.clamd)
    for address in addresses:
        checks += await _clamd(address, now)
    if not signed:
        return checks
    seen: set[tuple[BucketTarget, str]] = set()
    for grant, slot, scan in scanned:
        target = gateway.effective(
            BucketTarget(grant.bucket, grant.region, grant.endpoint_url, grant.addressing_style)
        )
        for prefix, check in (
            (slot.prefix, _slot_tags),
            (scan.quarantine_prefix, _quarantine_writing),
        ):
            if prefix is None or (target, prefix) in seen:
                continue
            seen.add((target, prefix))
            checks.append(await check(gateway, target, prefix, scan.engine == "clamd"))
    return checks


async def _clamd(address: str, now: datetime) -> list[Check]:
    """PING must be answered PONG; VERSION tells the engine and the signatures' date."""
    scanner = Clamd(address, timeout=_CLAMD_CHECK_TIMEOUT)
    try:
        pong = await scanner.ping()
        version = await scanner.version()
    except ClamdError as exc:
        return [Check("FAIL", "clamd", address, f"{exc}; is clamav-daemon running?")]
    if pong != "PONG":
        return [Check("FAIL", "clamd", address, f"PING answered {pong[:80]!r}, not PONG")]
    parts = version.split("/")
    if len(parts) < 3:
        text = (
            f"{version}: no official signature database loaded (freshclam has not run, or"
            " only local signatures)"
        )
        return [Check("WARN", "clamd", address, text)]
    try:
        dated = datetime.strptime(" ".join(parts[2].split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return [Check("WARN", "clamd", address, f"{version}: cannot read the signatures' date")]
    age = now.replace(tzinfo=None) - dated
    if age.days > SIGNATURES_WARN_DAYS:
        text = f"{version}: signatures {age.days} days old; is freshclam running?"
        return [Check("WARN", "clamd", address, text)]
    return [Check("OK", "clamd", address, f"PONG; {version}")]


async def _slot_tags(gateway: S3Gateway, target: BucketTarget, prefix: str, writes: bool) -> Check:
    """May the role read (GuardDuty's, ours) and, for clamd, write the slot's object tags?

    Asked of a key that does not exist: S3 judges permission first, so ``NoSuchKey`` means
    allowed (with s3:ListBucket, which the inbox needs anyway) and ``AccessDenied`` refused.
    Nothing is written.
    """
    key = prefix + PROBE_NAME
    asked = [("s3:GetObjectTagging", await gateway.objects.get_tags(target, key))]
    if writes:
        asked.append(("s3:PutObjectTagging", await gateway.objects.put_tags(target, key, {})))
    subject = f"{target.bucket}/{prefix}"
    refused = [(name, a) for name, a in asked if a.error not in (None, "NoSuchKey")]
    if refused:
        said = "; ".join(f"{name} refused ({a.error}: {a.message})" for name, a in refused)
        return Check("FAIL", "scan-tags", subject, f"{said}; the role needs it on {subject}*")
    names = " and ".join(name for name, _ in asked)
    return Check("OK", "scan-tags", subject, f"object tags allowed ({names})")


async def _quarantine_writing(
    gateway: S3Gateway, target: BucketTarget, prefix: str, _writes: bool
) -> Check:
    """May the role write the quarantine (the pages probe's request: nothing is stored)?"""
    answer = await gateway.preflight.put_probe(target, prefix + PROBE_NAME)
    subject = f"{target.bucket}/{prefix}"
    if answer.error in (None, "BadDigest", "InvalidDigest"):
        return Check("OK", "quarantine", subject, "moving infected uploads here allowed")
    text = (
        f"writing the quarantine refused ({answer.error}: {answer.message}); the role needs "
        f"s3:PutObject on {subject}* and s3:DeleteObject on the slots"
    )
    return Check("FAIL", "quarantine", subject, text)
