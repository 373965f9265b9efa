"""The manifest's ``upload:`` setting: its fields, its checks, and its resolution per grant.

An upload slot is a folder a recipient may send files into, within limits. ``RawUpload``
mirrors the YAML; its fields inherit defaults -> job -> recipient one by one, like filters, and
``upload: false`` at any level gives no slot to whatever is below it. ``resolve_slot`` turns the
fields found for one grant into an ``UploadSlot``; ``check_overlaps`` then refuses a slot whose
folder touches what is shared for download, or another recipient's slot: uploads must never
be handed out as someone's downloads, nor land where another recipient can overwrite them.

This module imports nothing from ``_resolve`` (which imports it): the resolver passes its
lookups and its template renderer in.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import posixpath
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sharebatch.manifest.fields import (
    MAX_PREFIX_BYTES,
    ContentType,
    Duration,
    PrefixTemplate,
    Size,
    check_text,
    false_in_schema,
    mapping_or_false,
)
from sharebatch.manifest.fields import check_prefix as _check_prefix
from sharebatch.manifest.source import IssueCollector, PathKey, grant_levels, show
from sharebatch.models import DEFAULT_CLAMD, ScanEngine, ScanSetting, UploadSlot

DEFAULT_EXPIRES_IN = 3600
MAX_UPLOAD_SIZE = 5 * 1024**3
"""S3 takes at most 5 GiB in one PUT or POST upload."""

_T = TypeVar("_T")
# Built-in table only (no /etc/mime.types): a key's content type must not depend on the host.
_TYPES = mimetypes.MimeTypes()


def _check_max_size(value: int) -> int:
    if value < 1:
        raise ValueError("upload max_size must be at least 1 byte")
    if value > MAX_UPLOAD_SIZE:
        raise ValueError(
            f"upload max_size {value} bytes is more than 5GiB, the most S3 accepts in one upload"
        )
    return value


UploadSize = Annotated[Size, AfterValidator(_check_max_size)]


def _check_upload_type(value: str) -> str:
    if _base(value) == "application/x-www-form-urlencoded":
        raise ValueError(
            f"{show(value)} is the type of HTML form posts, not of files: presigning leaves it"
            " unsigned and HTTP clients read such a body as form fields; use"
            " application/octet-stream"
        )
    return value


UploadType = Annotated[ContentType, AfterValidator(_check_upload_type)]


ClamdAddress = tuple[Literal["unix"], str] | tuple[Literal["tcp"], tuple[str, int]]
"""Where clamd listens: ("unix", socket path) or ("tcp", (loopback host, port))."""


def clamd_address(value: str) -> ClamdAddress:
    """``unix:///absolute/path`` or ``tcp://127.0.0.1:3310`` (a loopback address only).

    The files scanned are recipients' uploads, sent in the clear: only to this machine.
    Raises ``ValueError`` saying what is wrong.
    """
    check_text(value, "clamd address")
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ValueError(
                f"clamd address {show(value)}: a unix socket is written with its absolute path,"
                f" e.g. {DEFAULT_CLAMD}"
            )
        return ("unix", parts.path)
    if parts.scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or not port or parts.path not in ("", "/") or parts.query:
            raise ValueError(
                f"clamd address {show(value)}: write tcp://127.0.0.1:3310 (host and port)"
            )
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"clamd address {show(value)}: clamd is reached over loopback only (127.0.0.1,"
                " [::1]), since uploads travel to it unencrypted; run clamd on this machine or"
                " use its unix socket"
            )
        return ("tcp", (host, port))
    raise ValueError(
        f"clamd address {show(value)}: expected unix:///path/to/clamd.ctl or tcp://127.0.0.1:3310"
    )


def _check_clamd(value: str) -> str:
    clamd_address(value)
    return value


def _check_quarantine(value: str) -> str:
    check_upload_prefix(value)
    return value


class RawScan(BaseModel):
    """Malware scanning of what arrives in the slot (``sharebatch inbox --scan``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Scan")

    engine: ScanEngine = Field(
        description="clamd: sharebatch streams each upload to ClamAV's daemon; guardduty:"
        " GuardDuty Malware Protection for S3 scans, sharebatch reads its tags."
    )
    clamd: Annotated[str, AfterValidator(_check_clamd)] | None = Field(
        None,
        description=f"Where clamd listens (engine clamd): unix:///path or tcp://127.0.0.1:port,"
        f" loopback only (default {DEFAULT_CLAMD}).",
    )
    quarantine_prefix: Annotated[str, AfterValidator(_check_quarantine)] | None = Field(
        None,
        description="Folder of the slot's bucket infected uploads are moved to (tags kept),"
        " e.g. 'quarantine/'; never a slot or shared folder. Default: left in place, tagged.",
    )

    @model_validator(mode="after")
    def _clamd_for_clamd(self) -> RawScan:
        if self.engine == "guardduty" and self.clamd is not None:
            raise ValueError(
                "clamd is where engine clamd scans; with engine guardduty, GuardDuty scans"
                " and sharebatch only reads its tags: drop clamd"
            )
        return self

    def setting(self) -> ScanSetting:
        """The resolved value a grant carries."""
        clamd = (self.clamd or DEFAULT_CLAMD) if self.engine == "clamd" else None
        return ScanSetting(self.engine, clamd, self.quarantine_prefix)


class RawUpload(BaseModel):
    """An upload slot: a folder the recipient may send files into, within limits."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Upload")

    prefix: PrefixTemplate | None = Field(
        None,
        description="Folder the uploads go to, ending in '/'; templates allowed, e.g."
        " 'inbox/{period.label}/{recipient.id}/'. Required for a slot.",
    )
    expires_in: Duration | None = Field(
        None, description="How long upload URLs and forms work: 30m, 1h, 2d (default 1h; max 7d)."
    )
    max_size: UploadSize | None = Field(
        None,
        description="Largest file: 10MB, 1GiB (required; at most 5GiB). S3 enforces it on POST"
        " forms (open slots) only.",
    )
    content_types: Annotated[list[UploadType], Field(min_length=1)] | None = Field(
        None, description="Allowed media types, e.g. [application/pdf] (default: any)."
    )
    keys: Annotated[list[PrefixTemplate], Field(min_length=1)] | None = Field(
        None,
        description="File names the recipient must upload (one PUT URL each); templates"
        " allowed. Without keys, one POST form takes any name under the prefix.",
    )
    scan: RawScan | None = Field(
        None,
        description="Scan uploads for malware (sharebatch inbox --scan): engine, clamd,"
        " quarantine_prefix; inherits as one mapping (the most specific one applies).",
    )


UPLOAD_FIELDS = tuple(RawUpload.model_fields)
SLOT_FIELDS = tuple(name for name in UPLOAD_FIELDS if name != "scan")
"""The fields ``resolve_slot`` takes; ``scan`` alone makes no slot (a default for jobs that
have one)."""


UploadSetting = Annotated[
    RawUpload | None,
    BeforeValidator(mapping_or_false("upload fields", "for no slot")),
    Field(json_schema_extra=false_in_schema),
]
"""``upload:`` in defaults, a job or a recipient: a mapping of fields, or false."""


class _Off(Enum):
    OFF = "off"


OFF = _Off.OFF
"""The value of every upload field at a level that says ``upload: false``."""


def check_upload_prefix(value: str) -> str:
    """A slot prefix: a literal prefix that is a folder, so that no sibling shares it."""
    _check_prefix(value)
    if not value.endswith("/"):
        raise ValueError(
            f"upload prefix {show(value)} must end with '/': a form allowing keys that start"
            f" with it would also allow {show(value + '-other/...')}"
        )
    return value


def check_key_name(value: str) -> str:
    """A fixed upload key: one plain file name under the slot prefix."""
    if not value:
        raise ValueError("upload key must not be empty; name the file, e.g. 'signed-contract.pdf'")
    if "/" in value or value in (".", ".."):
        raise ValueError(
            f"upload key {show(value)} must be a plain file name (no '/'); it goes under the"
            " slot's prefix"
        )
    return check_text(value, "upload key")


def _base(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def key_content_type(name: str, allowed: tuple[str, ...]) -> str | None:
    """The one Content-Type a PUT URL for ``name`` signs; None when any type is allowed.

    A presigned PUT signs a single Content-Type. With several allowed, the one the name's
    extension stands for is taken; a name that picks none (or several) is an error.
    """
    if len(allowed) <= 1:
        return allowed[0] if allowed else None
    ext = posixpath.splitext(name)[1].lower()
    guessed = _TYPES.types_map[True].get(ext)
    matches = [t for t in allowed if guessed is not None and _base(t) == guessed]
    if len(matches) != 1:
        if guessed is None:
            why = f"no media type is known for {show(ext) if ext else 'a name without extension'}"
        else:
            why = f"{show(ext)} means {guessed}, " + (
                "which several of content_types match" if matches else "not in content_types"
            )
        raise ValueError(
            f"upload key {show(name)}: {why}; with several content_types"
            f" ({', '.join(allowed)}) a key's extension picks its type, because a PUT URL signs"
            " exactly one Content-Type: rename the key or give this slot one content type"
        )
    return matches[0]


Render = Callable[[tuple[str, PathKey], Callable[[str], _T]], _T | None]


def resolve_slot(
    found: Mapping[str, object], render: Render[str], issues: IssueCollector
) -> tuple[bool, UploadSlot | None]:
    """(complete, slot) for one grant from the upload fields that apply to it.

    ``found`` maps each field to (value, where written), None when not set, or anything else
    for a value already reported as wrong; ``render`` renders a template for the grant and
    checks the result (None when it reported a problem). Complete is False when a problem was
    reported, now or before; the slot is None when the grant has none.
    """
    if any(v is not None and not isinstance(v, tuple) for v in found.values()):
        return False, None
    given: dict[str, tuple[Any, PathKey]] = {
        k: v for k, v in found.items() if isinstance(v, tuple) and v[0] is not OFF
    }
    if not given:
        return True, None
    # Missing fields are reported at the most specific upload mapping that applies.
    where = max((v[1][:-1] for v in given.values()), key=len)
    missing = [name for name in ("prefix", "max_size") if name not in given]
    for name in missing:
        hint = (
            "name the folder uploads go to, e.g. 'inbox/{period.label}/{recipient.id}/'"
            if name == "prefix"
            else "say how big a file may be, e.g. 50MB"
        )
        issues.at(where, f"upload needs {name}: {hint} (or write 'upload: false' for no slot)")
    if missing:
        return False, None
    prefix = render(given["prefix"], check_upload_prefix)
    types = tuple(dict.fromkeys(given["content_types"][0])) if "content_types" in given else ()
    keys: list[str] = []
    complete = prefix is not None
    if "keys" in given:
        for index, template in enumerate(given["keys"][0]):
            path = (*given["keys"][1], index)
            key = render((template, path), check_key_name)
            if key is None:
                complete = False
            elif key in keys:
                issues.at(path, f"upload key {show(key)} is listed twice")
                complete = False
            elif _key_problem(path, key, prefix, types, issues):
                complete = False
            else:
                keys.append(key)
    if not complete or prefix is None:
        return False, None
    expires_in = given["expires_in"][0] if "expires_in" in given else DEFAULT_EXPIRES_IN
    slot = UploadSlot(prefix, given["max_size"][0], expires_in, types, tuple(keys))
    return True, slot


def _key_problem(
    path: PathKey, name: str, prefix: str | None, types: tuple[str, ...], issues: IssueCollector
) -> bool:
    try:
        key_content_type(name, types)
    except ValueError as exc:
        issues.at(path, str(exc))
        return True
    size = len(((prefix or "") + name).encode("utf-8", "surrogatepass"))
    if size > MAX_PREFIX_BYTES:
        issues.at(path, f"upload key is {size} bytes with its prefix; S3 keys are at most 1024")
        return True
    return False


def _written_at(data: Mapping[str, Any], job: int, recipient: int) -> PathKey:
    """Where the upload prefix that applies to one grant was written (most specific first)."""
    levels = grant_levels(data, job, recipient)
    for path, node in levels:
        upload = node.get("upload") if isinstance(node, dict) else None
        if isinstance(upload, dict) and "prefix" in upload:
            return (*path, "upload", "prefix")
    return ("jobs", job)


def check_overlaps(
    data: Mapping[str, Any], jobs: list[dict[str, Any]], issues: IssueCollector
) -> None:
    """Refuse slots whose folder overlaps a download prefix or another recipient's slot.

    Compared per store (bucket and endpoint): an upload under a shared prefix would be handed
    out as a download on the next run, a shared prefix over a slot would hand out uploads, and
    a slot inside another's lets one recipient overwrite the other's files. Two slots that
    overlap are reported once, at the later one. Then ``check_quarantine``: the same for
    ``upload.scan.quarantine_prefix``.
    """
    grants = [(i, j, grant) for i, job in enumerate(jobs) for j, grant in enumerate(job["grants"])]
    for n, (i, j, grant) in enumerate(grants):
        slot: UploadSlot | None = grant.get("upload")
        if slot is None:
            continue
        store = (grant["bucket"], grant.get("endpoint_url"))
        who = f"recipient {show(grant['recipient']['id'])} of job {show(grant['job'])}"
        for m, (_, _, other) in enumerate(grants):
            if (other["bucket"], other.get("endpoint_url")) != store:
                continue
            for prefix in other["prefixes"]:
                if _overlap(prefix, slot.prefix):
                    # Said once per shared prefix and job, however many recipients share it.
                    issues.at(
                        _written_at(data, i, j),
                        f"upload prefix {show(slot.prefix)} of {who} overlaps {show(prefix)},"
                        f" shared for download in job {show(other['job'])}: uploads would be"
                        " handed out as downloads; keep upload folders apart from shared"
                        " prefixes",
                    )
            theirs: UploadSlot | None = other.get("upload")
            if m >= n or theirs is None or not _overlap(theirs.prefix, slot.prefix):
                continue
            # One recipient id in two jobs may share its own folder; nobody else may.
            if theirs.prefix != slot.prefix or other["recipient"]["id"] != grant["recipient"]["id"]:
                whose = f"recipient {show(other['recipient']['id'])} of job {show(other['job'])}"
                issues.at(
                    _written_at(data, i, j),
                    f"upload prefix {show(slot.prefix)} of {who} overlaps the upload prefix"
                    f" {show(theirs.prefix)} of {whose}: one could overwrite the other's"
                    " files; give each recipient its own folder, e.g. with {recipient.id}",
                )
    check_quarantine(data, grants, issues)


def _scan_written_at(data: Mapping[str, Any], job: int, recipient: int) -> PathKey:
    """Where the ``upload.scan`` that applies to one grant was written (most specific first)."""
    for path, node in grant_levels(data, job, recipient):
        upload = node.get("upload") if isinstance(node, dict) else None
        scan = upload.get("scan") if isinstance(upload, dict) else None
        if isinstance(scan, dict):
            where = (*path, "upload", "scan")
            return (*where, "quarantine_prefix") if "quarantine_prefix" in scan else where
    return ("jobs", job)


def check_quarantine(
    data: Mapping[str, Any], grants: list[tuple[int, int, dict[str, Any]]], issues: IssueCollector
) -> None:
    """Refuse a quarantine folder that overlaps a download prefix or an upload slot.

    Per store, like ``check_overlaps``: a quarantined file under a shared prefix would be
    handed out as a download by the next run, and one inside a slot would be listed (and
    scanned, and moved) as an upload again, or overwritten by the recipient.
    """
    for i, j, grant in grants:
        scan: ScanSetting | None = grant.get("scan")
        if scan is None or scan.quarantine_prefix is None:
            continue
        where, quarantine = _scan_written_at(data, i, j), scan.quarantine_prefix
        store = (grant["bucket"], grant.get("endpoint_url"))
        for _, _, other in grants:
            if (other["bucket"], other.get("endpoint_url")) != store:
                continue
            for prefix in other["prefixes"]:
                if _overlap(prefix, quarantine):
                    issues.at(
                        where,
                        f"quarantine_prefix {show(quarantine)} overlaps {show(prefix)}, shared"
                        f" for download in job {show(other['job'])}: infected uploads would be"
                        " handed out; keep the quarantine apart from shared prefixes",
                    )
            theirs: UploadSlot | None = other.get("upload")
            if theirs is not None and _overlap(theirs.prefix, quarantine):
                issues.at(
                    where,
                    f"quarantine_prefix {show(quarantine)} overlaps the upload prefix"
                    f" {show(theirs.prefix)} of recipient {show(other['recipient']['id'])} of"
                    f" job {show(other['job'])}: a quarantined file would be back in a slot;"
                    " keep the quarantine apart from upload folders",
                )


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)
