"""Recipient pages (``delivery: page``): one private HTML page per bundle, behind one link.

Mail security gateways fetch every URL of a message when it arrives. A mail holding one link to
this page costs a scanner one small fetch; the files' links are only on the page. The page is
self-contained (inline CSS, no script, a Content-Security-Policy that loads nothing and lets
forms post only to the bucket's own upload URLs), lists the recipient's files with their
download names, sizes and expiry, gives a browser form for each POST upload slot and the curl
command for each PUT one. Every outsider's text goes through ``visible()`` and is HTML-escaped;
values a link or a form needs exactly (URLs, form fields) are HTML-escaped only.

It is stored privately in the bundle's bucket at ``<pages_prefix><random>.html`` through
``S3Gateway.put_private`` and reached by one presigned GET that ends with the earliest link or
slot on it and carries its own link id (``x-sharebatch-id``, unless the bundle's policy says
``link_ids: false``). The audit log records ``page_stored`` with its key, sha256 and link id,
never the URL.

The page's link is always an S3 presigned one, whatever kind its links are. CloudFront links
may live past what SigV4 (7 days) or the run's credentials allow an S3 link: the page's link
then ends first, at that cap (``page_capped`` in the log; the page says its own end and each
link's; ``page_lifetimes`` holds it to the credentials before the run starts). A page ends at
the earliest of its links' end, its upload slot's end and those 7 days (``page_end``). Links
with a start (``cloudfront.not_before``) say it on the page; a page whose link would end
before that start is refused (``SigningError``: the run's ``page_failed`` for that recipient).
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sharebatch.audit import get_logger
from sharebatch.errors import DeliveryError, SigningError
from sharebatch.manifest.templates import render_object
from sharebatch.models import (
    LINK_ID_PARAM,
    MAX_EXPIRES_IN,
    BucketTarget,
    Credentials,
    Expiry,
    NotifySettings,
    Presigner,
)
from sharebatch.run.bundles import BundleHeader
from sharebatch.run.delivery_plan import StoredPage
from sharebatch.run.link_ids import new_link_id
from sharebatch.run.plan import Plan, Route
from sharebatch.run.sign import Lifetime, Wanted, credential_limit, policy_end, signed_window
from sharebatch.times import iso, parse_iso
from sharebatch.units import counted, human_size
from sharebatch.visible import visible, without_hidden

if TYPE_CHECKING:  # the AWS SDK is imported when a gateway opens, not with this module
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()

CONTENT_TYPE = "text/html; charset=utf-8"
# A bearer page: no shared cache may keep a copy, and a browser's back button refetches it.
CACHE_CONTROL = "private, no-store"

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;padding:1.5em;max-width:60em;color:#1b1b1b}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.6em 0 .5em}
.meta{color:#555}.note{background:#fff4e5;border-left:4px solid #e8a33d;padding:.5em 1em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4em .5em;text-align:left;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}.key{color:#555;font-size:.85em}
td.name,.key,pre{word-break:break-all}
pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}
form.upload,div.put{border:1px solid #ddd;padding:.6em 1em;margin:.6em 0}
form.upload label{display:block;margin:.3em 0}
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _e(value: object) -> str:
    """Outsiders' text as shown: hidden characters as escapes, then HTML-escaped."""
    return escape(visible("" if value is None else str(value)), quote=True)


def _attr(value: object) -> str:
    """A value a link or a form needs exactly (a URL, a form field): HTML-escaped only."""
    return escape(str(value), quote=True)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def download_name(template: str | None, key: str) -> str:
    """The name a browser saves ``key``'s file as (what ``sign.content_disposition`` sends)."""
    name = without_hidden(render_object(template or "{basename}", key))
    return name if name.strip(". ") else "download"


def page_expiry(
    rows: Sequence[Mapping[str, Any]], uploads: Sequence[Mapping[str, Any]]
) -> datetime | None:
    """The earliest end of any link or upload slot on the page; None when it has neither."""
    ends = [parse_iso(str(item["expires_at"])) for item in (*rows, *uploads)]
    return min(ends, default=None)


def links_start(header: BundleHeader) -> datetime | None:
    """When the bundle's links start to work (a CloudFront ``not_before``); None when at once."""
    policy = header.policy
    if policy is None or policy.cloudfront is None:
        return None
    return policy.cloudfront.not_before


def render_page(
    header: BundleHeader,
    rows: Sequence[Mapping[str, Any]],
    uploads: Sequence[Mapping[str, Any]] = (),
    *,
    expires_at: datetime,
) -> str:
    """The page of one bundle: ``rows`` as ``bundles.link_row`` made them, ``uploads`` as
    ``slots.upload_row`` did; ``expires_at`` is when the page's own link ends."""
    return "".join(_page(header, rows, uploads, expires_at))


def _page(
    header: BundleHeader,
    rows: Sequence[Mapping[str, Any]],
    uploads: Sequence[Mapping[str, Any]],
    expires_at: datetime,
) -> Iterator[str]:
    posts = [u for u in uploads if u["method"] == "POST"]
    # Forms may post to the bucket's upload URLs and nowhere else; no script, nothing loaded.
    action = " ".join(dict.fromkeys(_origin(str(u["url"])) for u in posts)) or "'none'"
    csp = (
        f"default-src 'none'; style-src {_csp_hash(_STYLE)}; form-action {action}; base-uri 'none'"
    )
    who = header.recipient_name or header.recipient
    total = sum(int(row["size"]) for row in rows)
    template = header.policy.download_name if header.policy else None
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_attr(csp)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Files for {_e(who)}</title>\n"
        f"<style>{_STYLE}</style></head><body>\n"
        f'<h1 id="title">Files for {_e(who)}</h1>\n'
        f'<p class="meta" id="summary">{_e(header.job)}: '
        f"{_e(counted(len(rows), 'file'))}, {_e(human_size(total))} in all; "
        f"prepared {_e(header.generated_at)}</p>\n"
    )
    until = f'<time datetime="{_attr(iso(expires_at))}">{_e(iso(expires_at))}</time> (UTC)'
    cloudfront = header.policy is not None and header.policy.link == "cloudfront"
    start = links_start(header)
    if start is not None and rows:
        # A custom policy's DateGreaterThan: CloudFront refuses the links until then, and a
        # recipient who tries earlier must know it is not a broken link.
        since = f'<time datetime="{_attr(iso(start))}">{_e(iso(start))}</time> (UTC)'
        yield (
            f'<p class="note" id="starts">The links on this page work only from {since}; '
            "before then the downloads are refused.</p>\n"
        )
    if cloudfront and any(parse_iso(str(row["expires_at"])) > expires_at for row in rows):
        # CloudFront links may outlive any S3 link, this page's own among them.
        yield (
            f'<p class="note" id="expiry">This page works until {until}; each link on it '
            "until the time beside it, so keep the links you need before the page ends. "
            "Anyone who has them can use them: please do not forward them.</p>\n"
        )
    else:
        yield (
            f'<p class="note" id="expiry">This page and its links work until {until}. '
            "Anyone who has them can use them until then: please do not forward them.</p>\n"
        )
    if rows:
        yield (
            '<h2>Files</h2>\n<table id="files"><thead><tr><th>Name</th>'
            '<th class="num">Size</th><th>Available until</th><th>Link</th></tr></thead>'
            "<tbody>\n"
        )
        for row in rows:
            key = str(row["key"])
            size = int(row["size"])
            yield (
                f'<tr><td class="name">{_e(download_name(template, key))}'
                f'<div class="key">{_e(key)}</div></td>'
                f'<td class="num" data-bytes="{size}">{_e(human_size(size))}</td>'
                f"<td>{_e(row['expires_at'])}</td>"
                f'<td><a class="download" href="{_attr(row["url"])}" rel="noreferrer">'
                "Download</a></td></tr>\n"
            )
        yield "</tbody></table>\n"
    else:
        yield '<p id="no-files">There are no files for you this time.</p>\n'
    if uploads:
        yield "<h2>Send files back</h2>\n"
        for index, upload in enumerate(uploads):
            yield from _post(index, upload) if upload["method"] == "POST" else _put(upload)


def _post(index: int, upload: Mapping[str, Any]) -> Iterator[str]:
    """A form S3 takes as is: every signed field, the file last (S3 ignores fields after it)."""
    fields: Mapping[str, str] = upload["fields"]
    kind = upload["content_type"] or ""
    folder = str(upload["key"]).removesuffix("${filename}")
    yield (
        f'<form class="upload" id="upload-{index}" method="post" '
        f'action="{_attr(upload["url"])}" enctype="multipart/form-data">\n'
        f"<p>Upload a file {('of type ' + _e(kind)) if kind else 'of any type'}, up to "
        f"{_e(human_size(int(upload['max_size'])))}, into {_e(folder)} until "
        f"{_e(upload['expires_at'])}. It keeps its own name. When S3 takes it, the page "
        "stays as it is; when S3 refuses it, S3 says why.</p>\n"
    )
    for name, value in fields.items():
        if name == "Content-Type" and not kind:
            # An open slot: the policy lets the sender state the file's type.
            yield (
                f'<label>Content type <input type="text" name="{_attr(name)}" '
                f'value="{_attr(value)}"></label>\n'
            )
        else:
            yield f'<input type="hidden" name="{_attr(name)}" value="{_attr(value)}">\n'
    yield (
        '<label>File <input type="file" name="file" required></label>\n'
        '<button type="submit">Upload</button>\n</form>\n'
    )


def _put(upload: Mapping[str, Any]) -> Iterator[str]:
    kind = upload["content_type"] or ""
    yield (
        f'<div class="put"><p>Send the file {_e(upload["key"])}'
        f"{(' (type ' + _e(kind) + ')') if kind else ''}, up to "
        f"{_e(human_size(int(upload['max_size'])))}, until {_e(upload['expires_at'])}, "
        "with this command (it sends exactly the headers the link was signed with):</p>\n"
        f"<pre>{_attr(upload['curl'])}</pre></div>\n"
    )


def page_key(settings: NotifySettings) -> str:
    """A fresh, unguessable key under ``pages_prefix`` (192 random bits)."""
    return f"{settings.pages_prefix}{secrets.token_urlsafe(24)}.html"


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def publish_page(
    gateway: S3Gateway,
    presign: Presigner,
    header: BundleHeader,
    rows: Sequence[Mapping[str, Any]],
    uploads: Sequence[Mapping[str, Any]],
    settings: NotifySettings,
    *,
    credentials: Credentials | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> tuple[StoredPage, str]:
    """Render, store and sign the page of one bundle; (what was stored, the page's URL).

    The bucket is the header's effective target (``header.policy.target``); ``presign`` signs
    for it. The URL ends with the earliest link or slot on the page, held to the header's
    ``on_short_credentials`` against ``credentials`` as the links were. A bundle with neither
    gets its expiry policy's end. Raises ``DeliveryError`` when S3 does not take the page and
    ``SigningError``/``CredentialsError`` when no link that ends in time can be signed.
    """
    policy = header.policy
    if policy is None:
        raise SigningError(
            f"job {header.job}, recipient {header.recipient}: the bundle records no target"
        )
    target: BucketTarget = policy.target
    limit = credential_limit(credentials, policy.on_short_credentials) if credentials else None
    now = clock()
    start = now.replace(microsecond=0)
    end = page_expiry(rows, uploads)
    if end is None and policy.link == "cloudfront":
        # Its links' window is no S3 link's: the page's link gets at most SigV4's.
        end = policy_end(policy.expiry, start)
    elif end is None:
        left = Lifetime(header.job, policy.expiry, limit).expires_in(now)
        end = start + timedelta(seconds=left)
    # The page lives until the earliest of its links' end, its slots' end and SigV4's 7 days:
    # CloudFront links of 90 days must not make the page's own link ask for 90 days (the
    # credentials would then be judged, and clamped, against an end it can never have).
    # Past 7 days it asks for 7 days from its own signature, not to a fixed moment, so a
    # signer whose second ticks meanwhile need not re-sign it a second shorter.
    capped = end > start + timedelta(seconds=MAX_EXPIRES_IN)
    expiry = Expiry(seconds=MAX_EXPIRES_IN) if capped else Expiry(at=end)
    lifetime = Lifetime(header.job, expiry, limit, "a recipient page")
    # Up to the second the links end: a signer stamps whole seconds, so rounding up here and
    # its stamp rounding down meet exactly at ``end`` (re-signed shorter if its second ticks).
    seconds = min(math.ceil((end - now).total_seconds()), MAX_EXPIRES_IN)
    if seconds <= 0:
        raise SigningError(
            f"job {header.job}, recipient {header.recipient}: every link of the page ended at "
            f"{iso(end)}; no page is published"
        )
    key = page_key(settings)
    link_id = new_link_id() if policy.link_ids else None
    params = {} if link_id is None else {LINK_ID_PARAM: link_id}

    def sign(seconds: int) -> tuple[str, datetime, datetime]:
        url = presign("GET", target.bucket, key, seconds, params)
        return (url, *signed_window(url))

    # Signed before it is stored: a link refused by the credentials' policy leaves nothing.
    url, _, expires_at = lifetime.sign(header.recipient, sign, seconds)
    links_from = links_start(header)
    if links_from is not None and expires_at <= links_from:
        # Nothing on it would work while the page does: refused before it is stored, so this
        # recipient's failure is reported instead of mailing a useless page.
        raise SigningError(
            f"job {header.job}, recipient {header.recipient}: the page's link would end at "
            f"{iso(expires_at)}, not after its links start (cloudfront.not_before "
            f"{iso(links_from)}); no page is published"
        )
    if expires_at < end:
        by_credentials = lifetime.clamped_to is not None or (
            limit is not None and expires_at == limit.expiry
        )
        log.warning(
            "page_capped",
            job=header.job,
            recipient=header.recipient,
            page_expires_at=iso(expires_at),
            links_end=iso(end),
            capped_by="credentials" if by_credentials else "sigv4",
            message="the page's own S3 link ends before the links on it, at what "
            + (
                "the credentials signing it allow"
                if by_credentials
                else f"SigV4 allows ({MAX_EXPIRES_IN}s)"
            )
            + "; the links themselves work until their own end",
        )
    body = render_page(header, rows, uploads, expires_at=expires_at).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    stored = await gateway.put_private(
        target, key, body, content_type=CONTENT_TYPE, cache_control=CACHE_CONTROL
    )
    if stored.error:
        raise DeliveryError(
            f"job {header.job}, recipient {header.recipient}: S3 did not store the page "
            f"{visible(target.bucket)}/{visible(key)} ({stored.error}: {visible(stored.message)})"
        )
    page = StoredPage(key=key, sha256=digest, expires_at=iso(expires_at))
    log.info(
        "page_stored",
        job=header.job,
        recipient=header.recipient,
        bucket=target.bucket,
        key=key,
        sha256=digest,
        bytes=len(body),
        expires_at=page.expires_at,
        link_id=link_id,
    )
    return page, url


def page_lifetimes(plan: Plan, now: datetime) -> list[Wanted]:
    """What the page link of each ``link: cloudfront`` route with a page asks of the
    credentials (for ``sign.check_lifetimes``): to end as ``page_end`` says.

    An S3 route's page ends with its links, which ``check_lifetimes`` holds to the credentials
    already; a CloudFront route's links are not (a key pair signs them), its page link is.
    """
    return [
        (
            route.job,
            route.recipient,
            Expiry(at=page_end(route, now)),
            route.grant.on_short_credentials,
        )
        for route in plan.routes
        if route.grant.link == "cloudfront" and page_settings(route) is not None
    ]


def page_end(route: Route, now: datetime) -> datetime:
    """The latest a page of ``route`` signed at ``now`` may end: the earliest of its links'
    end, its upload slot's end (``publish_page`` ends the page with it) and SigV4's 7 days."""
    ends = [policy_end(route.grant.expiry, now), now + timedelta(seconds=MAX_EXPIRES_IN)]
    slot = route.grant.upload
    if slot is not None:
        ends.append(now + timedelta(seconds=slot.expires_in))
    return min(ends)


def page_settings(route: Route) -> NotifySettings | None:
    """The route's notify settings when it is delivered through a page, else None."""
    settings = route.grant.notify  # None too when ``notify: false`` left the grant out
    return settings if settings is not None and settings.delivery == "page" else None


@dataclass(frozen=True)
class Pages:
    """Publishes the pages of a plan's ``delivery: page`` routes: one presigner per target,
    prepared before the first bundle, like ``slots.Uploads``."""

    gateway: S3Gateway
    presigners: Mapping[BucketTarget, Presigner]
    credentials: Credentials | None = None

    @classmethod
    async def prepare(cls, plan: Plan, gateway: S3Gateway, credentials: Credentials) -> Pages:
        presigners: dict[BucketTarget, Presigner] = {}
        for route in plan.routes:
            target = gateway.effective(route.target)
            if page_settings(route) is not None and target not in presigners:
                presigners[target] = await gateway.signers.presigner(target, credentials)
        return cls(gateway, presigners, credentials)

    async def publish(
        self,
        route: Route,
        header: BundleHeader,
        rows: Sequence[Mapping[str, Any]],
        uploads: Sequence[Mapping[str, Any]],
    ) -> tuple[StoredPage, str] | None:
        """The route's page stored and signed; None when the route gets no page."""
        settings = page_settings(route)
        if settings is None or header.policy is None:
            return None
        presign = self.presigners[header.policy.target]
        return await publish_page(
            self.gateway, presign, header, rows, uploads, settings, credentials=self.credentials
        )
