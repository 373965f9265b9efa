"""The manifest: what to share, with whom, for how long.

``load_manifest`` either returns a fully resolved ``Manifest`` (defaults merged into every job)
or raises ``ManifestError`` listing every problem in the file, each with line, column and field
path. Nothing else escapes for bad input, because the manifest is what ops engineers edit by
hand and a run must never start on a half-understood file.

Validation happens in three passes over the same data: YAML structure (``_yamlsource``), field
shapes and values (private ``_Raw*`` pydantic models mirroring the YAML), then rules that span
fields (inheritance, duplicates, recipients left with nothing). All passes run even when an
earlier one found problems, so one edit-and-retry cycle shows everything.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
import unicodedata
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sharebatch._yamlsource import (
    IssueCollector,
    PathKey,
    YamlDocument,
    describe,
    format_path,
    load_yaml_file,
    show,
)
from sharebatch.errors import ManifestError
from sharebatch.models import AddressingStyle

MAX_EXPIRY_SECONDS = 604_800  # SigV4 presigned URLs cannot outlive 7 days.
MAX_PREFIX_BYTES = 1024  # S3's limit on a key, and so on any useful prefix.
SUPPORTED_VERSION = 1

_DURATION_HINT = "use e.g. 30m, 72h, 7d or P7D"
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_COMPACT_RE = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_ISO_RE = re.compile(
    r"P(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?",
    re.IGNORECASE,
)
_ISO_DATE_PART_RE = re.compile(r"P(?:[0-9]+[YMWD])+")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
_BUCKET_CHARS_RE = re.compile(r"[a-z0-9.-]*")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_WILDCARDS = "*?["


def parse_duration(value: str | int) -> int:
    """Seconds in ``value``: ``90``, ``"90"``, ``30m``, ``1d12h``, ``1w``, ``P7D``, ``PT12H``.

    The result is between 1 and ``MAX_EXPIRY_SECONDS``; anything else raises ``ValueError``
    whose message can be shown to the person who wrote the value.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(f"{shown} is not a duration; {_DURATION_HINT}")
    if isinstance(value, int):
        shown, seconds = f"{value} seconds", value
    else:
        shown, text = value.strip(), value.strip()
        negative = text.startswith("-")
        seconds = _parse_duration_text(text[1:] if negative else text, value)
        if negative and seconds > 0:
            raise ValueError(f"{show(value)} must be positive")
    if seconds <= 0:
        raise ValueError(f"{shown} must be positive")
    if seconds > MAX_EXPIRY_SECONDS:
        raise ValueError(f"{shown} is longer than the 7-day limit for presigned URLs")
    return seconds


def _parse_duration_text(text: str, original: str) -> int:
    # Length cap first: int() refuses very long digit strings with an unrelated message.
    if 0 < len(text) <= 40:
        if text.isascii() and text.isdigit():
            return int(text)
        for pattern in (_COMPACT_RE, _ISO_RE):
            match = pattern.fullmatch(text)
            if match and any(match.groups()):
                units = zip(match.groups(), _UNITS.values(), strict=True)
                return sum(int(n) * unit for n, unit in units if n)
        date_part = text.upper().partition("T")[0]
        if _ISO_DATE_PART_RE.fullmatch(date_part) and ("Y" in date_part or "M" in date_part):
            raise ValueError(
                f"{show(original)} uses months or years, whose length varies;"
                " use days or weeks instead, e.g. P7D"
            )
    raise ValueError(f"{show(original)} is not a duration; {_DURATION_HINT}")


def _duration_field(value: object) -> int:
    if isinstance(value, float):
        raise ValueError(f"{value} is not a duration: use whole seconds, or {_DURATION_HINT[4:]}")
    if isinstance(value, int | str):  # bool included: parse_duration explains why not
        return parse_duration(value)
    raise ValueError(f"expected a duration, got {describe(value)}; {_DURATION_HINT}")


def _check_slug(value: str, what: str) -> str:
    if _SLUG_RE.fullmatch(value):
        return value
    rule = (
        "it is used as a folder name, so use only lowercase letters, digits, '.', '_' and '-',"
        " starting with a letter or digit (at most 64 characters)"
    )
    if not value:
        raise ValueError(f"{what} must not be empty; {rule}")
    problems: list[str] = []
    if len(value) > 64:
        problems.append(f"is {len(value)} characters long")
    if "/" in value or "\\" in value:
        problems.append("contains a path separator")
    if any("A" <= c <= "Z" for c in value):
        problems.append("has uppercase letters")
    others = [c for c in dict.fromkeys(value.lower()) if c not in _SLUG_CHARS + "/\\"]
    if others:
        problems.append("contains " + ", ".join(repr(c) for c in others[:3]))
    if value[0] in "._-":
        problems.append(f"starts with {value[0]!r}")
    reason = " and ".join(problems)
    if _SLUG_RE.fullmatch(value.lower()):
        reason += f" (try {value.lower()!r})"
    raise ValueError(f"{what} {show(value)} {reason}; {rule}")


def _check_prefix(value: str) -> str:
    if not value:
        raise ValueError("prefix must not be empty; name the folder to share, e.g. 'reports/'")
    wildcard = next((c for c in value if c in _WILDCARDS), None)
    if wildcard is not None:
        raise ValueError(
            f"prefix {show(value)} contains {wildcard!r}: prefixes are literal key prefixes,"
            " not patterns"
        )
    if value.startswith("/"):
        raise ValueError(
            f"prefix {show(value)} starts with '/': S3 keys rarely begin with '/', so this is"
            f" almost always a mistake; write {show(value.lstrip('/'))}"
        )
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ValueError(f"prefix {show(value)} contains control character U+{ord(control):04X}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_PREFIX_BYTES:
        raise ValueError(f"prefix is {size} bytes in UTF-8; S3 keys are at most 1024 bytes")
    return value


def _check_bucket(value: str) -> str:
    problems: list[str] = []
    if not 3 <= len(value) <= 63:
        problems.append(f"it is {len(value)} characters long, not 3 to 63")
    if not _BUCKET_CHARS_RE.fullmatch(value):
        problems.append("it may use only lowercase letters, digits, '.' and '-'")
    if value and not (value[0].isascii() and value[0].isalnum()):
        problems.append("it must start with a letter or digit")
    if value and not (value[-1].isascii() and value[-1].isalnum()):
        problems.append("it must end with a letter or digit")
    if ".." in value:
        problems.append("it must not contain '..'")
    if _looks_like_ip(value):
        problems.append("it must not be formatted like an IP address")
    problems += [
        f"it must not start with {p!r}" for p in _RESERVED_BUCKET_PREFIXES if value.startswith(p)
    ]
    problems += [
        f"it must not end with {s!r}" for s in _RESERVED_BUCKET_SUFFIXES if value.endswith(s)
    ]
    if problems:
        raise ValueError(f"bucket name {show(value)} is not valid: " + "; ".join(problems))
    return value


def _looks_like_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _check_region(value: str) -> str:
    if not _REGION_RE.fullmatch(value):
        raise ValueError(f"region {show(value)} is not an AWS region name like 'eu-west-1'")
    return value


def _check_endpoint(value: str) -> str:
    # The value is not echoed: an endpoint URL may carry credentials.
    usage = (
        "endpoint_url must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000"
    )
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(usage) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(usage)
    if parts.username is not None or parts.password is not None:
        raise ValueError("endpoint_url must not contain a user name or password")
    return value


def _check_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in value):
        raise ValueError(f"email {show(value)} must be one address like ops@example.com")
    return value


JobName = Annotated[str, AfterValidator(partial(_check_slug, what="job name"))]
RecipientId = Annotated[str, AfterValidator(partial(_check_slug, what="recipient id"))]
Prefix = Annotated[str, AfterValidator(_check_prefix)]
BucketName = Annotated[str, AfterValidator(_check_bucket)]
Region = Annotated[str, AfterValidator(_check_region)]
EndpointUrl = Annotated[str, AfterValidator(_check_endpoint)]
Email = Annotated[str, AfterValidator(_check_email)]
Expiry = Annotated[int, BeforeValidator(_duration_field)]


class Recipient(BaseModel):
    """Someone who receives a bundle; ``id`` names their folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: RecipientId
    name: str | None = None
    email: Email | None = None
    prefixes: tuple[Prefix, ...] = ()


class Job(BaseModel):
    """One job with the manifest defaults already merged in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: JobName
    bucket: BucketName
    region: Region | None = None
    endpoint_url: EndpointUrl | None = None
    addressing_style: AddressingStyle = "auto"
    expires_in: Expiry
    prefixes: tuple[Prefix, ...] = ()
    recipients: tuple[Recipient, ...]

    def recipient_prefixes(self, recipient: Recipient) -> tuple[str, ...]:
        """The job's prefixes, then the recipient's own, each once, in written order."""
        return tuple(dict.fromkeys((*self.prefixes, *recipient.prefixes)))


class Manifest(BaseModel):
    """A validated manifest; ``sha256`` identifies the exact file a run was made from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str
    version: int
    jobs: tuple[Job, ...]


class _Raw(BaseModel):
    # Strict: YAML already typed every scalar, so "1" for an int is a mistake to report.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _RawRecipient(_Raw):
    id: RecipientId
    name: str | None = None
    email: Email | None = None
    prefixes: list[Prefix] = Field(default_factory=list)


class _RawSettings(_Raw):
    bucket: BucketName | None = None
    region: Region | None = None
    endpoint_url: EndpointUrl | None = None
    addressing_style: AddressingStyle | None = None
    expires_in: Expiry | None = None


class _RawJob(_RawSettings):
    name: JobName
    prefixes: list[Prefix] = Field(default_factory=list)
    recipients: Annotated[list[_RawRecipient], Field(min_length=1)]


class _RawManifest(_Raw):
    version: Any = None  # checked by hand first, so a wrong version gets one clear message
    defaults: _RawSettings | None = None
    jobs: Annotated[list[_RawJob], Field(min_length=1)]


# Which model describes the mapping at a path, by the path's field names (indexes dropped).
_MODELS_AT: dict[tuple[str, ...], type[_Raw]] = {
    (): _RawManifest,
    ("defaults",): _RawSettings,
    ("jobs",): _RawJob,
    ("jobs", "recipients"): _RawRecipient,
}


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read, validate and resolve the manifest at ``path``; raises ``ManifestError``."""
    display = os.fspath(path)
    doc = load_yaml_file(path)
    issues = IssueCollector(display, doc.source, _unknown_field)
    issues.items += doc.issues
    data = doc.data
    if not isinstance(data, dict):
        issues.at((), f"the manifest must be a mapping with version and jobs, not {describe(data)}")
        raise ManifestError(issues.items)
    if not _check_version(data, issues):
        raise ManifestError(issues.items)  # another version's rules would only add noise
    raw: _RawManifest | None = None
    try:
        raw = _RawManifest.model_validate(data)
    except ValidationError as exc:
        # A value the YAML pass already refused (e.g. an unsupported tag) needs no second issue.
        reported = {issue.field for issue in doc.issues}
        for err in exc.errors(include_url=False):
            if format_path(tuple(err["loc"])) not in reported:
                issues.from_pydantic(err)
    _check_across_fields(data, issues)
    if issues.items or raw is None:
        raise ManifestError(issues.items)
    return _resolve(raw, display, doc)


def _unknown_field(path: PathKey) -> str:
    model = _MODELS_AT.get(tuple(p for p in path[:-1] if isinstance(p, str)))
    if model is None:
        return "unknown field"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown field (did you mean {close[0]!r}?)"
    return "unknown field; expected one of " + ", ".join(allowed)


def _check_version(data: dict[str, object], issues: IssueCollector) -> bool:
    """Report a wrong version; False when the file is for another version entirely."""
    version = data.get("version")
    supported = f"this sharebatch reads version {SUPPORTED_VERSION}"
    if "version" not in data:
        issues.at(("version",), f"unsupported manifest version (none given); {supported}")
        return True
    if isinstance(version, int) and not isinstance(version, bool):
        if version != SUPPORTED_VERSION:
            issues.at(("version",), f"unsupported manifest version {version}; {supported}")
            return False
        return True
    if isinstance(version, str):
        message = (
            f"unsupported manifest version {show(version)} (text, not a number); {supported};"
            f" write 'version: {SUPPORTED_VERSION}' without quotes"
        )
    else:
        message = f"unsupported manifest version {describe(version)}; {supported}"
    issues.at(("version",), message)
    return True


def _check_across_fields(data: dict[str, object], issues: IssueCollector) -> None:
    """Rules that span fields, checked on the plain data so they run even when shapes are off."""
    defaults = data.get("defaults")
    # A malformed defaults block is already reported; guessing what it holds would add noise.
    inherit = isinstance(defaults, dict) or defaults is None
    inherited = defaults if isinstance(defaults, dict) else {}
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        return
    names: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            continue
        job_path: PathKey = ("jobs", i)
        _check_duplicate(job.get("name"), (*job_path, "name"), "job name", names, issues)
        if inherit:
            for key in ("bucket", "expires_in"):
                if job.get(key) is None and inherited.get(key) is None:
                    # A missing key locates at the job mapping itself.
                    issues.at((*job_path, key), "required: set it on the job or in defaults")
        _check_recipients(job, job_path, issues)


def _check_recipients(job: dict[str, object], job_path: PathKey, issues: IssueCollector) -> None:
    recipients = job.get("recipients")
    if not isinstance(recipients, list):
        return
    job_prefixes = job.get("prefixes", [])
    ids: dict[str, int] = {}
    for j, recipient in enumerate(recipients):
        if not isinstance(recipient, dict):
            continue
        path: PathKey = (*job_path, "recipients", j)
        rid = recipient.get("id")
        _check_duplicate(rid, (*path, "id"), "recipient id", ids, issues)
        own = recipient.get("prefixes", [])
        if job_prefixes == [] and own == []:
            who = show(rid) if isinstance(rid, str) else f"#{j}"
            issues.at(
                path,
                f"recipient {who} would receive nothing: give the job or the recipient"
                " at least one prefix",
            )


def _check_duplicate(
    value: object, path: PathKey, what: str, seen: dict[str, int], issues: IssueCollector
) -> None:
    if not isinstance(value, str):
        return
    where = issues.source.value(path)
    first = seen.get(value)
    if first is None:
        seen[value] = where.line if where else 0
        return
    issues.at(path, f"duplicate {what} {show(value)} (first at line {first})")


def _resolve(raw: _RawManifest, display: str, doc: YamlDocument) -> Manifest:
    # The job's own settings win; None means "not set here", so it never hides a default.
    inherited = raw.defaults.model_dump(exclude_none=True) if raw.defaults else {}
    jobs = tuple(
        Job.model_validate({**inherited, **job.model_dump(exclude_none=True)}) for job in raw.jobs
    )
    return Manifest(
        path=display,
        sha256=hashlib.sha256(doc.raw).hexdigest(),
        version=SUPPORTED_VERSION,
        jobs=jobs,
    )
