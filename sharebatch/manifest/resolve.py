"""From the manifest as written to grants: the raw models, inheritance and templates.

The ``Raw*`` models mirror the YAML; their JSON Schema is what editors see. ``Resolver`` then
walks the plain data once per (job, recipient): it merges settings recipient > job > defaults
field by field (each filter field on its own), picks the period, renders every template and
checks what only merged or rendered values can show. A value an earlier pass reported is
INVALID here: whatever depends on it is skipped, so one mistake gives one issue.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sharebatch.manifest.cloudfront import (
    CLOUDFRONT_FIELDS,
    Cidr,
    KeyCache,
    RawCloudFront,
    check_expiry_for_s3,
    resolve_allow_ips,
    resolve_cloudfront,
)
from sharebatch.manifest.fields import (
    FORMATS,
    BucketName,
    ContentType,
    EndpointUrl,
    ExpiresAt,
    FilterMoment,
    Format,
    LinkDuration,
    MaxLinks,
    NameTemplate,
    Pattern,
    Region,
    Size,
    check_download_name,
    check_output_dir,
    check_prefix,
)
from sharebatch.manifest.inventory import InventorySource
from sharebatch.manifest.notify import (
    GROUPS,
    NOTIFY_FIELDS,
    NotifySetting,
    TemplateFiles,
    addresses,
    attribute,
    resolve_notify,
)
from sharebatch.manifest.periods import PeriodKind, parse_moment, previous_period, variables
from sharebatch.manifest.source import IssueCollector, PathKey, format_path, show
from sharebatch.manifest.templates import OBJECT_VARIABLES, names, render
from sharebatch.manifest.upload import (
    OFF,
    SLOT_FIELDS,
    UPLOAD_FIELDS,
    RawScan,
    RawUpload,
    UploadSetting,
    resolve_slot,
)
from sharebatch.models import AddressingStyle, Expiry, Filters, LinkKind, ShortCredentials
from sharebatch.times import iso
from sharebatch.units import counted

_SETTING = "Set in defaults, on a job or on a recipient; the most specific wins."


class RawModel(BaseModel):
    # Strict: YAML already typed every scalar, so "1" for an int is a mistake to report.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RawFilters(RawModel):
    """Which listed files a recipient receives; every condition must hold."""

    model_config = ConfigDict(title="Filters")

    include: list[Pattern] | None = Field(
        None,
        description="Glob patterns on the full key ('**' crosses '/', '*' and '?' do not);"
        " a key must match one. Default: every key.",
    )
    exclude: list[Pattern] | None = Field(None, description="Keys matching any are left out.")
    modified_after: FilterMoment | None = Field(
        None,
        description="Only files modified at or after this date (midnight UTC) or moment with a"
        " zone; templates allowed, e.g. '{period.start}'.",
    )
    modified_before: FilterMoment | None = Field(
        None, description="Only files modified before this date or moment; templates allowed."
    )
    min_size: Size | None = Field(None, description="Smallest size: 1KB, 10MiB, 1.5GB, bytes.")
    max_size: Size | None = Field(None, description="Largest size: 1KB, 10MiB, 1.5GB, bytes.")
    max_links: MaxLinks | None = Field(
        None, description="Fail the job rather than share more files than this."
    )


class RawSettings(RawModel):
    """Settings shared by defaults, jobs and recipients. Filters merge field by field."""

    model_config = ConfigDict(title="Settings")

    bucket: BucketName | None = Field(None, description=f"S3 bucket. {_SETTING}")
    region: Region | None = Field(None, description=f"AWS region, e.g. eu-west-1. {_SETTING}")
    endpoint_url: EndpointUrl | None = Field(
        None, description=f"S3-compatible endpoint, e.g. http://127.0.0.1:9000. {_SETTING}"
    )
    addressing_style: AddressingStyle | None = Field(
        None, description=f"auto (default), virtual or path. {_SETTING}"
    )
    period: PeriodKind | None = Field(
        None,
        description="quarter (default), month or year: the last complete one before the run"
        f" date is what {{period.*}} means. {_SETTING}",
    )
    expires_in: LinkDuration | None = Field(
        None,
        description="Link lifetime: 30m, 72h, 7d, P7D (at most 7 days for link: s3; up to"
        f" cloudfront.max_expires_in for link: cloudfront). {_SETTING}",
    )
    expires_at: ExpiresAt | None = Field(
        None,
        description="Links expire at this moment (with a zone), within 7 days of the run"
        f" (cloudfront: within max_expires_in); instead of expires_in. {_SETTING}",
    )
    download_name: NameTemplate | None = Field(
        None,
        description="Downloaded file name; {key}, {basename}, {stem}, {ext} and every other"
        f" variable. Default {{basename}}. {_SETTING}",
    )
    content_type: ContentType | None = Field(
        None, description=f"Response content type, e.g. application/pdf. {_SETTING}"
    )
    formats: Annotated[list[Format], Field(min_length=1)] | None = Field(
        None, description=f"Bundle files to write: csv, json (default both). {_SETTING}"
    )
    on_short_credentials: ShortCredentials | None = Field(
        None,
        description="When links would outlive the temporary credentials signing them: fail"
        f" (default: exit 3, nothing issued), clamp (end them with the credentials) or warn."
        f" {_SETTING}",
    )
    link_ids: bool | None = Field(
        None,
        description="true (default): every link carries its own signed x-sharebatch-id, which"
        " S3's access logs record (sharebatch usage); false, for stores that refuse unknown"
        f" query parameters. {_SETTING}",
    )
    link: LinkKind | None = Field(
        None,
        description="s3 (default): S3 presigned URLs, at most 7 days; cloudfront: CloudFront"
        f" signed URLs, set up in cloudfront:. {_SETTING}",
    )
    allow_ips: list[Cidr] | None = Field(
        None,
        description="Networks (CIDR) the links should work from, e.g. [203.0.113.0/24]; one"
        " for link: cloudfront (its policy's IP condition), any number for link: s3 (enforced"
        f" by the bucket policy of `sharebatch policy`). [] for none. {_SETTING}",
    )
    source: InventorySource | None = Field(
        None,
        description="Where the objects come from: an S3 Inventory report instead of listing"
        f" the bucket, e.g. {{inventory: s3://inventory-bucket/src/daily/, max_age: 8d}}."
        f" {_SETTING}",
    )
    cloudfront: RawCloudFront | None = Field(
        None,
        description="CloudFront signed links, used with link: cloudfront; each field inherits"
        f" on its own. {_SETTING}",
    )
    filters: RawFilters | None = Field(
        None, description=f"Which files to share. Each filter field inherits on its own. {_SETTING}"
    )
    upload: UploadSetting = Field(
        None,
        description="An upload slot for sending files back; each field inherits on its own;"
        f" false: no slot. {_SETTING}",
    )
    notify: NotifySetting = Field(
        None,
        description="How recipients are told of their bundle (mail, private page); each field"
        f" inherits on its own, smtp's too; false: this level's grants are left out. {_SETTING}",
    )


_BLOCKS = ("filters", "upload", "notify", "cloudfront")
SETTINGS = tuple(n for n in RawSettings.model_fields if n not in _BLOCKS)
FILTERS = tuple(RawFilters.model_fields)


class _Invalid(Enum):
    INVALID = "invalid"


INVALID = _Invalid.INVALID
"""A value that was written but is wrong (already reported): unknown, and not to be inherited."""

_T = TypeVar("_T")
Found = tuple[Any, PathKey] | _Invalid | None  # (value, where written), INVALID, or not set
_RECIPIENT = ("recipient.id", "recipient.name", "recipient.email")
_PLAIN = (
    "bucket",
    "region",
    "endpoint_url",
    "addressing_style",
    "content_type",
    "formats",
    "on_short_credentials",
    "link_ids",
    "source",
)
_REQUIRED = {"bucket": "", "expires_in": " (or expires_at, for a fixed moment)"}


@dataclass
class _Level:
    """One mapping that may hold settings: defaults, a job or a recipient."""

    path: PathKey
    # "bucket", "filters.min_size"...: the parsed value or INVALID; absent when not set.
    values: dict[str, Any] = field(default_factory=dict)
    opaque: bool = False  # not a mapping at all: what it would set is unknown


def _lookup(chain: tuple[_Level, ...], name: str) -> Found:
    for level in chain:
        if level.opaque:
            return INVALID
        if name in level.values:
            value = level.values[name]
            return INVALID if value is INVALID else (value, (*level.path, *name.split(".")))
    return None


def _scan(found: Found) -> Any:
    """A slot's ``ScanSetting`` (None: not scanned; ``upload: false`` is OFF, no slot)."""
    if isinstance(found, tuple) and isinstance(found[0], RawScan):
        return found[0].setting()
    return INVALID if found is INVALID else None


def _expiry(chain: tuple[_Level, ...]) -> tuple[Expiry, PathKey] | _Invalid | None:
    # expires_in and expires_at are one setting: the most specific level giving either wins.
    for level in chain:
        if level.opaque:
            return INVALID
        given = [k for k in ("expires_in", "expires_at") if k in level.values]
        if len(given) > 1 or any(level.values[k] is INVALID for k in given):
            return INVALID
        if given:
            value = level.values[given[0]]
            where = (*level.path, given[0])
            return Expiry(seconds=value) if given[0] == "expires_in" else Expiry(at=value), where
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class _Scope:
    """The template variables of one grant, and why any known one has no value."""

    values: dict[str, str]
    unavailable: set[str]  # written but invalid: templates using them are skipped
    absent: set[str] = field(default_factory=set)  # a recipient without name or email
    who: str = ""


class Resolver:
    """Resolves every job of one manifest, reporting what only resolution can find."""

    def __init__(
        self,
        issues: IssueCollector,
        as_of: date,
        context: dict[str, Any],
        folder: Path | None = None,
        *,
        load_keys: bool = True,
    ) -> None:
        self.issues = issues
        # notify.template paths are relative to the manifest's folder.
        self.templates = TemplateFiles(Path() if folder is None else folder, issues)
        self.as_of = as_of
        self.context = context  # for pydantic validators: "now", which expires_at is checked by
        self.bad = {issue.field for issue in issues.items}  # paths reported so far
        self.defaults = _Level(("defaults",))
        # cloudfront private_key files are relative to the manifest's folder, too.
        self.keys = KeyCache(Path() if folder is None else folder, load=load_keys)

    def resolve(self, data: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
        """Job dicts ready for ``manifest.Job`` (None if any is incomplete) and the output dir."""
        self.defaults = self._level(data.get("defaults"), ("defaults",))
        jobs = [self._job(job, ("jobs", i)) for i, job in enumerate(_list(data.get("jobs")))]
        output = self._output_dir(data.get("output"))
        complete = [job for job in jobs if job is not None]
        return (complete if len(complete) == len(jobs) else None), output

    def _parse(self, model: type[BaseModel], name: str, value: object, path: PathKey) -> Any:
        if value is None:
            return INVALID if format_path(path) in self.bad else None
        try:
            parsed = model.model_validate({name: value}, context=self.context)
            return getattr(parsed, attribute(model, name))
        except ValidationError:
            return INVALID  # reported by the whole-document pass

    def _text(self, node: dict[str, Any], path: PathKey, key: str) -> str | _Invalid | None:
        value = node.get(key)
        if format_path((*path, key)) in self.bad or not isinstance(value, str | None):
            return INVALID
        return value

    def _level(self, node: object, path: PathKey) -> _Level:
        if node is None:
            return _Level(path)
        if not isinstance(node, dict):
            return _Level(path, opaque=True)
        level = _Level(path)
        for name in SETTINGS:
            level.values[name] = self._parse(RawSettings, name, node.get(name), (*path, name))
        filters, where = node.get("filters"), (*path, "filters")
        for name in FILTERS:
            if isinstance(filters, dict):
                value = self._parse(RawFilters, name, filters.get(name), (*where, name))
            else:
                value = INVALID if filters is not None or format_path(where) in self.bad else None
            level.values[f"filters.{name}"] = value
        upload, where = node.get("upload"), (*path, "upload")
        for name in UPLOAD_FIELDS:
            if isinstance(upload, dict):
                value = self._parse(RawUpload, name, upload.get(name), (*where, name))
            elif upload is False:  # no slot from this level down
                value = OFF
            else:
                value = INVALID if upload is not None or format_path(where) in self.bad else None
            level.values[f"upload.{name}"] = value
        block, where = node.get("cloudfront"), (*path, "cloudfront")
        if block is not None or format_path(where) in self.bad:  # else: nothing set here
            for name in CLOUDFRONT_FIELDS:
                level.values[f"cloudfront.{name}"] = (
                    self._parse(RawCloudFront, name, block.get(name), (*where, name))
                    if isinstance(block, dict)
                    else INVALID
                )
        self._notify_level(level, node.get("notify"), (*path, "notify"))
        level.values = {k: v for k, v in level.values.items() if v is not None}
        if "expires_in" in level.values and "expires_at" in level.values:
            self.issues.at(
                (*path, "expires_at"),
                "expires_in and expires_at are both set here; links live either for a duration"
                " or until a moment: keep one",
            )
        return level

    def _notify_level(self, level: _Level, notify: object, where: PathKey) -> None:
        """The notify fields one level sets, its smtp and webhook fields each on its own."""
        if notify is None and format_path(where) not in self.bad:
            return  # the common case, kept cheap: a manifest may have 10,000 recipients
        for name in NOTIFY_FIELDS:
            group, _, key = name.rpartition(".")
            holder, at = (notify, where)
            if group and isinstance(notify, dict):
                holder, at = notify.get(group), (*where, group)
            if notify is False:  # nothing sent from this level down
                value: Any = OFF
            elif isinstance(holder, dict):
                value = self._parse(GROUPS[group], key, holder.get(key), (*at, key))
            else:
                value = INVALID if holder is not None or format_path(at) in self.bad else None
            if value is not None:
                level.values[f"notify.{name}"] = value

    def _job(self, node: object, path: PathKey) -> dict[str, Any] | None:
        if not isinstance(node, dict):
            return None
        level = self._level(node, path)
        name = self._text(node, path, "name")
        prefixes = self._templates(node.get("prefixes", []), (*path, "prefixes"))
        recipients = [
            (j, r) for j, r in enumerate(_list(node.get("recipients"))) if isinstance(r, dict)
        ]
        if not recipients:  # the prefixes are still checked, as far as they can be
            given = {"job.name": name} | dict.fromkeys(_RECIPIENT, INVALID)
            scope = self._scope((level, self.defaults), given)
            for found in prefixes:
                self._rendered(found, scope, check_prefix)
        missing: dict[str, list[PathKey]] = {}
        grants = []
        for j, recipient in recipients:
            where = (*path, "recipients", j)
            chain = (self._level(recipient, where), level, self.defaults)
            grants.append(self._grant(name, prefixes, recipient, where, chain, missing))
        for key, paths in missing.items():
            if len(paths) == len(recipients):
                self.issues.at(
                    (*path, key), "required: set it on the job or in defaults" + _REQUIRED[key]
                )
            for where in paths if len(paths) < len(recipients) else ():
                self.issues.at(
                    (*where, key),
                    "required: set it on this recipient, on its job or in defaults"
                    + _REQUIRED[key],
                )
        if not isinstance(name, str) or None in grants:
            return None
        return {"name": name, "grants": grants}

    def _templates(self, value: object, path: PathKey) -> list[tuple[str, PathKey] | _Invalid]:
        if not isinstance(value, list) or format_path(path) in self.bad:
            return [INVALID]
        items = [(item, (*path, k)) for k, item in enumerate(value)]
        return [
            (item, where)
            if isinstance(item, str) and format_path(where) not in self.bad
            else INVALID
            for item, where in items
        ]

    def _grant(
        self,
        job: str | _Invalid | None,
        job_prefixes: list[tuple[str, PathKey] | _Invalid],
        node: dict[str, Any],
        path: PathKey,
        chain: tuple[_Level, ...],
        missing: dict[str, list[PathKey]],
    ) -> dict[str, Any] | None:
        who = {key: self._text(node, path, key) for key in ("id", "name")}
        who["email"], emails = self._emails(node, (*path, "email"))
        scope = self._scope(chain, {"job.name": job} | {f"recipient.{k}": who[k] for k in who})
        rid = who["id"]
        scope.who = f"recipient {show(rid)}" if isinstance(rid, str) else f"recipient #{path[-1]}"
        grant: dict[str, Any] = {"job": job, "recipient": who | {"addresses": emails}}
        for name in _PLAIN:
            found = _lookup(chain, name)
            grant[name] = found if found is INVALID or found is None else found[0]
        expiry = _expiry(chain)
        grant["expiry"] = expiry[0] if isinstance(expiry, tuple) else expiry
        for key, value in (("bucket", grant["bucket"]), ("expires_in", grant["expiry"])):
            if value is None:
                missing.setdefault(key, []).append(path)
        self._links(grant, chain, expiry, scope)
        own = self._templates(node.get("prefixes", []), (*path, "prefixes"))
        prefixes = [self._rendered(found, scope, check_prefix) for found in (*job_prefixes, *own)]
        grant["prefixes"] = tuple(dict.fromkeys(prefixes))
        grant["filters"] = self._filters(chain, scope)
        found_upload = {name: _lookup(chain, f"upload.{name}") for name in SLOT_FIELDS}
        ok, slot = resolve_slot(found_upload, lambda f, c: self._rendered(f, scope, c), self.issues)
        grant["upload"] = slot if ok else INVALID
        grant["scan"] = _scan(_lookup(chain, "upload.scan")) if slot is not None else None
        found_notify = {name: _lookup(chain, f"notify.{name}") for name in NOTIFY_FIELDS}
        ok, settings, left_out = resolve_notify(
            found_notify,
            OFF,
            lambda f, c: self._rendered(f, scope, c),
            self.issues,
            self.templates,
        )
        grant["notify"] = settings if ok else INVALID
        grant["notify_off"] = left_out or None
        found = _lookup(chain, "download_name") or ("{basename}", ())
        grant["download_name"] = self._rendered(found, scope, check_download_name, OBJECT_VARIABLES)
        if isinstance(grant["formats"], list):
            formats = tuple(f for f in FORMATS if f in grant["formats"])
            grant["formats"] = formats
            if ok and settings is not None and settings.delivery == "page":
                self._page_needs_json(formats, _lookup(chain, "formats"))
        required = ("job", "bucket", "expiry", "filters", "download_name")
        if any(grant[k] is None for k in required) or None in prefixes:
            return None
        if INVALID in (*grant.values(), *who.values()):
            return None
        return {k: v for k, v in grant.items() if v is not None}  # None: the model's default

    def _links(
        self,
        grant: dict[str, Any],
        chain: tuple[_Level, ...],
        expiry: tuple[Expiry, PathKey] | _Invalid | None,
        scope: _Scope,
    ) -> None:
        """``link``, ``allow_ips`` and ``cloudfront`` of one grant, and its expiry checked
        against the limit of its kind of link (7 days for s3, max_expires_in for cloudfront)."""
        found = _lookup(chain, "link")
        link = INVALID if found is INVALID else "s3" if found is None else found[0]
        grant["link"] = link
        now = self.context.get("now")
        now = now if isinstance(now, datetime) else None
        timed = (
            ((expiry[0].seconds, expiry[0].at), expiry[1]) if isinstance(expiry, tuple) else None
        )
        ips = resolve_allow_ips(_lookup(chain, "allow_ips"), link, self.issues)
        grant["allow_ips"] = INVALID if ips is None else ips
        link_at = found[1] if isinstance(found, tuple) else ()
        rid = grant["recipient"].get("id")
        recipient = rid if isinstance(rid, str) else None
        if link == "s3" and not check_expiry_for_s3(
            timed, self.issues, now, link_at=link_at, recipient=recipient
        ):
            grant["expiry"] = INVALID
        if link != "cloudfront":
            return
        fields = {name: _lookup(chain, f"cloudfront.{name}") for name in CLOUDFRONT_FIELDS}
        links = resolve_cloudfront(
            fields,
            link_at,
            timed,
            now,
            lambda f, c: self._rendered(f, scope, c),
            self.keys,
            self.issues,
        )
        grant["cloudfront"] = INVALID if links is None else links

    def _page_needs_json(self, formats: tuple[str, ...], found: Found) -> None:
        """Refuse a grant mailed its page whose formats leave out json: the page's link is
        kept in the ``links.json`` header (``page_url``), where notify reads it."""
        if "json" in formats or not isinstance(found, tuple):
            return
        self.issues.at(
            found[1],
            f"formats [{', '.join(formats)}] writes no links.json, where delivery: page keeps"
            " the link to the recipient page (notify reads it there); add json, or set"
            " notify: {delivery: links}",
        )

    def _emails(
        self, node: dict[str, Any], path: PathKey
    ) -> tuple[str | _Invalid | None, tuple[str, ...]]:
        """(display form, each address) of a recipient's ``email:``, one address or a list."""
        value = node.get("email")
        if value is None or isinstance(value, str):
            shown = self._text(node, path[:-1], "email")
            return shown, (shown,) if isinstance(shown, str) else ()
        if format_path(path) in self.bad or not isinstance(value, list):
            return INVALID, ()
        found = addresses(value, path, self.issues)
        return (INVALID, ()) if found is None else found

    def _scope(self, chain: tuple[_Level, ...], given: dict[str, str | _Invalid | None]) -> _Scope:
        found = _lookup(chain, "period")
        kind: PeriodKind = found[0] if isinstance(found, tuple) else "quarter"
        values = variables(previous_period(self.as_of, kind), self.as_of)
        scope = _Scope(
            values, {n for n in values if n.startswith("period.")} if found is INVALID else set()
        )
        for name, value in given.items():
            if isinstance(value, str):
                values[name] = value
            else:
                (scope.absent if value is None else scope.unavailable).add(name)
        return scope

    def _rendered(
        self,
        found: tuple[str, PathKey] | _Invalid,
        scope: _Scope,
        check: Callable[[str], _T],
        keep: Collection[str] = (),
    ) -> _T | None:
        """``check`` applied to the rendered template, or None (reported or unknowable)."""
        if found is INVALID:
            return None
        template, path = found
        used = names(template)
        if used & scope.unavailable:
            return None
        absent = sorted(used & scope.absent)
        if absent:
            what = absent[0].partition(".")[2]
            self.issues.at(
                path,
                f"{{{absent[0]}}} is used here but {scope.who} has no {what};"
                f" give the recipient a {what} or remove the variable",
            )
            return None
        text = render(template, scope.values, keep=keep)
        try:
            return check(text)
        except ValueError as exc:
            origin = "" if text == template else f"; rendered from {show(template)}"
            self.issues.at(path, f"{exc}{origin}")
            return None

    def _filters(self, chain: tuple[_Level, ...], scope: _Scope) -> Filters | None:
        values: dict[str, tuple[Any, PathKey]] = {}
        complete = True
        for name in FILTERS:
            found = _lookup(chain, f"filters.{name}")
            if isinstance(found, tuple) and isinstance(found[0], str):  # a moment template
                found = self._rendered(found, scope, parse_moment), found[1]
            if found is INVALID or (found is not None and found[0] is None):
                complete = False
            elif found is not None:
                value, where = found
                values[name] = (tuple(value) if isinstance(value, list) else value, where)
        complete &= self._ordered(values, "min_size", "max_size")
        complete &= self._ordered(values, "modified_after", "modified_before")
        return Filters(**{k: v for k, (v, _) in values.items()}) if complete else None

    def _ordered(self, values: dict[str, tuple[Any, PathKey]], low: str, high: str) -> bool:
        """Sizes may be equal (bounds are inclusive); the modified range is half-open."""
        if low not in values or high not in values:
            return True
        (a, where_a), (b, where_b) = values[low], values[high]
        sizes = low == "min_size"
        if a < b or (a == b and sizes):
            return True
        shown: Callable[[Any], str] = (lambda size: counted(size, "byte")) if sizes else iso
        verb = "is more than" if sizes else "is not before"
        # Reported where the conflict was introduced: the more specific of the two levels.
        self.issues.at(
            where_a if len(where_a) > len(where_b) else where_b,
            f"{low} {shown(a)} ({format_path(where_a)}) {verb} {high} {shown(b)}"
            f" ({format_path(where_b)}); no file could match",
        )
        return False

    def _output_dir(self, node: object) -> str | None:
        if not isinstance(node, dict):
            return None
        path, template = ("output", "dir"), node.get("dir")
        if not isinstance(template, str) or format_path(path) in self.bad:
            return None
        return self._rendered((template, path), self._scope((self.defaults,), {}), check_output_dir)
