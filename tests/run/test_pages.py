"""Recipient pages: rendered safe, stored privately on a real S3 (moto), reached by one link.

The page is read back through its presigned URL and compared with the object's bytes; its
link ends with the earliest link or slot on it; the bundle names it (``page_url``), the audit
log records it without its URL, and ``delivery.json`` hands it on to delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sharebatch.errors import CredentialsError, SigningError, UsageError
from sharebatch.manifest.load import load_manifest
from sharebatch.models import BucketTarget, Connection, Credentials, Expiry, ShortCredentials
from sharebatch.run.bundles import BundleHeader, LinkPolicy, SignedBy
from sharebatch.run.delivery_plan import StoredPage, read_plan
from sharebatch.run.link_ids import link_id_of
from sharebatch.run.pages import CONTENT_TYPE, download_name, publish_page, render_page
from sharebatch.run.runner import run_resolved_async
from sharebatch.run.sign import signed_window
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import iso, parse_iso
from sharebatch.units import human_size
from tests.support.faultproxy import fault_proxy
from tests.support.linkkit import invoke
from tests.support.pages import (
    BUCKET,
    FILES,
    MANIFEST,
    PAGES,
    PageRun,
    run_with_pages,
    settings,
    url_key,
    with_notify,
)
from tests.support.s3 import ACCESS_KEY, S3, SECRET_KEY, fetch, write_manifest

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Parsed(HTMLParser):
    """Every start tag with its attributes (as a browser reads them), and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def form_inputs(self) -> list[list[dict[str, str]]]:
        """The inputs of each form, in document order."""
        forms: list[list[dict[str, str]]] = []
        for name, attrs in self.tags:
            if name == "form":
                forms.append([])
            elif name == "input" and forms:
                forms[-1].append(attrs)
        return forms


def header(name: str | None = "Globex", download: str = "{basename}") -> BundleHeader:
    """A bundle header as the write stage makes one (a path-style target on 127.0.0.1)."""
    return BundleHeader(
        run_id="20261130T120000Z-abcd",
        job="q3",
        recipient="globex",
        recipient_name=name,
        recipient_email=None,
        generated_at=iso(NOW),
        signer_access_key_id="AKIATEST",
        expires_at=iso(NOW + timedelta(hours=72)),
        links=3,
        prefixes=("reports/q3/",),
        policy=LinkPolicy(
            expiry=Expiry(seconds=72 * 3600),
            on_short_credentials="fail",
            credentials=SignedBy("env", "long-term", None),
            clamped_to=None,
            target=BucketTarget(BUCKET, "eu-west-1", "http://127.0.0.1:9", "path"),
            download_name=download,
            content_type=None,
        ),
    )


def row(key: str, size: int, hours: int = 72) -> dict[str, Any]:
    """A link row as ``bundles.link_row`` makes one (its URL percent-encoded, as signed)."""
    return {
        "recipient": "globex",
        "bucket": BUCKET,
        "key": key,
        "size": size,
        "etag": "e",
        "last_modified": iso(NOW),
        "method": "GET",
        "expires_at": iso(NOW + timedelta(hours=hours)),
        "url": f"http://127.0.0.1:9/{BUCKET}/{quote(key)}?X-Amz-Signature=00&a=1",
    }


HOSTILE = ["q3/\u202egnp.exe.pdf", "q3/<script>alert(1)</script>.txt", 'q3/bell\x07"quote.txt']

POST_FIELDS = {
    "Content-Type": "application/octet-stream",
    "key": 'inbox/globex/"><script>x</script>${filename}',
    "x-amz-algorithm": "AWS4-HMAC-SHA256",
    "x-amz-credential": "AKIATEST/20261130/eu-west-1/s3/aws4_request",
    "x-amz-date": "20261130T120000Z",
    "policy": "eyJleHBpcmF0aW9uIjogIjIwMjYifQ==",
    "x-amz-signature": "ab" * 32,
}
POST = {
    "method": "POST",
    "key": "inbox/globex/${filename}",
    "content_type": "",
    "max_size": 1_000_000,
    "expires_at": iso(NOW + timedelta(hours=2)),
    "url": "http://127.0.0.1:9/acme-reports",
    "fields": POST_FIELDS,
    "headers": {},
    "curl": "",
}
PUT_CURL = "curl --fail-with-body --globoff -T signed.pdf -H 'Content-Type: application/pdf' 'http://127.0.0.1:9/acme-reports/inbox/initech/signed.pdf?X-Amz-Signature=cd&b=<2>'"
PUT = {
    "method": "PUT",
    "key": "inbox/initech/signed.pdf",
    "content_type": "application/pdf",
    "max_size": 2048,
    "expires_at": iso(NOW + timedelta(hours=96)),
    "url": "http://127.0.0.1:9/acme-reports/inbox/initech/signed.pdf?X-Amz-Signature=cd",
    "fields": {},
    "headers": {"Content-Type": "application/pdf"},
    "curl": PUT_CURL,
}


def test_hostile_names_are_shown_escaped_and_never_as_markup() -> None:
    """Bidi, control and markup characters of keys and names appear as escapes or text: no
    tag, no override, no bell reaches the page; each link's URL is kept exactly."""
    rows = [row(key, 1536 * (i + 1)) for i, key in enumerate(HOSTILE)]
    page = render_page(header("Mallory \u202eevil <b>"), rows, expires_at=NOW + timedelta(hours=72))
    for raw in ("\u202e", "\x07", "<script", "<b>"):
        assert raw not in page
    parsed = Parsed(page)
    text = "".join(parsed.text)
    assert "Files for Mallory \\u202eevil <b>" in text  # shown as text, the override escaped
    assert "q3/\\u202egnp.exe.pdf" in text
    assert "q3/<script>alert(1)</script>.txt" in text
    assert 'q3/bell\\x07"quote.txt' in text
    assert [a["href"] for a in parsed.all("a")] == [r["url"] for r in rows]
    # Download names as the browser saves them (hidden characters dropped), sizes as people read.
    assert download_name(None, HOSTILE[0]) == "gnp.exe.pdf"
    assert [c for c in parsed.all("td") if "data-bytes" in c] == [
        {"class": "num", "data-bytes": str(r["size"])} for r in rows
    ]
    for r in rows:
        assert human_size(int(r["size"])) in text
    assert parsed.all("script") == [] and parsed.all("img") == []


def test_download_names_sizes_and_expiry_are_shown() -> None:
    """Each file under its download name with its size; the page's end in a <time> element."""
    rows = [row("reports/q3/summary.pdf", 5004, hours=24), row("reports/q3/data.csv", 8)]
    end = NOW + timedelta(hours=24)
    page = render_page(header(download="Q3-{basename}"), rows, expires_at=end)
    parsed = Parsed(page)
    text = "".join(parsed.text)
    assert "Q3-summary.pdf" in text and "Q3-data.csv" in text
    assert "4.9 KiB" in text or human_size(5004) in text
    assert "2 files" in text and human_size(5012) in text
    assert parsed.all("time") == [{"datetime": iso(end)}]
    assert iso(NOW + timedelta(hours=72)) in text  # each link's own end


def test_the_upload_form_carries_every_signed_field_exactly_and_the_file_last() -> None:
    """The POST form posts to the slot's URL with each policy field's exact value, the file
    input last; the CSP lets forms post to that origin only; a PUT slot shows its curl line."""
    page = render_page(header(), [], [POST, PUT], expires_at=NOW + timedelta(hours=2))
    parsed = Parsed(page)
    (form,) = parsed.all("form")
    assert form["action"] == POST["url"] and form["method"] == "post"
    assert form["enctype"] == "multipart/form-data"
    (inputs,) = parsed.form_inputs()
    assert [i["name"] for i in inputs] == [*POST_FIELDS, "file"]
    assert {i["name"]: i["value"] for i in inputs[:-1]} == POST_FIELDS
    assert inputs[-1]["type"] == "file"
    # An open slot: the sender may state the file's type; every other field is hidden.
    assert [i["type"] for i in inputs[:-1]] == ["text"] + ["hidden"] * (len(POST_FIELDS) - 1)
    (csp,) = [m["content"] for m in parsed.all("meta") if "http-equiv" in m]
    assert "form-action http://127.0.0.1:9;" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp
    assert "<script" not in page
    (pre,) = [t for t in parsed.text if t.startswith("curl ")]
    assert pre == PUT_CURL and shlex.split(pre)[-1].endswith("b=<2>")


def test_a_page_without_forms_may_post_nowhere() -> None:
    """No upload slot: the CSP's form-action is 'none', and the page says there are no files."""
    page = render_page(header(), [], [], expires_at=NOW + timedelta(hours=1))
    parsed = Parsed(page)
    (csp,) = [m["content"] for m in parsed.all("meta") if "http-equiv" in m]
    assert "form-action 'none'" in csp
    assert "There are no files for you this time." in "".join(parsed.text)


def test_the_header_keeps_page_url_out_of_repr_and_out_of_json_when_none() -> None:
    """``page_url`` round-trips through links.json's header, is never in a repr, and a header
    without one has no such key (bundles without pages stay byte-identical)."""
    plain = header()
    assert "page_url" not in plain.to_json()
    paged = BundleHeader.from_json({**plain.to_json(), "page_url": "http://127.0.0.1:9/p?x=1"})
    assert paged.page_url == "http://127.0.0.1:9/p?x=1"
    assert paged.to_json()["page_url"] == paged.page_url
    assert "127.0.0.1:9/p" not in repr(paged)
    assert BundleHeader.from_json(plain.to_json()) == plain
    assert "page_link_id" not in plain.to_json()
    ided = BundleHeader.from_json({**paged.to_json(), "page_link_id": "00000000000000ab"})
    assert ided.page_link_id == "00000000000000ab"
    assert list(ided.to_json())[-2:] == ["page_url", "page_link_id"]


def links_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = bundle["links"]
    return links


def earliest(bundle: dict[str, Any]) -> datetime:
    """The first end of any link or upload slot of a parsed bundle."""
    ends = [r["expires_at"] for r in links_of(bundle)]
    ends += [u["expires_at"] for u in bundle.get("uploads", [])]
    return min(parse_iso(e) for e in ends)


def test_each_page_is_stored_privately_and_read_back_through_its_link(
    s3: S3, tmp_path: Path
) -> None:
    """Each bundle's page: stored under pages_prefix as text/html; utf-8, the bytes its link
    serves are the object's and the audited sha256's; the link ends with the earliest link or
    slot; the bundle's links are the page's links; the audit event holds no URL."""
    run = run_with_pages(s3, tmp_path, {"globex": settings(), "initech": settings()})
    assert run.status == "ok"
    stored = {e["recipient"]: e for e in run.audit("page_stored")}
    assert sorted(stored) == ["globex", "initech"]
    for recipient in ("globex", "initech"):
        bundle = run.bundle(recipient)
        url = bundle["header"]["page_url"]
        key = url_key(url)
        assert key.startswith(PAGES) and key.endswith(".html")
        assert len(key.removeprefix(PAGES).removesuffix(".html")) == 32  # 192 random bits
        with urllib.request.urlopen(url, timeout=10) as response:
            served = response.read()
            assert response.headers["Content-Type"] == CONTENT_TYPE
        held = s3.client.get_object(Bucket=BUCKET, Key=key)
        assert served == held["Body"].read()
        assert held["ContentType"] == CONTENT_TYPE
        event = stored[recipient]
        assert event["sha256"] == hashlib.sha256(served).hexdigest()
        assert (event["key"], event["bucket"], event["bytes"]) == (key, BUCKET, len(served))
        assert "http" not in json.dumps(event) and "page_url" not in event
        # The page's link carries its own signed id, recorded in the header and the event.
        page_id = bundle["header"]["page_link_id"]
        assert link_id_of(url) == page_id == event["link_id"]
        assert page_id not in {r["link_id"] for r in links_of(bundle)}
        # The page's link dies with the first link or slot on it, to the second.
        assert signed_window(url)[1] == earliest(bundle) == parse_iso(event["expires_at"])
        parsed = Parsed(served.decode("utf-8"))
        assert [a["href"] for a in parsed.all("a")] == [r["url"] for r in links_of(bundle)]
    # globex's open slot (2h) ends before its links (72h); initech's links before its slot.
    assert earliest(run.bundle("globex")) < parse_iso(run.bundle("globex")["header"]["expires_at"])
    initech = run.bundle("initech")
    assert earliest(initech) == parse_iso(initech["header"]["expires_at"])
    globex_page = (
        s3.client.get_object(
            Bucket=BUCKET, Key=url_key(run.bundle("globex")["header"]["page_url"])
        )["Body"]
        .read()
        .decode()
    )
    assert "Files for Globex &lt;b&gt;Corporation&lt;/b&gt; &amp; Sons" in globex_page
    assert "\u202e" not in globex_page and "\\u202egnp.exe.pdf" in globex_page


def test_the_run_hands_pages_and_templates_to_delivery(s3: S3, tmp_path: Path) -> None:
    """delivery.json has one entry per bundle, with its stored page (key, sha256, end), its
    settings, addresses, bundle path and the template texts as they were at run time."""
    (tmp_path / "partner.txt").write_text("Hello {recipient.name}\n", encoding="utf-8")
    (tmp_path / "partner.html").write_text("<p>Hello</p>\n", encoding="utf-8")
    chosen = {
        "globex": settings(template=str(tmp_path / "partner.txt")),
        "initech": settings(delivery="links"),
    }
    run = run_with_pages(s3, tmp_path, chosen)
    plan = read_plan(run.run_dir)
    assert plan is not None and plan.run_id == run.run_dir.name
    entries = {e.recipient: e for e in plan.entries}
    globex, initech = entries["globex"], entries["initech"]
    event = run.audit("page_stored")
    assert [e["recipient"] for e in event] == ["globex"]  # delivery: links gets no page
    assert globex.page == StoredPage(event[0]["key"], event[0]["sha256"], event[0]["expires_at"])
    assert globex.settings == chosen["globex"] and globex.notify
    assert globex.addresses == ("finance@globex.example",)
    assert globex.bundle == "q3/globex/links.json"
    assert (globex.template_text, globex.template_html) == (
        "Hello {recipient.name}\n",
        "<p>Hello</p>\n",
    )
    assert initech.page is None and initech.template_text is None
    assert "page_url" not in run.bundle("initech")["header"]
    assert "http" not in (run.run_dir / "delivery.json").read_text(encoding="utf-8")
    assert oct((run.run_dir / "delivery.json").stat().st_mode & 0o777) == "0o600"


def test_a_run_without_notify_settings_writes_no_page_and_no_plan(s3: S3, tmp_path: Path) -> None:
    """No grant with notify settings: no delivery.json, no page_url, nothing stored for pages."""
    run = run_with_pages(s3, tmp_path, {})
    assert not (run.run_dir / "delivery.json").exists()
    assert "page_url" not in run.bundle("globex")["header"]
    assert run.audit("page_stored") == []
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="_sharebatch/")
    assert listed.get("KeyCount") == 0


def test_a_page_s3_refuses_fails_only_its_recipient(
    s3: S3, tmp_path: Path, moto_endpoint: str
) -> None:
    """S3 denying one recipient's page: that route gets no bundle and is a failure in the
    summary (partial, exit 1); the other recipient's bundle and page are written."""
    denied = "_sharebatch/denied/"
    with fault_proxy(moto_endpoint) as proxy:
        proxy.add("denied", path=f"/{BUCKET}/{denied}", times=None)
        run = run_with_pages(
            s3,
            tmp_path,
            {"globex": settings(), "initech": settings(pages_prefix=denied)},
            endpoint=proxy.url,
        )
    assert run.status == "partial"
    assert "page_url" in run.bundle("globex")["header"]
    assert not (run.run_dir / "q3" / "initech").exists()
    summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    (failure,) = summary["failures"]
    assert failure["kind"] == "page" and failure["recipient"] == "initech"
    assert failure["error"] == "DeliveryError" and "AccessDenied" in failure["message"]
    assert summary["jobs"][0]["failures"] == 1
    assert [r["bundle"] for r in summary["jobs"][0]["recipients"]] == ["q3/globex", None]
    plan = read_plan(run.run_dir)
    assert plan is not None and [e.recipient for e in plan.entries] == ["globex"]
    review = (run.run_dir / "index.html").read_text(encoding="utf-8")
    assert "q3/initech (recipient page): DeliveryError" in review


def test_a_renewal_drops_the_stale_page_url(s3: S3, tmp_path: Path) -> None:
    """A renewed bundle does not carry the old page's link (that page lists the old links)."""
    run: PageRun = run_with_pages(s3, tmp_path, {"globex": settings()})
    bundle = run.run_dir / "q3" / "globex"
    result = invoke("renew", str(bundle / "links.json"), "--within", "100h")
    assert result.exit_code == 0, result.stderr
    renewed = next(Path(p) for p in result.stdout.splitlines() if p.endswith(".json"))
    data = json.loads(renewed.read_text(encoding="utf-8"))
    assert "page_url" not in data["header"] and "page_link_id" not in data["header"]
    assert data["header"]["renewed"] == 5  # every link of globex: 2 shared, 3 its own


TOKEN = "session-token-for-the-page-tests"


def published(
    s3: S3,
    rows: list[dict[str, Any]],
    policy: ShortCredentials = "clamp",
    lifetime: timedelta = timedelta(hours=1),
) -> tuple[StoredPage, str, datetime]:
    """``publish_page`` as a caller outside the run uses it (remind): a gateway on moto, a
    presigner of temporary credentials ending after ``lifetime``; (page, URL, their end)."""
    s3.bucket(BUCKET, {})
    expiry = (datetime.now(UTC) + lifetime).replace(microsecond=0)
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN, expiry, "container-role")
    base = header()
    assert base.policy is not None
    target = BucketTarget(BUCKET, "eu-west-1", s3.endpoint, "path")
    paged = replace(base, policy=replace(base.policy, target=target, on_short_credentials=policy))

    async def go() -> tuple[StoredPage, str]:
        async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
            presign = await gateway.signers.presigner(target, credentials)
            return await publish_page(
                gateway, presign, paged, rows, [], settings(), credentials=credentials
            )

    return (*asyncio.run(go()), expiry)


def test_a_page_ends_with_short_credentials_when_clamped(s3: S3) -> None:
    """clamp: links to 72h but credentials ending in 1h give a page link ending with them; the
    page is stored and served back through it byte for byte, saying that end."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [row("reports/q3/a.pdf", 10) | {"expires_at": iso(now + timedelta(hours=72))}]
    page, url, expiry = published(s3, rows)
    assert signed_window(url)[1] == expiry == parse_iso(page.expires_at)
    served = fetch(url)
    assert hashlib.sha256(served).hexdigest() == page.sha256
    assert f'<time datetime="{iso(expiry)}">' in served.decode()


def test_a_page_refused_by_the_credentials_policy_stores_nothing(s3: S3) -> None:
    """fail: a page that would outlive the credentials is refused before anything is stored."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [row("reports/q3/a.pdf", 10) | {"expires_at": iso(now + timedelta(hours=72))}]
    with pytest.raises(CredentialsError, match="a recipient page"):
        published(s3, rows, policy="fail")
    assert s3.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_page_without_links_or_slots_ends_with_its_expiry_policy(s3: S3) -> None:
    """Nothing on the page: its link lives as long as the bundle's links would (72h here)."""
    before = datetime.now(UTC).replace(microsecond=0)
    page, url, _ = published(s3, [], policy="warn", lifetime=timedelta(days=4))
    after = datetime.now(UTC)
    end = signed_window(url)[1]
    assert before + timedelta(hours=72) <= end <= after + timedelta(hours=72)
    assert parse_iso(page.expires_at) == end


def test_a_page_whose_links_have_ended_is_not_published(s3: S3) -> None:
    """Every link already over: SigningError, and no page in the bucket."""
    rows = [row("reports/q3/a.pdf", 10) | {"expires_at": iso(datetime.now(UTC) - timedelta(1))}]
    with pytest.raises(SigningError, match="no page is published"):
        published(s3, rows)
    assert s3.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_missing_template_is_bad_input_before_anything_is_written(s3: S3, tmp_path: Path) -> None:
    """A notify template gone since the manifest was read (a caller that loads first, then
    runs): UsageError naming it, no run folder."""
    gone = tmp_path / "gone.txt"
    gone.write_text("Hello {recipient.name}\n", encoding="utf-8")
    text = with_notify(MANIFEST, {"globex": settings(template=str(gone))})
    manifest = load_manifest(write_manifest(tmp_path / "pages.yml", text))
    gone.unlink()
    s3.bucket(BUCKET, dict(FILES))
    with pytest.raises(UsageError, match=r"gone\.txt: notify template not found"):
        asyncio.run(
            run_resolved_async(
                manifest, out=tmp_path / "out", connection=Connection(endpoint_url=s3.endpoint)
            )
        )
    assert not (tmp_path / "out").exists()
