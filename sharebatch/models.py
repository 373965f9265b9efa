"""Frozen value types passed between pipeline stages.

Stages exchange these, never boto responses, so each stage can be tested with plain values.
Fields that hold secrets (presigned URLs, secret keys, tokens) are left out of ``repr`` so a
traceback or a debug print cannot leak them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict

MAX_EXPIRES_IN = 604_800
"""Seven days, in seconds: SigV4 refuses presigned URLs valid for longer."""

AddressingStyle = Literal["auto", "virtual", "path"]
ShortCredentials = Literal["fail", "clamp", "warn"]
"""What to do when links would outlive the temporary credentials that sign them."""

LinkKind = Literal["s3", "cloudfront"]
"""Which kind of link a grant issues: an S3 presigned URL (SigV4, at most 7 days) or a
CloudFront signed URL (a key pair of the distribution's key group; ``cloudfront/``)."""

CloudFrontHash = Literal["sha256", "sha1"]

LINK_ID_PARAM = "x-sharebatch-id"
"""The query parameter that names each issued link (``run/link_ids``); signed like the others.
A presigner given it in ``params`` signs it into the URL after the operation's parameters."""

Presigner = Callable[[str, str, str, int, Mapping[str, str]], str]
"""``presign(method, bucket, key, expires_in, params) -> url`` for one bucket target.

``params`` are botocore's (``ResponseContentDisposition``...; ``ContentType`` for a PUT),
plus ``LINK_ID_PARAM`` when the link carries an id."""

PostSigner = Callable[
    [str, str, Mapping[str, str], Sequence[object], int], tuple[str, dict[str, str]]
]
"""``sign_post(bucket, key, fields, conditions, expires_in) -> (url, form fields)``: a SigV4
POST policy for one bucket target; the fields include ``policy`` and ``x-amz-signature``."""


@dataclass(frozen=True, slots=True)
class BucketTarget:
    """Where a bucket lives and how to address it; one S3 client serves each distinct target."""

    bucket: str
    region: str | None
    endpoint_url: str | None
    addressing_style: AddressingStyle = "auto"


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach S3: the AWS profile for credentials, and a region and endpoint that
    override every bucket target's (the command line's ``--profile``, ``--region`` and
    ``--endpoint-url``). None leaves each to the target, then to the AWS chain."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None


class ObjectRef(NamedTuple):
    """One listed S3 object.

    A named tuple rather than a frozen dataclass: one is made for every object listed, and
    a tuple is made in a quarter of the time.
    """

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """A frozen snapshot of the signing credentials, resolved once per run."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiry: datetime | None = None
    method: str = "unknown"


@dataclass(frozen=True, slots=True)
class Link:
    """One presigned link issued to one recipient. ``url`` is a bearer secret."""

    job: str
    recipient: str
    obj: ObjectRef
    method: str
    signed_at: datetime
    expires_at: datetime
    url: str = field(repr=False)
    # Its ``x-sharebatch-id`` (signed into ``url``); None when the manifest turned ids off.
    link_id: str | None = None
    kind: LinkKind = "s3"


@dataclass(frozen=True, slots=True)
class PrefixFailure:
    """A prefix whose listing failed; recipients entitled to it get no bundle this run."""

    bucket: str
    prefix: str
    error: str
    message: str


RunStatus = Literal["ok", "partial", "failed", "denied"]
"""How a run ended; ``RunSummary.exit_code`` maps it to the exit code."""


class SlotSummary(TypedDict):
    """An upload slot as the summary and review page list it: never its URL or form."""

    method: Literal["PUT", "POST"]
    key: str
    content_type: str
    max_size: int
    expires_at: str


class CloudFrontReport(TypedDict):
    """How a ``link: cloudfront`` recipient's links are signed, as ``summary.json`` says it
    (where the key is read from stays in the bundle's header; the key itself nowhere)."""

    domain: str
    key_pair_id: str
    hash: CloudFrontHash
    policy: Literal["canned", "custom"]
    not_before: str | None
    max_expires_in: int


class RecipientReport(TypedDict):
    """One recipient of a job in ``summary.json``.

    The keys after ``unlinkable_count`` are there only when they say something, so the
    summary of a run of S3 links stays as it was: ``link`` and ``cloudfront`` for CloudFront
    links, ``allow_ips`` when the grant names networks, ``page_expires_at`` when the recipient
    page's own S3 link ends before the CloudFront links on it.
    """

    id: str
    links: int
    bytes: int
    matched: int
    bundle: str | None
    expires_at: str | None
    prefixes: list[str]
    merged_prefixes: list[dict[str, str]]
    uploads: list[SlotSummary]
    unlinkable: list[str]
    unlinkable_count: int
    link: NotRequired[LinkKind]
    cloudfront: NotRequired[CloudFrontReport]
    allow_ips: NotRequired[list[str]]
    page_expires_at: NotRequired[str]


class JobReport(TypedDict):
    """One job in ``summary.json``: its recipients, then its totals."""

    name: str
    recipients: list[RecipientReport]
    links: int
    bytes: int
    earliest_expiry: str | None
    upload_slots: int
    unlinkable: int
    failures: int


class ManifestReport(TypedDict):
    """The manifest a run read, and the date its periods were computed from."""

    path: str
    sha256: str
    as_of: str


class TotalsReport(TypedDict):
    """The run's totals (also the fields of its ``run_finished`` audit event)."""

    jobs: int
    recipients: int
    prefixes: int
    objects_listed: int
    links: int
    bundles: int
    failures: int
    bytes: int
    earliest_expiry: str | None
    upload_slots: int
    unlinkable: int


class PrefixReport(TypedDict):
    """One listed prefix: what it held and how long listing it took."""

    bucket: str
    prefix: str
    objects: int
    bytes: int
    seconds: float
    status: Literal["listed", "failed"]


class PrefixFailureReport(TypedDict):
    """A prefix whose listing failed."""

    kind: Literal["prefix"]
    bucket: str
    prefix: str
    error: str
    message: str


class MaxLinksFailureReport(TypedDict):
    """A recipient of a job that matched more than its ``max_links``."""

    kind: Literal["max_links"]
    job: str
    recipient: str
    error: str
    message: str


class PageFailureReport(TypedDict):
    """A recipient whose page could not be stored: its bundle was not written."""

    kind: Literal["page"]
    job: str
    recipient: str
    error: str
    message: str


FailureReport = PrefixFailureReport | MaxLinksFailureReport | PageFailureReport
"""Any failure ``summary.json`` lists."""


class RunReport(TypedDict):
    """``summary.json`` of a run that ended (what ``--dry-run`` prints), keys in file order."""

    run_id: str
    status: RunStatus
    dry_run: bool
    manifest: ManifestReport
    started_at: str
    totals: TotalsReport
    jobs: list[JobReport]
    prefixes: list[PrefixReport]
    failures: list[FailureReport]
    # The S3 Inventory reports read instead of listing: source, manifest, created_at (the
    # links show the bucket as it was then), rows, verify drift. Absent when all was listed.
    inventories: NotRequired[list[dict[str, Any]]]
    duration_seconds: NotRequired[float]  # measured after the rest: absent from the review


@dataclass(frozen=True)
class RunSummary:
    """What a run did. ``report`` is the content of ``summary.json``."""

    run_id: str
    status: RunStatus
    run_dir: str | None
    report: RunReport = field(repr=False)

    @property
    def exit_code(self) -> int:
        """0 all shared; 1 some or all prefixes failed; 3 S3 denied access to every prefix."""
        return {"ok": 0, "denied": 3}.get(self.status, 1)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which listed objects a recipient receives. Every condition must hold.

    ``include``/``exclude`` are glob patterns on the whole key: ``*`` and ``?`` stay within
    one path segment, ``**`` crosses ``/``. No include pattern means every key is included.
    Datetimes are timezone-aware UTC and form a half-open range: ``modified_after`` is
    inclusive, ``modified_before`` exclusive. Sizes are bytes, both bounds inclusive.
    ``max_links`` is a guard: more matches than this fails the job rather than sharing a
    whole bucket by mistake.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    min_size: int | None = None
    max_size: int | None = None
    max_links: int | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """How long links live: a duration from signing, or a fixed UTC moment (exactly one)."""

    seconds: int | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a private key is read from: a file (``{file: path}``) or an environment
    variable holding the PEM (``{env: NAME}``); exactly one. Never the key itself."""

    file: str | None = None
    env: str | None = None


@dataclass(frozen=True, slots=True)
class CloudFrontLinks:
    """A grant's resolved ``cloudfront:`` setting (``link: cloudfront``).

    ``domain`` is the distribution's host name (``d111111abcdef8.cloudfront.net`` or its own
    domain), or, for a loopback test server only, an origin such as ``http://127.0.0.1:8443``.
    ``not_before`` is the rendered start of a custom policy; ``max_expires_in`` (seconds) our
    own cap on this kind's links, which replaces SigV4's 7 days. ``distribution_arn`` is needed
    only by ``sharebatch policy`` (the Origin Access Control statement's ``AWS:SourceArn``).
    """

    domain: str
    key_pair_id: str
    private_key: KeySource
    max_expires_in: int
    hash: CloudFrontHash = "sha256"
    not_before: datetime | None = None
    distribution_arn: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What S3 or STS said to one preflight request (``sharebatch doctor``).

    ``facts`` on success (and whatever an error still revealed, such as a bucket's region);
    ``error`` is the service's error code. ``date`` is the response's HTTP ``Date`` header,
    which error responses carry too: the server's clock, for the skew check.
    """

    facts: Mapping[str, str | bool | None] = field(default_factory=dict)
    error: str | None = None
    message: str = ""
    date: datetime | None = None


@dataclass(frozen=True, slots=True)
class UploadSlot:
    """Where one recipient may send files back, and within which limits (``upload:``).

    ``prefix`` ends with ``/``. With ``keys``, exactly those names under it, each through its
    own presigned PUT; without, any name under it through a POST form. ``content_types``
    empty means any type. ``max_size`` is in bytes.
    """

    prefix: str
    max_size: int
    expires_in: int = 3600
    content_types: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UploadLink:
    """One way to upload, issued to one recipient: a PUT URL or a POST form (bearer secrets).

    ``key`` is the object key for a PUT, and the form's key field (the slot prefix followed by
    ``${filename}``, which S3 replaces with the uploaded file's name) for a POST. ``headers``
    are what a PUT must send exactly as signed; ``fields`` are a POST form's fields, the
    policy and its signature among them.
    """

    job: str
    recipient: str
    bucket: str
    method: Literal["PUT", "POST"]
    key: str
    content_type: str | None
    max_size: int
    signed_at: datetime
    expires_at: datetime
    url: str = field(repr=False)
    fields: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    # Its ``x-sharebatch-id``: signed into a PUT URL, on a POST form's action URL unsigned.
    link_id: str | None = None


@dataclass(frozen=True, slots=True)
class LinkProbe:
    """What S3 answered to one check of a presigned link; never holds the URL.

    ``status`` is the HTTP status (None when no answer came); ``size`` and ``etag`` are what
    the answer said of the object; ``error`` is S3's error code or the failure's kind.
    """

    status: int | None
    size: int | None = None
    etag: str | None = None
    error: str | None = None
    message: str = ""


SmtpSecurity = Literal["starttls", "tls", "none"]
"""``starttls`` (default): plain connection upgraded before AUTH; ``tls``: TLS from the first
byte (port 465); ``none``: no TLS at all, allowed only towards a loopback address."""

DeliveryKind = Literal["page", "links"]
"""``page`` (default): one link to the recipient's private page; ``links``: links in the mail."""

WebhookFormat = Literal["slack", "json"]


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where mail is handed over (``notify.smtp``). Never holds the password: only the name
    of the environment variable it is read from when a message is sent."""

    host: str
    port: int
    security: SmtpSecurity = "starttls"
    username: str | None = None
    password_env: str = "SHAREBATCH_SMTP_PASSWORD"  # noqa: S105 (a variable's name)
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a run's and a notify's summary is posted (``notify.webhook``); never a link.

    The URL is left out of ``repr``: webhook URLs often carry their token (Slack's do).
    """

    url: str = field(repr=False)
    format: WebhookFormat = "json"


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """One grant's resolved ``notify:`` settings, each field inherited on its own.

    ``subject`` is rendered for the grant (period and recipient variables); ``template`` is
    the text template's path resolved against the manifest's folder (its ``.html`` sibling,
    if present, is the HTML alternative), None for ours.
    """

    smtp: SmtpServer
    sender: str
    subject: str
    reply_to: str | None = None
    delivery: DeliveryKind = "page"
    pages_prefix: str = "_sharebatch/pages/"
    template: str | None = None
    per_address: bool = False
    require_approval: bool = False
    webhook: Webhook | None = None


ScanEngine = Literal["clamd", "guardduty"]
DEFAULT_CLAMD = "unix:///run/clamav/clamd.ctl"
"""Where Debian's clamav-daemon listens."""


@dataclass(frozen=True, slots=True)
class ScanSetting:
    """How one grant's uploads are judged (``upload.scan``; issue 19).

    ``engine`` clamd: sharebatch streams each object to ``clamd`` (``unix:///path`` or
    ``tcp://<loopback>:port``); guardduty: GuardDuty Malware Protection for S3 scans and tags,
    sharebatch reads its tags (``clamd`` is None). ``quarantine_prefix``: a folder of the
    slot's bucket infected objects are moved to; None leaves them in the slot, tagged.
    """

    engine: ScanEngine = "clamd"
    clamd: str | None = DEFAULT_CLAMD
    quarantine_prefix: str | None = None
