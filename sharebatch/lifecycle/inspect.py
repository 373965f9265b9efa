"""Reading presigned URLs and link bundles back: what a link is, and when it stops working.

``read_url`` takes a presigned S3 URL apart (SigV4 or the older SigV2) without contacting
anyone; ``read_bundle`` loads a CSV or JSON bundle with every row checked; ``inspect`` turns
both into plain data with a status per link. ``verify`` (checking links over HTTP) and
``renew`` (re-signing) build on these. Nothing returned here holds a whole URL: a link is
named by its bucket, key and ``url_sha256``, the digest the audit log records.

CloudFront signed URLs (issue 16) are read by ``cloudfront/read`` into ``CloudFrontUrl``: the
end from ``Expires`` or the decoded policy, its start, IP range, key pair id and hash. A link
CloudFront would refuse whatever the time (an unreadable policy, a missing parameter) is
INVALID with the reason, never an error: it is one of the run's links gone wrong, and the
others are still worth showing. One whose start (``DateGreaterThan``) is still ahead is
NOT_YET_VALID: issued ahead of its period on purpose, it needs no renewal, so it does not
make ``inspect`` exit 1 (renewing it could not make it start sooner).

``cloudfront_row_problems`` holds a CloudFront row to its header's whole origin (domain, key
pair, hash, IP range, start) and to its own object (no wider policy Resource): the one check
``inspect``, ``verify`` and ``renew`` apply, so an edited row is refused alike by all three.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from sharebatch.audit import url_digest
from sharebatch.cloudfront.read import is_cloudfront_url, read_cloudfront_url
from sharebatch.cloudfront.sign import domain_origin
from sharebatch.errors import LinkError, SigningError
from sharebatch.models import LINK_ID_PARAM, MAX_EXPIRES_IN
from sharebatch.run.bundles import COLUMNS, OPTIONAL_COLUMNS, BundleHeader, csv_value
from sharebatch.run.link_ids import link_id_of
from sharebatch.run.slots import FILENAME, read_policy
from sharebatch.times import iso, parse_iso
from sharebatch.visible import HIDDEN, visible

Status = Literal["VALID", "EXPIRING", "EXPIRED", "INVALID", "NOT_YET_VALID"]

# Virtual-hosted AWS hosts: bucket.s3.amazonaws.com, bucket.s3.eu-west-1.amazonaws.com,
# bucket.s3-eu-west-1.amazonaws.com, bucket.s3.dualstack.eu-west-1.amazonaws.com (and .cn).
_VIRTUAL_AWS = re.compile(r"(?P<bucket>.+?)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?")
_PATH_AWS = re.compile(r"s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?")
# Signed headers a GET link never needs: their presence means an upload link.
_UPLOAD_HEADERS = ("content-type", "content-md5", "x-amz-meta-", "x-amz-checksum-")
# S3 takes a request signed up to 15 minutes ahead of its own clock (RequestTimeTooSkewed past
# that): a link signed further ahead is refused until then, whatever its expiry says.
CLOCK_SKEW = timedelta(minutes=15)
_SCHEME = re.compile(r"\s*(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class UrlFacts:
    """What a presigned URL says about itself. Holds no secret: not the URL, not the token."""

    signature_version: Literal["SigV4", "SigV2"]
    method: str | None  # a presigned URL does not name its method; None when it gives no hint
    host: str
    bucket: str | None
    key: str | None
    region: str | None
    access_key_id: str
    credential_kind: Literal["session", "long-term"]
    signed_at: datetime | None  # SigV2 URLs carry only their expiry
    expires_at: datetime
    expires_in: int | None
    url_sha256: str
    # Why S3 refuses the URL whatever the time: a repeated parameter, an X-Amz-Expires outside
    # 1 s..7 days, a signing day other than the credential scope's.
    fault: str | None = None
    # Its x-sharebatch-id, as the URL carries it (None: a link issued without one).
    link_id: str | None = None

    def problem(self, now: datetime) -> str | None:
        """Why S3 refuses this URL at ``now`` whatever its expiry, or ``None``."""
        problems = [self.fault] if self.fault else []
        if self.signed_at and self.signed_at > now + CLOCK_SKEW:
            problems.append(f"X-Amz-Date is in the future ({iso(self.signed_at)})")
        return "; ".join(problems) or None


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def read_url(url: str, source: str = "") -> UrlFacts:
    """Take a presigned S3 URL apart; ``LinkError`` (naming ``source``) if it is not one."""
    hidden = HIDDEN.search(url.strip())
    if hidden:
        # A presigned URL is percent-encoded: a raw control or invisible character means it was
        # damaged (and urlsplit would drop tabs and newlines silently).
        raise LinkError(f"{_where(source)}the URL holds {visible(hidden.group())}, not a link")
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # "Invalid IPv6 URL": a '[' host without its ']'
        raise LinkError(f"{_where(source)}not an http(s) URL: its host is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkError(f"{_where(source)}not an http(s) URL")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    counts = Counter(name for name, _ in pairs)
    repeated = [f"{name} is given {n} times" for name, n in counts.items() if n > 1]
    query = dict(pairs)
    lower = {name.lower(): value for name, value in query.items()}
    host = parts.hostname
    bucket, key = _bucket_and_key(host, parts.path)
    response_params = any(name.startswith("response-") for name in lower)
    if query.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256":
        return _sigv4(url, source, query, host, bucket, key, response_params, repeated)
    if {"awsaccesskeyid", "signature", "expires"} <= lower.keys():
        try:
            expires_at = datetime.fromtimestamp(int(lower["expires"]), UTC)
        except (ValueError, OverflowError, OSError):
            raise LinkError(f"{_where(source)}Expires is not a moment in seconds") from None
        token = "x-amz-security-token" in lower
        return UrlFacts(
            signature_version="SigV2",
            method="GET" if response_params else None,
            host=host,
            bucket=bucket,
            key=key,
            region=None,
            access_key_id=lower["awsaccesskeyid"],
            credential_kind="session" if token else _kind_of_key(lower["awsaccesskeyid"]),
            signed_at=None,
            expires_at=expires_at,
            expires_in=None,
            url_sha256=url_digest(url.strip()),
            fault="; ".join(repeated) or None,
            link_id=query.get(LINK_ID_PARAM),
        )
    raise LinkError(
        f"{_where(source)}not a presigned S3 URL: no SigV4 (X-Amz-Algorithm...) or SigV2"
        " (AWSAccessKeyId, Signature, Expires) parameters, nor a CloudFront signed URL"
        " (Key-Pair-Id, Signature, Expires or Policy)"
    )


def _sigv4(
    url: str,
    source: str,
    query: Mapping[str, str],
    host: str,
    bucket: str | None,
    key: str | None,
    response_params: bool,
    faults: list[str],
) -> UrlFacts:
    missing = [
        name
        for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature")
        if name not in query
    ]
    if missing:
        raise LinkError(f"{_where(source)}SigV4 URL without {', '.join(missing)}")
    scope = query["X-Amz-Credential"].split("/")
    try:
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires_in = int(query["X-Amz-Expires"])
        expires_at = signed_at + timedelta(seconds=expires_in)
    except (ValueError, OverflowError):
        raise LinkError(f"{_where(source)}X-Amz-Date or X-Amz-Expires is malformed") from None
    if expires_in <= 0:
        faults.append(f"X-Amz-Expires {expires_in}s: S3 needs 1 s to 7 days")
    elif expires_in > MAX_EXPIRES_IN:
        faults.append(f"X-Amz-Expires {expires_in}s is over S3's 7-day limit")
    day = query["X-Amz-Date"][:8]
    if len(scope) != 5:
        faults.append("X-Amz-Credential is not key/date/region/service/aws4_request")
    elif scope[1] != day:
        faults.append(f"X-Amz-Date's day {day} is not the credential scope's date {scope[1]}")
    signed = query.get("X-Amz-SignedHeaders", "host").split(";")
    upload = any(h.startswith(_UPLOAD_HEADERS) for h in signed)
    token = "X-Amz-Security-Token" in query
    return UrlFacts(
        signature_version="SigV4",
        method="GET" if response_params else "PUT" if upload else None,
        host=host,
        bucket=bucket,
        key=key,
        region=scope[2] if len(scope) == 5 else None,
        access_key_id=scope[0],
        credential_kind="session" if token else _kind_of_key(scope[0]),
        signed_at=signed_at,
        expires_at=expires_at,
        expires_in=expires_in,
        url_sha256=url_digest(url.strip()),
        fault="; ".join(faults) or None,
        link_id=query.get(LINK_ID_PARAM),
    )


def _kind_of_key(access_key_id: str) -> Literal["session", "long-term"]:
    # AWS issues temporary (STS) key ids with the ASIA prefix, long-term ones with AKIA.
    return "session" if access_key_id.startswith("ASIA") else "long-term"


def _bucket_and_key(host: str, path: str) -> tuple[str | None, str | None]:
    decoded = unquote(path)
    virtual = _VIRTUAL_AWS.fullmatch(host)
    if virtual and not _PATH_AWS.fullmatch(host):
        return virtual["bucket"], decoded[1:] or None
    # Path style: AWS's own path-style hosts, and what S3-compatible endpoints use.
    bucket, _, key = decoded[1:].partition("/")
    return bucket or None, key or None


@dataclass(frozen=True, slots=True)
class CloudFrontUrl:
    """What a CloudFront signed URL says about itself. Holds no secret: not the URL, not its
    signature or policy. ``expires_at`` is None only when ``fault`` says why it is unreadable.
    """

    host: str
    key: str | None
    key_pair_id: str | None
    hash: str | None
    policy: Literal["canned", "custom"] | None
    not_before: datetime | None
    expires_at: datetime | None
    source_ip: str | None
    url_sha256: str
    link_id: str | None
    # Why CloudFront refuses it whatever the time: an unreadable policy, a missing parameter.
    fault: str | None = None
    # scheme://host[:port], as ``cloudfront.sign.domain_origin`` writes a header's domain.
    origin: str = field(default="", repr=False)
    # A custom policy's Resource other than the URL itself (a wildcard): what it really grants.
    wider: bool = field(default=False, repr=False)

    def problem(self, now: datetime) -> str | None:
        """Why CloudFront refuses this URL at any time, or ``None``."""
        if self.fault:
            return self.fault
        if self.not_before and self.expires_at and self.not_before >= self.expires_at:
            return (
                f"its start {iso(self.not_before)} is not before its end {iso(self.expires_at)}:"
                " it never works"
            )
        return None


LinkFacts = UrlFacts | CloudFrontUrl


def read_cloudfront(url: str, source: str = "") -> CloudFrontUrl:
    """A CloudFront signed URL read back; one CloudFront would refuse whatever the time comes
    back with its ``fault``. ``LinkError`` only when it is no http(s) URL at all."""
    url = url.strip()
    hidden = HIDDEN.search(url)
    if hidden:
        raise LinkError(f"{_where(source)}the URL holds {visible(hidden.group())}, not a link")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise LinkError(f"{_where(source)}not an http(s) URL: its host is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkError(f"{_where(source)}not an http(s) URL")
    key = unquote(parts.path[1:]) or None
    link_id = dict(parse_qsl(parts.query, keep_blank_values=True)).get(LINK_ID_PARAM)
    digest = url_digest(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    origin = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}" + (
        f":{port}" if port is not None else ""
    )
    try:
        facts = read_cloudfront_url(url)
    except ValueError as exc:
        # read.py names what is wrong without quoting the URL, its policy or its signature.
        return CloudFrontUrl(
            host, key, None, None, None, None, None, None, digest, link_id, str(exc), origin
        )
    return CloudFrontUrl(
        host=parts.hostname,
        key=key,
        key_pair_id=facts.key_pair_id,
        hash=facts.hash,
        policy="canned" if facts.canned else "custom",
        not_before=facts.not_before,
        expires_at=facts.expires,
        source_ip=facts.source_ip,
        url_sha256=digest,
        link_id=link_id,
        origin=origin,
        wider=facts.policy_resource != facts.resource,
    )


# Parameters only CloudFront reads: a URL with one of them is meant as a CloudFront link, and
# one missing its other parameters is an INVALID one (with the reason), not "no link at all".
_CLOUDFRONT_ONLY = re.compile(r"[?&](?:Key-Pair-Id|Policy|Hash-Algorithm)=")


def read_link(url: str, source: str = "") -> LinkFacts:
    """Any link sharebatch issues read back: a CloudFront signed URL or a presigned S3 URL."""
    text = url.strip()
    if is_cloudfront_url(text) or _CLOUDFRONT_ONLY.search(text.partition("#")[0]):
        return read_cloudfront(url, source)
    return read_url(url, source)


def status_of(
    expires_at: datetime,
    now: datetime,
    within: timedelta,
    problem: str | None = None,
    not_before: datetime | None = None,
) -> Status:
    """INVALID with a ``problem``; EXPIRED at or after ``expires_at``; EXPIRING when it comes
    within ``within``; NOT_YET_VALID before ``not_before``."""
    if problem:
        return "INVALID"
    if expires_at <= now:
        return "EXPIRED"
    if expires_at <= now + within:
        return "EXPIRING"
    # DateGreaterThan: CloudFront refuses the link until then.
    return "NOT_YET_VALID" if not_before is not None and now <= not_before else "VALID"


@dataclass(frozen=True, slots=True)
class BundleRow:
    """One row of a bundle; ``line`` is its CSV line or its 1-based JSON position."""

    line: int
    recipient: str
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    method: str
    expires_at: datetime
    url: str = field(repr=False)
    link_id: str | None = None  # empty or absent (ids off, or a bundle from before them)


@dataclass(frozen=True)
class Bundle:
    """A bundle file read back: its header (JSON bundles only) and its rows, in order;
    ``uploads``: the JSON's upload slots as written (``uploads.upload_row``), checked.

    A JSON header that is not one sharebatch writes leaves ``header`` None and says why in
    ``header_problem``: its links can still be inspected and verified, not renewed.
    """

    path: Path
    format: Literal["csv", "json"]
    header: BundleHeader | None
    rows: list[BundleRow]
    uploads: list[dict[str, Any]] = field(default_factory=list)
    header_problem: str | None = None
    # Where each upload slot is, for messages: "file: uploads[n]" or "file:line".
    upload_where: list[str] = field(default_factory=list)
    # An uploads.csv: slots and no links, which verify and renew do not take.
    slots_only: bool = False


def bundle_file(path: Path) -> Path:
    """A bundle folder stands for its latest bundle: the newest renewal, else the original
    (JSON before CSV); a file stands for itself."""
    if path.is_dir():
        for suffix in ("json", "csv"):
            # Renewal names start with their UTC time, so the last in name order is the newest.
            renewed = sorted(path.glob(f"links.renewed-*.{suffix}"))
            if renewed:
                return renewed[-1]
            if (path / f"links.{suffix}").is_file():
                return path / f"links.{suffix}"
        raise LinkError(f"{path}: no links.json or links.csv in this folder")
    return path


def read_bundle(path: str | Path, data: bytes | None = None) -> Bundle:
    """Load a CSV or JSON bundle; ``LinkError`` names the file, line and field of a problem.

    ``data``: the file's bytes, when the caller has read them already (renewal checks the
    sha256 of exactly what it reads).
    """
    given = str(path)
    try:
        path = bundle_file(Path(path))
        if data is None:
            if path.exists() and not path.is_file():
                # A FIFO or a device would be read until its writer stops, maybe never.
                raise LinkError(f"{given}: not a regular file")
            text = path.read_text(encoding="utf-8")
        else:
            text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # ValueError: a NUL in the path. The path is named as given: Path() would fold '//'.
        raise LinkError(f"{given}: cannot read the bundle: {exc.__class__.__name__}") from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        found, raw, slots = _json_rows(path, text)
        rows = [_row(path, "json", n, item) for n, item in raw]
        where = [f"{path}: uploads[{n - 1}]" for n, _ in slots]
        uploads = [_upload(w, u) for w, (_, u) in zip(where, slots, strict=True)]
        try:
            header = BundleHeader.from_json(found)
        except ValueError as exc:
            return Bundle(path, "json", None, rows, uploads, str(exc), where)
        return Bundle(path, "json", header, rows, uploads, upload_where=where)
    names, table = _csv_rows(path, text)
    if {"fields", "curl"} <= set(names):
        # An uploads.csv: upload slots, no links.
        lines = [(f"{path}:{n}", _csv_slot(path, n, item)) for n, item in table]
        uploads = [_upload(w, item) for w, item in lines]
        where = [w for w, _ in lines]
        return Bundle(path, "csv", None, [], uploads, upload_where=where, slots_only=True)
    missing = [c for c in COLUMNS if c not in names and c not in OPTIONAL_COLUMNS]
    if missing:
        raise LinkError(f"{path}:1: not a sharebatch bundle: no column {', '.join(missing)}")
    rows = [_row(path, "csv", n, item) for n, item in table]
    return Bundle(path, "csv", None, rows)


def _row_where(path: Path, fmt: str, line: int) -> str:
    return f"{path}:{line}" if fmt == "csv" else f"{path}: links[{line - 1}]"


def _json_rows(
    path: Path, text: str
) -> tuple[object, list[tuple[int, Any]], list[tuple[int, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LinkError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError):
        # An integer of over 4,300 digits, or nesting deeper than the interpreter's stack.
        raise LinkError(f"{path}: not valid JSON: a number too long or nesting too deep") from None
    if not isinstance(data, dict) or not isinstance(data.get("links"), list):
        raise LinkError(
            f'{path}: not a sharebatch bundle: expected {{"header": ..., "links": [...]}}'
        )
    header = data.get("header")
    slots = data.get("uploads", [])
    if not isinstance(slots, list):
        raise LinkError(f"{path}: uploads: expected a list of upload slots")
    return (
        header,
        list(enumerate(data["links"], 1)),
        list(enumerate(slots, 1)),
    )


_UPLOAD_TEXT = ("recipient", "bucket", "key", "url")


def _upload(where: str, item: Any) -> dict[str, Any]:
    """One upload slot row, checked enough that renewal and inspection can rely on its
    fields; ``where`` names it (``file: uploads[n]`` or ``file:line``)."""
    if not isinstance(item, dict):
        raise LinkError(f"{where}: expected an object with the upload columns")
    for name in _UPLOAD_TEXT:
        if not isinstance(item.get(name), str) or not item[name]:
            raise LinkError(f"{where}: {name}: missing")
        if _SURROGATE.search(item[name]):
            raise LinkError(f"{where}: {name}: holds a lone surrogate, not UTF-8 text")
    if item.get("method") not in ("PUT", "POST"):
        raise LinkError(f"{where}: method: expected PUT or POST")
    if not isinstance(item.get("max_size"), int) or not isinstance(item.get("content_type"), str):
        raise LinkError(f"{where}: max_size or content_type: missing")
    if not isinstance(item.get("link_id") or "", str):
        raise LinkError(f"{where}: link_id: expected text or null")
    for name in ("fields", "headers"):
        if not isinstance(item.get(name, {}), dict):
            raise LinkError(f"{where}: {name}: expected an object")
    try:
        parse_iso(str(item.get("expires_at")))
    except ValueError:
        raise LinkError(f"{where}: expires_at: not a moment with a time zone") from None
    return item


def _csv_slot(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    """A row of uploads.csv in the shape of the JSON's ``uploads``: the size a number, the
    form fields and headers objects (each a JSON object in its cell)."""
    slot: dict[str, Any] = dict(row)
    size = slot.get("max_size")
    if isinstance(size, str) and size.isascii() and size.isdigit():
        slot["max_size"] = int(size)
    for name in ("fields", "headers"):
        cell = slot.get(name)
        try:
            slot[name] = json.loads(cell) if isinstance(cell, str) and cell else {}
        except (ValueError, RecursionError):
            raise LinkError(f"{path}:{line}: {name}: not a JSON object") from None
    return slot


def _csv_rows(path: Path, text: str) -> tuple[list[str], Iterator[tuple[int, Any]]]:
    """The CSV's column names and its rows, each with its line number."""
    # Not splitlines(): it also splits at U+2028 and friends, which a quoted key may hold.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        names = list(reader.fieldnames or [])
    except csv.Error as exc:  # a header cell over the csv module's 128 KiB limit
        raise LinkError(f"{path}:1: not a sharebatch bundle: {exc}") from None
    return names, _csv_table(path, reader)


def _csv_table(path: Path, reader: csv.DictReader[str]) -> Iterator[tuple[int, Any]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell over the csv module's 128 KiB limit
            raise LinkError(f"{path}:{reader.line_num}: not a bundle row: {exc}") from None
        # Cells were written by bundles.csv_cell: escapes and the formula quote are undone.
        yield (
            reader.line_num,
            {k: csv_value(v) if isinstance(v, str) else v for k, v in row.items()},
        )


def _row(path: Path, fmt: str, line: int, item: Any) -> BundleRow:
    where = _row_where(path, fmt, line)
    if not isinstance(item, dict):
        raise LinkError(f"{where}: expected an object with the bundle's columns")

    def text(name: str) -> str:
        value = item.get(name)
        if value is None or value == "":
            raise LinkError(f"{where}: {name}: missing")
        if _SURROGATE.search(str(value)):
            # JSON's "\ud800" (or a CSV escape of it): no UTF-8 key or output can hold one.
            raise LinkError(f"{where}: {name}: holds a lone surrogate, not UTF-8 text")
        return str(value)

    def moment(name: str) -> datetime:
        value = text(name)
        try:
            return parse_iso(value)
        except ValueError as exc:
            if "://" in value or "signature" in value.lower() or len(value) > 64:
                # A link shifted into this column (a cell dropped): a bearer secret, not shown.
                raise LinkError(f"{where}: {name}: not a moment (a URL? not shown)") from None
            raise LinkError(f"{where}: {name}: {exc}") from None

    try:
        size = int(text("size"))
    except ValueError:
        raise LinkError(f"{where}: size: not a whole number of bytes") from None
    link_id = item.get("link_id") or None
    if link_id is not None and not isinstance(link_id, str):
        raise LinkError(f"{where}: link_id: expected text or null")
    return BundleRow(
        line=line,
        recipient=text("recipient"),
        bucket=text("bucket"),
        key=text("key"),
        size=size,
        etag=str(item.get("etag") or ""),
        last_modified=moment("last_modified"),
        method=text("method").upper(),
        expires_at=moment("expires_at"),
        url=text("url"),
        link_id=link_id,
    )


def cloudfront_bundle(bundle: Bundle) -> bool:
    """Whether a bundle's links are CloudFront's: its header says so (one grant, one kind);
    a CSV bundle, which has no header, by its first link's form."""
    if bundle.header is not None:
        policy = bundle.header.policy
        return policy is not None and policy.link == "cloudfront"
    return bool(bundle.rows) and is_cloudfront_url(bundle.rows[0].url.strip())


def row_facts(bundle: Bundle, row: BundleRow) -> UrlFacts:
    """The URL facts of an S3 row, with ``LinkError`` naming the row when the URL is
    unreadable (or a CloudFront link: ``row_link`` reads both)."""
    return read_url(row.url, f"{_row_where(bundle.path, bundle.format, row.line)}: url")


def row_link(bundle: Bundle, row: BundleRow) -> LinkFacts:
    """A row's link read back as its bundle's kind (``cloudfront_bundle``): an S3 bundle's
    unreadable URL is ``LinkError``, a CloudFront one's an INVALID ``fault``."""
    source = f"{_row_where(bundle.path, bundle.format, row.line)}: url"
    if cloudfront_bundle(bundle):
        return read_cloudfront(row.url, source)
    return read_url(row.url, source)


def row_end(bundle: Bundle, row: BundleRow) -> datetime:
    """When a row's link stops working: the earlier of its ``expires_at`` and its URL's."""
    found = row_link(bundle, row).expires_at
    return row.expires_at if found is None else min(row.expires_at, found)


def _facts_data(facts: UrlFacts, now: datetime, within: timedelta) -> dict[str, Any]:
    data = asdict(facts)
    del data["fault"]
    for name in ("signed_at", "expires_at"):
        data[name] = iso(data[name]) if data[name] else None
    data["seconds_left"] = int((facts.expires_at - now).total_seconds())
    data["problem"] = facts.problem(now)
    data["status"] = status_of(facts.expires_at, now, within, data["problem"])
    return {"link": "s3", **data}


def _cloudfront_data(facts: CloudFrontUrl, now: datetime, within: timedelta) -> dict[str, Any]:
    data = asdict(facts)
    for name in ("fault", "origin", "wider"):
        del data[name]
    for name in ("not_before", "expires_at"):
        data[name] = iso(data[name]) if data[name] else None
    problem = facts.problem(now)
    end = facts.expires_at
    data["seconds_left"] = None if end is None else int((end - now).total_seconds())
    data["problem"] = problem
    data["status"] = (
        "INVALID" if end is None else status_of(end, now, within, problem, facts.not_before)
    )
    return {"link": "cloudfront", **data}


def inspect_url(url: str, now: datetime, within: timedelta, source: str = "") -> dict[str, Any]:
    """One URL as plain data: its facts, ``seconds_left`` and ``status``; ``link`` says its
    kind (``s3`` or ``cloudfront``)."""
    facts = read_link(url, source)
    if isinstance(facts, CloudFrontUrl):
        return _cloudfront_data(facts, now, within)
    return _facts_data(facts, now, within)


def inspect_bundle(bundle: Bundle, now: datetime, within: timedelta) -> dict[str, Any]:
    """One bundle as plain data: a table of links per recipient, each with its status.

    A row's end is the earlier of its ``expires_at`` (which sharebatch writes as the real
    moment, credentials included) and what its URL says, so an edited row cannot hide one.
    """
    recipients: dict[str, list[dict[str, Any]]] = {}
    for row in bundle.rows:
        facts = row_link(bundle, row)
        end = row.expires_at if facts.expires_at is None else min(row.expires_at, facts.expires_at)
        problems = [facts.problem(now)]
        if row.link_id != facts.link_id:
            # The usage report joins S3's logs on the URL's id: a row naming another would
            # credit its downloads to the wrong link.
            problems.append(
                f"link_id {row.link_id or '(none)'} is not its URL's ({facts.link_id or 'none'})"
            )
        link: dict[str, Any] = {
            "line": row.line,
            "bucket": row.bucket,
            "key": row.key,
            "method": row.method,
            "expires_at": iso(end),
            "seconds_left": int((end - now).total_seconds()),
        }
        if isinstance(facts, CloudFrontUrl):
            problems += cloudfront_row_problems(bundle, row, facts)
            problem = "; ".join(p for p in problems if p) or None
            link |= {
                "status": status_of(end, now, within, problem, facts.not_before),
                "problem": problem,
                "link": "cloudfront",
                "key_pair_id": facts.key_pair_id,
                "hash": facts.hash,
                "policy": facts.policy,
                "not_before": iso(facts.not_before) if facts.not_before else None,
                "source_ip": facts.source_ip,
            }
        else:
            problem = "; ".join(p for p in problems if p) or None
            link |= {
                "status": status_of(end, now, within, problem),
                "problem": problem,
                "credential_kind": facts.credential_kind,
                "signature_version": facts.signature_version,
            }
        link |= {"url_sha256": facts.url_sha256, "link_id": row.link_id}
        recipients.setdefault(row.recipient, []).append(link)
    header = bundle.header
    return {
        "path": str(bundle.path),
        "format": bundle.format,
        "run_id": header.run_id if header else None,
        "job": header.job if header else None,
        "link": "cloudfront" if cloudfront_bundle(bundle) else "s3",
        "recipients": [
            {"recipient": name, **_counts(links), "links": links}
            for name, links in recipients.items()
        ],
        **_counts([link for links in recipients.values() for link in links]),
        "uploads": inspect_slots(bundle, now, within),
        "uploads_problem": _missing_slots(bundle),
    }


def cloudfront_row_problems(bundle: Bundle, row: BundleRow, facts: CloudFrontUrl) -> list[str]:
    """Where a CloudFront row's URL is not what its header says it was signed with, or
    grants more than its own object: another origin (scheme, host, port), key pair, hash, IP
    range or start, another key than the row's, or a policy Resource wider than the URL (a
    wildcard). Empty without a CloudFront header to hold it to (a CSV bundle), and for an
    unreadable URL (its ``fault`` already says why CloudFront refuses it)."""
    policy = bundle.header.policy if bundle.header else None
    settings = policy.cloudfront if policy else None
    if policy is None or settings is None or facts.fault:
        return []
    problems = []
    try:
        origin = domain_origin(settings.domain)
    except ValueError as exc:
        origin = None
        problems.append(f"the header's domain cannot be held to: {exc}")
    if origin is not None and facts.origin != origin:
        problems.append(
            f"its origin {visible(facts.origin)} is not the header's domain"
            f" {visible(settings.domain)}"
        )
    if facts.key_pair_id != settings.key_pair_id:
        problems.append(
            f"its Key-Pair-Id {facts.key_pair_id} is not the header's {settings.key_pair_id}"
        )
    if facts.hash != settings.hash:
        problems.append(f"its hash {facts.hash} is not the header's {settings.hash}")
    ips = policy.allow_ips[0] if policy.allow_ips else None
    if facts.source_ip != ips:
        problems.append(
            f"its IP range {facts.source_ip or '(any)'} is not the header's {ips or '(any)'}"
        )
    if facts.not_before != settings.not_before:
        start, wanted = facts.not_before, settings.not_before
        problems.append(
            f"its start {iso(start) if start else '(none)'} is not the header's"
            f" {iso(wanted) if wanted else '(none)'}"
        )
    if facts.key != row.key:
        problems.append("its path is not the row's key")
    if facts.wider:
        problems.append("its policy's Resource is not the link itself (a wildcard or another)")
    return problems


def _missing_slots(bundle: Bundle) -> str | None:
    """Why the JSON's ``uploads`` are not all the slots its header counts, or None: slots
    that went out but are not in the file cannot be shown (a renewal that dropped them)."""
    counted = bundle.header.uploads if bundle.header else None
    if counted is None or counted == len(bundle.uploads):
        return None
    return (
        f"the header counts {counted} upload slot{'s' * (counted != 1)}, the bundle holds"
        f" {len(bundle.uploads)}"
    )


def _policy(where: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], datetime]:
    """A POST form's signed policy and its ``expiration``; ``LinkError`` when unreadable."""
    try:
        policy = read_policy(fields)
    except SigningError:
        raise LinkError(f"{where}: fields: no readable signed policy") from None
    try:
        return policy, parse_iso(str(policy.get("expiration")))
    except ValueError:
        raise LinkError(f"{where}: fields: the policy's expiration is not a moment") from None


def _policy_problems(slot: Mapping[str, Any], policy: Mapping[str, Any]) -> list[str]:
    """Where a slot's row claims more than its signed policy allows (a tampered row)."""
    conditions = policy.get("conditions")
    conditions = conditions if isinstance(conditions, list) else []
    problems = []
    key: str = slot["key"]
    prefix = key.removesuffix(FILENAME)
    if ["starts-with", "$key", prefix] not in conditions and {"key": key} not in conditions:
        problems.append("its key is not the one its policy allows")
    if {"bucket": slot["bucket"]} not in conditions:
        problems.append("its bucket is not its policy's")
    limits = [c[2] for c in conditions if isinstance(c, list) and c[:1] == ["content-length-range"]]
    if limits != [slot["max_size"]]:
        problems.append("its max_size is not its policy's content-length-range")
    return problems


def inspect_slot(
    where: str, slot: Mapping[str, Any], now: datetime, within: timedelta
) -> dict[str, Any]:
    """One upload slot (a checked row of ``uploads``) as plain data with its status.

    A PUT slot ends when its presigned URL does; a POST slot when its signed policy's
    ``expiration`` does. The row's ``expires_at`` may say earlier (credentials that end first)
    but never later: a row claiming more than its signature, or a key, bucket or size other
    than its signature's, is INVALID. Nothing returned holds the URL, signature or policy.
    """
    claimed = parse_iso(slot["expires_at"])
    problems: list[str] = []
    digest: dict[str, str]
    if slot["method"] == "PUT":
        facts = read_url(slot["url"], f"{where}: url")
        signed_end = facts.expires_at
        problems += [facts.problem(now) or ""]
        if (facts.bucket, facts.key) != (slot["bucket"], slot["key"]):
            problems.append("its bucket or key is not its URL's")
        url_id = facts.link_id
        digest = {"url_sha256": facts.url_sha256}
    else:
        fields = slot.get("fields", {})
        policy, signed_end = _policy(where, fields)
        problems += _policy_problems(slot, policy)
        try:
            signed_at = datetime.strptime(str(fields.get("x-amz-date")), "%Y%m%dT%H%M%SZ")
        except ValueError:
            problems.append("its form has no readable x-amz-date")
        else:
            if signed_at.replace(tzinfo=UTC) > now + CLOCK_SKEW:
                problems.append(
                    f"x-amz-date is in the future ({iso(signed_at.replace(tzinfo=UTC))})"
                )
        url_id = link_id_of(slot["url"])
        digest = {"policy_sha256": url_digest(str(fields["policy"]))}
    if claimed > signed_end:
        problems.append(
            f"expires_at {iso(claimed)} is later than its signature's end {iso(signed_end)}"
        )
    link_id = slot.get("link_id") or None
    if link_id != url_id:
        problems.append(f"link_id {link_id or '(none)'} is not its URL's ({url_id or 'none'})")
    end = min(claimed, signed_end)
    problem = "; ".join(p for p in problems if p) or None
    return {
        "where": where,
        "recipient": slot["recipient"],
        "bucket": slot["bucket"],
        "method": slot["method"],
        "key": slot["key"],
        "content_type": slot["content_type"] or None,
        "max_size": slot["max_size"],
        "link_id": link_id,
        "expires_at": iso(end),
        "seconds_left": int((end - now).total_seconds()),
        "status": status_of(end, now, within, problem),
        "problem": problem,
        **digest,
    }


def inspect_slots(bundle: Bundle, now: datetime, within: timedelta) -> list[dict[str, Any]]:
    """The bundle's upload slots (an uploads.csv's rows, a links.json's ``uploads``)."""
    return [
        inspect_slot(where, slot, now, within)
        for where, slot in zip(bundle.upload_where, bundle.uploads, strict=True)
    ]


def _counts(links: Iterable[Mapping[str, Any]], *, early: bool = True) -> dict[str, int]:
    """Links (or, without ``early``, upload slots, which have no start) by status."""
    counts = {"valid": 0, "expiring": 0, "expired": 0, "invalid": 0}
    if early:
        counts["not_yet_valid"] = 0
    for link in links:
        counts[str(link["status"]).lower()] += 1
    return counts


def stdin_urls(lines: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """``(source, url)`` for each non-blank line of stdin, which holds URLs only.

    ``LinkError`` names the line that is not UTF-8 or not an http(s) URL; the line itself is
    not shown, since it may be a damaged link (a bearer secret).
    """
    for n, raw in enumerate(lines, 1):
        source = f"stdin line {n}"
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise LinkError(f"{source}: not UTF-8 text") from None
        if n == 1:
            text = text.removeprefix("\ufeff")  # Windows editors start a text file with a BOM
        if not text:
            continue
        scheme = _SCHEME.match(text)
        if scheme is None or scheme["scheme"].lower() not in ("http", "https"):
            raise LinkError(f"{source}: not an http(s) URL (give bundle files as arguments)")
        yield source, text


def inspect(
    targets: Iterable[str],
    now: datetime,
    within: timedelta = timedelta(0),
    stdin: Iterable[bytes] = (),
) -> dict[str, Any]:
    """``sharebatch inspect``: each target a URL (``http(s)://...``) or a bundle path (links,
    or an uploads.csv), then the URLs of ``stdin``'s lines (``stdin_urls``).

    Each bundle's ``uploads`` are its upload slots (``inspect_slot``); a folder of CSV
    bundles shows the uploads file beside its links. ``upload_slots`` counts them apart from
    the links. ``ok`` is False when any link or slot is expired, invalid, or expiring within
    ``within``, or a bundle's header counts slots it does not hold (``uploads_problem``).
    """
    urls: list[dict[str, Any]] = []
    bundles: list[dict[str, Any]] = []
    for n, target in enumerate(targets, 1):
        scheme = _SCHEME.match(target)
        if scheme is None:
            bundle = read_bundle(target)
            shown = inspect_bundle(bundle, now, within)
            beside = _uploads_beside(Path(target), bundle)
            if beside is not None:
                shown["uploads"] = inspect_slots(read_bundle(beside), now, within)
            bundles.append(shown)
        elif scheme["scheme"].lower() in ("http", "https"):
            urls.append(inspect_url(target, now, within, f"argument {n}"))
        else:
            # Read as a path, s3://b/k would come back as "s3:/b/k: cannot read the bundle".
            raise LinkError(
                f"argument {n}: an {scheme['scheme']}:// address is not a presigned URL;"
                " give http(s) URLs or bundle files"
            )
    for source, url in stdin_urls(stdin):
        urls.append(inspect_url(url, now, within, source))
    every = [*urls, *(link for b in bundles for r in b["recipients"] for link in r["links"])]
    counts = _counts(every)
    slots = _counts((slot for b in bundles for slot in b["uploads"]), early=False)
    bad = [counts[s] + slots[s] for s in ("expired", "expiring", "invalid")]
    bad += [1 for b in bundles if b["uploads_problem"]]
    return {
        "now": iso(now),
        "within_seconds": int(within.total_seconds()),
        "urls": urls,
        "bundles": bundles,
        **counts,
        "upload_slots": slots,
        "ok": not any(bad),
    }


def _uploads_beside(target: Path, bundle: Bundle) -> Path | None:
    """For a folder whose bundle is CSV: the uploads file written with it, if any (a JSON
    bundle holds its slots itself)."""
    if not target.is_dir() or bundle.format != "csv" or bundle.uploads:
        return None
    # links.csv -> uploads.csv; links.renewed-<time>-<hex>.csv -> uploads.renewed-<...>.csv
    _, dot, rest = bundle.path.name.partition(".")
    beside = bundle.path.with_name(f"uploads{dot}{rest}")
    return beside if beside.is_file() else None
