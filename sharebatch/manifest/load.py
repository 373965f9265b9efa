"""The manifest: what to share, with whom, for how long, and which files.

``load_manifest`` either returns a fully resolved ``Manifest`` (one ``Grant`` per recipient of
each job: defaults, job and recipient settings merged field by field, every template rendered
for the run date) or raises ``ManifestError`` listing every problem in the file, each with line,
column and field path. Nothing else escapes for bad input, because the manifest is what ops
engineers edit by hand and a run must never start on a half-understood file.

Validation happens in passes over the same data: YAML structure (``source``), field shapes
and single values (private ``Raw*`` pydantic models mirroring the YAML, here and in
``resolve``, with the value types of ``fields``), duplicates, then what only merged settings
or rendered templates show (``resolve``: required settings, rendered prefixes, ranges). Every
pass runs even when an earlier one found problems; a value already reported counts as unknown
later, so it is neither used nor reported twice.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from sharebatch.errors import ManifestError, UsageError
from sharebatch.manifest.cloudfront import (
    Cidr,
    RawCloudFront,
    RawKeySource,
    misplaced_allow_ips,
)
from sharebatch.manifest.fields import (
    FORMATS,
    MAX_CLOUDFRONT_EXPIRES_IN,
    BucketName,
    ContentType,
    DownloadName,
    Email,
    EndpointUrl,
    Format,
    JobName,
    OutputTemplate,
    Prefix,
    PrefixTemplate,
    RecipientEmails,
    RecipientId,
    RecipientName,
    Region,
    parse_size,
)
from sharebatch.manifest.inventory import InventorySource
from sharebatch.manifest.notify import (
    GROUPS,
    EmailSetting,
    check_pages,
    password_message,
    yaml_names,
)
from sharebatch.manifest.periods import parse_duration
from sharebatch.manifest.resolve import RawFilters, RawModel, RawSettings, Resolver
from sharebatch.manifest.source import (
    IssueCollector,
    PathKey,
    describe,
    format_path,
    load_yaml_file,
)
from sharebatch.manifest.source import show as _show
from sharebatch.manifest.upload import RawScan, RawUpload, check_overlaps
from sharebatch.models import (
    MAX_EXPIRES_IN,
    AddressingStyle,
    CloudFrontLinks,
    Expiry,
    Filters,
    LinkKind,
    NotifySettings,
    ScanSetting,
    ShortCredentials,
    UploadSlot,
)

__all__ = [
    "Grant",
    "Job",
    "Manifest",
    "Recipient",
    "load_manifest",
    "manifest_json_schema",
    "parse_duration",
    "parse_size",
]

SUPPORTED_VERSION = 1
# {period.*} of a year period is the year before as_of: the calendar starts at year 1.
EARLIEST_AS_OF = date(2, 1, 1)


def _check_expiry(value: Expiry) -> Expiry:
    if (value.seconds is None) == (value.at is None):
        raise ValueError("an expiry has exactly one of seconds and at")
    if value.seconds is not None:
        # The kind's own limit (7 days for s3) is Grant._check_link's: it knows the kind.
        parse_duration(value.seconds, MAX_CLOUDFRONT_EXPIRES_IN)
    if value.at is not None and value.at.utcoffset() is None:
        raise ValueError("expiry.at must be timezone-aware")
    return value


class Recipient(BaseModel):
    """Someone who receives a bundle; ``id`` names their folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: RecipientId
    name: RecipientName | None = None
    # ``email`` is how the bundle shows the addresses (joined by ", "; one address as written),
    # ``addresses`` each one on its own, for delivery.
    email: RecipientEmails | None = None
    addresses: tuple[Email, ...] = ()


class Grant(BaseModel):
    """One recipient of one job with every setting resolved and every template rendered.

    Only ``download_name`` keeps template variables: the per-object ones (``{basename}``...),
    which ``templates.render_object`` fills for each key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: JobName
    recipient: Recipient
    bucket: BucketName
    region: Region | None = None
    endpoint_url: EndpointUrl | None = None
    addressing_style: AddressingStyle = "auto"
    expiry: Annotated[Expiry, AfterValidator(_check_expiry)]
    prefixes: tuple[Prefix, ...]
    filters: Filters = Filters()
    download_name: DownloadName = "{basename}"
    content_type: ContentType | None = None
    formats: Annotated[tuple[Format, ...], Field(min_length=1)] = FORMATS
    on_short_credentials: ShortCredentials = "fail"
    link_ids: bool = True  # each link signed with its own x-sharebatch-id
    link: LinkKind = "s3"
    cloudfront: CloudFrontLinks | None = None  # set exactly when ``link`` is cloudfront
    # Networks (CIDRs, normalised) the recipient's links should work from: a CloudFront custom
    # policy's IpAddress; for ``link: s3`` only what ``sharebatch policy`` makes S3 enforce.
    # Checked here too, as the manifest checks them: a caller's own Grant is held to it.
    allow_ips: tuple[Cidr, ...] = ()
    upload: UploadSlot | None = None
    # None: no ``notify:`` settings reach this grant, or ``notify: false`` left it out.
    notify: NotifySettings | None = None
    notify_off: bool = False  # ``notify: false`` left this grant out on purpose
    scan: ScanSetting | None = None  # how ``upload`` is scanned; set only with a slot
    # An S3 Inventory report read instead of listing the bucket (None: the bucket is listed).
    source: InventorySource | None = None

    @model_validator(mode="after")
    def _check_link(self) -> Grant:
        """CloudFront settings exactly for cloudfront links; a duration within the kind's
        limit: SigV4's 7 days for s3, ``max_expires_in`` for cloudfront."""
        if (self.cloudfront is not None) != (self.link == "cloudfront"):
            raise ValueError("cloudfront settings are given exactly when link is cloudfront")
        limit = MAX_EXPIRES_IN if self.cloudfront is None else self.cloudfront.max_expires_in
        if self.expiry.seconds is not None and self.expiry.seconds > limit:
            raise ValueError(f"expiry of {self.expiry.seconds} s is over the {self.link} limit")
        if len(self.allow_ips) > 1 and self.link == "cloudfront":
            raise ValueError("a CloudFront policy takes one network in AWS:SourceIp")
        if self.link == "cloudfront" and any(":" in ip for ip in self.allow_ips):
            raise ValueError("allow_ips: a CloudFront policy's AWS:SourceIp takes IPv4 only")
        return self


class Job(BaseModel):
    """One job: its grants in recipient order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: JobName
    grants: tuple[Grant, ...]


class Manifest(BaseModel):
    """A validated manifest; ``sha256`` identifies the exact file a run was made from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str
    version: int
    as_of: date
    output_dir: str | None = None
    jobs: tuple[Job, ...]

    def output_folder(self) -> Path | None:
        """Where a run writes when no ``--out`` is given: ``output.dir`` beside the manifest,
        wherever the run starts (cron starts in a home folder); None for the caller's default.
        """
        return Path(self.path).parent / self.output_dir if self.output_dir else None


class _RawRecipient(RawSettings):
    """A recipient: one bundle each. Any setting here overrides the job's."""

    model_config = ConfigDict(title="Recipient")

    id: RecipientId = Field(description="Folder name of the bundle: lowercase, digits, . _ -")
    name: RecipientName | None = Field(
        None, description="Shown in the bundle; {recipient.name}. No control characters."
    )
    email: EmailSetting = Field(
        None,
        description="One address or a list: shown in the bundle (joined by ', '), notify mails"
        " them; {recipient.email}.",
    )
    prefixes: list[PrefixTemplate] = Field(
        default_factory=list, description="Added to the job's prefixes; templates allowed."
    )


class _RawJob(RawSettings):
    """A job: prefixes shared with each of its recipients."""

    model_config = ConfigDict(title="Job")

    name: JobName = Field(description="Folder name of the job: lowercase, digits, . _ -")
    prefixes: list[PrefixTemplate] = Field(
        default_factory=list,
        description="Key prefixes shared with every recipient; templates allowed, e.g."
        " 'reports/{period.year}/Q{period.quarter}/' or 'partners/{recipient.id}/'.",
    )
    recipients: list[_RawRecipient] = Field(
        min_length=1, description="Who receives a bundle; each may override any setting."
    )


class _RawOutput(RawModel):
    """Where bundles go."""

    model_config = ConfigDict(title="Output")

    dir: OutputTemplate | None = Field(
        None,
        description="Folder for <run-id>/ (default bundles; --out overrides it); may use"
        " {period.*} and {as_of.*}.",
    )


class _RawManifest(RawModel):
    """A sharebatch manifest."""

    version: Annotated[Any, WithJsonSchema({"const": SUPPORTED_VERSION})] = Field(
        None, description="Always 1."
    )
    output: _RawOutput | None = Field(None, description="Where bundles go (optional).")
    defaults: RawSettings | None = Field(None, description="Settings for every job.")
    jobs: list[_RawJob] = Field(min_length=1, description="What to share, and with whom.")


def load_manifest(
    path: str | os.PathLike[str],
    *,
    as_of: date | None = None,
    now: datetime | None = None,
    load_keys: bool = True,
) -> Manifest:
    """Read, validate and resolve the manifest at ``path``; raises ``ManifestError``.

    ``as_of`` is the run date the ``{period.*}`` and ``{as_of.*}`` variables come from (default:
    ``now``'s UTC date; ``UsageError`` before ``EARLIEST_AS_OF``); ``now`` (default: the current
    time) is what ``expires_at`` must be within 7 days after. ``load_keys=False`` leaves the
    CloudFront private keys unread (their locations are still checked as written): for
    ``sharebatch policy`` only, which needs the manifest's numbers and is usually run where
    the signing key is not. Anything that signs must load them.
    """
    now = datetime.now(UTC) if now is None else now
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    as_of = now.astimezone(UTC).date() if as_of is None else as_of
    if as_of < EARLIEST_AS_OF:
        raise UsageError(
            f"--as-of {as_of.isoformat()}: the period before it would start before year 1;"
            f" use {EARLIEST_AS_OF.isoformat()} or later"
        )
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
    context = {"now": now}
    try:
        _RawManifest.model_validate(data, context=context)
    except ValidationError as exc:
        # A value the YAML pass already refused (e.g. an unsupported tag) needs no second issue.
        reported = {issue.field for issue in doc.issues}
        for err in exc.errors(include_url=False):
            if format_path(tuple(err["loc"])) not in reported:
                issues.from_pydantic(err)
    _check_duplicates(data, issues)
    folder = Path(os.path.dirname(os.path.abspath(display)))
    jobs, output_dir = Resolver(issues, as_of, context, folder, load_keys=load_keys).resolve(data)
    if jobs is not None:
        check_overlaps(data, jobs, issues)
        check_pages(data, jobs, issues)
    if issues.items:
        raise ManifestError(issues.items)
    if jobs is None:  # every unresolvable value must have been reported above
        raise RuntimeError(f"{display}: manifest left unresolved without a reported problem")
    return Manifest(
        path=display,
        sha256=hashlib.sha256(doc.raw).hexdigest(),
        version=SUPPORTED_VERSION,
        as_of=as_of,
        output_dir=output_dir,
        jobs=tuple(Job.model_validate(job) for job in jobs),
    )


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the manifest as written, for editors.

    Save it with ``sharebatch schema > sharebatch-manifest.schema.json`` and start a manifest
    with ``# yaml-language-server: $schema=./sharebatch-manifest.schema.json``.
    """
    schema = _RawManifest.model_json_schema()
    schema["required"] = ["version", "jobs"]  # version is checked by hand, but always needed
    # Definitions are named after the (private) classes; editors show the titles instead.
    titles = {name: f"#/$defs/{model['title']}" for name, model in schema["$defs"].items()}
    schema["$defs"] = {model["title"]: model for model in schema["$defs"].values()}

    def retitle(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": titles[ref.removeprefix("#/$defs/")]}
            return {key: retitle(value) for key, value in node.items()}
        if isinstance(node, list):
            return [retitle(item) for item in node]
        return node

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **cast(dict[str, Any], retitle(schema)),
        "title": "sharebatch manifest",
    }


def _unknown_field(path: PathKey) -> str:
    password = password_message(path)
    if password is not None:
        return f"unknown field: {password}"
    misplaced = misplaced_allow_ips(path)
    if misplaced is not None:
        return misplaced
    names = [p for p in path[:-1] if isinstance(p, str)]
    groups: dict[str, type[BaseModel]] = {"filters": RawFilters, "upload": RawUpload}
    groups |= {"cloudfront": RawCloudFront, "private_key": RawKeySource}
    groups["scan"] = RawScan
    groups["source"] = InventorySource
    groups |= {"notify": GROUPS[""], "smtp": GROUPS["smtp"], "webhook": GROUPS["webhook"]}
    model = groups.get(names[-1] if names else "") or _MODELS_AT.get(tuple(names))
    if model is None:
        return "unknown field"
    allowed = yaml_names(model)
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown field (did you mean {close[0]!r}?)"
    return "unknown field; expected one of " + ", ".join(allowed)


# Which model describes the mapping at a path, by the path's field names (indexes dropped).
_MODELS_AT: dict[tuple[str, ...], type[RawModel]] = {
    (): _RawManifest,
    ("output",): _RawOutput,
    ("defaults",): RawSettings,
    ("jobs",): _RawJob,
    ("jobs", "recipients"): _RawRecipient,
}


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
            f"unsupported manifest version {_show(version)} (text, not a number); {supported};"
            f" write 'version: {SUPPORTED_VERSION}' without quotes"
        )
    else:
        message = f"unsupported manifest version {describe(version)}; {supported}"
    issues.at(("version",), message)
    return True


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_duplicates(data: dict[str, object], issues: IssueCollector) -> None:
    """Duplicate names and ids, and recipients left with no prefix at all."""
    names: dict[str, int] = {}
    for i, job in enumerate(_list(data.get("jobs"))):
        if not isinstance(job, dict):
            continue
        _check_duplicate(job.get("name"), ("jobs", i, "name"), "job name", names, issues)
        ids: dict[str, int] = {}
        for j, recipient in enumerate(_list(job.get("recipients"))):
            if not isinstance(recipient, dict):
                continue
            path: PathKey = ("jobs", i, "recipients", j)
            rid = recipient.get("id")
            _check_duplicate(rid, (*path, "id"), "recipient id", ids, issues)
            if job.get("prefixes", []) == [] and recipient.get("prefixes", []) == []:
                who = _show(rid) if isinstance(rid, str) else f"#{j}"
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
    issues.at(path, f"duplicate {what} {_show(value)} (first at line {first})")
