"""Field types of the manifest: parsers and validators for single values.

Each check raises ``ValueError`` with a message for the person who wrote the value (pydantic
passes it through and ``IssueCollector`` locates it). Rules that need more than one value, or
the rendered form of a template, live in ``resolve``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Collection
from datetime import date, datetime
from fractions import Fraction
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, PlainValidator, ValidationInfo, WithJsonSchema

from sharebatch.errors import TemplateError
from sharebatch.manifest.periods import (
    DATE_RE,
    DURATION_HINT,
    parse_duration,
    parse_moment,
)
from sharebatch.manifest.periods import VARIABLES as PERIOD_VARIABLES
from sharebatch.manifest.source import describe, show
from sharebatch.manifest.templates import OBJECT_VARIABLES, names, render_object
from sharebatch.manifest.templates import unknown_message as unknown_variable
from sharebatch.times import iso
from sharebatch.visible import HIDDEN

MAX_PREFIX_BYTES = 1024  # S3's limit on a key, and so on any useful prefix.
MAX_CLOUDFRONT_EXPIRES_IN = 365 * 86_400
"""The longest ``max_expires_in`` (and so link lifetime) we accept; CloudFront sets none.

A signed URL cannot be taken back one by one: the only revocation is removing its public key
from the key group, which kills every link signed with it. A year bounds how long a leaked
link works if nobody rotates the key, and matches the yearly key rotation most security
policies ask for; a file meant to stay reachable longer is a publication, not a share.
"""
SAMPLE_KEY = "dir/sample.pdf"  # what download_name is tried on at load time

GRANT_VARIABLES: tuple[str, ...] = (
    *PERIOD_VARIABLES,
    "job.name",
    "recipient.id",
    "recipient.name",
    "recipient.email",
)
NAME_VARIABLES: tuple[str, ...] = (*GRANT_VARIABLES, "key", "basename", "stem", "ext")
OUTPUT_VARIABLES: tuple[str, ...] = PERIOD_VARIABLES

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")

_SIZE_HINT = "use e.g. 10MB, 1.5GiB or a number of bytes"
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)")
_SIZE_UNITS = {"": 1, "b": 1}
_SIZE_UNITS |= {f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)}
_SIZE_UNITS |= {f"{p}ib": 1024**i for i, p in enumerate("kmgt", 1)}
_MOMENT_HINT = "use YYYY-MM-DD or a moment with a zone, e.g. 2026-10-01T00:00:00Z"
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
_BUCKET_CHARS_RE = re.compile(r"[a-z0-9.-]*")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_WILDCARDS = "*?["
_MEDIA_CHARS = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE_RE = re.compile(
    rf'{_MEDIA_CHARS}/{_MEDIA_CHARS}(?: *; *{_MEDIA_CHARS}=(?:{_MEDIA_CHARS}|"[^"\\]*"))*'
)


def hidden_character(value: str) -> str | None:
    """The first character ``visible`` would escape, described for a message; else None.

    Controls (ESC, BEL, CR, LF...), format characters (bidi overrides, zero-width spaces) and
    line separators rewrite a terminal or hide what a reader sees, so no text of a manifest
    may hold one, even written as a YAML escape.
    """
    found = HIDDEN.search(value)
    return None if found is None else f"control or invisible character U+{ord(found[0]):04X}"


def check_text(value: str, what: str) -> str:
    """Free text: anything but the characters ``hidden_character`` finds."""
    hidden = hidden_character(value)
    if hidden is not None:
        raise ValueError(f"{what} {show(value)} contains {hidden}")
    return value


# --- durations, sizes, counts ---------------------------------------------------------------


def _duration_field(value: object) -> int:
    if isinstance(value, float):
        raise ValueError(f"{value} is not a duration: use whole seconds, or {DURATION_HINT[4:]}")
    if isinstance(value, int | str):  # bool included: parse_duration explains why not
        return parse_duration(value)
    raise ValueError(f"expected a duration, got {describe(value)}; {DURATION_HINT}")


def capped_duration(value: object, too_long: Callable[[str], str]) -> int:
    """A duration of whole seconds or text up to a year (``MAX_CLOUDFRONT_EXPIRES_IN``);
    ``too_long`` turns the length's complaint into the field's own reason."""
    if isinstance(value, float):
        raise ValueError(f"{value} is not a duration: use whole seconds, or {DURATION_HINT[4:]}")
    if not isinstance(value, int | str):
        raise ValueError(f"expected a duration, got {describe(value)}; {DURATION_HINT}")
    try:
        return parse_duration(value, MAX_CLOUDFRONT_EXPIRES_IN)
    except ValueError as exc:
        if "longer than" not in str(exc):
            raise
        raise ValueError(too_long(str(exc))) from None


def _link_duration_field(value: object) -> int:
    """``expires_in``: up to a year here; the limit of the grant's kind of link (7 days for
    ``link: s3``, ``max_expires_in`` for cloudfront) is checked once the kind is known."""
    return capped_duration(
        value,
        lambda exc: (
            f"{exc}: no link lives that long (presigned URLs 7 days, CloudFront links their"
            " max_expires_in, at most 365 days)"
        ),
    )


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: ``1024``, ``"10MB"``, ``"1.5 GiB"``, ``"512kib"``.

    Units are B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB (powers of 1024), in any
    case, optionally after one space; decimals are rounded down to whole bytes. Negative sizes
    and anything unreadable raise ``ValueError`` with a message for the person who wrote it.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise ValueError(f"{shown} is not a size; {_SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; a size is 0 or more bytes")
        return value
    text = value.strip()
    negative = text.startswith("-")
    match = _SIZE_RE.fullmatch(text[1:] if negative else text) if len(text) <= 40 else None
    if match is None:
        raise ValueError(f"{show(value)} is not a size; {_SIZE_HINT}")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"{show(value)} has an unknown unit {unit!r}; use B, KB, MB, GB, TB (powers of 1000)"
            " or KiB, MiB, GiB, TiB (powers of 1024)"
        )
    if negative:
        raise ValueError(f"{show(value)} is negative; a size is 0 or more bytes")
    return math.floor(Fraction(number) * factor)


def _size_field(value: object) -> int:
    if isinstance(value, float):
        raise ValueError(f"{value} is not a size: give whole bytes or a unit, e.g. {value}MB")
    if isinstance(value, int | str):
        return parse_size(value)
    raise ValueError(f"expected a size, got {describe(value)}; {_SIZE_HINT}")


def _max_links_field(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    shown = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    raise ValueError(f"max_links must be a positive whole number, got {shown or describe(value)}")


# --- moments --------------------------------------------------------------------------------


def _moment_field(value: object) -> datetime:
    if isinstance(value, date | str):
        return parse_moment(value)
    raise ValueError(f"expected a date, got {describe(value)}; {_MOMENT_HINT}")


def _filter_moment_field(value: object) -> datetime | str:
    """A moment now, or a template (anything with a brace) to render per grant."""
    if isinstance(value, str) and ("{" in value or "}" in value):
        return _check_template(value, GRANT_VARIABLES)
    return _moment_field(value)


def _expires_at_field(value: object, info: ValidationInfo) -> datetime:
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(
            f"expires_at {value.isoformat()} needs a time and a zone,"
            f" e.g. {value.isoformat()}T17:00:00Z"
        )
    if isinstance(value, str) and DATE_RE.fullmatch(value.strip()):
        raise ValueError(f"expires_at {show(value)} needs a time and a zone, e.g. 17:00:00Z")
    moment = _moment_field(value)
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if isinstance(now, datetime):
        if moment <= now:
            raise ValueError(f"{iso(moment)} is in the past (the run is at {iso(now)})")
        # 7 days is the limit of link: s3, checked per grant once the kind is known; past a
        # year no kind of link could reach it, so the year is the limit named here.
        if (moment - now).total_seconds() > MAX_CLOUDFRONT_EXPIRES_IN:
            raise ValueError(
                f"{iso(moment)} is more than 365 days after the run ({iso(now)}): no link lives"
                " that long (presigned URLs, link: s3, at most 7 days; CloudFront links at most"
                " their max_expires_in, itself at most 365 days)"
            )
    return moment


# --- names, buckets, addresses --------------------------------------------------------------


def check_slug(value: str, what: str) -> str:
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


def check_prefix(value: str) -> str:
    """A literal key prefix: the rules apply to the rendered text of a prefix template."""
    if not value:
        raise ValueError("prefix must not be empty; name the folder to share, e.g. 'reports/'")
    wildcard = next((c for c in value if c in _WILDCARDS), None)
    if wildcard is not None:
        raise ValueError(
            f"prefix {show(value)} contains {wildcard!r}: prefixes are literal key prefixes,"
            " not patterns (use filters.include for patterns)"
        )
    if value.startswith("/"):
        rest = value.lstrip("/")
        fix = f"write {show(rest)}" if rest else "name the folder to share, e.g. 'reports/'"
        raise ValueError(
            f"prefix {show(value)} starts with '/': S3 keys rarely begin with '/', so this is"
            f" almost always a mistake; {fix}"
        )
    check_text(value, "prefix")
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


def check_bucket(value: str) -> str:
    """A bucket name by S3's naming rules (``ValueError`` saying which it breaks)."""
    return _check_bucket(value)


def _looks_like_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def check_region(value: str, what: str = "region") -> str:
    """An AWS region name; ``what`` names the value (``--region`` on the command line)."""
    if not _REGION_RE.fullmatch(value):
        raise ValueError(f"{what} {show(value)} is not an AWS region name like 'eu-west-1'")
    return value


def check_endpoint(value: str, what: str = "endpoint_url") -> str:
    """``http(s)://host[:port]`` and nothing more; ``what`` names the value in messages.

    The value itself is never echoed: an endpoint URL may carry a password.
    """
    hidden = hidden_character(value)  # urlsplit would silently drop a tab or newline
    if hidden is not None:
        raise ValueError(f"{what} contains {hidden}")
    usage = f"{what} must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9000"
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed IPv6 bracket, for one
        raise ValueError(usage) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(usage)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain a user name or password")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(f"{what} must give a port from 1 to 65535, or none")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(
            f"{what} must be scheme, host and port only, without a path, query or fragment"
            " (the bucket comes from the manifest)"
        )
    return value


_ATEXT = frozenset("!#$%&'*+-/=?^_`{|}~")


def check_address(value: str, what: str = "email") -> str:
    """One plain mail address (``local@domain``), as a mail server takes it in RCPT TO.

    Quoted local parts, comments and address literals are refused: nothing a partner's address
    needs, and each is a way to smuggle text into a mail header.
    """
    check_text(value, what)
    local, at, domain = value.rpartition("@")
    why = _address_problem(local, domain) if at else "it has no '@'"
    if why is not None:
        hint = "; write several addresses as a list: [a@x.example, b@y.example]"
        raise ValueError(
            f"{what} {show(value)} must be one address like ops@example.com: {why}"
            + (hint if "," in value or ";" in value else "")
        )
    return value


def _address_problem(local: str, domain: str) -> str | None:
    if not local:
        return "nothing before '@'"
    if len(local) > 64 or len(local) + len(domain) > 253:
        return "it is too long (64 characters before '@', 254 in all)"
    if not local.isascii():
        # RCPT TO carries ASCII only without SMTPUTF8, which sharebatch does not speak.
        bad = next(c for c in local if not c.isascii())
        return f"{bad!r} is not allowed before '@': only ASCII is"
    if not domain.isascii():
        return f"write the domain in its ASCII (punycode) form: {_punycode(domain)}"
    if any(not (c.isalnum() or c in _ATEXT or c == ".") for c in local):
        bad = next(c for c in local if not (c.isalnum() or c in _ATEXT or c == "."))
        return f"{bad!r} is not allowed before '@'"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "dots before '@' must separate words"
    labels = domain.removesuffix(".").split(".")
    for label in labels:
        if not label or len(label) > 63:
            return f"the domain {show(domain)} has an empty or overlong part"
        if (
            label.startswith("-")
            or label.endswith("-")
            or not all(c.isalnum() or c == "-" for c in label)
        ):
            return f"the domain {show(domain)} is not a host name"
    return None


def _punycode(domain: str) -> str:
    try:
        return repr(domain.encode("idna").decode("ascii"))
    except UnicodeError:  # not a name IDNA can encode: no form to suggest
        return "xn--..."


def _check_email(value: str) -> str:
    return check_address(value, "email")


def _check_content_type(value: str) -> str:
    check_text(value, "content_type")  # a quoted parameter value may hold anything else
    if not _MEDIA_TYPE_RE.fullmatch(value):
        raise ValueError(
            f"content_type {show(value)} is not a media type like 'application/pdf'"
            " or 'text/csv; charset=utf-8'"
        )
    return value


def _check_pattern(value: str) -> str:
    if not value:
        raise ValueError("pattern must not be empty; leave include out to select every key")
    check_text(value, "pattern")
    if "***" in value:
        raise ValueError(f"pattern {show(value)} contains '***'; write '**' to cross folders")
    return value


# --- templates ------------------------------------------------------------------------------
# A TemplateError is a UsageError, not a ValueError: pydantic turns only ValueErrors into
# located issues, so each validator below converts it, saying which template it was.


def _check_template(value: str, known: Collection[str]) -> str:
    try:
        used = names(value)
    except TemplateError as exc:
        raise ValueError(f"template {show(value)}: {exc}") from None
    unknown = sorted(used - set(known))
    if unknown and unknown[0] in NAME_VARIABLES:
        listed = ", ".join("{" + k + "}" for k in known)
        raise ValueError(f"template variable {{{unknown[0]}}} cannot be used here; known: {listed}")
    if unknown:
        raise ValueError(unknown_variable(unknown[0], known))
    return value


def check_download_name(template: str) -> str:
    """``template`` (object variables only left) must give a usable file name for a key."""
    try:
        name = render_object(template, SAMPLE_KEY)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    problem = _file_name_problem(name)
    if problem is not None:
        raise ValueError(
            f"download_name gives {show(name)} for the key {SAMPLE_KEY!r}, which {problem};"
            " a download name must be a plain file name"
        )
    return template


def _file_name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if name.isspace():
        return "is blank"
    if not name.strip("."):  # '.' and '..' name folders, not files
        return "is only dots"
    if "/" in name:
        return "contains '/'"
    hidden = hidden_character(name)
    return None if hidden is None else f"contains {hidden}"


def check_output_dir(value: str) -> str:
    """The rendered ``output.dir``: a folder name the CLI can create."""
    if not value.strip():
        raise ValueError("output.dir must not be empty; leave it out for the default 'bundles'")
    return check_text(value, "output.dir")


def _public_download_name(value: str) -> str:
    try:
        used = names(value)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    if used - OBJECT_VARIABLES:
        raise ValueError("download_name may only keep the variables key, basename, stem, ext")
    return check_download_name(value)


def _template(known: Collection[str]) -> Callable[[str], str]:
    return partial(_check_template, known=known)


JobName = Annotated[str, AfterValidator(partial(check_slug, what="job name"))]
RecipientId = Annotated[str, AfterValidator(partial(check_slug, what="recipient id"))]
Prefix = Annotated[str, AfterValidator(check_prefix)]
PrefixTemplate = Annotated[str, AfterValidator(_template(GRANT_VARIABLES))]
GrantTemplate = Annotated[str, AfterValidator(_template(GRANT_VARIABLES))]
"""Text rendered once per grant: every variable but the per-object ones."""
NameTemplate = Annotated[str, AfterValidator(_template(NAME_VARIABLES))]
OutputTemplate = Annotated[str, AfterValidator(_template(OUTPUT_VARIABLES))]
DownloadName = Annotated[str, AfterValidator(_public_download_name)]
BucketName = Annotated[str, AfterValidator(_check_bucket)]
Region = Annotated[str, AfterValidator(check_region)]
EndpointUrl = Annotated[str, AfterValidator(check_endpoint)]
Email = Annotated[str, AfterValidator(_check_email)]
RecipientName = Annotated[str, AfterValidator(partial(check_text, what="name"))]
RecipientEmails = Annotated[str, AfterValidator(partial(check_text, what="email"))]
"""A recipient's addresses as shown: one as written, several joined by ', '."""
ContentType = Annotated[str, AfterValidator(_check_content_type)]
Pattern = Annotated[str, AfterValidator(_check_pattern)]
Duration = Annotated[
    int,
    PlainValidator(_duration_field),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["72h", "7d", "P7D", 3600]}),
]
LinkDuration = Annotated[
    int,
    PlainValidator(_link_duration_field),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["72h", "7d", "P7D", "90d", 3600]}),
]
"""A link's lifetime (``expires_in``): at most a year as written; see ``_link_duration_field``."""
Size = Annotated[
    int,
    PlainValidator(_size_field),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["10MB", "1.5GiB", 1024]}),
]
MaxLinks = Annotated[
    int, PlainValidator(_max_links_field), WithJsonSchema({"type": "integer", "minimum": 1})
]
FilterMoment = Annotated[
    datetime | str,
    PlainValidator(_filter_moment_field),
    WithJsonSchema({"type": "string", "examples": ["{period.start}", "2026-10-01T00:00:00Z"]}),
]
ExpiresAt = Annotated[
    datetime,
    PlainValidator(_expires_at_field),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def mapping_or_false(fields: str, off: str) -> Callable[[object], object]:
    """The before-validator of a setting written as a mapping of ``fields`` or as ``false``
    (``upload:``, ``notify:``). ``false`` validates as "not set": the resolver reads it from
    the YAML as switched off. ``off`` says what false means, for the message."""

    def check(value: object) -> object:
        if value is False:
            return None
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"expected a mapping of {fields}, or false {off}, got {describe(value)}"
            )
        return value

    return check


def false_in_schema(schema: dict[str, Any]) -> None:
    """Such a setting's JSON Schema: ``false`` beside the mapping."""
    schema["anyOf"].insert(1, {"const": False})
